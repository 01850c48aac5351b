"""`lmforge serve MODEL_DIR`: load a checkpoint, start the engine thread, serve the API with uvicorn.

`build_server` gives the pieces without starting uvicorn (tests and embedding); `serve` runs them
until interrupted. An InternVL checkpoint (config.json with model_type "internvl") is served as a
vision-language model: the engine runs its language model, and chat messages may carry images
(lmforge.serve.vision).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from lmforge.generate import Engine
from lmforge.inference import load_for_inference
from lmforge.serve.app import create_app
from lmforge.serve.runner import EngineRunner
from lmforge.serve.vision import ImagePolicy, VisionPrompter

API_KEY_ENV = "LMFORGE_API_KEY"


def is_vl_checkpoint(model_dir: Path) -> bool:
    """Whether a checkpoint directory holds an InternVL (vision-language) model."""
    try:
        return json.loads((model_dir / "config.json").read_text()).get("model_type") == "internvl"
    except (OSError, ValueError, AttributeError):
        return False


def load_vl_for_inference(model_dir: Path, device: str = "auto"):
    """(InternVL model on its device, its tokenizer) of an InternVL checkpoint directory."""
    from lmforge.machine import resolve_device
    from lmforge.model.vision import load_vl_model
    from lmforge.tokenizer import Tokenizer

    return load_vl_model(model_dir, device=resolve_device(device)), Tokenizer.load(model_dir)


def build_server(model_dir: str | Path, *, model_name: str | None = None, max_model_len: int | None = None,
                 kv_tokens: int | None = None, block_size: int = 16, max_batch: int = 64, device: str = "auto",
                 api_key: str | None = None, model=None, tokenizer=None, images: ImagePolicy | None = None):
    """(FastAPI app, started EngineRunner). `model`/`tokenizer` given: served instead of loading model_dir
    (an InternVL model, one with a `language_model`, is served with images).
    max_model_len: the longest prompt + completion (default: the model's trained window); kv_tokens:
    the KV cache budget in tokens (default: room for max_batch requests of 1/4 of max_model_len each,
    and at least two full-length ones). images: where images may come from and how many and how
    large (vision-language models only; default: data: URLs only, lmforge.serve.vision's limits)."""
    model_dir = Path(model_dir)
    if model is None:
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir}: not a checkpoint directory (no config.json); give the folder "
                                    "that `lmforge run` or `lmforge train` exported, e.g. runs/tiny/pretrain/model")
        if is_vl_checkpoint(model_dir):
            model, tokenizer = load_vl_for_inference(model_dir, device)
        else:
            model, tokenizer = load_for_inference(model_dir, device)
    vision = None
    if hasattr(model, "language_model"):  # vision-language: the engine runs the decoder
        vision = VisionPrompter(model, tokenizer, images)
        model = model.language_model
    max_model_len = max_model_len or model.cfg.max_seq_len
    kv_tokens = kv_tokens or max(2 * max_model_len, max_batch * max_model_len // 4)
    if kv_tokens < max_model_len:
        raise ValueError(f"kv_tokens={kv_tokens} cannot hold one request of max_model_len={max_model_len}")
    engine = Engine(model, tokenizer, kv_blocks=-(-kv_tokens // block_size), block_size=block_size,
                    max_batch=max_batch)
    runner = EngineRunner(engine).start()
    api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    app = create_app(runner, tokenizer, model_name or model_dir.resolve().name, max_model_len, api_key, vision)
    return app, runner


def start_in_thread(app, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0):
    """Run uvicorn on a thread (tests, benchmarks, notebooks): (server, thread, base url). Port 0 picks
    a free one. Stop with `server.should_exit = True; thread.join()`."""
    import socket
    import threading

    import uvicorn

    if port == 0:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="lmforge-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the HTTP server did not start on {host}:{port}")
        time.sleep(0.02)
    return server, thread, f"http://{host}:{port}"


def serve(model_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          **options) -> None:
    """Serve until Ctrl-C."""
    import uvicorn

    app, runner = build_server(model_dir, **options)
    engine = runner.engine
    gib = engine.pool.blocks.n_blocks * engine.pool.bytes_per_block / 2**30
    print(f"lmforge serve: {model_dir} on http://{host}:{port}/ (chat page at /, OpenAI API at /v1); "
          f"KV cache {engine.capacity_tokens:,} tokens ({gib:.2f} GiB) in blocks of {engine.pool.block_size}")
    if is_vl_checkpoint(Path(model_dir)):
        policy = options.get("images") or ImagePolicy()
        where = ["data: URLs"] + ([f"files under {policy.image_root}"] if policy.image_root else []) + \
            (["http(s) URLs (fetched by this server)"] if policy.allow_remote else [])
        print(f"images: {', '.join(where)}; at most {policy.max_images} per request, {policy.max_tiles} tiles and "
              f"{policy.max_image_bytes:,} bytes each")
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        runner.stop()


__all__ = ["API_KEY_ENV", "build_server", "is_vl_checkpoint", "serve", "start_in_thread"]
