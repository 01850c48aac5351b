"""The `[train]` recipe section: every setting of a pre-training stage, with InternLM2's defaults
where the report gives them (AdamW 0.9 / 0.95 / 1e-8, weight decay 0.1, cosine to 10%; InternLM2
report, arXiv 2403.17297; docs/papers.md §2). `[[train.stages]]` entries run one after another,
each continuing from the previous stage's weights with its own length, RoPE base and schedule (the
4k -> 32k recipe, scaled down). `sequence_parallel` splits every row over head x context
processes (LoongTrain, arXiv 2406.18485; docs/papers.md §5, docs/sequence_parallel.md). Every value
is checked when the section is built: ranges and choices here, each stage's sequence length
against the split, the batch split over the data-parallel processes by `check_batches`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lmforge.config import check_fields
from lmforge.train.seqpar.layout import check_seq_len, check_window, factor_world
from lmforge.train.seqpar.mesh import PLACEMENTS

# The allowed values of the settings that a stage can override too (see `check_fields`).
STAGE_RANGES = {"steps": ">= 1", "seq_len": ">= 1", "lr": ">= 0", "warmup_steps": ">= 0", "global_batch": ">= 1",
                "micro_batch": ">= 1", "val_every": ">= 0", "ckpt_every": ">= 1"}


@dataclass
class SequenceParallelSection:
    """LoongTrain's 2D sequence parallelism: each row's tokens split over head x context processes
    (`lmforge.train.seqpar`); the processes left over (world / (head x context)) are data parallel."""

    head: int = 1  # head-parallel (Ulysses all-to-all) group size; divides n_heads
    context: int = 1  # context-parallel (ring attention) group size
    placement: str = "head_first"  # "head_first": head groups on consecutive ranks; or "context_first"
    double_ring_window: int = 0  # ranks per inner ring of the double ring (divides context); 0: one ring

    def __post_init__(self) -> None:
        check_fields(self, {"head": ">= 1", "context": ">= 1", "double_ring_window": ">= 0"},
                     {"placement": PLACEMENTS})
        if self.double_ring_window:
            check_window(self.context, self.double_ring_window)

    @property
    def size(self) -> int:
        return self.head * self.context

    @property
    def window(self) -> int | None:
        """The double ring's window as `SequenceParallelGroups` takes it (None: one plain ring)."""
        return self.double_ring_window or None


@dataclass
class TrainStageSection:
    """Per-stage overrides of the train section (unset fields keep the train section's value)."""

    name: str = "stage"
    steps: int | None = None
    seq_len: int | None = None
    rope_theta: float | None = None
    max_seq_len: int | None = None  # the model's RoPE window (dynamic NTK starts beyond it)
    lr: float | None = None
    warmup_steps: int | None = None
    global_batch: int | None = None
    micro_batch: int | None = None
    shards: str | None = None
    val_shards: str | None = None
    val_every: int | None = None
    ckpt_every: int | None = None
    sequence_parallel: SequenceParallelSection | None = None  # e.g. only the long-context stage

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"name = {self.name!r}: expected a folder name such as \"short\"")
        check_fields(self, {**STAGE_RANGES, "rope_theta": "> 0", "max_seq_len": ">= 1"})


