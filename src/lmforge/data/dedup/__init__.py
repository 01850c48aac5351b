"""Deduplication: exact hashes and MinHash LSH, distributed in phases.

Paper: WanJuan-CC, arXiv 2402.19282, stage 3; docs/papers.md §4.
"""
