"""Pre-training: packed-shard loader, AdamW and AdaLomo, FSDP2 applied from outside the model,
DCP checkpoints with exact resume, loss-spike skipping, metrics with MFU, multi-stage (long-context)
runs, and the scaling-law helper (PAPERS.md sections 2, 3, 5 and 6)."""

from lmforge.train.config import TrainSection, TrainStageSection
from lmforge.train.trainer import Trainer, TrainStageResult, train, train_stage

__all__ = ["TrainSection", "TrainStageResult", "TrainStageSection", "Trainer", "train", "train_stage"]
