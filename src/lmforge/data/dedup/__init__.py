"""Deduplication (PAPERS.md section 4, stage 3): exact hashes and MinHash LSH, distributed in phases."""
