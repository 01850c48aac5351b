"""Worker for tests/train/test_seqpar_training.py: one gloo process group runs every case.

Every process first trains the tiny model one step alone (the reference: one process, whole rows).
Then, for each layout of the world (dp x head x context, placement, double ring, checkpointing),
it builds the same model under `Trainer` with sequence parallelism, feeds it its dp rank's rows
(the trainer cuts its zigzag shard), and compares with the reference: the loss and every
parameter's gradient of one forward/backward, then a whole `Trainer.step` (loss, gradient norm
and the weights after AdamW). Under block checkpointing it also counts the ring attention's
forward computations: with Selective Checkpoint++ once per layer and micro-batch, without it
twice (the recompute runs the ring again).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from lmforge.model import InternLM2, ModelConfig
from lmforge.model.attention import positions_from_documents
from lmforge.train.config import SequenceParallelSection, TrainSection
from lmforge.train.loader import make_batch
from lmforge.train.losses import NextTokenLoss
from lmforge.train.parallel import DistInfo, ParallelDims, all_reduce_sum
from lmforge.train.seqpar import SequenceParallelCore, sequence_parallel_mesh
from lmforge.train.seqpar import ring as ring_module
from lmforge.train.trainer import Trainer

# max_seq_len below the longest document: dynamic NTK changes the RoPE base, so the shards must
# agree with one process on the whole rows' length, not their own.
TINY = ModelConfig(vocab_size=256, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, rope_theta=10_000.0,
                   max_seq_len=12, embed_init_std=1.0, attn_backend="sdpa")
SEQ_LEN, ROWS, LR = 32, 2, 1e-2
TOLERANCE = 1e-5
# (dp, head, context, placement, double_ring_window, activation_checkpointing, Selective Checkpoint++)
CASES = [
    (1, 2, 2, "head_first", 0, "none", True),
    (1, 2, 2, "context_first", 0, "none", True),
    (1, 1, 4, "head_first", 2, "none", True),
    (1, 4, 1, "head_first", 0, "none", True),  # head group 4 > 2 kv heads: kv heads replicated
    (2, 1, 2, "head_first", 0, "none", True),
    (1, 2, 2, "head_first", 0, "blocks", True),
    (1, 2, 2, "head_first", 0, "blocks", False),
]


def rows() -> list[tuple[np.ndarray, np.ndarray]]:
    """Packed rows (SEQ_LEN + 1 tokens) whose documents end inside zigzag chunks."""
    gen = np.random.default_rng(7)
    out = []
    for lengths in ((5, 9, 3, 16), (14, 2, 17)):
        docs = np.concatenate([np.full(n, d) for d, n in enumerate(lengths)])
        out.append((gen.integers(0, TINY.vocab_size, SEQ_LEN + 1), docs))
    return out


def train_section(head: int = 1, context: int = 1, placement: str = "head_first", window: int = 0,
                  checkpointing: str = "none") -> TrainSection:
    return TrainSection(seq_len=SEQ_LEN, global_batch=ROWS, micro_batch=1, lr=LR, warmup_steps=0, grad_clip=1.0,
                        activation_checkpointing=checkpointing, spike_zscore=0.0,
                        sequence_parallel=SequenceParallelSection(head, context, placement, window))


def _plain(name: str) -> str:
    return name.replace("_checkpoint_wrapped_module.", "")


def _full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().clone()


def one_step(trainer: Trainer, batches) -> dict:
    """Loss and gradients of one forward/backward, then a whole Trainer.step from the same weights."""
    loss_fn = NextTokenLoss()
    local = [trainer.local(b) for b in batches]
    divisor = all_reduce_sum(sum(loss_fn.count(b) for b in local), trainer.info)
    ring_calls, plain_forward = [0], ring_module.ring_forward

    def counted(*args, **kwargs):
        ring_calls[0] += 1
        return plain_forward(*args, **kwargs)

    ring_module.ring_forward = counted
    try:
        total = 0.0
        for b in local:
            loss, parts = loss_fn(trainer.model, b, divisor)
            loss.backward()
            total += float(parts["ce"])
    finally:
        ring_module.ring_forward = plain_forward
    grads = {_plain(n): _full(p.grad) for n, p in trainer.model.named_parameters()}
    trainer.optimizer.zero_grad(set_to_none=True)
    stats = trainer.step(batches, loss_fn, LR)
    weights = trainer.full_state_dict(every_rank=True)
    return {"loss": all_reduce_sum(total, trainer.info), "grads": grads, "step_loss": stats.loss,
            "grad_norm": stats.grad_norm, "weights": {_plain(k): v for k, v in weights.items()},
            "ring_calls": ring_calls[0]}


def loss_and_grads(trainer: Trainer, batch, loss_fn) -> tuple[float, dict, dict]:
    """(loss, logged parts, full gradients) of one forward/backward of `loss_fn` (a trainer loss) on
    this rank's share of `batch`, the loss and parts summed over the processes."""
    local = trainer.local(batch)
    divisor = all_reduce_sum(loss_fn.count(local), trainer.info)
    loss, parts = loss_fn(trainer.model, local, divisor)
    loss.backward()
    grads = {_plain(n): _full(p.grad) for n, p in trainer.model.named_parameters()}
    parts = {k: all_reduce_sum(float(v), trainer.info) for k, v in parts.items()}
    return all_reduce_sum(loss.item(), trainer.info), parts, grads


