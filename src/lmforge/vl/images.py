"""Loading one image safely: from a file path, raw bytes or a `data:image/...;base64,` URL.

Paper: InternVL3 (arXiv 2504.10479), section 2.1 (the ViT takes RGB tiles); docs/papers.md §10.

Every image the data readers, the evaluator and the server see comes through `load_image`, so this is
where bad input stops: a file that is too large, a decoded size past `max_pixels` (a decompression
bomb: a few KB of PNG that decodes to gigapixels), a format outside `FORMATS`, or bytes that do not
decode all raise `ImageError`, a ValueError whose message names the source and says what to do.
Nothing here raises anything else for bad bytes: Pillow's decoders fail in many ways (OSError,
SyntaxError, struct.error, ...), and all of them become an ImageError.

The result is always an RGB image, fully decoded. An animated GIF or WEBP gives its first frame.
Transparency is composited over white, as transformers' `convert_to_rgb` does (the InternVL
processor we export to), rather than dropped (which turns transparent pixels black).
Remote http(s) URLs are refused here: fetching is the server's decision (see `lmforge.serve`).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import warnings
from pathlib import Path

from PIL import Image

DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # encoded size: a 20 MB PNG/JPEG is already a large photograph
DEFAULT_MAX_PIXELS = 40_000_000  # decoded size: 40 MP is ~160 MB as RGBA; beyond that we refuse
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
_ACCEPTED = {*FORMATS, "MPO"}  # Pillow names a phone camera's multi-picture JPEG "MPO"; it is a JPEG
_DATA_URL = re.compile(r"data:image/([A-Za-z0-9.+-]+);base64,", re.IGNORECASE)

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image


class ImageError(ValueError):
    """An image that cannot be used; the message names the source and what to do."""


def load_image(source: ImageSource, *, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
               name: str | None = None) -> Image.Image:
    """The image at `source` as a decoded RGB `PIL.Image`, or ImageError.

    `source` is a path (str or PathLike), encoded bytes, a `data:image/<fmt>;base64,...` URL, or an
    already-open PIL image (only the pixel limit and the RGB conversion apply to it). `name` is how
    messages refer to the source (default: the path, "data URL" or "<N bytes>").
    """
    if isinstance(source, Image.Image):
        where = name or "in-memory image"
        _check_pixels(source.size, max_pixels, where)
        return _to_rgb(source)
    data, where = _read_bytes(source, max_bytes, name)
    return decode_image(data, where, max_pixels=max_pixels)


def describe_source(source: ImageSource) -> str:
    """How error messages name a source: the path, "data URL", or "<N bytes>"."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, str) and source[:5].lower() == "data:":
        return "data URL"
    if isinstance(source, Image.Image):
        return "in-memory image"
    return str(source)


def decode_image(data: bytes, where: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode encoded image bytes (already size-checked) into RGB; ImageError names `where`."""
    if not data:
        raise ImageError(f"{where}: empty image (0 bytes); supply a {'/'.join(FORMATS)} file")
    try:
        with warnings.catch_warnings():
            # Pillow warns past its own MAX_IMAGE_PIXELS; our limit is checked just below instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in _ACCEPTED:
                raise ImageError(f"{where}: unsupported image format {image.format}; convert it to one of "
                                 f"{', '.join(FORMATS)} (PNG or JPEG are safest)")
            _check_pixels(image.size, max_pixels, where)
            image.seek(0)  # an animation's first frame
            image.load()
            return _to_rgb(image)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"{where}: refused as a decompression bomb ({e}); downscale the image below "
                         f"{max_pixels:,} pixels") from None
    except Exception as e:  # noqa: BLE001 - Pillow's decoders raise many types for corrupt bytes; none may escape
        raise ImageError(f"{where}: cannot decode the image ({type(e).__name__}: {e}); the file is corrupt, "
                         f"truncated or not an image: re-export it as PNG or JPEG") from None


def _read_bytes(source: ImageSource, max_bytes: int, name: str | None) -> tuple[bytes, str]:
    where = name or describe_source(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, str) and source[:5].lower() == "data:":
        data = _data_url_bytes(source, max_bytes, where)
    elif isinstance(source, str) and source[:7].lower() in ("http://", "https:/"):
        raise ImageError(f"{where}: remote image URLs are not fetched here; download the file and pass its "
                         "path, or send it as a data: URL")
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{where}: no such image file; check the path (relative paths are resolved "
                             "against the data file's folder)")
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageError(f"{where}: image file is {size:,} bytes, over the limit of {max_bytes:,}; "
                             "downscale or recompress it")
        data = path.read_bytes()
    else:
        raise ImageError(f"{where}: expected a path, bytes or a data: URL, got {type(source).__name__}")
    if len(data) > max_bytes:
        raise ImageError(f"{where}: image is {len(data):,} bytes, over the limit of {max_bytes:,}; downscale or "
                         "recompress it")
    return data, where


def _data_url_bytes(url: str, max_bytes: int, where: str) -> bytes:
    match = _DATA_URL.match(url)
    if not match:
        raise ImageError(f"{where}: not a base64 image data URL; expected 'data:image/<format>;base64,<data>'")
    payload = url[match.end():]
    if len(payload) * 3 // 4 > max_bytes + 3:  # refuse before decoding, not after
        raise ImageError(f"{where}: image is about {len(payload) * 3 // 4:,} bytes, over the limit of "
                         f"{max_bytes:,}; downscale or recompress it")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError(f"{where}: the base64 payload is invalid ({e}); encode the file with standard base64") \
            from None


def _check_pixels(size: tuple[int, int], max_pixels: int, where: str) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(f"{where}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(f"{where}: image is {width}x{height} = {width * height:,} pixels, over the limit of "
                         f"{max_pixels:,}; downscale it (tiling resizes to at most max_tiles x tile_size^2 "
                         "pixels anyway)")


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited over white (transformers' convert_to_rgb)."""
    if image.mode == "RGB":
        return image
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
