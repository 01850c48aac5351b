"""The training loop: InternEvo-style training of an lmforge model on packed token shards
(InternLM2 report, arXiv 2403.17297, section 4.1; Baichuan 2, arXiv 2309.10305; AdaLomo,
arXiv 2310.10195; docs/papers.md §2, §3, §6).

`Trainer` holds what one model being trained needs, in torchtitan's split: setup (the parallel
wrapping from outside the model, optimizer, mixed precision), `step(batches, loss_fn, lr)` (one
optimizer step over micro-batches with any loss of lmforge.train.losses: the next-token loss here,
SFT, reward-model and RL losses later), validation, checkpoints and export. Losses are summed and
divided by the count of the whole global batch, so one process and N processes compute the same
losses and gradients. With `[train] sequence_parallel` (LoongTrain, arXiv 2406.18485; docs/papers.md
§5) every batch a process gets is cut into its head x context shard of tokens before the forward.

`train_stage` runs one pre-training stage with it, unchanged on one CPU process and under `torchrun`
on many GPUs; a run is a list of stages (e.g. short context, then the long-context stage with a
larger RoPE base), each continuing from the previous stage's weights; `train` runs them in order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from lmforge.atomic import write_json
from lmforge.model import InternLM2, ModelConfig, flops_per_token, load_model, save_model
from lmforge.model.hf import meta_model
from lmforge.model.logprobs import target_logprobs
from lmforge.model.loss import IGNORE_INDEX
from lmforge.tokenizer.hf_files import copy_tokenizer_files
from lmforge.train.batch import Batch
from lmforge.train.checkpoint import latest_checkpoint, load_training_checkpoint, save_training_checkpoint
from lmforge.train.config import TrainSection, TrainStageSection, train_stage_configs
from lmforge.train.loader import PackedLoader, TokenStream, validation_batches
from lmforge.train.losses import LossFn, NextTokenLoss
from lmforge.train.metrics import MetricsLogger, mfu, peak_flops, plot_losses
from lmforge.train.optim import build_optimizer, set_lr
from lmforge.train.parallel import DistInfo, all_reduce_sum, barrier, init_distributed, parallelize
from lmforge.train.seqpar import shard_batch
from lmforge.train.schedule import lr_at
from lmforge.train.spike import SpikeDetector

DONE = "DONE"


@dataclass
class TrainStageResult:
    name: str
    out_dir: Path
    hf_dir: Path | None  # the exported InternLM2-format checkpoint (None if interrupted)
    metrics: Path
    steps: int
    skipped: int
    val_loss: float | None
    seconds: float
    interrupted: bool = False


@dataclass
class StepStats:
    loss: float  # the loss's `log_key` part: its mean over the global batch
    parts: dict[str, float]  # every part's mean over the global batch
    grad_norm: float | None
    skip_reason: str | None  # why the update was skipped (loss spike, non-finite), or None


class _StopFlag:
    """Set by SIGTERM: finish the current step, write a checkpoint, exit cleanly."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: no handler, no graceful stop
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class StepCheckpoints(_StopFlag):
    """The checkpoint contract of every training loop (pre-training stages, the alignment stages,
    online RL): a checkpoint every `every` steps and at the last one; SIGTERM (on any process) finishes
    the step, writes a checkpoint and stops the loop, so a killed run loses at most `every` steps and
    the same command resumes it. `also(step)` saves what else the loop trains (RL's critic)."""

    def __init__(self, trainer: "Trainer", root: Path, every: int, console: Console, also=None,
                 hint: str = "rerun to resume"):
        super().__init__()
        self.trainer, self.root, self.every, self.console, self.also = trainer, root, every, console, also
        self.hint = hint
        self.interrupted = False

    def after_step(self, step: int, last: bool, state) -> bool:
        """Save when due (`state()`: the loop's own resume state); True when the loop must stop now."""
        stop_now = all_reduce_sum(float(self.requested), self.trainer.info) > 0
        if step % self.every == 0 or last or stop_now:
            self.trainer.save(self.root, step, state())
            if self.also is not None:
                self.also(step)
        if stop_now:
            self.console.print(f"[yellow]SIGTERM: checkpoint written at step {step}; {self.hint}[/yellow]")
            self.interrupted = True
        return stop_now


def _dtypes(tc: TrainSection, info: DistInfo) -> tuple[torch.dtype | None, bool]:
    """(FSDP param dtype, use autocast): bf16 compute with fp32 master weights on GPU, fp32 on CPU."""
    want_bf16 = tc.dtype == "bfloat16" or (tc.dtype == "auto" and info.device.type == "cuda")
    if not want_bf16:
        return None, False
    return (torch.bfloat16, False) if info.distributed else (None, True)


