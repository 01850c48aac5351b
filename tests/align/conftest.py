"""A tokenizer trained on the built-in tasks' text and a tiny model saved with it, for the alignment tests."""

import pytest

from tests.helpers import tiny_model


@pytest.fixture(scope="session")
def task_tokenizer():
    from lmforge.align.tasks import make_examples
    from lmforge.corpora import english_text
    from lmforge.tokenizer import train_bpe

    examples = make_examples(400, seed=5)
    text = "\n".join(f"{e.prompt} {e.answer}" for e in examples)
    return train_bpe([english_text(60_000), text], vocab_size=700)


@pytest.fixture(scope="session")
def tiny_dir(task_tokenizer, tmp_path_factory):
    """An HF InternLM2 directory: a tiny random model + the task tokenizer."""
    from lmforge.model import save_model

    tok = task_tokenizer
    model = tiny_model(seed=1, vocab_size=tok.vocab_size, max_seq_len=256, bos_token_id=tok.bos_id,
                       eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    out = tmp_path_factory.mktemp("tiny_chat")
    save_model(model, out)
    tok.save(out)
    return out
