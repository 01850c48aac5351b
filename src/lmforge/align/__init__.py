"""Alignment: SFT, reward models, preference optimisation (InternLM2 report section 4; docs/papers.md)."""
