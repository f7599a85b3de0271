"""guard: keeps AI coding agents inside a budget."""

__version__ = "0.1.0"
