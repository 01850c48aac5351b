"""`lmforge serve MODEL_DIR`: the arguments of `lmforge.serve.server.serve`."""

from __future__ import annotations

import argparse

DESCRIPTION = """Serve a checkpoint over HTTP: an OpenAI-compatible API at /v1 (chat/completions, completions,
models; streaming as server-sent events), a chat page at /, /health and /metrics (Prometheus).

    lmforge serve runs/tiny/pretrain/model                  # then open http://127.0.0.1:8000/
    LMFORGE_API_KEY=secret lmforge serve MODEL --port 9000  # clients send 'Authorization: Bearer secret'

Any OpenAI client works unchanged, e.g. openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="x").
Requests are batched continuously over a paged KV cache of --kv-tokens tokens; when it is full, new
requests wait in a queue."""


def _cmd(args) -> int:
    from lmforge.serve.server import serve

    serve(args.model_dir, host=args.host, port=args.port, model_name=args.model_name,
          max_model_len=args.max_model_len, kv_tokens=args.kv_tokens, block_size=args.block_size,
          max_batch=args.max_batch, device=args.device, api_key=args.api_key, log_level=args.log_level)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a checkpoint: OpenAI-compatible API and a chat page",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", help="a checkpoint directory with its tokenizer (e.g. runs/tiny/pretrain/model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on /v1 (default: $LMFORGE_API_KEY, else none)")
    p.add_argument("--model-name", default=None, help="the model id clients ask for (default: the folder name)")
    p.add_argument("--max-model-len", type=_positive, default=None,
                   help="longest prompt + completion in tokens (default: the model's trained window)")
    p.add_argument("--kv-tokens", type=_positive, default=None,
                   help="KV cache budget in tokens (default: max-batch requests of a quarter of max-model-len)")
    p.add_argument("--block-size", type=_positive, default=16, help="tokens per KV block (default: %(default)s)")
    p.add_argument("--max-batch", type=_positive, default=64, help="requests decoded at once (default: %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(fn=_cmd)
