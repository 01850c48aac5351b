"""Bits per byte (`lmforge.eval.bpb`): the window rule, the exact figure of a uniform model, lossless
tokenization, and the same number from an independent computation with transformers."""

import json
import math
import subprocess
import sys

import pytest
import torch

from lmforge.corpora import english_text
from lmforge.eval.bpb import bits_per_byte, encode_lossless, model_bits_per_byte, text_bits_per_byte, windows


class CharTokenizer:
    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars)

    def encode(self, text):
        return [self.index.get(c, 0) for c in text]  # lossy on unknown characters, on purpose

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)


@pytest.mark.parametrize("n,context,stride", [(2, 2, 1), (10, 4, 2), (100, 16, 8), (101, 16, 5), (17, 16, 15),
                                              (5, 64, 32), (64, 64, 32), (65, 64, 32)])
def test_every_target_is_scored_once_with_enough_context(n, context, stride):
    seen = []
    for begin, end, first in windows(n, context, stride):
        assert end - begin <= context and begin < first <= end
        for t in range(first, end):
            assert t - begin >= min(t, context - stride)  # the context a scored token gets
        seen.extend(range(first, end))
    assert seen == list(range(1, n))


def test_uniform_model_gives_log2_vocab_per_token_exactly():
    text = "To be, or not to be, that is the question:\nWhether 'tis nobler — 中文 ✓"
    tok = CharTokenizer(text)
    V = tok.vocab_size
    uniform = lambda rows: torch.full((rows.shape[0], rows.shape[1] - 1), -math.log(V), dtype=torch.float64)  # noqa: E731
    r = text_bits_per_byte(uniform, tok, text, context=8, stride=3)
    n_bytes = len(text.encode("utf-8"))
    assert n_bytes > len(text)  # multi-byte characters count as their bytes
    assert r.tokens == len(text) and r.bytes == n_bytes
    assert r.bpb == pytest.approx(len(text) * math.log2(V) / n_bytes, rel=1e-12)


def test_scores_each_target_with_its_window():
    """A fake model whose log-prob of token t at row position j is -(t + j / 1000): the sum tells which
    window scored which target."""
    ids = list(range(40))
    calls = []

    def fake(rows):
        calls.append(rows.clone())
        pos = torch.arange(rows.shape[1] - 1, dtype=torch.float64)
        return -(rows[:, 1:].double() + pos / 1000)

    r = bits_per_byte(fake, ids, n_bytes=40, vocab_size=50, context=10, stride=4, batch_size=3)
    expected = math.log2(50)
    for t in range(1, 40):  # target t is scored by the first window [4k, 4k + 10) that reaches past it
        k = max(0, (t - 10) // 4 + 1)
        expected += (t + (t - 4 * k - 1) / 1000) / math.log(2)
    assert r.bits == pytest.approx(expected, rel=1e-12)
    assert sum(c.shape[0] for c in calls) == r.windows == len(windows(40, 10, 4))


def test_lossy_tokenizer_is_refused():
    tok = CharTokenizer("abc ")
    with pytest.raises(ValueError, match=r"held\.txt: the tokenizer does not give the text back .*character 4"):
        encode_lossless(tok, "abc xyz", "held.txt")
    with pytest.raises(ValueError, match="stride"):
        windows(10, 8, 8)


def test_lmforge_bpb_equals_transformers_independent_computation(tokenizer, tiny_model, llama_checkpoint):
    """The tiny model exported as Llama, scored by transformers with the raw `tokenizers` file and a
    window rule written the other way round (for each target, the first window that reaches it)."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer as HFTokenizer

    text = english_text(6_000)[3_000:]
    context, stride = 64, 24
    ours = model_bits_per_byte(tiny_model, tokenizer, text, context=context, stride=stride)

    ids = HFTokenizer.from_file(str(llama_checkpoint / "tokenizer.json")).encode(text, add_special_tokens=False).ids
    hf = transformers.LlamaForCausalLM.from_pretrained(llama_checkpoint, torch_dtype=torch.float32).eval()
    n = len(ids)
    starts = sorted({max(0, (t - context) // stride + 1) * stride for t in range(1, n)})
    logp = {}
    with torch.no_grad():
        for b in starts:
            row = torch.tensor([ids[b:b + context]])
            logp[b] = hf(row).logits[0].double().log_softmax(-1)
    nats = sum(-float(logp[b][t - b - 1, ids[t]])
               for t in range(1, n) for b in [max(0, (t - context) // stride + 1) * stride])
    bits = nats / math.log(2) + math.log2(tokenizer.vocab_size)
    assert ours.tokens == n
    assert ours.bpb == pytest.approx(bits / len(text.encode("utf-8")), rel=1e-5)
    assert ours.bpb > 1.0  # an untrained model: far from compressing English


def test_cli_writes_json_and_refuses_missing_file(tmp_path, llama_checkpoint):
    text = tmp_path / "held.txt"
    text.write_text(english_text(3_000), encoding="utf-8")
    out = tmp_path / "out" / "bpb.json"
    cmd = [sys.executable, "-m", "lmforge.cli", "eval", "bpb", str(llama_checkpoint), "--text", str(text),
           "--context", "32", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    r = json.loads(out.read_text())[str(text)]
    assert r["context"] == 32 and r["stride"] == 16 and r["bytes"] == len(text.read_bytes())
    assert 0 < r["bpb"] < 20
    bad = subprocess.run(cmd[:-4] + ["--text", str(tmp_path / "nope.txt")], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0 and "nope.txt: no such text file" in bad.stderr
    assert "Traceback" not in bad.stderr
