"""Training in one process: learning, AdaLomo vs AdamW, the long-context stage, spikes, bad input."""

import math

import numpy as np
import pytest
import torch
from rich.console import Console

from lmforge.model import load_model, preset
from lmforge.model.loss import lm_loss
from lmforge.shards import ShardError, list_shards, open_shard, write_shard
from lmforge.train import TrainSection, TrainStageSection, train
from lmforge.train.loader import TokenStream, make_batch
from lmforge.train.parallel import has_cxx_compiler
from lmforge.train.spike import SpikeDetector

QUIET = Console(quiet=True)


def _cfg(tok, **kw):
    return preset("tiny", vocab_size=tok.vocab_size, max_seq_len=128, **kw)


def _tc(root, **kw):
    args = dict(shards=str(root / "train"), val_shards=str(root / "val"), seq_len=64, global_batch=8,
                micro_batch=8, steps=80, lr=5e-3, warmup_steps=8, val_every=40, ckpt_every=1000,
                tensorboard=False, val_rows=64)
    args.update(kw)
    return TrainSection(**args)


def unigram_entropy(directory) -> float:
    """Entropy (nats) of the token distribution: the loss of the best context-free model."""
    counts = np.zeros(1 << 16, dtype=np.int64)
    for h in list_shards(directory):
        counts += np.bincount(np.asarray(open_shard(h).tokens), minlength=1 << 16)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def test_validation_loss_falls_well_below_unigram_entropy(dataset, tmp_path):
    root, tok = dataset
    result = train(_cfg(tok), _tc(root, steps=150, val_every=150), tmp_path, console=QUIET)[0]
    entropy = unigram_entropy(root / "train")
    assert result.val_loss < 0.85 * entropy, (result.val_loss, entropy)
    assert (tmp_path / "loss.png").is_file() and (tmp_path / "main" / "hf" / "config.json").is_file()


def test_adalomo_reaches_adamw_loss(dataset, tmp_path):
    root, tok = dataset
    adamw = train(_cfg(tok), _tc(root), tmp_path / "adamw", console=QUIET)[0]
    adalomo = train(_cfg(tok), _tc(root, optimizer="adalomo", lr=0.05), tmp_path / "adalomo", console=QUIET)[0]
    assert adalomo.val_loss <= 1.05 * adamw.val_loss, (adalomo.val_loss, adamw.val_loss)


def _position_losses(model, directory, seq_len, rows=16):
    """Mean loss at each position of documents at least seq_len + 1 tokens long."""
    stream = TokenStream(directory, model.cfg.vocab_size)
    docs = [s.document(i) for s in stream.shards for i in range(s.n_docs) if s.offsets[i + 1] - s.offsets[i] > seq_len]
    batch = make_batch([(np.asarray(d[:seq_len + 1], dtype=np.int64), np.zeros(seq_len + 1, dtype=np.int64))
                        for d in docs[:rows]])
    with torch.no_grad():
        logits = model(batch.input_ids)
    per_tok = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), reduction="none")
    return per_tok.view(batch.targets.shape).mean(0)


def test_long_context_stage_lowers_loss_beyond_the_first_window(long_dataset, tmp_path):
    root, tok = long_dataset
    short, long = 32, 256  # 8x, the InternLM2 4k -> 32k move scaled down
    tc = _tc(root, steps=100, stages=[
        TrainStageSection(name="short", seq_len=short, max_seq_len=short, rope_theta=50_000.0, global_batch=16,
                     micro_batch=16),
        TrainStageSection(name="long", steps=40, seq_len=long, max_seq_len=long, rope_theta=1_000_000.0,
                     global_batch=4, micro_batch=4, lr=3e-3, warmup_steps=4)])
    results = train(_cfg(tok), tc, tmp_path, console=QUIET)
    assert [r.name for r in results] == ["short", "long"]
    before = _position_losses(load_model(results[0].hf_dir), root / "val", long)
    after = _position_losses(load_model(results[1].hf_dir), root / "val", long)
    assert load_model(results[1].hf_dir).cfg.rope_theta == 1_000_000.0
    assert after[short:].mean() < before[short:].mean() - 0.05, (before[short:].mean(), after[short:].mean())


