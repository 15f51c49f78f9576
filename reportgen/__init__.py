"""reportgen: declared machine-learning experiments in, a reproducible report out."""

__version__ = "0.1.0"
