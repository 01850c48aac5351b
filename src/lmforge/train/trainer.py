"""The pre-training loop: InternEvo-style training of an lmforge model on packed token shards
(InternLM2 report section 4.1; PAPERS.md sections 2, 3 and 6).

One function, `train_stage`, runs unchanged on one CPU process and under `torchrun` on many GPUs:
the same loader rows, the same loss normalisation (sum of token losses / tokens of the global
batch), so one process and N processes compute the same losses. A run is a list of stages (e.g.
short context, then the long-context stage with a larger RoPE base), each continuing from the
previous stage's weights; `train` runs them in order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from lmforge.model import InternLM2, ModelConfig, flops_per_token, load_model, save_checkpoint
from lmforge.model.hf import InternLM2_on_meta
from lmforge.tokenizer.hf_files import copy_tokenizer_files
from lmforge.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint as save_training_checkpoint
from lmforge.train.config import StageSection, TrainSection, stage_configs
from lmforge.train.loader import Batch, PackedLoader, TokenStream, make_batch
from lmforge.train.metrics import MetricsLogger, peak_flops, plot_losses
from lmforge.train.optim import build_optimizer, set_lr
from lmforge.train.parallel import DistInfo, all_reduce_sum, barrier, init_distributed, parallelize
from lmforge.train.schedule import lr_at
from lmforge.train.spike import SpikeDetector

DONE = "DONE"


@dataclass
class StageResult:
    name: str
    out_dir: Path
    hf_dir: Path | None  # the exported InternLM2-format checkpoint (None if interrupted)
    metrics: Path
    steps: int
    skipped: int
    val_loss: float | None
    seconds: float
    interrupted: bool = False


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


def _dtypes(tc: TrainSection, info: DistInfo) -> tuple[torch.dtype | None, bool]:
    """(FSDP param dtype, use autocast): bf16 compute with fp32 master weights on GPU, fp32 on CPU."""
    want_bf16 = tc.dtype == "bfloat16" or (tc.dtype == "auto" and info.device.type == "cuda")
    if not want_bf16:
        return None, False
    return (torch.bfloat16, False) if info.distributed else (None, True)


def build_model(model_cfg: ModelConfig, tc: TrainSection, stage: StageSection | None, init_from: str) -> InternLM2:
    """A fresh model from the seed, or the weights of a checkpoint, with the stage's RoPE settings."""
    changes = {k: getattr(stage, k) for k in ("rope_theta", "max_seq_len") if stage and getattr(stage, k) is not None}
    if init_from:
        model = load_model(init_from).float()
        model.cfg = model.cfg.replace(**changes, attn_backend=model_cfg.attn_backend, z_loss=model_cfg.z_loss,
                                      norm_head=model_cfg.norm_head)
        return model.train()
    torch.manual_seed(tc.seed)
    model = InternLM2(model_cfg.replace(**changes))
    model.init_weights(seed=tc.seed)
    return model.train()


def _validate(model, stream: TokenStream | None, tc: TrainSection, info: DistInfo, amp) -> float | None:
    """Mean loss over the first `val_rows` rows of the held-out stream, split across processes."""
    if stream is None:
        return None
    n_rows = min(tc.val_rows, (stream.n_tokens - 1) // tc.seq_len)
    mine = list(range(info.rank, n_rows, info.world_size))
    loss_sum, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(mine), tc.micro_batch):
            rows = [stream.window(0, r * tc.seq_len, tc.seq_len + 1) for r in mine[i:i + tc.micro_batch]]
            b = _to(make_batch(rows), info.device)
            with amp():
                _, parts = model(b.input_ids, document_ids=b.document_ids, targets=b.targets)
            n = b.n_targets
            loss_sum += float(parts["ce"]) * n
            count += n
    total = all_reduce_sum(count, info)
    return all_reduce_sum(loss_sum, info) / total if total else None


def _to(b: Batch, device: torch.device) -> Batch:
    return Batch(*(t.to(device, non_blocking=True) for t in (b.input_ids, b.targets, b.document_ids)))


def _grad_norm(model, max_norm: float) -> float:
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor
        norm = norm.full_tensor()
    return float(norm)


