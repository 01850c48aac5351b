"""Images in chat requests: OpenAI-style `image_url` content parts -> InternVL prompt embeddings.

InternVL3 (arXiv 2504.10479, sections 2.1-2.2; docs/papers.md §10) puts each image in the prompt as
`<img>` + one `<IMG_CONTEXT>` per visual token + `</img>`: the image's dynamic tiles
(lmforge.vl.tiling) times the model's tokens per tile. The server renders the messages with those
markers, tokenizes them with the model's chat template, and hands the engine the prompt's input
embeddings (`InternVL.embed`: the vision features spliced in at the `<IMG_CONTEXT>` slots) and its
V2PE positions (image tokens advance by the model's `v2pe_inference_delta`).

Where an image may come from (`ImagePolicy`):
- `data:image/<format>;base64,...` URLs, always;
- local files (a path or a `file://` URL) only under `image_root`, resolved with symlinks, so that
  a client cannot read the server's other files; without a root, refused;
- `http(s)://` URLs only with `allow_remote`: the server then fetches them itself (at most
  `max_image_bytes`, `remote_timeout` seconds), which lets clients make it connect anywhere it can.

Every problem is an `ImageInputError` naming the message and part (`messages.2.content.1`) and what
to do; the app answers it with HTTP 400.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from lmforge.tokenizer.special import IMAGE_TOKENS, IMG_CONTEXT, image_text

DEFAULT_MAX_IMAGES = 4  # per request
DEFAULT_MAX_TILES = 12  # per image, the thumbnail not counted (InternVL's max_dynamic_patch)
DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024  # encoded size of one image
REMOTE_TIMEOUT = 10.0  # seconds, per remote image


class ImageInputError(ValueError):
    """Bad image input in a request; `param` names the message part."""

    def __init__(self, message: str, param: str):
        super().__init__(f"{param}: {message}")
        self.param = param


@dataclass
class ImagePolicy:
    """Where images may come from and how many and how large they may be."""

    image_root: Path | None = None  # local files allowed only under this folder
    allow_remote: bool = False  # fetch http(s) URLs
    max_images: int = DEFAULT_MAX_IMAGES
    max_tiles: int = DEFAULT_MAX_TILES
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    remote_timeout: float = REMOTE_TIMEOUT


def message_parts(content: str | list[dict], index: int) -> list[tuple[str, str]]:
    """A message's content as ("text", text) and ("image", url) parts, in order; ImageInputError for
    parts of another shape."""
    if isinstance(content, str):
        return [("text", content)]
    parts = []
    for j, part in enumerate(content):
        where = f"messages.{index}.content.{j}"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(("text", part["text"]))
        elif kind == "image_url":
            spec = part.get("image_url")
            url = spec.get("url") if isinstance(spec, dict) else spec
            if not isinstance(url, str) or not url:
                raise ImageInputError('an image_url part needs {"image_url": {"url": "data:image/png;base64,..."}}',
                                      where)
            parts.append(("image", url))
        else:
            raise ImageInputError(f"content part of type {kind!r}: send {{'type': 'text', 'text': ...}} or "
                                  "{'type': 'image_url', 'image_url': {'url': ...}} parts", where)
    return parts


def image_parts(messages) -> list[str]:
    """Where the image parts of `messages` (objects with `.content`) are: ["messages.0.content.1", ...]."""
    return [f"messages.{i}.content.{j}" for i, m in enumerate(messages) if isinstance(m.content, list)
            for j, p in enumerate(m.content) if isinstance(p, dict) and p.get("type") == "image_url"]


def fetch_image_bytes(url: str, policy: ImagePolicy, where: str) -> bytes | str:
    """What `lmforge.vl.images.load_image` should read for `url`: a data URL as is, a local path
    (checked against the image root), or the bytes of a remote URL (when allowed)."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data":
        return url
    if scheme in ("http", "https"):
        if not policy.allow_remote:
            raise ImageInputError("remote image URLs are refused by this server; send the image as a data: URL "
                                  "(data:image/png;base64,...), or start the server with --allow-remote-images",
                                  where)
        return _download(url, policy, where)
    if scheme == "file":
        path = urllib.parse.unquote(urllib.parse.urlparse(url).path)
    elif len(scheme) > 1:  # a Windows drive letter is one letter; anything longer is a scheme
        raise ImageInputError(f"unsupported image URL scheme {scheme!r}; use a data: URL, a file path or "
                              "file:// URL under the server's --image-root, or http(s) with --allow-remote-images",
                              where)
    else:
        path = url
    return str(_local_path(path, policy, where))


def _local_path(path: str, policy: ImagePolicy, where: str) -> Path:
    if policy.image_root is None:
        raise ImageInputError("local image files are refused by this server; send the image as a data: URL, or "
                              "start the server with --image-root DIR to allow files under DIR", where)
    root = Path(policy.image_root).resolve()
    try:
        target = (root / path).resolve()  # an absolute path stays absolute; symlinks are followed
        inside, found = target.is_relative_to(root), target.is_file()
    except (OSError, ValueError) as e:  # a NUL byte, a name too long, a loop of links
        raise ImageInputError(f"{path[:200]!r} is not a usable file path ({e})", where) from None
    if not inside:
        raise ImageInputError(f"{path} is outside the server's image root; only files under --image-root "
                              "may be read (paths relative to it work too)", where)
    if not found:
        raise ImageInputError(f"no such image file under the image root: {path}", where)
    return target


