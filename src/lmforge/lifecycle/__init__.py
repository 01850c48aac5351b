"""The stages of `lmforge run`, each a function from settings and a folder to a summary."""
