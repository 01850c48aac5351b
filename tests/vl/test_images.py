"""load_image: paths, bytes and data URLs decode to RGB; bad input is an ImageError naming the source."""

import base64
import io

import pytest
from PIL import Image

from lmforge.vl.images import ImageError, load_image


def encoded(fmt: str, size=(8, 6), mode="RGB", colour=(200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_each_supported_format_from_a_path(tmp_path, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(encoded(fmt))
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (8, 6)
    assert abs(image.getpixel((3, 3))[0] - 200) < 20


def test_bytes_and_data_url_give_the_same_pixels(tmp_path):
    data = encoded("PNG")
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert load_image(data).tobytes() == load_image(url).tobytes() == Image.new("RGB", (8, 6), (200, 10, 10)).tobytes()


def test_transparency_is_composited_over_white():
    image = load_image(encoded("PNG", mode="RGBA", colour=(0, 0, 0, 0)))
    assert image.getpixel((0, 0)) == (255, 255, 255)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    r, g, b = load_image(buffer.getvalue()).getpixel((1, 1))
    assert r > 200 and b < 50


@pytest.mark.parametrize("data", [b"not an image at all", encoded("PNG")[:40], encoded("JPEG")[:-200] + b"\0" * 10,
                                  b"\x89PNG\r\n\x1a\n" + b"\xff" * 64, b""])
def test_corrupt_bytes_raise_image_error_naming_the_source(tmp_path, data):
    path = tmp_path / "broken.png"
    path.write_bytes(data)
    with pytest.raises(ImageError, match="broken.png"):
        load_image(path)
    with pytest.raises(ImageError, match="bytes"):
        load_image(data)


def test_bad_data_urls_and_missing_files(tmp_path):
    with pytest.raises(ImageError, match="data URL.*base64"):
        load_image("data:image/png;base64,@@@not-base64")
    with pytest.raises(ImageError, match="data URL.*not a base64 image data URL"):
        load_image("data:text/plain,hello")
    with pytest.raises(ImageError, match="nothere.png.*no such image file"):
        load_image(tmp_path / "nothere.png")
    with pytest.raises(ImageError, match="remote image URLs"):
        load_image("https://example.com/cat.png")


def test_oversize_is_refused_by_bytes_and_by_pixels(tmp_path):
    data = encoded("PNG", size=(300, 300))
    with pytest.raises(ImageError, match="<913 bytes>.*over the limit of 100;"):
        load_image(data, max_bytes=100)
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(ImageError, match="big.png.*90,000 pixels, over the limit of 10,000"):
        load_image(path, max_pixels=10_000)
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    with pytest.raises(ImageError, match="data URL.*over the limit"):
        load_image(url, max_bytes=100)


def test_decompression_bomb_is_refused_before_decoding():
    # an 8000 x 8000 1-bit PNG is a few KB encoded and 64M pixels decoded, over the 40M default
    buffer = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 100_000
    with pytest.raises(ImageError, match="8000x8000 = 64,000,000 pixels, over the limit"):
        load_image(buffer.getvalue())


def test_pillows_own_bomb_error_becomes_an_image_error(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow raises past twice this, inside open()
    with pytest.raises(ImageError, match="<.* bytes>: refused as a decompression bomb"):
        load_image(encoded("PNG", size=(100, 100)), max_pixels=10**9)


def test_unsupported_format_is_named():
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="TIFF")
    with pytest.raises(ImageError, match="unsupported image format TIFF.*PNG"):
        load_image(buffer.getvalue())
