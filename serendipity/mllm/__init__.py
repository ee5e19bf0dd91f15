"""The multimodal LLM: models, prompts, fine-tuning, constrained generation."""

from serendipity.mllm.torchvision_compat import install_import_hook

# Before anything here imports transformers: its processors import torchvision, which needs the shim
# on a CPU-only torch (see serendipity.mllm.torchvision_compat).
install_import_hook()
