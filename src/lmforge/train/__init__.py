"""Pre-training: packed-shard loader, AdamW and AdaLomo, FSDP2 applied from outside the model,
DCP checkpoints with exact resume, loss-spike skipping, metrics with MFU, multi-stage (long-context)
runs, and the scaling-law helper (InternLM2 report, arXiv 2403.17297; Baichuan 2, arXiv 2309.10305;
LoongTrain, arXiv 2406.18485; AdaLomo, arXiv 2310.10195; docs/papers.md §2, §3, §5, §6)."""

from lmforge.train.config import TrainSection, TrainStageSection
from lmforge.train.trainer import Trainer, TrainStageResult, train, train_stage

__all__ = ["TrainSection", "TrainStageResult", "TrainStageSection", "Trainer", "train", "train_stage"]
