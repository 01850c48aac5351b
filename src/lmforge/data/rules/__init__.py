"""Rule filters of the clean stage: Gopher, C4, FineWeb, Chinese.

Paper: WanJuan-CC, arXiv 2402.19282, stage 2; docs/papers.md §4.
"""