@dataclass
class TrainSection:
    shards: str = ""  # directory of training shards written by `lmforge data`
    val_shards: str = ""  # held-out shards for validation loss
    out_dir: str = "runs/train"
    tokenizer: str = ""  # tokenizer directory: sets the vocabulary and travels with the exports
    init_from: str = ""  # continue from a Hugging Face InternLM2 / Llama checkpoint directory
    seed: int = 0
    steps: int = 200
    # A wall-clock budget in seconds (0: none). The stage ends when it is spent, `steps` becomes a cap,
    # and the schedule (warmup in steps, then cosine or WSD) follows the share of the budget spent
    # instead of the share of steps: equal-time comparisons (bench/race_nanogpt.py). The number of
    # steps then depends on the machine's speed, so such a run is not step-for-step reproducible.
    max_seconds: float = 0.0
    seq_len: int = 256
    global_batch: int = 16  # rows per optimizer step, over all processes
    micro_batch: int = 8  # rows per forward pass in each process
    # Take each epoch's rows in a seeded random order (Megatron's sample shuffle) instead of one after
    # another along the document stream, where a step's rows are neighbouring stretches of the same
    # document. The documents' order is shuffled either way.
    shuffle_rows: bool = False
    optimizer: str = "adamw"  # "adamw", "adalomo", or "muon" (Muon for the blocks' matrices + AdamW)
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    schedule: str = "cosine"  # "cosine", "wsd" or "constant"
    decay_fraction: float = 0.2  # wsd: share of steps in the final decay
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # global-norm clipping (AdamW); 0 disables
    clip_value: float = 1.0  # gradient value clipping (AdaLomo); 0 disables
    # AdamW: the embedding matrix's and the LM head's learning rates as multiples of `lr` (1: one rate
    # for all, InternLM2's recipe; modded-nanoGPT gives embeddings a far higher one)
    embed_lr_scale: float = 1.0
    head_lr_scale: float = 1.0
    # AdamW: the smeared-key gates' rate as a multiple of `lr` (`model.smear_keys`). Each gate is one
    # scalar per head that an induction head must move from the even mix it starts at to the previous
    # token's key alone; at `lr` it barely moves in a short run (docs/training.md, the pass-key section).
    # A model without smeared keys has no gates, so the scale leaves it as it is.
    smear_lr_scale: float = 1.0
    dtype: str = "auto"  # "auto" (bf16 autocast on GPU, fp32 on CPU), "float32" or "bfloat16"
    # torch.compile of each block: true, false, or "auto" (on where it can run: a GPU, or a CPU with a
    # C++ compiler for inductor's kernels; about 10% faster steps for the race's 1M-parameter model)
    compile: bool | str = False
    activation_checkpointing: str = "none"  # "none", "blocks" or "attention"
    ac_every: int = 1  # with "blocks": checkpoint every k-th block
    ckpt_every: int = 50
    keep_checkpoints: int = 2
    val_every: int = 50
    val_rows: int = 32
    log_every: int = 1
    spike_window: int = 50  # loss/grad-norm history for the z-score
    spike_zscore: float = 6.0  # skip the update beyond this many standard deviations; 0 disables
    tensorboard: bool = True
    sequence_parallel: SequenceParallelSection = field(default_factory=SequenceParallelSection)
    stages: list[TrainStageSection] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_fields(self, {**STAGE_RANGES, "max_seconds": ">= 0", "min_lr_ratio": "[0, 1]", "decay_fraction": "[0, 1]",
                            "weight_decay": ">= 0", "beta1": "[0, 1)", "beta2": "[0, 1)", "eps": "> 0",
                            "grad_clip": ">= 0", "clip_value": ">= 0", "embed_lr_scale": "> 0", "head_lr_scale": "> 0",
                            "smear_lr_scale": "> 0", "ac_every": ">= 1", "keep_checkpoints": ">= 1",
                            "val_rows": ">= 1", "log_every": ">= 1", "spike_window": ">= 1", "spike_zscore": ">= 0"},
                     {"optimizer": ("adamw", "adalomo", "muon"), "schedule": ("cosine", "wsd", "constant"),
                      "dtype": ("auto", "float32", "bfloat16"),
                      "activation_checkpointing": ("none", "blocks", "attention")})
        if self.compile not in (True, False, "auto"):
            raise ValueError(f"compile = {self.compile!r}: expected true, false or \"auto\"")
        scaled = {n: getattr(self, n) for n in ("embed_lr_scale", "head_lr_scale", "smear_lr_scale")
                  if getattr(self, n) != 1.0}
        if scaled and self.optimizer != "adamw":
            raise ValueError(f"{', '.join(f'{n} = {v}' for n, v in scaled.items())}: the rate scales apply to AdamW "
                             f"only (optimizer = {self.optimizer!r}); set them to 1 or use adamw")
        names = [s.name for s in self.stages]
        if len(set(names)) < len(names):
            raise ValueError(f"stages: two stages are named {next(n for n in names if names.count(n) > 1)!r}; "
                             "each writes its own folder")
        check_batches(self)
        check_sequence_split(self)


def stage_value(train: TrainSection, stage: TrainStageSection | None, name: str):
    """A stage's setting, or the train section's where the stage leaves it unset."""
    value = None if stage is None else getattr(stage, name)
    return getattr(train, name) if value is None else value


def check_split(sp: SequenceParallelSection, seq_len: int, where: str = "") -> None:
    """Rows of `seq_len` tokens must split into the zigzag shards of sp's head x context processes
    (also used by the alignment sections, `lmforge.align.config`)."""
    if sp.size == 1:
        return
    try:
        check_seq_len(seq_len, sp.head, sp.context)
    except ValueError as e:
        raise ValueError(f"seq_len = {seq_len}{where} with sequence_parallel = {{ head = {sp.head}, "
                         f"context = {sp.context} }}: {e}") from None


def data_parallel_size(sp: SequenceParallelSection, world_size: int, where: str = "") -> int:
    """The data-parallel processes that sp leaves of `world_size`; an error when they do not factor."""
    try:
        return factor_world(world_size, sp.head, sp.context)
    except ValueError as e:
        raise ValueError(f"sequence_parallel{where}: {e}") from None


def check_sequence_split(train: TrainSection) -> None:
    """Each stage's rows must split into the zigzag shards of its head x context processes."""
    for stage in train.stages or [None]:
        check_split(stage_value(train, stage, "sequence_parallel"), stage_value(train, stage, "seq_len"),
                    f" (stage {stage.name!r})" if stage else "")


def check_batches(train: TrainSection, dp_size: int = 1, *, world_size: int | None = None) -> None:
    """Each stage's global batch must split into micro-batches over the `dp_size` data-parallel
    processes; with `world_size`, over those that each stage's sequence_parallel leaves (and the
    world must factor into dp x head x context)."""
    for stage in train.stages or [None]:
        gb, mb = stage_value(train, stage, "global_batch"), stage_value(train, stage, "micro_batch")
        where = f" (stage {stage.name!r})" if stage else ""
        if world_size is not None:
            dp_size = data_parallel_size(stage_value(train, stage, "sequence_parallel"), world_size, where)
        if gb % (mb * dp_size):
            raise ValueError(f"global_batch = {gb}{where}: must be a multiple of micro_batch x data-parallel "
                             f"processes = {mb} x {dp_size}")


def train_stage_configs(train: TrainSection) -> list[tuple[str, TrainSection, TrainStageSection | None]]:
    """(name, effective train settings, stage) for each stage; one unnamed stage if none are listed."""
    if not train.stages:
        return [("main", train, None)]
    out = []
    for stage in train.stages:
        changes = {f.name: getattr(stage, f.name) for f in dataclasses.fields(TrainStageSection)
                   if f.name in {g.name for g in dataclasses.fields(TrainSection)} and getattr(stage, f.name) is not None}
        out.append((stage.name, dataclasses.replace(train, stages=[], **changes), stage))
    return out
