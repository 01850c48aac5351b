"""Image QA evaluation: the demo accuracy and task files with a stand-in that knows the truth (100%)
or says nonsense (0%), and `lmforge eval vl` end to end on a tiny random InternVL saved with
save_vl_model and read back with load_vl_model."""

import argparse
import json

import pytest
import torch
from PIL import Image

from lmforge.corpora import english_text
from lmforge.eval import vl_eval, vl_tasks
from lmforge.eval.cli import register
from lmforge.tokenizer import IMAGE_TOKENS, train_bpe
from lmforge.tokenizer.special import IMG_CONTEXT


@pytest.fixture(scope="module")
def heldout():
    from lmforge.vl.synth import demo_split

    return demo_split(0, 12, seed=3)[1]


def test_demo_accuracy_truth_and_nonsense(heldout, tmp_path):
    truth = {id(ex.image): ex.answer for ex in heldout}
    result = vl_eval.image_qa_accuracy(None, None, heldout, out_dir=tmp_path,
                                       answer_fn=lambda qs: [truth[id(q.images[0])] for q in qs])
    assert result["accuracy"] == 1.0 and result["n"] == len(heldout)
    assert set(result["by_kind"]) == {ex.kind for ex in heldout}
    assert set(result["by_lang"]) <= {"en", "zh"}
    assert all(v["accuracy"] == 1.0 for v in [*result["by_kind"].values(), *result["by_lang"].values()])
    assert sum(v["n"] for v in result["by_kind"].values()) == len(heldout)
    sample = result["samples"][0]
    assert set(sample) == {"index", "kind", "lang", "question", "answer", "prediction", "correct"}
    saved = json.loads((tmp_path / "vl_demo.json").read_text(encoding="utf-8"))
    assert saved["accuracy"] == 1.0 and len(saved["samples"]) == len(heldout)

    wrong = vl_eval.image_qa_accuracy(None, None, heldout, answer_fn=lambda qs: ["qwxz"] * len(qs))
    assert wrong["accuracy"] == 0.0 and not any(s["correct"] for s in wrong["samples"])


def _png(path, colour, size=(64, 64)):
    Image.new("RGB", size, colour).save(path)
    return path.name


def _task_file(tmp_path):
    _png(tmp_path / "red.png", (220, 30, 30))
    _png(tmp_path / "blue.png", (30, 30, 220), (128, 64))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows = [
        {"id": "mc-red", "image": "red.png", "question": "What colour?", "options": ["blue", "red"], "answer": "B",
         "category": "colour"},
        {"id": "mc-blue", "image": "blue.png", "question": "What colour?", "options": ["blue", "red"], "answer": 0,
         "category": "colour"},
        {"id": "vqa-one", "image": "red.png", "question": "Colour?", "answer": "red", "category": "colour"},
        {"id": "vqa-many", "images": ["red.png", "blue.png"], "question": "How many images?",
         "answers": ["two", "2", "2", "3", "2"], "category": "count"},
        {"id": "broken", "image": "broken.png", "question": "Colour?", "answer": "red"},
        {"image": "missing.png", "question": "Colour?", "answer": "red"},
    ]
    path = tmp_path / "my_bench.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


# What the stand-in says to each question, and the hand-computed item scores:
# mc-red "The answer is (B)." -> B: 1; mc-blue "red" -> B, gold A: 0;
# vqa-one "Red." -> red: 1; vqa-many "2" -> 4 of 5 answers say 2 (two -> 2): min(4/3, 1) = 1.
SAID = {"mc-red": "The answer is (B).", "mc-blue": "red", "vqa-one": "Red.", "vqa-many": "2"}