def test_spike_detector_skips_outliers_and_non_finite():
    spike = SpikeDetector(window=20, zscore=4.0, min_history=5)
    for i in range(10):
        assert spike.check(3.0 + 0.01 * (i % 3), 1.0 + 0.01 * (i % 2)) is None
        spike.record(3.0 + 0.01 * (i % 3), 1.0 + 0.01 * (i % 2))
    assert spike.check(float("nan")) == "non-finite loss"
    assert spike.check(3.0, float("inf")) == "non-finite grad norm"
    assert spike.check(9.0, 1.0).startswith("loss spike")
    assert spike.check(3.01, 50.0).startswith("grad-norm spike")
    assert spike.check(2.0, 1.0) is None  # a drop in loss is never a spike


def test_spike_detector_follows_a_lasting_change():
    """A gradient norm that moves to a new level for good is skipped a few times, then accepted."""
    spike = SpikeDetector(window=20, zscore=6.0, min_history=5)
    for i in range(20):
        spike.record(3.0, 1.0 + 0.01 * (i % 2))
    skips = 0
    for _ in range(20):
        reason = spike.check(3.0, 15.0)
        skips += reason is not None
        spike.record(3.0, 15.0, skipped=reason is not None)
    assert 1 <= skips <= 5 and spike.check(3.0, 15.0) is None
    assert spike.skipped == skips


def test_z_loss_adds_the_max_logit_penalty():
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 3.0, 0.0]]])
    targets = torch.tensor([[0, 1]])
    plain, _ = lm_loss(logits, targets)
    with_z, parts = lm_loss(logits, targets, z_loss=2e-4)
    assert math.isclose(float(with_z - plain), 2e-4 * (2.0**2 + 3.0**2) / 2, rel_tol=1e-5)
    assert math.isclose(float(parts["z_loss"]), 2e-4 * 6.5, rel_tol=1e-5)


def test_bad_input_fails_before_training(dataset, tmp_path):
    root, tok = dataset
    with pytest.raises(ShardError, match="no such shard directory"):
        train(_cfg(tok), _tc(root, shards=str(tmp_path / "missing")), tmp_path / "a", console=QUIET)
    write_shard(tmp_path / "overflow", "s", [[1, 2, 3] * 100], vocab_size=tok.vocab_size * 4)
    with pytest.raises(ShardError, match="vocabulary"):
        train(_cfg(tok), _tc(root, shards=str(tmp_path / "overflow")), tmp_path / "b", console=QUIET)
    with pytest.raises(ValueError, match="must be a multiple of micro_batch"):
        train(_cfg(tok), _tc(root, global_batch=12), tmp_path / "c", console=QUIET)
    assert not (tmp_path / "c" / "main" / "checkpoints").exists()


def _losses(result):
    import json

    return [r["loss"] for r in map(json.loads, result.metrics.read_text().splitlines()) if "loss" in r]


@pytest.mark.parametrize("mode", ["blocks", "attention"])
def test_activation_checkpointing_recomputes_exactly(dataset, tmp_path, mode):
    root, tok = dataset
    plain = train(_cfg(tok), _tc(root, steps=3, val_every=0), tmp_path / "plain", console=QUIET)[0]
    ac = train(_cfg(tok), _tc(root, steps=3, val_every=0, activation_checkpointing=mode, ac_every=2),
               tmp_path / mode, console=QUIET)[0]
    assert _losses(plain) == _losses(ac)


@pytest.mark.skipif(not has_cxx_compiler(),
                    reason="train.compile uses inductor, which needs a C++ compiler on CPU")
