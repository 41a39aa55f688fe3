"""harness: prompt it, train a head, or fine-tune it all — measured on one base model."""

__version__ = "0.5.0"
