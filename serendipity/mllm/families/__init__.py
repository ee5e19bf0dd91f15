"""Tiny, randomly initialised instances of real vision-language architectures, one module per family.

Each builder returns ``(model, processor)`` with the family's own model and processor classes and a
tokenizer trained on the dataset's texts carrying the family's special tokens and chat template.
``serendipity.mllm.tiny`` is the registry that picks a builder by name.
"""