def test_compiled_blocks_train_like_eager(dataset, tmp_path):
    """`train.compile` (each block through torch.compile, with activation checkpointing) traces the
    model's custom autograd functions (RMSNorm's backward) and trains as the eager model does."""
    root, tok = dataset
    eager = train(_cfg(tok), _tc(root, steps=3, val_every=0), tmp_path / "eager", console=QUIET)[0]
    compiled = train(_cfg(tok), _tc(root, steps=3, val_every=0, compile=True, activation_checkpointing="blocks"),
                     tmp_path / "compiled", console=QUIET)[0]
    assert _losses(compiled) == pytest.approx(_losses(eager), rel=1e-4)


def test_init_from_a_published_style_checkpoint_continues_training(dataset, tmp_path):
    from lmforge.model.convert import convert

    root, tok = dataset
    first = train(_cfg(tok), _tc(root, steps=40, val_every=0), tmp_path / "first", console=QUIET)[0]
    convert(first.hf_dir, tmp_path / "llama", to="llama")  # continue from the Llama format
    cont = train(_cfg(tok), _tc(root, steps=3, val_every=0, lr=1e-4, warmup_steps=0, init_from=str(tmp_path / "llama")),
                 tmp_path / "cont", console=QUIET)[0]
    fresh_start, cont_start = _losses(first)[0], _losses(cont)[0]
    assert cont_start < fresh_start - 1.0, (fresh_start, cont_start)


def test_time_budget_ends_the_stage_and_its_schedule(dataset, tmp_path):
    """`max_seconds`: the stage stops when the budget is spent, and the cosine has reached its floor."""
    import json

    root, tok = dataset
    tc = _tc(root, steps=1_000_000, max_seconds=4.0, warmup_steps=2, val_every=10_000, lr=5e-3, min_lr_ratio=0.1)
    result = train(_cfg(tok), tc, tmp_path, console=QUIET)[0]
    rows = [json.loads(line) for line in result.metrics.read_text().splitlines()]
    steps = [r for r in rows if "lr" in r]
    # a loaded machine manages only a few steps in 4 s (4 under a parallel `make test` and 3 jobs); the
    # schedule must still have followed the clock from warm-up to its floor
    assert 3 <= len(steps) < 1_000_000 and result.val_loss is not None  # validated at the last step
    assert steps[-1]["lr"] < 0.2 * 5e-3 and max(r["lr"] for r in steps) > 0.8 * 5e-3
    assert 4.0 <= result.seconds < 4.0 + 5.0
    assert (tmp_path / "main" / "hf" / "config.json").is_file()


