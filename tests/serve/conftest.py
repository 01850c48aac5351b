"""A tiny model behind a real uvicorn server on a free port, for the API and chat-page tests."""

import pytest

from tests.helpers import tiny_model


@pytest.fixture(scope="session")
def chat_tokenizer():
    from lmforge.corpora import english_text
    from lmforge.tokenizer import train_bpe

    return train_bpe([english_text(100_000)], vocab_size=600)


@pytest.fixture(scope="module")
def served(chat_tokenizer, request):
    """(base url, runner, model) of a server; a test module may set API_KEY."""
    pytest.importorskip("fastapi")
    from lmforge.serve.server import build_server, start_in_thread

    tok = chat_tokenizer
    model = tiny_model(seed=3, vocab_size=tok.vocab_size, max_seq_len=256, bos_token_id=tok.bos_id,
                       eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    app, runner = build_server("tiny", model_name="tiny", model=model, tokenizer=tok, max_batch=8, kv_tokens=2048,
                               api_key=getattr(request.module, "API_KEY", None))
    server, thread, url = start_in_thread(app)
    yield url, runner, model
    server.should_exit = True
    thread.join(timeout=10)
    runner.stop()
