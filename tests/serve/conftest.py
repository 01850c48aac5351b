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


@pytest.fixture(scope="session")
def vl_checkpoint(tmp_path_factory):
    """(directory, tokenizer) of a tiny random InternVL saved as `lmforge serve` reads it: 64 px
    tiles of 16 image tokens, V2PE delta 1/4 at inference, a tokenizer with <img>, </img> and
    <IMG_CONTEXT>."""
    pytest.importorskip("PIL")
    from lmforge.corpora import english_text
    from lmforge.model.vision import InternVL, save_vl_model, tiny_vl_config
    from lmforge.tokenizer import IMAGE_TOKENS, train_bpe
    from lmforge.tokenizer.special import IMG_CONTEXT

    tok = train_bpe([english_text(100_000)], vocab_size=600, extra_special_tokens=IMAGE_TOKENS)
    # init_std 0.1: weights large enough that the reply depends on the image and on its positions.
    cfg = tiny_vl_config(vocab_size=tok.vocab_size, n_layers=2, init_std=0.1, bos_token_id=tok.bos_id,
                         eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    cfg = cfg.replace(image_token_id=tok.token_to_id(IMG_CONTEXT), v2pe_inference_delta=0.25)
    model = InternVL(cfg)
    model.init_weights(4)
    folder = tmp_path_factory.mktemp("tiny-vl")
    save_vl_model(model, folder)
    tok.save(folder)
    return folder, tok


@pytest.fixture(scope="module")
def vl_served(vl_checkpoint, tmp_path_factory):
    """(base url, runner, policy, image root) of a server over the tiny InternVL checkpoint; local
    images allowed under the root (a test may change the policy's fields with monkeypatch)."""
    pytest.importorskip("fastapi")
    from lmforge.serve.server import build_server, start_in_thread
    from lmforge.serve.vision import ImagePolicy

    root = tmp_path_factory.mktemp("images")
    policy = ImagePolicy(image_root=root, max_images=2, max_tiles=4)
    app, runner = build_server(vl_checkpoint[0], model_name="tiny-vl", max_batch=4, kv_tokens=2048, device="cpu",
                               images=policy)
    server, thread, url = start_in_thread(app)
    yield url, runner, policy, root
    server.should_exit = True
    thread.join(timeout=10)
    runner.stop()
