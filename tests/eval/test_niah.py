"""Needle-in-a-Haystack: insertion at sentence ends, prompt lengths, scoring, the heatmap."""

import json
import random
import re

import pytest
import torch

from lmforge.eval import haystack, niah, passkey
from lmforge.eval.lm import LmforgeLM
from lmforge.generate import SamplingParams


class NeedleReader:
    """A model fed the needle perfectly: it finds the fact the question asks about and answers it."""

    name, fingerprint, max_length = "reader", "r" * 64, None

    @staticmethod
    def _pattern(fact: str) -> str:
        escaped = re.escape(fact)
        for slot in ("name", "item", "number"):
            escaped = escaped.replace(re.escape("{" + slot + "}"), f"(?P<{slot}>.+?)", 1)
        return escaped

    def generate(self, prompts, params: SamplingParams, progress=None, *, truncate=True):
        out = []
        for prompt in prompts:
            answer = ""
            m = re.search(r"The pass key is (\d+)\. Remember it\.", prompt)
            if m and prompt.endswith(passkey.QUESTION):
                answer = m.group(1)
            for fact, question, template in niah.NEEDLES["en"] + niah.NEEDLES["zh"]:
                for m in re.finditer(self._pattern(fact), prompt):
                    if question.format(**m.groupdict()) in prompt[-200:]:
                        answer = template.format(**m.groupdict())
            out.append(" " + answer)
        return out

    def loglikelihood(self, requests, progress=None):
        return [(0.0, True) for _ in requests]


def test_depth_grid_is_needlebench():
    assert niah.depth_grid(11) == [0, 10, 21, 31, 42, 52, 63, 73, 84, 94, 100]


def test_needle_backs_up_to_a_sentence_end():
    hay = "One two three. Four five six. Seven eight nine."
    assert haystack.insert_needle(hay, "NEEDLE.", 50) == "One two three. NEEDLE. Four five six. Seven eight nine."
    assert haystack.insert_needle(hay, "NEEDLE.", 0).startswith("NEEDLE. One")
    assert haystack.insert_needle(hay + " Ten el", "NEEDLE.", 100).endswith("nine. NEEDLE. Ten el")
    zh = "第一句话。第二句话。第三句话。"
    assert haystack.insert_needle(zh, "针在这里。", 70) == "第一句话。第二句话。针在这里。第三句话。"


@pytest.mark.parametrize("kind", niah.KINDS)
def test_prompt_has_the_requested_length(tokenizer, kind):
    needle = niah.make_needle(kind, random.Random(0))
    for length in (300, 700):  # (the Chinese header alone is ~190 tokens of this English BPE)
        prompt = haystack.build_prompt(tokenizer, kind, needle.text, needle.question, length, 50, offset=1234)
        n = len(tokenizer.encode(prompt)) + 1
        assert abs(n - length) <= max(8, length // 20), (n, length)
        assert needle.text in prompt and prompt.rstrip().endswith(haystack.TEMPLATES[kind][1].format(
            question=needle.question).rstrip())


def test_perfect_reader_scores_100_and_the_heatmap_is_written(tokenizer, tmp_path):
    for kind in ("en", "zh"):
        result = niah.run_niah(NeedleReader(), tokenizer, lengths=[64, 256], depths=[0, 50, 100], repeats=2,
                               kind=kind, out_dir=tmp_path, window=128)
        assert result["average"] == 100 and result["exact_average"] == 1.0
        assert all(v == 100 for row in result["scores"] for v in row)
        png = tmp_path / f"niah_{kind}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and result["heatmap"] == str(png)
        saved = json.loads((tmp_path / f"niah_{kind}.json").read_text())
        assert saved["depths"] == [0, 50, 100] and len(saved["items"]) == 12


class RecordingLM(LmforgeLM):
    """The tiny model, keeping the prompts NIAH asks it to complete."""

    def generate(self, prompts, params, progress=None, *, truncate=True):
        self.prompts = list(prompts)
        return super().generate(prompts, params, progress, truncate=truncate)


@torch.no_grad()
def _greedy(model, tokenizer, prompt: str, n: int, stops: tuple[str, ...]) -> str:
    """Greedy decoding from scratch, a full forward per token (no cache, no engine), cut at a stop."""
    ids = tokenizer.encode(prompt, add_bos=True)
    new: list[int] = []
    for _ in range(n):
        nxt = int(model(torch.tensor([ids + new]))[0, -1].argmax())
        if nxt in tokenizer.stop_ids:
            break
        new.append(nxt)
    text = tokenizer.decode(new)
    cut = min([text.find(s) for s in stops if s in text], default=len(text))
    return text[:cut]


@torch.no_grad()
def _answer_logprob(model, tokenizer, prompt: str, answer: str) -> float:
    """log P(" answer" | prompt) by one forward, tokenised as lm-evaluation-harness does."""
    context = tokenizer.encode(prompt, add_bos=True)
    whole = tokenizer.encode(prompt + " " + answer, add_bos=True)
    assert whole[:len(context)] == context
    logp = torch.log_softmax(model(torch.tensor([whole[:-1]]))[0].double(), -1)
    return float(sum(logp[t - 1, whole[t]] for t in range(len(context), len(whole))))


def test_tiny_model_runs_the_passkey_grid_beyond_its_window(tiny_model, tokenizer, tmp_path):
    # 512 tokens is twice the 256-token window: dynamic NTK stretches RoPE there.
    lm = RecordingLM(tiny_model, tokenizer, name="tiny")
    result = niah.run_niah(lm, tokenizer, lengths=[128, 512], depths=[0, 100], repeats=1, kind="passkey",
                           max_new_tokens=4, out_dir=tmp_path, window=256)
    items = result["items"]
    assert [(it["length"], it["depth"]) for it in items] == [(n, d) for n in (128, 512) for d in (0, 100)]
    assert max(it["prompt_tokens"] for it in items) > 256
    for it, prompt in zip(items, lm.prompts):
        # The completion and the answer's log-probability, computed again without the engine...
        assert it["completion"] == _greedy(tiny_model, tokenizer, prompt, 4, ("\n", "."))
        assert abs(it["answer_logprob"] - _answer_logprob(tiny_model, tokenizer, prompt, it["answer"])) < 1e-3
        # ...and the score of that completion.
        assert it["score"] == niah.needle_score(it["completion"], it["answer"])
        assert it["answer"] in prompt and f"The pass key is {it['answer']}." in prompt
    # The grid is the items' scores, depth by length.
    for i, d in enumerate(result["depths"]):
        for j, n in enumerate(result["lengths"]):
            assert result["scores"][i][j] == [it["score"] for it in items if (it["depth"], it["length"]) == (d, n)][0]
    assert result["answer_logprob_by_length"] == {
        str(n): sum(it["answer_logprob"] for it in items if it["length"] == n) / 2 for n in (128, 512)}


def test_passkey_training_document(tokenizer):
    doc = passkey.passkey_document(tokenizer, 200, random.Random(1))
    key = re.search(r"The pass key is (\d+)\.", doc).group(1)
    assert doc.endswith(f"{passkey.QUESTION} {key}.")
    assert abs(len(tokenizer.encode(doc)) - 200) <= 12
    assert len(key) == 5  # NIAH's keys; training documents may ask for more digits
    long_key = re.search(r"The pass key is (\d+)\.", passkey.passkey_document(tokenizer, 200, random.Random(1), 17))
    assert len(long_key.group(1)) == 17
