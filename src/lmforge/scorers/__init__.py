"""Scorers that need an lmforge model (kept out of `lmforge.data`, which never imports the model)."""
