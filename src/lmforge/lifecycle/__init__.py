"""The stages of `lmforge run`, each a function from settings and a folder to a summary: `corpus`
(crawl, data, tokenizer, shards), `pretrain` (also `lmforge train`), `evaluation`, `samples`; and
`stage`, the bookkeeping that skips, redoes or resumes them."""