def _export(model, cfg: ModelConfig, out: Path, tokenizer_dir: str, info: DistInfo) -> Path:
    """Gather full weights (a collective under FSDP2) and write an InternLM2 HF checkpoint on rank 0."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if info.is_main:
        plain = InternLM2_on_meta(cfg)
        plain.load_state_dict({k: v.float() for k, v in full.items()}, assign=True)
        save_checkpoint(plain, out, fmt="internlm2")
        if tokenizer_dir:
            copy_tokenizer_files(tokenizer_dir, out)
    barrier(info)
    return out


def train_stage(model_cfg: ModelConfig, tc: TrainSection, out_dir: str | Path, *, name: str = "main",
                stage: StageSection | None = None, init_from: str = "", tokenizer_dir: str = "",
                resume: bool = False, console: Console | None = None, info: DistInfo | None = None) -> StageResult:
    out_dir = Path(out_dir)
    info = info or init_distributed()
    console = console or Console(quiet=not info.is_main)
    began = time.perf_counter()

    model = build_model(model_cfg, tc, stage, init_from)
    cfg = model.cfg
    # Bad data fails here, before any training: missing shards, wrong dtype, vocabulary overflow,
    # a global batch that does not divide across the processes.
    loader = PackedLoader(tc.shards, cfg.vocab_size, tc.seq_len, tc.global_batch, tc.micro_batch,
                          info.rank, info.world_size, tc.seed)
    val_stream = TokenStream(tc.val_shards, cfg.vocab_size, tc.seed) if tc.val_shards else None
    if tc.optimizer == "adalomo" and info.distributed:
        raise ValueError("train.optimizer='adalomo' runs in one process (its factored statistics need whole "
                         "gradients, not FSDP2 shards); use adamw under torchrun")
    # AdaLomo updates inside backward when each step is one backward; with gradient accumulation
    # it must wait for the summed gradients, so it steps normally.
    fused = tc.optimizer == "adalomo" and loader.accum == 1

    param_dtype, autocast = _dtypes(tc, info)
    model.to(info.device)
    model = parallelize(model, info, activation_checkpointing=tc.activation_checkpointing, ac_every=tc.ac_every,
                        compile=tc.compile, param_dtype=param_dtype)
    optimizer = build_optimizer(model, tc.optimizer, tc.lr, tc.weight_decay, (tc.beta1, tc.beta2), tc.eps,
                                tc.clip_value)
    if fused:
        optimizer.attach()

    def amp():
        return torch.autocast(info.device.type, torch.bfloat16) if autocast else contextlib.nullcontext()

    spike = SpikeDetector(tc.spike_window, tc.spike_zscore)
    ckpt_root = out_dir / "checkpoints"
    step, tokens_seen, resumed_from = 0, 0, None
    if resume and (latest := latest_checkpoint(ckpt_root)) is not None:
        state = load_checkpoint(latest, model, optimizer, info)
        step, tokens_seen = state["step"], state["tokens"]
        loader.load_state_dict(state["loader"])
        spike.load_state_dict(state["spike"])
        resumed_from = latest
        console.print(f"[green]resumed {name} from {latest} (step {step}, written by "
                      f"{state['world_size']} process(es))[/green]")
    logger = MetricsLogger(out_dir, info.is_main, tc.tensorboard, console,
                           resume_step=step if resumed_from else None)
    if info.is_main:
        (out_dir / "config.json").write_text(json.dumps(
            {"model": dataclasses.asdict(cfg), "train": dataclasses.asdict(tc), "world_size": info.world_size},
            indent=2) + "\n")

    flops_tok = flops_per_token(cfg, tc.seq_len)
    peak = peak_flops(info.device, torch.bfloat16 if (autocast or param_dtype) else torch.float32)
    tokens_per_step = tc.global_batch * tc.seq_len
    console.print(f"[bold]{name}[/bold]: {sum(p.numel() for p in model.parameters()) * info.world_size / 1e6:.2f}M "
                  f"params (x{info.world_size} procs), {tc.steps} steps x {tokens_per_step:,} tokens, "
                  f"{loader.stream.n_tokens:,} tokens in {len(loader.stream.shards)} shard(s), "
                  f"accum {loader.accum}, {tc.optimizer}, {'bf16' if autocast or param_dtype else 'fp32'} "
                  f"on {info.device.type}")

    val_loss, interrupted = None, False
    with _StopFlag() as stop:
        while step < tc.steps:
            t0 = time.perf_counter()
            lr = lr_at(step, peak=tc.lr, total=tc.steps, warmup=tc.warmup_steps, schedule=tc.schedule,
                       min_ratio=tc.min_lr_ratio, decay_fraction=tc.decay_fraction)
            set_lr(optimizer, lr)
            micro = [_to(b, info.device) for b in loader.next_step()]
            n_global = all_reduce_sum(sum(b.n_targets for b in micro), info)
            grad_norm = None
            if fused:
                # AdaLomo: the loss decides before backward whether to update, since backward *is* the update.
                b = micro[0]
                with amp():
                    loss, parts = model(b.input_ids, document_ids=b.document_ids, targets=b.targets,
                                        z_loss=cfg.z_loss)
                loss_val = float(parts["ce"])
                reason = spike.check(loss_val)
                if reason is None:
                    optimizer.begin_fused_step()
                    loss.backward()
                    optimizer.end_fused_step()
            else:
                loss_sum = 0.0
                for b in micro:
                    with amp():
                        loss, parts = model(b.input_ids, document_ids=b.document_ids, targets=b.targets,
                                            z_loss=cfg.z_loss)
                    # Token-weighted over the global batch; x world because FSDP averages gradients.
                    (loss * (b.n_targets * info.world_size / n_global)).backward()
                    loss_sum += float(parts["ce"]) * b.n_targets
                loss_val = all_reduce_sum(loss_sum, info) / n_global
                # AdamW clips by global norm; AdaLomo clips values inside its update (norm only logged).
                grad_norm = _grad_norm(model, tc.grad_clip if tc.optimizer == "adamw" else 0.0)
                reason = spike.check(loss_val, grad_norm)
                if reason is None:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            spike.record(loss_val, grad_norm, skipped=reason is not None)
            step += 1
            tokens_seen += tokens_per_step
            seconds = time.perf_counter() - t0
            tps = tokens_per_step / seconds
            logger.log({"step": step, "loss": loss_val, "lr": lr, "grad_norm": grad_norm, "tokens": tokens_seen,
                        "tokens_per_s": tps, "mfu": flops_tok * tps / info.world_size / peak,
                        "skipped": reason is not None, "skip_reason": reason, "skips_total": spike.skipped},
                       print_line=step % tc.log_every == 0 or step == tc.steps)
            if tc.val_every and (step % tc.val_every == 0 or step == tc.steps) and val_stream is not None:
                val_loss = _validate(model, val_stream, tc, info, amp)
                logger.log({"step": step, "val_loss": val_loss})
            stop_now = all_reduce_sum(float(stop.requested), info) > 0
            if step % tc.ckpt_every == 0 or step == tc.steps or stop_now:
                save_training_checkpoint(ckpt_root, step, model, optimizer,
                                         {"step": step, "tokens": tokens_seen, "loader": loader.state_dict(),
                                          "spike": spike.state_dict(), "stage": name}, info, tc.keep_checkpoints)
            if stop_now:
                console.print(f"[yellow]SIGTERM: checkpoint written at step {step}; rerun with --resume[/yellow]")
                interrupted = True
                break

    if fused:
        optimizer.detach()
    logger.close()
    hf_dir = None
    if not interrupted:
        hf_dir = _export(model, cfg, out_dir / "hf", tokenizer_dir, info)
        if info.is_main:
            (out_dir / DONE).write_text(json.dumps({"step": step, "val_loss": val_loss}) + "\n")
    return StageResult(name, out_dir, hf_dir, logger.path, step, spike.skipped, val_loss,
                       time.perf_counter() - began, interrupted)


def train(model_cfg: ModelConfig, tc: TrainSection, out_dir: str | Path, *, tokenizer_dir: str = "",
          resume: bool = False, console: Console | None = None) -> list[StageResult]:
    """Run every stage of the train section; each continues from the previous stage's export.
    With resume, finished stages are skipped and an interrupted one continues from its checkpoint."""
    out_dir = Path(out_dir)
    info = init_distributed()
    console = console or Console(quiet=not info.is_main)
    results, init_from = [], tc.init_from
    for name, stage_tc, stage in stage_configs(tc):
        stage_dir = out_dir / name
        if resume and (stage_dir / DONE).is_file() and (stage_dir / "hf" / "config.json").is_file():
            console.print(f"[dim]{name}: already complete, skipped[/dim]")
            done = json.loads((stage_dir / DONE).read_text())
            results.append(StageResult(name, stage_dir, stage_dir / "hf", stage_dir / "metrics.jsonl",
                                       done["step"], 0, done["val_loss"], 0.0))
        else:
            results.append(train_stage(model_cfg, stage_tc, stage_dir, name=name, stage=stage, init_from=init_from,
                                       tokenizer_dir=tokenizer_dir, resume=resume, console=console, info=info))
            if results[-1].interrupted:
                return results
        init_from = str(results[-1].hf_dir)
    if info.is_main:
        png = plot_losses({r.name: r.metrics for r in results if r.metrics.is_file()}, out_dir / "loss.png")
        if png:
            console.print(f"loss curves: {png}")
    return results
