"""Long-context SFT (issue #19 part 3): MIMG's conversations, written by `lmforge data mimg` against
an OpenAI-compatible server, are SFT data as they are: packed whole at the long length, loss on the
multi-hop answers only, with the checkpoint's RoPE settings (the long stage's base and window)."""

import json

from lmforge.align.chat_rows import encode_conversation, fit_to_row
from lmforge.align.config import SFTSection
from lmforge.align.conversations import read_conversations
from lmforge.align.sft import sft
from lmforge.tokenizer import Tokenizer
from tests.data.test_mimg import fake_server, run  # noqa: F401  (a fixture and the pipeline run)


def test_sft_trains_on_mimg_conversations_at_the_long_length(fake_server, tiny_dir, tmp_path):  # noqa: F811
    _, url = fake_server()
    run(url, tmp_path)
    data = tmp_path / "mimg.jsonl"
    convs = read_conversations(data, strict=True)
    tok = Tokenizer.load(tiny_dir)
    encoded = [encode_conversation(tok, c) for c in convs]
    longest = max(len(e.ids) for e in encoded)
    assert longest > 128  # long compared with the task conversations SFT sees in the demo
    for e, c in zip(encoded, convs):  # the loss falls on the answer, not on the passages or the question
        answer = tok.decode([t for t, m in zip(e.ids, e.mask) if m])
        assert c[-1]["content"].strip() in answer and "Passage 1:" not in answer

    seq_len = 128  # shorter than most: cut in the middle of the passages, the answers kept whole
    for e in encoded:
        cut = fit_to_row(e, seq_len + 1)
        assert len(cut.ids) == min(len(e.ids), seq_len + 1) and sum(cut.mask) == sum(e.mask)
        assert cut.ids[:10] == e.ids[:10] and cut.ids[-sum(e.mask):] == e.ids[-sum(e.mask):]
    cfg = SFTSection(init_from=str(tiny_dir), data=str(data), seq_len=seq_len, steps=3, global_batch=2,
                     micro_batch=2, lr=1e-3, eval_examples=1, tensorboard=False)
    summary = sft(cfg, tmp_path / "sft", device="cpu")
    assert summary["conversations"] == len(convs) and summary["truncated"] == sum(len(e.ids) > seq_len + 1 for e in encoded) > 0
    assert summary["assistant_tokens"] == sum(sum(e.mask) for e in encoded)
    assert summary["final_loss"] is not None and summary["final_loss"] > 0
    saved = json.loads((tmp_path / "sft" / "model" / "config.json").read_text())
    base = json.loads((tiny_dir / "config.json").read_text())
    assert saved["rope_theta"] == base["rope_theta"] and saved["max_position_embeddings"] == base["max_position_embeddings"]