class _HTTPRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (urllib's default also follows ftp://)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlparse(newurl).scheme.lower() not in ("http", "https"):
            raise urllib.error.URLError(f"redirected to {newurl}, which is not http(s)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _download(url: str, policy: ImagePolicy, where: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "lmforge-serve"})
    opener = urllib.request.build_opener(_HTTPRedirectsOnly)
    try:
        with opener.open(request, timeout=policy.remote_timeout) as r:
            data = r.read(policy.max_image_bytes + 1)  # never more than the limit into memory
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ImageInputError(f"cannot fetch {url} ({e}); check the URL, or send the image as a data: URL",
                              where) from None
    if len(data) > policy.max_image_bytes:
        raise ImageInputError(f"the image at {url} is over the limit of {policy.max_image_bytes:,} bytes; "
                              "downscale or recompress it", where)
    return data


class VisionPrompter:
    """Turns chat messages with images into (prompt ids, prompt embeddings, V2PE positions) for an
    InternVL model (`lmforge.model.vision.InternVL`) and its tokenizer."""

    def __init__(self, model, tokenizer, policy: ImagePolicy | None = None):
        import importlib.util

        if importlib.util.find_spec("PIL") is None:  # at start-up, not at the first image
            raise ImportError("serving a vision-language model needs Pillow: pip install 'lmforge[serve,vl]'")
        missing = [t for t in IMAGE_TOKENS if tokenizer.token_to_id(t) is None]
        if missing:
            raise ValueError(f"the tokenizer has no {', '.join(missing)} token(s); an InternVL checkpoint's "
                             "tokenizer needs <img>, </img> and <IMG_CONTEXT> (train_bpe(..., "
                             "extra_special_tokens=IMAGE_TOKENS))")
        context_id = tokenizer.token_to_id(IMG_CONTEXT)
        if context_id != model.cfg.image_token_id:
            raise ValueError(f"the model's image_token_id is {model.cfg.image_token_id} but the tokenizer's "
                             f"{IMG_CONTEXT} is {context_id}; the checkpoint's config.json and tokenizer disagree")
        self.model, self.tokenizer = model, tokenizer
        self.policy = policy or ImagePolicy()
        self.marker_ids = {tokenizer.token_to_id(t) for t in IMAGE_TOKENS}
        self._lock = threading.Lock()  # one vision forward at a time

    @property
    def tile_size(self) -> int:
        return self.model.cfg.vision.image_size

    def render(self, messages) -> tuple[list[dict], list]:
        """(messages with their content as one string, images as PIL RGB images in prompt order); each
        image part becomes `<img>` + `<IMG_CONTEXT>` x (tiles x num_image_token) + `</img>` + newline."""
        from lmforge.vl.images import ImageError, load_image
        from lmforge.vl.tiling import num_tiles

        rendered, images = [], []
        per_tile = self.model.cfg.num_image_token
        for i, m in enumerate(messages):
            text = []
            for j, (kind, value) in enumerate(message_parts(m.content, i)):
                where = f"messages.{i}.content.{j}"
                if kind == "text":
                    if any(t in value for t in IMAGE_TOKENS):
                        raise ImageInputError(f"text must not contain the image markers {', '.join(IMAGE_TOKENS)}; "
                                              "send images as image_url parts", where)
                    text.append(value)
                    continue
                if m.role != "user":
                    raise ImageInputError(f"images are taken in user messages only, not in a {m.role!r} message",
                                          where)
                if len(images) == self.policy.max_images:
                    raise ImageInputError(f"more than {self.policy.max_images} images in one request; send at most "
                                          f"{self.policy.max_images} (the server's --max-images)", where)
                source = fetch_image_bytes(value, self.policy, where)
                try:
                    image = load_image(source, max_bytes=self.policy.max_image_bytes, name="the image")
                except ImageError as e:
                    raise ImageInputError(str(e), where) from None
                except OSError as e:  # a file the server may not read
                    raise ImageInputError(f"cannot read the image file ({e.strerror or e})", where) from None
                tiles = num_tiles(image.width, image.height, self.tile_size, self.policy.max_tiles)
                images.append(image)
                text.append(image_text(tiles, per_tile) + "\n")
            rendered.append({"role": m.role, "content": "".join(text)})
        return rendered, images

    def encode(self, prompt: list[int], images: list) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(prompt embeddings (T, dim), V2PE positions (T,)) of a rendered prompt's ids and its images;
        (None, None) without images. Call from a worker thread: the vision forward takes a while."""
        if not images:
            return None, None
        from lmforge.model.vision import v2pe_position_ids
        from lmforge.vl.tiling import pixel_values

        cfg = self.model.cfg
        param = next(self.model.parameters())
        tiles = torch.cat([pixel_values(im, self.tile_size, self.policy.max_tiles) for im in images])
        ids = torch.tensor([prompt], device=param.device)
        with self._lock, torch.inference_mode():
            embeds = self.model.embed(ids, tiles.to(param.device, param.dtype))[0]
        positions = v2pe_position_ids(ids, cfg.image_token_id, cfg.v2pe_inference_delta)[0]
        return embeds, positions
