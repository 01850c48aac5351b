"""Pre-training: packed-shard loader, AdamW and AdaLomo, FSDP2 applied from outside the model,
DCP checkpoints with exact resume, loss-spike skipping, metrics with MFU, multi-stage (long-context)
runs, and the scaling-law helper (PAPERS.md sections 2, 3, 5 and 6)."""

from lmforge.train.config import StageSection, TrainSection
from lmforge.train.trainer import StageResult, train, train_stage

__all__ = ["StageResult", "StageSection", "TrainSection", "train", "train_stage"]
