"""Rule filters of the clean stage (PAPERS.md section 4, stage 2): Gopher, C4, FineWeb, Chinese."""
