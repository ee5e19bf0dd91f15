"""Prompt markers shared by prompt building, parsing and constrained decoding."""

# The final answer follows this marker on its own line; everything before it is free reasoning.
ANSWER_MARKER = "Answer:"
# Chain-of-thought reasoning opens with this marker.
REASONING_MARKER = "Video:"