def fresh_model() -> InternLM2:
    torch.manual_seed(0)
    model = InternLM2(TINY)
    model.init_weights(seed=0)
    return model.train()


def compare(got: dict, ref: dict) -> float:
    errors = [abs(got["loss"] - ref["loss"]), abs(got["step_loss"] - ref["step_loss"]),
              abs(got["grad_norm"] - ref["grad_norm"])]
    errors += [(got["grads"][k] - g).abs().max().item() for k, g in ref["grads"].items()]
    errors += [(got["weights"][k] - w).abs().max().item() for k, w in ref["weights"].items()]
    return max(errors)


# ---------------------------------------------------------------- shared by the seqpar_*_worker files


def one_thread() -> None:
    """One CPU thread per process: the processes share the machine's cores."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


@contextlib.contextmanager
def gloo_group(rank: int, world: int, store: str):
    """The gloo process group of a spawned test, destroyed after the block."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()


def layout_info(rank: int, world: int, dp: int, head: int, context: int, placement: str = "head_first") -> DistInfo:
    """This process's place in a dp x head x context layout of the world."""
    dims = ParallelDims(dp, head, context)
    return DistInfo(rank=rank, world_size=world, local_rank=rank, dims=dims,
                    mesh=sequence_parallel_mesh(dims, placement))


def write_report(rank: int, report: str, lines: list[str]) -> None:
    """Rank 0 writes one line per case for the test to read."""
    if rank == 0:
        Path(report).write_text("\n".join(lines) + "\n")


def spawn_report(run, tmp_path: Path, nprocs: int, *args, name: str = "report.txt") -> list[str]:
    """Spawn `run(rank, nprocs, store, report, *args)` on `nprocs` gloo processes; the report's lines
    (printed, for the test log)."""
    import torch.multiprocessing as mp

    report = tmp_path / name
    mp.spawn(run, args=(nprocs, str(tmp_path / "store"), str(report), *args), nprocs=nprocs, join=True)
    lines = report.read_text().splitlines()
    print("\n".join(lines))
    return lines


def spawn_errors(run, tmp_path: Path, nprocs: int, *args) -> list[tuple[str, float]]:
    """`spawn_report`, each line with its largest difference from one process (its ` error=` field)."""
    return [(line, float(re.search(r"(?:^| )error=(\S+)", line).group(1)))
            for line in spawn_report(run, tmp_path, nprocs, *args)]


def run(rank: int, world: int, store: str, report: str) -> None:
    one_thread()
    batches = [make_batch([r]) for r in rows()]
    assert int(positions_from_documents(batches[0].document_ids).max()) + 1 > TINY.max_seq_len  # NTK active
    ref = one_step(Trainer(fresh_model(), train_section(), DistInfo()), batches)
    with gloo_group(rank, world, store):
        failures, lines = [], []
        for dp, head, context, placement, window, checkpointing, keep in CASES:
            info = layout_info(rank, world, dp, head, context, placement)
            trainer = Trainer(fresh_model(), train_section(head, context, placement, window, checkpointing), info)
            for module in trainer.model.modules():
                if isinstance(getattr(module, "core", None), SequenceParallelCore):
                    module.core.keep = keep
            per_dp = ROWS // dp
            got = one_step(trainer, batches[info.dp_rank * per_dp:(info.dp_rank + 1) * per_dp])
            err = compare(got, ref)
            name = (f"dp={dp} head={head} context={context} {placement} window={window} "
                    f"checkpointing={checkpointing} keep={keep}")
            lines.append(f"{name}: max error {err:.2e}, ring forwards {got['ring_calls']}")
            if not err <= TOLERANCE:
                failures.append(f"{name}: max error {err:.3g}")
            expected_calls = per_dp * TINY.n_layers * (2 if checkpointing != "none" and not keep else 1)
            if got["ring_calls"] != expected_calls:
                failures.append(f"{name}: ring attention ran {got['ring_calls']} times, expected {expected_calls}")
        write_report(rank, report, lines)
        assert not failures, f"rank {rank}:\n" + "\n".join(failures)
