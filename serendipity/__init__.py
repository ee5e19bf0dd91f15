"""serendipity: serendipitous recommendation steered by a fine-tuned multimodal LLM."""

from serendipity.mllm.torchvision_compat import install_import_hook

__version__ = "0.1.0"

# Every process that imports this package (drivers, Spark and Ray workers, Serve replicas) gets the shim
# before its first torchvision import, which transformers' processors and sentence-transformers make.
install_import_hook()