def test_muon_trains_and_resumes_exactly(dataset, tmp_path):
    """Muon (block matrices) + AdamW (the rest): learns like AdamW, and its two optimizer states come
    back from a checkpoint bit for bit."""
    import json

    root, tok = dataset
    kw = dict(optimizer="muon", schedule="constant", warmup_steps=0, lr=5e-3, val_every=10_000, ckpt_every=4)
    straight = train(_cfg(tok), _tc(root, steps=8, **kw), tmp_path / "straight", console=QUIET)[0]
    train(_cfg(tok), _tc(root, steps=4, **kw), tmp_path / "resumed", console=QUIET)
    (tmp_path / "resumed" / "main" / "DONE").unlink()
    resumed = train(_cfg(tok), _tc(root, steps=8, **kw), tmp_path / "resumed", resume=True, console=QUIET)[0]

    def losses(result):
        rows = [json.loads(line) for line in result.metrics.read_text().splitlines()]
        return [r["loss"] for r in rows if "lr" in r]

    assert losses(straight)[-4:] == losses(resumed)[-4:]
    assert losses(straight)[-1] < losses(straight)[0] - 0.5


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_validation_bits_per_byte_matches_the_exported_model(dataset, tmp_path, dropout):
    """val_bpb in the metrics = the exported model's log-probs of the same validation rows, summed
    over the targets that stand for text, over those targets' UTF-8 bytes (recomputed here from the
    decoded text of each target token, not from the tokenizer's byte table). With dropout the model
    trains with it and validates without it, as the exported model scores."""
    import json

    from lmforge.model.logprobs import token_logprobs
    from lmforge.train.loader import validation_batches

    root, tok = dataset
    tc = _tc(root, steps=6, val_every=6, val_rows=8)
    result = train(_cfg(tok, dropout=dropout), tc, tmp_path, tokenizer_dir=str(root / "tokenizer"), console=QUIET)[0]
    rows = [json.loads(line) for line in result.metrics.read_text().splitlines()]
    logged = [r for r in rows if "val_bpb" in r][-1]["val_bpb"]
    model = load_model(tmp_path / "main" / "hf").eval()
    bits, n_bytes = 0.0, 0
    special = {tok.token_to_id(t) for t in tok.special_tokens}
    for b in validation_batches(TokenStream(root / "val", model.cfg.vocab_size), 64, 8, 8):
        ids = torch.cat([b.input_ids, b.targets[:, -1:].clamp(min=0)], dim=1)
        with torch.no_grad():
            lp = token_logprobs(model, ids, document_ids=b.document_ids)
        for r in range(ids.shape[0]):
            kept = [t for t in range(ids.shape[1] - 1) if int(b.targets[r, t]) >= 0
                    and int(b.targets[r, t]) not in special]
            bits -= sum(float(lp[r, t]) for t in kept) / math.log(2)
            n_bytes += len(tok.decode([int(b.targets[r, t]) for t in kept]).encode("utf-8"))  # English: whole chars
    assert logged == pytest.approx(bits / n_bytes, rel=2e-3)


def test_compile_without_a_cxx_compiler_says_what_to_install(dataset, tmp_path, monkeypatch):
    import shutil

    root, tok = dataset
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="needs a C\\+\\+ compiler.*apt-get install g\\+\\+.*\"auto\""):
        train(_cfg(tok), _tc(root, steps=1, val_every=0, compile=True), tmp_path, console=QUIET)
    # "auto" trains uncompiled there
    result = train(_cfg(tok), _tc(root, steps=1, val_every=0, compile="auto"), tmp_path / "auto", console=QUIET)[0]
    assert result.steps == 1
    with pytest.raises(ValueError, match="compile = 'yes'"):
        _tc(root, compile="yes")


def test_tied_embeddings_and_qk_norm_train_resume_exactly_and_export_tied(dataset, tmp_path):
    """The race's options through the whole trainer: the tied matrix is one parameter in the
    optimizer and the checkpoint (a resumed run repeats the straight one's losses), and the
    exported model is tied again with the trained weights."""
    import json

    root, tok = dataset
    cfg = _cfg(tok, tie_embeddings=True, qk_norm=True, embed_init_std=0.1)
    kw = dict(schedule="constant", warmup_steps=0, lr=5e-3, val_every=10_000, ckpt_every=4)
    straight = train(cfg, _tc(root, steps=8, **kw), tmp_path / "straight", console=QUIET)[0]
    train(cfg, _tc(root, steps=4, **kw), tmp_path / "resumed", console=QUIET)
    (tmp_path / "resumed" / "main" / "DONE").unlink()
    resumed = train(cfg, _tc(root, steps=8, **kw), tmp_path / "resumed", resume=True, console=QUIET)[0]

    def losses(result):
        rows = [json.loads(line) for line in result.metrics.read_text().splitlines()]
        return [r["loss"] for r in rows if "lr" in r]

    assert losses(straight)[-4:] == losses(resumed)[-4:]
    assert losses(straight)[-1] < losses(straight)[0] - 0.5
    a, b = load_model(tmp_path / "straight" / "main" / "hf"), load_model(tmp_path / "resumed" / "main" / "hf")
    assert a.cfg.tie_embeddings and a.cfg.qk_norm and a.output.weight is a.tok_embeddings.weight
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
