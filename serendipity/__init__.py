"""serendipity: serendipitous recommendation steered by a fine-tuned multimodal LLM."""

__version__ = "0.1.0"
