"""lmforge: the InternLM2 life cycle, end to end."""

__version__ = "0.1.0"
