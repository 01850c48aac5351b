"""`lmforge serve MODEL_DIR`: the arguments of `lmforge.serve.server.serve`."""

from __future__ import annotations

import argparse

DESCRIPTION = """Serve a checkpoint over HTTP: an OpenAI-compatible API at /v1 (chat/completions, completions,
models; streaming as server-sent events), a chat page at /, /health and /metrics (Prometheus).

    lmforge serve runs/tiny/pretrain/model                  # then open http://127.0.0.1:8000/
    LMFORGE_API_KEY=secret lmforge serve MODEL --port 9000  # clients send 'Authorization: Bearer secret'

Any OpenAI client works unchanged, e.g. openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="x").
Requests are batched continuously over a paged KV cache of --kv-tokens tokens; when it is full, new
requests wait in a queue.

An InternVL checkpoint (config.json model_type "internvl") takes images in chat messages as OpenAI
`image_url` parts: data: URLs always; local files only under --image-root; http(s) URLs only with
--allow-remote-images (the server then fetches them itself)."""


def _cmd(args) -> int:
    from pathlib import Path

    from lmforge.serve.server import serve
    from lmforge.serve.vision import ImagePolicy

    root = None
    if args.image_root is not None:
        root = Path(args.image_root).expanduser()
        if not root.is_dir():
            raise SystemExit(f"--image-root {args.image_root}: not a directory")
    images = ImagePolicy(image_root=root, allow_remote=args.allow_remote_images, max_images=args.max_images,
                         max_tiles=args.max_tiles or trained_max_tiles(Path(args.model_dir)),
                         max_image_bytes=args.max_image_mb * 1024 * 1024)
    serve(args.model_dir, host=args.host, port=args.port, model_name=args.model_name,
          max_model_len=args.max_model_len, kv_tokens=args.kv_tokens, block_size=args.block_size,
          max_batch=args.max_batch, device=args.device, api_key=args.api_key, log_level=args.log_level,
          images=images)
    return 0


def trained_max_tiles(model_dir, default: int = 12) -> int:
    """The tile budget the checkpoint was trained with (its processor config's max_patches, written
    by lmforge.vl.hf_processor), else InternVL's 12."""
    import json

    config = model_dir / "preprocessor_config.json"
    try:
        return int(json.loads(config.read_text())["max_patches"]) if config.is_file() else default
    except (ValueError, KeyError, TypeError):
        return default


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
    g = p.add_argument_group("images (vision-language checkpoints)")
    g.add_argument("--image-root", default=None, metavar="DIR",
                   help="let clients name local image files (a path or file:// URL) under DIR; default: refused")
    g.add_argument("--allow-remote-images", action="store_true",
                   help="fetch http(s) image URLs; the server then connects wherever a client asks (default: refused)")
    g.add_argument("--max-images", type=_positive, default=4, help="images per request (default: %(default)s)")
    g.add_argument("--max-tiles", type=_positive, default=None,
                   help="tiles (the ViT's input size, 448 px for InternVL3) per image, plus a thumbnail "
                        "when more than one (default: the checkpoint's training budget from its "
                        "preprocessor_config.json, else 12)")
    g.add_argument("--max-image-mb", type=_positive, default=20,
                   help="largest encoded image, also the download limit (default: %(default)s MiB)")
    p.set_defaults(fn=_cmd)