def test_taskfile_scores_and_skips(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(vl_eval, "CHUNK", 2)  # images decoded and answered two records at a time
    path = _task_file(tmp_path)
    seen = []

    def answer_fn(queries):
        seen.extend(queries)
        by_question = {"What colour?": None, "Colour?": "vqa-one", "How many images?": "vqa-many"}
        out = []
        for q in queries:
            first = q.question.splitlines()[0]
            key = by_question[first] or ("mc-red" if q.images[0].size == (64, 64) else "mc-blue")
            out.append(SAID[key])
        return out

    result = vl_eval.run_vl_taskfile(None, None, path, answer_fn=answer_fn, out_dir=tmp_path / "out")
    assert result["n"] == 4 and result["skipped"] == 2
    assert result["accuracy"] == pytest.approx(3 / 4)
    assert result["by_type"]["mc"] == {"n": 2, "accuracy": 0.5}
    assert result["by_type"]["vqa"] == {"n": 2, "accuracy": 1.0, "exact_match": 1.0}
    assert result["by_category"] == {"colour": {"n": 3, "accuracy": pytest.approx(2 / 3)},
                                     "count": {"n": 1, "accuracy": 1.0}}
    assert [it["prediction"] for it in result["items"]] == ["B", "B", "red", "2"]
    assert any(p.startswith(f"{path}:5:") for p in result["problems"])  # the image that does not decode
    assert any(p.startswith(f"{path}:6:") and "not found" in p for p in result["problems"])
    assert "skipped:" in capsys.readouterr().err
    # The prompts: options listed with their letters, the instructions, two images for the last.
    assert seen[0].question == "What colour?\nA. blue\nB. red\n" + vl_tasks.MC_INSTRUCTION
    assert seen[2].question == "Colour?\n" + vl_tasks.VQA_INSTRUCTION
    assert len(seen[3].images) == 2
    assert json.loads((tmp_path / "out" / "vl_my_bench.json").read_text())["accuracy"] == pytest.approx(0.75)


def test_taskfile_truth_scores_100(tmp_path):
    path = _task_file(tmp_path)
    records, _ = vl_tasks.read_vl_tasks(path)
    usable = [r for r in records if not r.images[0].endswith("broken.png")]  # the records that get asked

    def truth(queries):
        assert [q.question for q in queries] == [vl_tasks.prompt(r) for r in usable]
        return [r.gold or r.answers[0] for r in usable]

    result = vl_eval.run_vl_taskfile(None, None, path, answer_fn=truth)
    assert result["accuracy"] == 1.0 and result["n"] == 4


@pytest.fixture(scope="module")
def vl_checkpoint(tmp_path_factory):
    from lmforge.model.vision import InternVL, save_vl_model, tiny_vl_config

    tok = train_bpe([english_text(100_000)], vocab_size=600, extra_special_tokens=IMAGE_TOKENS)
    cfg = tiny_vl_config(vocab_size=tok.vocab_size, n_layers=1, bos_token_id=tok.bos_id, eos_token_id=tok.eos_id,
                         pad_token_id=tok.pad_id)
    cfg = cfg.replace(image_token_id=tok.token_to_id(IMG_CONTEXT))
    torch.manual_seed(0)
    model = InternVL(cfg)
    model.init_weights(0)
    out = tmp_path_factory.mktemp("tiny_vl")
    save_vl_model(model, out)
    tok.save(out)
    return out


def _cli(argv):
    parser = argparse.ArgumentParser(prog="lmforge")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.fn(args)


def test_cli_demo_on_a_tiny_random_internvl(vl_checkpoint, tmp_path, capsys):
    assert _cli(["eval", "vl", str(vl_checkpoint), "--demo", "6", "--max-new-tokens", "3", "--device", "cpu",
                 "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "vl_demo.json").read_text(encoding="utf-8"))
    assert saved["n"] == 6 and 0.0 <= saved["accuracy"] <= 1.0 and saved["model"] == vl_checkpoint.name
    assert sum(v["n"] for v in saved["by_kind"].values()) == 6
    assert all(isinstance(s["prediction"], str) for s in saved["samples"])
    out = capsys.readouterr().out
    assert "vl_demo" in out and "all" in out


def test_cli_tasks_on_a_tiny_random_internvl(vl_checkpoint, tmp_path):
    path = _task_file(tmp_path)
    assert _cli(["eval", "vl", str(vl_checkpoint), "--tasks", str(path), "--max-new-tokens", "3",
                 "--device", "cpu", "--max-tiles", "2", "--out", str(tmp_path / "out")]) == 0
    saved = json.loads((tmp_path / "out" / "vl_my_bench.json").read_text(encoding="utf-8"))
    assert saved["n"] == 4 and saved["skipped"] == 2 and set(saved["by_type"]) == {"mc", "vqa"}
    assert all(isinstance(it["generation"], str) for it in saved["items"])


def test_cli_refuses_both_and_bad_files(vl_checkpoint, tmp_path):
    with pytest.raises(SystemExit):
        _cli(["eval", "vl", str(vl_checkpoint), "--demo", "2", "--tasks", "x.jsonl"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Q?"}\n', encoding="utf-8")
    with pytest.raises(vl_tasks.VLTaskError, match="bad.jsonl: no usable record"):
        _cli(["eval", "vl", str(vl_checkpoint), "--tasks", str(bad)])
