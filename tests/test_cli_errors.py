"""Every `lmforge` command with bad arguments and broken files: a non-zero exit, one line on stderr
naming what is wrong, and never a traceback.

Each case calls `lmforge.cli.main` in this process (fast); one runs the installed entry point in a
subprocess, to see exactly what a shell user sees. The broken files are the kinds a user meets:
missing, empty, truncated, in another format, with values of the wrong type or out of range.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lmforge.cli import build_parser, main
from lmforge.model import save_model
from tests.helpers import tiny_model

ROOT = Path(__file__).resolve().parents[1]
MICRO = str(ROOT / "recipes" / "micro.toml")
DATA_DEMO = str(ROOT / "recipes" / "data-demo.toml")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Broken inputs of every kind, and one good checkpoint for the cases that need one."""
    from lmforge.tokenizer import train_bpe

    d = tmp_path_factory.mktemp("broken")
    (d / "empty.txt").write_text("")
    (d / "empty_dir").mkdir()
    (d / "truncated.toml").write_text('[model]\npreset = "ti')
    (d / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (d / "types.toml").write_text('[model]\ndim = "large"\n')
    (d / "truncated.json").write_text('{"tasks": {"arc_easy": {"mode": ')
    (d / "list.json").write_text("[1, 2, 3]\n")
    (d / "truncated.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "lab')
    (d / "labels.jsonl").write_text('{"text": "a", "label": "spam"}\n')
    (d / "one_label.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 1}\n')
    (d / "no_pipeline.toml").write_text('[[stage]]\nname = "x"\n')
    (d / "bad_step.toml").write_text('[pipeline]\ninput = "in"\noutput = "out"\n[[stage]]\nname = "x"\n'
                                     'steps = [{ step = "langidd" }]\n')

    tok = train_bpe(["To be, or not to be: that is the question. 中国人民 2024年 " * 40], vocab_size=300)
    good = d / "good"
    save_model(tiny_model(vocab_size=tok.vocab_size), good)
    tok.save(good)
    config = json.loads((good / "config.json").read_text())
    for name, change in {"zero_heads": {"num_attention_heads": 0}, "string_dim": {"hidden_size": "big"},
                         "heads_do_not_divide": {"num_key_value_heads": 3},
                         "rope_string": {"rope_scaling": "dynamic"}}.items():
        (d / name).mkdir()
        (d / name / "config.json").write_text(json.dumps({**config, **change}))
        tok.save(d / name)  # so that the config, not a missing tokenizer, is what fails
    for name, text in {"config_truncated": json.dumps(config)[:40], "config_empty": "",
                       "config_list": "[]"}.items():
        (d / name).mkdir()
        (d / name / "config.json").write_text(text)
    (d / "no_weights").mkdir()
    (d / "no_weights" / "config.json").write_text(json.dumps(config))
    (d / "bad_weights").mkdir()
    (d / "bad_weights" / "config.json").write_text(json.dumps(config))
    (d / "bad_weights" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    (d / "tok_truncated").mkdir()
    (d / "tok_truncated" / "tokenizer.json").write_text((good / "tokenizer.json").read_text()[:200])
    return {p.name: str(p) for p in d.iterdir()} | {"missing": str(d / "missing"), "out": str(d / "out")}


# (argv with {name} placeholders for the files above, a word the message must contain)
CASES = [
    # the life cycle
    (["run", "{missing}"], "not found"),
    (["run", "{empty_dir}"], "empty_dir"),
    (["run", "{truncated.toml}"], "not valid TOML"),
    (["run", "{binary.bin}"], "not a UTF-8 text file"),
    (["run", "{types.toml}"], "model.dim"),
    (["run", MICRO, "--set", "model.preset=nope"], "model.preset"),
    (["run", MICRO, "--set", "eval.tasks=['arc_easy', 'mmlu_pro']"], "eval.tasks"),
    (["run", MICRO, "--set", "data.corpus='wiki'"], "data.corpus"),
    (["run", MICRO, "--set", "train.optimizer='sgd'"], "train.optimizer"),
    (["run", MICRO, "--set", "train.max_seconds=-1"], "train.max_seconds"),
    (["run", MICRO, "--set", "run.device=gpu0"], "run.device"),
    (["run", MICRO, "--set", "train.micro_batch=0"], "train.micro_batch"),
    (["run", MICRO, "--set", "train.global_batch=12"], "global_batch"),
    (["run", MICRO, "--set", "data.input={missing}/*.warc.gz"], "data.input"),
    (["run", MICRO, "--set", "data.val_share=1.5"], "data.val_share"),
    (["run", MICRO, "--set", "train.stages=[{name='a', shards='nowhere'}]"], "train.stages[0].shards"),
    (["run", MICRO, "--set", "model"], "section.key=value"),
    (["run", MICRO, "--from", "training"], "invalid choice"),
    (["train", "{missing}"], "not found"),
    (["train", MICRO], "train.shards"),
    (["train", MICRO, "--set", "train.shards={missing}"], "train.shards"),
    (["train", MICRO, "--set", "train.shards={empty_dir}", "--set", "run.device=tpu"], "run.device"),
    (["train", MICRO, "--set", "train.shards={empty_dir}", "--set", "train.optimizer=sgd"], "train.optimizer"),
    (["train", MICRO, "--set", "train.shards={empty_dir}", "--set", "train.stages=[]"], "no complete shards"),
    # tokenizer
    (["tokenizer", "train", "--out", "{out}", "--vocab-size", "0"], "vocab_size"),
    (["tokenizer", "train", "--out", "{out}", "--vocab-size", "many"], "--vocab-size"),
    (["tokenizer", "train", "--out", "{out}", "--corpora", "klingon"], "klingon"),
    (["tokenizer", "train", "--out", "{out}", "--corpora", "--files", "{missing}"], "missing"),
    (["tokenizer", "encode", "{missing}", "hi"], "missing"),
    (["tokenizer", "encode", "{empty_dir}", "hi"], "empty_dir"),
    (["tokenizer", "encode", "{tok_truncated}", "hi"], "tokenizer.json"),
    (["tokenizer", "encode", "{binary.bin}", "hi"], "binary.bin"),
    # checkpoints
    (["convert", "{missing}", "{out}", "--to", "llama"], "missing"),
    (["convert", "{empty_dir}", "{out}", "--to", "llama"], "config.json"),
    (["convert", "{config_empty}", "{out}", "--to", "llama"], "config.json"),
    (["convert", "{config_truncated}", "{out}", "--to", "llama"], "not valid JSON"),
    (["convert", "{config_list}", "{out}", "--to", "llama"], "JSON object"),
    (["convert", "{zero_heads}", "{out}", "--to", "llama"], "num_attention_heads"),
    (["convert", "{string_dim}", "{out}", "--to", "llama"], "hidden_size"),
    (["convert", "{heads_do_not_divide}", "{out}", "--to", "llama"], "n_kv_heads"),
    (["convert", "{rope_string}", "{out}", "--to", "llama"], "rope_scaling"),
    (["convert", "{no_weights}", "{out}", "--to", "llama"], "no weights"),
    (["convert", "{bad_weights}", "{out}", "--to", "llama"], "model.safetensors"),
    (["convert", "{good}", "{out}", "--to", "gguf"], "invalid choice"),
    (["generate", "{missing}", "hi"], "missing"),
    (["generate", "{zero_heads}", "hi"], "num_attention_heads"),
    (["generate", "{good}", "hi", "--top-p", "0"], "top_p"),
    (["generate", "{good}", "hi", "--max-new-tokens", "-1"], "max_new_tokens"),
    (["generate", "{good}", "hi", "--temperature", "warm"], "--temperature"),
    (["chat", "{bad_weights}", "--message", "hi"], "model.safetensors"),
    (["chat", "{good}", "--message", "hi", "--top-k", "-5"], "top_k"),
    (["presets", "extra"], "unrecognized arguments"),
    (["seqpar-cost", "--seq-len", "100"], "seq_len that is a multiple of 16"),
    (["seqpar-cost", "--preset", "nope"], "unknown model preset 'nope'"),
    (["seqpar-cost", "--sp", "8", "--window", "3"], "double_ring_window=3 does not divide"),
    (["seqpar-cost", "--micro-batch", "0"], "micro_batch=0 must be >= 1"),
    # data
    (["data", "demo-crawl", "{binary.bin}"], "binary.bin"),
    (["data", "mimg", "{missing}", "--out", "{out}/mimg.jsonl"], "no jsonl files match"),
    (["data", "mimg", "{missing}", "--out", "{out}/mimg.jsonl", "--concurrency", "0"], "--concurrency"),
    (["data", "demo-crawl", "{out}", "--pages", "0"], "pages"),
    (["data", "run", "{missing}"], "not found"),
    (["data", "run", "{empty.txt}"], "[pipeline]"),
    (["data", "run", "{truncated.toml}"], "not valid TOML"),
    (["data", "run", "{no_pipeline.toml}"], "[pipeline]"),
    (["data", "run", "{bad_step.toml}"], "langidd"),
    (["data", "run", DATA_DEMO, "--set", "pipeline.input={missing}/*.warc.gz"], "pipeline.input"),
    (["data", "run", DATA_DEMO, "--set", "pipeline.tasks=zero"], "pipeline.tasks"),
    (["data", "run", DATA_DEMO, "--workers", "some"], "--workers"),
    (["data", "report", "{missing}"], "missing"),
    (["data", "report", "{empty_dir}"], "empty_dir"),
    (["data", "train-classifier", "--input", "{missing}", "--out", "{out}/m.npz"], "missing"),
    (["data", "train-classifier", "--input", "{empty.txt}", "--out", "{out}/m.npz"], "both labels"),
    (["data", "train-classifier", "--input", "{truncated.jsonl}", "--out", "{out}/m.npz"], "truncated.jsonl:2"),
    (["data", "train-classifier", "--input", "{labels.jsonl}", "--out", "{out}/m.npz"], "labels.jsonl:1"),
    (["data", "train-classifier", "--input", "{one_label.jsonl}", "--out", "{out}/m.npz"], "both labels"),
    (["data", "train-classifier", "--input", "{binary.bin}", "--out", "{out}/m.npz"], "binary.bin"),
    # evaluation
    (["eval", "run", "{missing}", "--tasks", "arc_easy"], "missing"),
    (["eval", "run", "{good}", "--tasks", "arc_easyy"], "arc_easyy"),
    (["eval", "run", "{good}", "--tasks", "{empty.txt}"], "empty.txt"),
    (["eval", "run", "{good}", "--tasks", "arc_easy", "--limit", "0"], "limit"),
    (["eval", "run", "{good}", "--tasks", "humaneval", "--pass-k", "one"], "--pass-k"),
    (["eval", "run", "{zero_heads}", "--tasks", "arc_easy"], "num_attention_heads"),
    (["eval", "run", "{good}", "--tasks", "arc_easy", "--device", "gpu0"], "gpu0"),
    (["eval", "niah", "{missing}"], "missing"),
    (["eval", "long", "{missing}", "{good}"], "no such task file"),
    (["eval", "long", "{binary.bin}", "{good}"], "binary.bin"),
    (["eval", "vl", "{missing}", "--demo", "2"], "no such checkpoint directory"),
    (["eval", "vl", "{good}", "--demo", "2"], "expected 'internvl'"),
    (["eval", "niah", "{good}", "--haystack", "klingon"], "klingon"),
    (["eval", "niah", "{good}", "--lengths", "64,long"], "--lengths"),
    (["eval", "niah", "{good}", "--depths", "0"], "depths"),
    (["eval", "ppl", "{good}", "--lang", "fr"], "'fr'"),
    (["eval", "ppl", "{good}", "--lang", "", "--file", "{missing}"], "missing"),
    (["eval", "ppl", "{good}", "--lang", "", "--file", "{empty.txt}"], "empty.txt"),
    (["eval", "bpb", "{good}", "--text", "{missing}"], "missing"),
    (["eval", "bpb", "{good}", "--text", "{empty.txt}"], "empty.txt"),
    (["eval", "bpb", "{good}", "--text", "{binary.bin}"], "binary.bin"),
    (["eval", "bpb", "{good}"], "--text"),
    (["eval", "compare", "{missing}"], "missing"),
    (["eval", "compare", "{empty.txt}"], "empty.txt"),
    (["eval", "compare", "{truncated.json}"], "truncated.json"),
    (["eval", "compare", "{list.json}"], "list.json"),
    (["eval", "scaling", "{missing}"], "missing"),
    (["eval", "scaling", "{empty.txt}"], "empty.txt"),
    (["eval", "scaling", "{truncated.json}"], "truncated.json"),
    (["eval", "scaling", "{list.json}"], "list.json"),
    (["eval", "tasks", "extra"], "unrecognized arguments"),
    # the alignment commands: no recipe, no model, bad data or values
    (["sft"], "required"),
    (["sft", MICRO, "--init-from", "{missing}"], "no model there"),
    (["rm", MICRO, "--init-from", "{empty_dir}"], "no model there"),
    (["dpo", MICRO, "--init-from", "{good}", "--set", "dpo.data='{missing}'"], "no such file"),
    (["polar", "{truncated.toml}"], "truncated.toml"),
    (["rl", MICRO, "--init-from", "{good}", "--set", "rl.group=0"], "group"),
    (["rl", MICRO, "--init-from", "{good}", "--set", "rl.reward='rm'", "--set", "rl.reward_models=['{missing}']"],
     "rl.reward_models"),
    (["serve", "--no-such-flag"], "error:"),
    (["serve", "{missing}"], "missing"),
    (["serve", "{empty_dir}"], "config.json"),
    (["serve", "{zero_heads}"], "num_attention_heads"),
    (["serve", "{good}", "--kv-tokens", "0"], "--kv-tokens"),
    (["serve", "{good}", "--max-model-len", "4096", "--kv-tokens", "100"], "kv_tokens"),
    ([], "required"),
    (["fly"], "invalid choice"),
]


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's usage errors
        return e.code


@pytest.mark.parametrize(("argv", "expected"), CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_clear_line(argv, expected, files, capsys):
    for name, path in files.items():
        argv = [a.replace("{" + name + "}", path) for a in argv]
    code = _exit_code(argv)
    err = capsys.readouterr().err.strip()
    assert code not in (0, None), f"exit {code} for {argv}"
    assert len(err.splitlines()) == 1, f"{argv}: expected one line on stderr, got:\n{err}"
    assert "Traceback" not in err
    assert expected in err, f"{argv}: {expected!r} not in {err!r}"


def test_every_command_is_walked():
    """A new subcommand must get its bad-input cases here."""
    def leaves(parser, prefix=()):
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs:
            return {" ".join(prefix)}
        return {leaf for name, p in subs[0].choices.items() for leaf in leaves(p, (*prefix, name))}

    walked = {" ".join(argv[:n]) for argv, _ in CASES for n in (1, 2)}
    assert leaves(build_parser()) - walked == set()


def test_the_shell_sees_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lmforge.cli", "run", MICRO, "--set", "eval.tasks=['nope']",
                           "--set", f"run.out_dir='{tmp_path / 'run'}'"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "eval.tasks" in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before the first stage
