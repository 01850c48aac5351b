"""`lmforge eval ...` through `register`: run, resume, compare, niah, ppl, tasks, and bad input."""

import argparse
import json
import shutil

import pytest

from lmforge.eval.cli import register
from lmforge.model import save_model


def lmforge(*argv):
    parser = argparse.ArgumentParser(prog="lmforge")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.fn(args)


@pytest.fixture(scope="module")
def internlm2_checkpoint(tmp_path_factory, tokenizer, tiny_model):
    out = tmp_path_factory.mktemp("internlm2")
    save_model(tiny_model, out, fmt="internlm2")
    tokenizer.save(out)
    return out


def test_run_resume_and_compare(llama_checkpoint, internlm2_checkpoint, tmp_path, capsys):
    outs = {}
    for name, ckpt in (("llama", llama_checkpoint), ("internlm2", internlm2_checkpoint)):
        outs[name] = tmp_path / name
        assert lmforge("eval", "run", ckpt, "--tasks", "arc_easy,mmlu:anatomy+virology", "--limit", 2,
                       "--out", outs[name], "--no-progress") == 0
    results = json.loads((outs["llama"] / "results.json").read_text())
    assert results["tasks"]["arc_easy"]["n"] == 2 and results["tasks"]["mmlu"]["n"] == 4
    assert set(results["tasks"]["mmlu"]["groups"]) == {"anatomy", "virology"}
    assert "| arc_easy | acc |" in (outs["llama"] / "results.md").read_text()
    assert len((outs["llama"] / "samples" / "mmlu.jsonl").read_text().splitlines()) == 4
    # The same weights in both Hugging Face formats score identically.
    other = json.loads((outs["internlm2"] / "results.json").read_text())
    assert other["tasks"]["arc_easy"]["metrics"] == results["tasks"]["arc_easy"]["metrics"]

    assert lmforge("eval", "run", llama_checkpoint, "--tasks", "arc_easy,mmlu:anatomy+virology", "--limit", 2,
                   "--out", outs["llama"], "--no-progress") == 0
    again = json.loads((outs["llama"] / "results.json").read_text())
    assert again["tasks"]["arc_easy"]["cached"] == 2  # resumed from the cache, nothing recomputed
    assert again["tasks"]["mmlu"]["metrics"] == results["tasks"]["mmlu"]["metrics"]

    capsys.readouterr()
    assert lmforge("eval", "compare", outs["llama"], outs["internlm2"] / "results.json", "--groups") == 0
    table = capsys.readouterr().out
    assert results["model"]["name"] in table and other["model"]["name"] in table and "mmlu/anatomy" in table
    assert "| - |" not in table
    md = tmp_path / "compare.md"
    assert lmforge("eval", "compare", outs["llama"], outs["internlm2"], "--out", md) == 0
    assert md.read_text().startswith("| task | metric | n |")


def test_niah_and_ppl_actions(llama_checkpoint, tmp_path):
    assert lmforge("eval", "niah", llama_checkpoint, "--haystack", "passkey,en", "--lengths", "64,300",
                   "--depths", 2, "--repeats", 1, "--max-new-tokens", 4, "--out", tmp_path) == 0
    assert (tmp_path / "niah_passkey.png").is_file() and (tmp_path / "niah_en.png").is_file()
    out = tmp_path / "ppl.json"
    assert lmforge("eval", "ppl", llama_checkpoint, "--lang", "en,zh", "--window", 64, "--max-windows", 2,
                   "--out", out) == 0
    ppl = json.loads(out.read_text())
    assert set(ppl) == {"en", "zh"} and ppl["en"]["tokens"] == 128


def test_tasks_action_lists_the_tasks(capsys):
    assert lmforge("eval", "tasks") == 0
    out = capsys.readouterr().out
    for name in ("mmlu", "arc_easy", "hellaswag", "gsm8k", "humaneval", "mbpp", "ceval:FOLDER"):
        assert name in out


def test_checkpoint_without_tokenizer_says_so(llama_checkpoint, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(llama_checkpoint, bare)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (bare / f).unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match=r"bare has no tokenizer: expected tokenizer.json or tokenizer.model"):
        lmforge("eval", "run", bare, "--tasks", "arc_easy", "--limit", 1, "--no-progress")
    # --tokenizer points at one elsewhere.
    assert lmforge("eval", "run", bare, "--tokenizer", llama_checkpoint, "--tasks", "arc_easy", "--limit", 1,
                   "--out", tmp_path / "out", "--no-progress") == 0


def test_bad_task_fails_before_loading(tmp_path):
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        lmforge("eval", "run", tmp_path / "does-not-exist", "--tasks", "nope")
    with pytest.raises(FileNotFoundError, match="no such checkpoint directory"):
        lmforge("eval", "run", tmp_path / "does-not-exist", "--tasks", "arc_easy")


def test_report_names_and_best_values():
    from lmforge.eval.report import column_names, markdown_table

    def result(name, path, acc):
        return {"format": "lmforge-eval/1", "model": {"name": name, "path": path},
                "tasks": {"arc_easy": {"n": 10, "metrics": {"acc": acc}}}}

    a, b = result("model", "/runs/a/model", 0.25), result("model", "/runs/b/model", 0.5)
    assert column_names([a, b]) == ["a/model", "b/model"]
    assert column_names([a, a]) == ["a/model #1", "a/model #2"]
    table = markdown_table([a, b])
    assert "| arc_easy | acc | 10 | 25.00 | **50.00** |" in table


def test_pass_at_k_flags(llama_checkpoint, tmp_path):
    assert lmforge("eval", "run", llama_checkpoint, "--tasks", "humaneval", "--limit", 1, "--samples", 2,
                   "--temperature", 0.8, "--pass-k", "1,2", "--max-new-tokens", 16, "--out", tmp_path,
                   "--no-progress") == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["tasks"]["humaneval"]["metrics"]) == {"pass@1", "pass@2"}
    record = json.loads((tmp_path / "samples" / "humaneval.jsonl").read_text())
    assert len(record["completions"]) == 2 and len(record["status"]) == 2
    with pytest.raises(ValueError, match="pass@5 needs samples >= 5"):
        lmforge("eval", "run", llama_checkpoint, "--tasks", "humaneval", "--pass-k", "5", "--out", tmp_path)
