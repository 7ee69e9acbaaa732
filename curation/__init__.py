"""curation: train on less data without losing accuracy, and prove it."""

__version__ = "0.1.0"