def build_model(model_cfg: ModelConfig, tc: TrainSection, stage: TrainStageSection | None,
                init_from: str) -> InternLM2:
    """A fresh model from the seed, or the weights of a checkpoint, with the stage's RoPE settings."""
    changes = {k: getattr(stage, k) for k in ("rope_theta", "max_seq_len") if stage and getattr(stage, k) is not None}
    if init_from:
        model = load_model(init_from).float()
        model.cfg = model.cfg.replace(**changes, attn_backend=model_cfg.attn_backend, z_loss=model_cfg.z_loss,
                                      norm_head=model_cfg.norm_head)
        model.output.norm_rows = model.cfg.norm_head
        model.set_dropout(model_cfg.dropout)
        torch.manual_seed(tc.seed)  # the dropout masks
        return model.train()
    torch.manual_seed(tc.seed)
    model = InternLM2(model_cfg.replace(**changes))
    model.init_weights(seed=tc.seed)
    return model.train()


class Trainer:
    """One model being trained: its parallel wrapping, optimizer, mixed precision, loss-spike
    skipping, checkpoints and export. `accum`: micro-batches per optimizer step in this process."""

    def __init__(self, model: InternLM2, tc: TrainSection, info: DistInfo, accum: int = 1):
        if tc.optimizer in ("adalomo", "muon") and info.distributed:
            raise ValueError(f"train.optimizer={tc.optimizer!r} runs in one process (it needs whole gradients, not "
                             "FSDP2 shards); use adamw under torchrun")
        sp = tc.sequence_parallel
        if (info.dims.head, info.dims.context) != (sp.head, sp.context):
            raise ValueError(f"train.sequence_parallel = {{ head = {sp.head}, context = {sp.context} }}, but the "
                             f"processes were arranged as head = {info.dims.head}, context = {info.dims.context}; "
                             "start them with init_distributed(head=..., context=...) from the same recipe")
        self.cfg, self.tc, self.info = model.cfg, tc, info
        self.sp_groups = info.sequence_parallel_groups(sp.window)
        param_dtype, self.autocast = _dtypes(tc, info)
        self.bf16 = self.autocast or param_dtype is not None
        model.to(info.device)
        self.model = parallelize(model, info, activation_checkpointing=tc.activation_checkpointing,
                                 ac_every=tc.ac_every, compile=tc.compile, param_dtype=param_dtype,
                                 double_ring_window=sp.window)
        self.optimizer = build_optimizer(self.model, tc.optimizer, tc.lr, tc.weight_decay, (tc.beta1, tc.beta2),
                                         tc.eps, tc.clip_value, tc.embed_lr_scale, tc.head_lr_scale,
                                         tc.smear_lr_scale)
        # AdaLomo updates inside backward when each step is one backward; with gradient accumulation
        # it must wait for the summed gradients, so it steps normally.
        self.fused = tc.optimizer == "adalomo" and accum == 1
        if self.fused:
            self.optimizer.attach()
        self.spike = SpikeDetector(tc.spike_window, tc.spike_zscore)

    def amp(self):
        return torch.autocast(self.info.device.type, torch.bfloat16) if self.autocast else contextlib.nullcontext()

    def local(self, batch: Batch) -> Batch:
        """This process's part of one of its micro-batches, on its device: the whole rows, or with
        sequence parallelism its zigzag shard of their tokens."""
        batch = batch.to(self.info.device)
        return batch if self.sp_groups is None else shard_batch(batch, self.sp_groups)

    def _forward(self, batch: Batch, loss_fn: LossFn, divisor: float) -> tuple[torch.Tensor, dict[str, float]]:
        with self.amp():
            loss, parts = loss_fn(self.model, batch, divisor)
        return loss, {k: float(v) for k, v in parts.items()}

    def step(self, batches: list[Batch], loss_fn: LossFn, lr: float) -> StepStats:
        """One optimizer step over this process's micro-batches of the global batch."""
        set_lr(self.optimizer, lr)
        batches = [self.local(b) for b in batches]
        divisor = max(all_reduce_sum(sum(loss_fn.count(b) for b in batches), self.info), 1.0)
        means: Counter = Counter()  # each part's mean over the global batch
        if self.fused:
            # AdaLomo: the loss decides before backward whether to update, since backward *is* the update.
            loss, parts = self._forward(batches[0], loss_fn, divisor)
            means.update(parts)
            grad_norm, reason = None, self.spike.check(means[loss_fn.log_key])
            if reason is None:
                self.optimizer.begin_fused_step()
                loss.backward()
                self.optimizer.end_fused_step()
        else:
            for b in batches:
                loss, parts = self._forward(b, loss_fn, divisor)
                loss.backward()
                means.update(parts)
            means = Counter({k: all_reduce_sum(v, self.info) for k, v in means.items()})
            # AdamW (and Muon) clip by global norm; AdaLomo clips values inside its update (norm only logged).
            grad_norm = self._grad_norm(self.tc.grad_clip if self.tc.optimizer != "adalomo" else 0.0)
            reason = self.spike.check(means[loss_fn.log_key], grad_norm)
            if reason is None:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.spike.record(means[loss_fn.log_key], grad_norm, skipped=reason is not None)
        return StepStats(means[loss_fn.log_key], dict(means), grad_norm, reason)

    def _grad_norm(self, max_norm: float) -> float:
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm if max_norm > 0 else float("inf"))
        if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor
            norm = norm.full_tensor()
        return float(norm)

    @contextlib.contextmanager
    def eval_mode(self):
        """The model in eval mode (no dropout) for a measurement, back in train mode after it."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    @torch.no_grad()
    def evaluate(self, batches: list[Batch], loss_fn: LossFn) -> float | None:
        """The loss's `log_key` part per counted item over every data-parallel rank's batches."""
        with self.eval_mode():
            return self._evaluate(batches, loss_fn)

    def _evaluate(self, batches: list[Batch], loss_fn: LossFn) -> float | None:
        total, count = 0.0, 0
        for b in batches:
            b = self.local(b)
            _, parts = self._forward(b, loss_fn, 1.0)  # sums
            total += parts[loss_fn.log_key]
            count += loss_fn.count(b)
        count = all_reduce_sum(count, self.info)
        return all_reduce_sum(total, self.info) / count if count else None

    @torch.no_grad()
    def evaluate_text(self, batches: list[Batch], token_bytes: torch.Tensor) -> tuple[float | None, float | None]:
        """(validation loss in nats per target, bits per UTF-8 byte) of the batches in one forward each.
        Bits per byte sum log P over the targets that stand for text (special tokens stand for none),
        over their bytes; comparable across tokenizers (nanochat's validation bpb)."""
        with self.eval_mode():
            return self._evaluate_text(batches, token_bytes)

    def _evaluate_text(self, batches: list[Batch], token_bytes: torch.Tensor) -> tuple[float | None, float | None]:
        nats = text_nats = 0.0
        count = n_bytes = 0
        for b in batches:
            b = self.local(b)
            keep = b.targets != IGNORE_INDEX
            nbytes = token_bytes.to(b.targets.device)[b.targets[keep]]

            def head(hidden: torch.Tensor, weight: torch.Tensor, keep=keep, targets=b.targets):
                return target_logprobs(hidden[keep], weight, targets[keep])[0]

            with self.amp():
                logp = self.model(b.input_ids, document_ids=b.document_ids, loss_fn=head, **b.model_inputs())
            nll = -logp.double()
            nats += float(nll.sum())
            text_nats += float(nll[nbytes > 0].sum())
            count += int(keep.sum())
            n_bytes += int(nbytes.sum())
        count, n_bytes = all_reduce_sum(count, self.info), all_reduce_sum(n_bytes, self.info)
        loss = all_reduce_sum(nats, self.info) / count if count else None
        bpb = all_reduce_sum(text_nats, self.info) / math.log(2) / n_bytes if n_bytes else None
        return loss, bpb

    def save(self, root: Path, step: int, state: dict) -> Path:
        """A checkpoint of the model, optimizer, spike history and the caller's `state`."""
        return save_training_checkpoint(root, step, self.model, self.optimizer,
                                        {**state, "step": step, "spike": self.spike.state_dict()}, self.info,
                                        self.tc.keep_checkpoints)

    def restore(self, root: Path) -> dict | None:
        """Load the latest checkpoint under `root` in place; its state (with "path"), or None."""
        latest = latest_checkpoint(root)
        if latest is None:
            return None
        state = load_training_checkpoint(latest, self.model, self.optimizer, self.info)
        self.spike.load_state_dict(state["spike"])
        return {**state, "path": latest}

    def full_state_dict(self, every_rank: bool = False) -> dict[str, torch.Tensor]:
        """The whole model's weights (a collective under FSDP2: every rank must call it): on rank 0's CPU
        only, or with `every_rank` on every rank (for a model that trains on after this)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True,
                                                                         cpu_offload=not every_rank))
        return {k: v.cpu() for k, v in full.items()} if every_rank else full

    def export(self, out: Path, tokenizer_dir: str = "") -> Path:
        """Gather the full weights (a collective under FSDP2) and write an InternLM2 HF checkpoint
        on rank 0, with the tokenizer files."""
        full = self.full_state_dict()
        if self.info.is_main:
            plain = meta_model(self.cfg)
            plain.load_state_dict({k: v.float() for k, v in full.items()}, assign=True)
            save_model(plain, out, fmt="internlm2")
            if tokenizer_dir:
                copy_tokenizer_files(tokenizer_dir, out)
        barrier(self.info)
        return out

    def close(self) -> None:
        if self.fused:
            self.optimizer.detach()


def distributed_for(tc: TrainSection, device: str = "auto") -> DistInfo:
    """Join the processes `torchrun` started, arranged as dp x head x context by the train section."""
    sp = tc.sequence_parallel
    return init_distributed(device=device, head=sp.head, context=sp.context, placement=sp.placement)


def train_stage(model_cfg: ModelConfig, tc: TrainSection, out_dir: str | Path, *, name: str = "main",
                stage: TrainStageSection | None = None, init_from: str = "", tokenizer_dir: str = "",
                resume: bool = False, console: Console | None = None, info: DistInfo | None = None
                ) -> TrainStageResult:
    """Pre-train one stage on packed shards with the next-token loss; checkpoint, validate, export."""
    out_dir = Path(out_dir)
    info = info or distributed_for(tc)
    console = console or Console(quiet=not info.is_main)
    began = time.perf_counter()

    model = build_model(model_cfg, tc, stage, init_from)
    cfg = model.cfg
    # Bad data fails here, before any training: missing shards, wrong dtype, vocabulary overflow,
    # a global batch that does not divide across the processes.
    loader = PackedLoader(tc.shards, cfg.vocab_size, tc.seq_len, tc.global_batch, tc.micro_batch,
                          info.dp_rank, info.dp_size, tc.seed, tc.shuffle_rows)
    val_stream = TokenStream(tc.val_shards, cfg.vocab_size, tc.seed) if tc.val_shards else None
    trainer = Trainer(model, tc, info, accum=loader.accum)
    loss_fn = NextTokenLoss(cfg.z_loss)
    token_bytes = None  # validation bits per byte needs the tokenizer's bytes per token
    if tokenizer_dir and val_stream is not None:
        from lmforge.tokenizer import Tokenizer

        lengths = Tokenizer.load(tokenizer_dir).token_byte_lengths()
        token_bytes = torch.tensor(lengths + [0] * max(0, cfg.vocab_size - len(lengths)), dtype=torch.long)

    ckpt_root = out_dir / "checkpoints"
    step, tokens_seen, resumed, spent = 0, 0, None, 0.0
    if resume and (resumed := trainer.restore(ckpt_root)) is not None:
        step, tokens_seen, spent = resumed["step"], resumed["tokens"], resumed.get("seconds", 0.0)
        loader.load_state_dict(resumed["loader"])
        console.print(f"[green]resumed {name} from {resumed['path']} (step {step}, written by "
                      f"{resumed['world_size']} process(es))[/green]")
    logger = MetricsLogger(out_dir, info.is_main, tc.tensorboard, console,
                           resume_step=step if resumed else None)
    if info.is_main:
        write_json(out_dir / "config.json", {"model": dataclasses.asdict(cfg), "train": dataclasses.asdict(tc),
                                             "world_size": info.world_size})

    flops_tok = flops_per_token(cfg, tc.seq_len)
    peak = peak_flops(info.device, torch.bfloat16 if trainer.bf16 else torch.float32)
    tokens_per_step = tc.global_batch * tc.seq_len
    console.print(f"[bold]{name}[/bold]: {sum(p.numel() for p in trainer.model.parameters()) * info.world_size / 1e6:.2f}M "
                  f"params (x{info.world_size} procs), {tc.steps} steps x {tokens_per_step:,} tokens, "
                  f"{loader.stream.n_tokens:,} tokens in {len(loader.stream.shards)} shard(s), "
                  f"accum {loader.accum}, {tc.optimizer}, {'bf16' if trainer.bf16 else 'fp32'} "
                  f"on {info.device.type}")

    val_loss = None
    clock, elapsed = began - spent, spent  # the stage's seconds (setup included), across resumes
    with StepCheckpoints(trainer, ckpt_root, tc.ckpt_every, console, hint="rerun with --resume") as ckpt:
        while step < tc.steps:
            t0 = time.perf_counter()
            total = tc.steps
            if tc.max_seconds:  # a wall-clock budget: the schedule follows the share of it spent
                total = min(tc.steps, max(step + 1, round(step * tc.max_seconds / max(elapsed, 1e-9))))
            lr = lr_at(step, peak=tc.lr, total=total, warmup=tc.warmup_steps, schedule=tc.schedule,
                       min_ratio=tc.min_lr_ratio, decay_fraction=tc.decay_fraction)
            stats = trainer.step(loader.next_step(), loss_fn, lr)
            step += 1
            tokens_seen += tokens_per_step
            tps = tokens_per_step / (time.perf_counter() - t0)
            if tc.max_seconds:  # one clock for all processes, so that they stop at the same step
                elapsed = all_reduce_sum(time.perf_counter() - clock, info) / info.world_size
            last = step == tc.steps or bool(tc.max_seconds and elapsed >= tc.max_seconds)
            logger.log({"step": step, "loss": stats.loss, "lr": lr, "grad_norm": stats.grad_norm,
                        "tokens": tokens_seen, "tokens_per_s": tps, "mfu": mfu(flops_tok * tps / info.world_size, peak),
                        "skipped": stats.skip_reason is not None, "skip_reason": stats.skip_reason,
                        "skips_total": trainer.spike.skipped},
                       print_line=step % tc.log_every == 0 or last)
            if tc.val_every and (step % tc.val_every == 0 or last) and val_stream is not None:
                batches = validation_batches(val_stream, tc.seq_len, tc.val_rows, tc.micro_batch, info.dp_rank,
                                             info.dp_size)
                if token_bytes is not None:  # loss and bits per byte from one forward pass
                    val_loss, val_bpb = trainer.evaluate_text(batches, token_bytes)
                    row = {"step": step, "val_loss": val_loss, "val_bpb": val_bpb}
                else:
                    val_loss = trainer.evaluate(batches, loss_fn)
                    row = {"step": step, "val_loss": val_loss}
                logger.log(row)
            if ckpt.after_step(step, last, lambda: {"tokens": tokens_seen, "loader": loader.state_dict(),
                                                    "stage": name, "seconds": time.perf_counter() - clock}) or last:
                break
    interrupted = ckpt.interrupted

    trainer.close()
    logger.close()
    hf_dir = None
    if not interrupted:
        hf_dir = trainer.export(out_dir / "hf", tokenizer_dir)
        if info.is_main:
            write_json(out_dir / DONE, {"step": step, "val_loss": val_loss})
    return TrainStageResult(name, out_dir, hf_dir, logger.path, step, trainer.spike.skipped, val_loss,
                            time.perf_counter() - began, interrupted)


def train(model_cfg: ModelConfig, tc: TrainSection, out_dir: str | Path, *, tokenizer_dir: str = "",
          resume: bool = False, console: Console | None = None, device: str = "auto") -> list[TrainStageResult]:
    """Run every stage of the train section on `device` (a `run.device` value); each continues from
    the previous stage's export. With resume, finished stages are skipped and an interrupted one
    continues from its checkpoint."""
    out_dir = Path(out_dir)
    info = distributed_for(tc, device)
    console = console or Console(quiet=not info.is_main)
    results, init_from = [], tc.init_from
    for name, stage_tc, stage in train_stage_configs(tc):
        stage_dir = out_dir / name
        if resume and (stage_dir / DONE).is_file() and (stage_dir / "hf" / "config.json").is_file():
            console.print(f"[dim]{name}: already complete, skipped[/dim]")
            done = json.loads((stage_dir / DONE).read_text())
            results.append(TrainStageResult(name, stage_dir, stage_dir / "hf", stage_dir / "metrics.jsonl",
                                            done["step"], 0, done["val_loss"], 0.0))
        else:
            # A stage with its own sequence_parallel (the long-context one) arranges the processes anew.
            same = stage_tc.sequence_parallel == tc.sequence_parallel
            stage_info = info if same else distributed_for(stage_tc, device)
            results.append(train_stage(model_cfg, stage_tc, stage_dir, name=name, stage=stage, init_from=init_from,
                                       tokenizer_dir=tokenizer_dir, resume=resume, console=console, info=stage_info))
            if results[-1].interrupted:
                return results
        init_from = str(results[-1].hf_dir)
    if info.is_main:
        png = plot_losses({r.name: r.metrics for r in results if r.metrics.is_file()}, out_dir / "loss.png")
        if png:
            console.print(f"loss curves: {png}")
    return results
