"""`lmforge run` on an embedded corpus (`[data] corpus`, recipes/shakespeare.toml): no crawl and no
curation, the fixed split by whole plays, and bits per byte of the held-out plays in the report."""

import json
from pathlib import Path

import pytest

from lmforge.config import load_recipe
from lmforge.corpora import SHAKESPEARE_HELDOUT, shakespeare_plays
from lmforge.recipe import Recipe
from lmforge.run import run

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT / "recipes" / "shakespeare.toml"
TINY = ["tokenizer.vocab_size=300", "model.dim=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=2",
        "model.ffn_dim=64", "model.max_seq_len=64", "train.steps=3", "train.seq_len=64", "train.global_batch=4",
        "train.micro_batch=4", "train.warmup_steps=1", "train.val_every=3", "train.val_rows=4",
        "train.ckpt_every=3", "train.tensorboard=false", "eval.bpb_max_chars=4000", "eval.ppl_max_windows=1",
        "sample.max_new_tokens=4", 'run.device="cpu"', "train.compile=false"]


def test_split_is_by_whole_plays_and_modern_editions_only():
    train, held = shakespeare_plays("train"), shakespeare_plays("heldout")
    assert sorted(held) == sorted(SHAKESPEARE_HELDOUT) and len(train) == 38
    assert not set(train) & set(held)
    assert "hamlet" not in train and not any(name.endswith("_f") for name in train)
    hamlet = held["hamlet"]
    assert all(hamlet[i:i + 200] not in text for text in train.values() for i in (10_000, 50_000))
    with pytest.raises(ValueError, match="'train' or 'heldout'"):
        shakespeare_plays("test")


def test_recipe_runs_on_the_embedded_plays(tmp_path):
    recipe = load_recipe(SHAKESPEARE, Recipe, [f'run.out_dir="{tmp_path}"', *TINY])
    report = run(recipe, SHAKESPEARE.parent)
    assert "crawl" not in report["timings"] and not (tmp_path / "crawl").exists()
    splits = report["data"]["splits"]
    assert splits["train"]["documents"] == 38 and sorted(splits["val"]["texts"]) == sorted(SHAKESPEARE_HELDOUT)
    held = (tmp_path / "shards" / "val_en.txt").read_text(encoding="utf-8")
    assert held == "\n\n".join(shakespeare_plays("heldout").values())  # the held-out plays, nothing else
    bpb = report["eval"]["bpb"]["en"]
    stored = json.loads((tmp_path / "eval" / "bpb.json").read_text())
    assert bpb == next(iter(stored.values()))
    assert bpb["bytes"] == len(held[:4000].encode("utf-8")) and 1.0 < bpb["bpb"] < 12.0
    page = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "Data: the embedded shakespeare corpus" in page and "Bits per UTF-8 byte" in page


def test_corpus_and_input_together_are_refused():
    with pytest.raises(Exception, match="set one of them"):
        load_recipe(SHAKESPEARE, Recipe, ['data.input="x/*.jsonl"'])
    with pytest.raises(Exception, match="corpus"):
        load_recipe(SHAKESPEARE, Recipe, ['data.corpus="wikipedia"'])
