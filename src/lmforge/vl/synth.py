"""A generated image-question demo set: images drawn with Pillow from a seed, captions and checkable
questions in English and Chinese, so that image QA accuracy is measurable on held-out images.

Paper: InternVL3 (arXiv 2504.10479), section 2.2 (native multimodal pre-training on image-text
pairs) and 2.3 (SFT on image QA); docs/papers.md §10.

No file ships with the package: every image is drawn on the fly (default 64x64 pixels). The kinds:

    colour, shape   one shape (circle, square, triangle, diamond) of one of 7 colours
    count           1 to 6 equal shapes in distinct cells of a 3x3 grid
    position        one shape near the left, right, top or bottom edge
    bar_max         3 or 4 bars labelled A-D over unit gridlines: which is tallest (a unique maximum)
    bar_value       the same chart: the value (1-9) of one named bar
    line_trend      a line over 5 points that rises or falls throughout
    line_max        a line over 5 points: its highest value (0-9), gridlines at every unit
    digits          a number of 1 to 4 digits written in the image
    word            a short English word written in the image
    zh_text         two Chinese characters written in the image, only when a CJK font is found

Each `VLExample` carries the image, a caption (the image-text pair of pre-training) and a question
with its reference answer, both in `lang` ("en" or "zh"); `answers.check_answer` grades a reply.
The Latin text is drawn with Pillow's built-in scalable font, so it renders the same everywhere.
Chinese text needs a system CJK font (`cjk_font`, or the LMFORGE_CJK_FONT variable): without one the
`zh_text` kind is left out of the default kinds with a logged warning (`unavailable_kinds` says
why), and asking for it explicitly is an error. Chinese questions about the other kinds need no font.

Determinism: example i of stream s under seed k is drawn from `random.Random(f"{k}:{s}:{i}")`, so
it never depends on how many examples are asked for. `demo_split` draws train and held-out from two
streams and drops any held-out example whose image is pixel-identical to a train image. The answer
spaces are small (7 colours, 4 positions), so answers repeat across the split; the images do not.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from lmforge.vl.answers import (BAR_LABELS, COLOURS, KINDS, POSITIONS, RGB, SHAPES, TRENDS, WORDS, ZH_TEXTS,
                                spoken)

log = logging.getLogger(__name__)

LANGS = ("en", "zh")
DEFAULT_SIZE = 64
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
GRID = (215, 215, 215)
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts", "/System/Library/Fonts",
             "/Library/Fonts", "C:/Windows/Fonts")
CJK_FONT_NAMES = ("notosanscjk", "notoserifcjk", "sourcehansans", "sourcehanserif", "wqy", "droidsansfallback",
                  "simhei", "simsun", "msyh", "pingfang", "stheiti", "ukai", "uming", "arphic", "notosanssc",
                  "notoserifsc")


@dataclass(frozen=True)
class VLExample:
    """One generated image with its caption and a checkable question in one language."""

    image: Image.Image
    kind: str  # one of answers.KINDS
    lang: str  # "en" or "zh"
    question: str
    answer: str
    caption: str


# --- fonts ----------------------------------------------------------------------------------------

@lru_cache(maxsize=32)
def _latin_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font (scalable when Pillow has FreeType, as its wheels do)."""
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=1)
def cjk_font() -> Path | None:
    """A font file on this system that draws Chinese characters, or None.

    LMFORGE_CJK_FONT wins when set; otherwise the common font folders are searched for well-known CJK
    families (Noto CJK, Source Han, WenQuanYi, Droid Sans Fallback, SimHei, ...).
    """
    override = os.environ.get("LMFORGE_CJK_FONT")
    if override:
        return Path(override) if _draws_chinese(Path(override)) else None
    for folder in FONT_DIRS:
        root = Path(folder).expanduser()
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            name = path.name.lower().replace("-", "").replace("_", "").replace(" ", "")
            if path.suffix.lower() in (".ttf", ".otf", ".ttc") and any(n in name for n in CJK_FONT_NAMES) \
                    and _draws_chinese(path):
                return path
    return None


def _draws_chinese(path: Path) -> bool:
    """Whether the font has Chinese glyphs: without them, two different characters both render as the
    same missing-glyph box (which does have ink, so an ink test alone would pass a Latin font)."""
    try:
        font = ImageFont.truetype(str(path), 16)
        one, other = font.getmask("中"), font.getmask("国")
        return one.getbbox() is not None and bytes(one) != bytes(other)
    except (OSError, ValueError):
        return False


@lru_cache(maxsize=32)
def _cjk(size: int) -> ImageFont.FreeTypeFont:
    path = cjk_font()
    if path is None:
        raise ValueError("the zh_text kind needs a Chinese font and none was found; install one (Debian/Ubuntu: "
                         "apt-get install fonts-noto-cjk) or set LMFORGE_CJK_FONT to a .ttf/.otf/.ttc file")
    return ImageFont.truetype(str(path), size)


def unavailable_kinds() -> dict[str, str]:
    """Kinds this system cannot draw, with the reason."""
    if cjk_font() is None:
        return {"zh_text": "no CJK font found (searched " + ", ".join(FONT_DIRS) + "; install fonts-noto-cjk or "
                           "set LMFORGE_CJK_FONT)"}
    return {}


def available_kinds() -> tuple[str, ...]:
    """The default kinds: all of them but those `unavailable_kinds` names."""
    missing = unavailable_kinds()
    return tuple(kind for kind in KINDS if kind not in missing)


# --- drawing --------------------------------------------------------------------------------------

def _canvas(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (size, size), BACKGROUND)
    return image, ImageDraw.Draw(image)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _draw_text(text: str, size: int, rng: random.Random, cjk: bool = False) -> Image.Image:
    """`text` centred (with a little jitter) in the largest font that fits 85% of the width."""
    image, draw = _canvas(size)
    font_size = max(6, int(size * 0.6))
    while True:
        font = _cjk(font_size) if cjk else _latin_font(font_size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left <= size * 0.85 or font_size <= 6:
            break
        font_size -= 1
    spare_x, spare_y = max(0, size - (right - left)), max(0, size - (bottom - top))
    x = spare_x / 2 + rng.uniform(-spare_x / 4, spare_x / 4) - left
    y = spare_y / 2 + rng.uniform(-spare_y / 4, spare_y / 4) - top
    draw.text((x, y), text, font=font, fill=rng.choice([INK, RGB["blue"], RGB["red"], RGB["purple"]]))
    return image


def _plot_area(size: int) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a chart's plot, leaving a band at the bottom for labels."""
    return size * 0.08, size * 0.06, size * 0.94, size * 0.80


def _gridlines(draw: ImageDraw.ImageDraw, size: int, top_value: int) -> Callable[[float], float]:
    """Unit gridlines from 0 to top_value; returns value -> y pixel."""
    left, top, right, bottom = _plot_area(size)

    def y_of(value: float) -> float:
        return bottom - (bottom - top) * value / top_value

    for v in range(top_value + 1):
        draw.line((left, y_of(v), right, y_of(v)), fill=GRID if v else INK)
    return y_of


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


# --- the kinds ------------------------------------------------------------------------------------
# Each maker draws one image from rng and returns (image, question, answer, caption) in `lang`.

def _make_shape(rng: random.Random, lang: str, size: int, ask: str):
    shape, colour = rng.choice(list(SHAPES)), rng.choice(list(COLOURS))
    image, draw = _canvas(size)
    r = size * rng.uniform(0.22, 0.34)
    cx, cy = size / 2 + rng.uniform(-0.1, 0.1) * size, size / 2 + rng.uniform(-0.1, 0.1) * size
    _draw_shape(draw, shape, cx, cy, r, RGB[colour])
    s, c = spoken(SHAPES, shape, lang), spoken(COLOURS, colour, lang)
    if lang == "zh":
        caption = f"白色背景上有一个{c}的{s}。"
        question, answer = ("图中的形状是什么颜色？", c) if ask == "colour" else ("图中是什么形状？", s)
    else:
        caption = f"{_article(c).capitalize()} {c} {s} on a white background."
        question, answer = ("What colour is the shape?", c) if ask == "colour" else ("What shape is it?", s)
    return image, question, answer, caption


def _make_count(rng: random.Random, lang: str, size: int):
    n, shape, colour = rng.randint(1, 6), rng.choice(list(SHAPES)), rng.choice(list(COLOURS))
    image, draw = _canvas(size)
    cell = size / 3
    for index in rng.sample(range(9), n):
        cx = (index % 3 + 0.5) * cell + rng.uniform(-0.12, 0.12) * cell
        cy = (index // 3 + 0.5) * cell + rng.uniform(-0.12, 0.12) * cell
        _draw_shape(draw, shape, cx, cy, cell * 0.3, RGB[colour])
    s, c = spoken(SHAPES, shape, lang), spoken(COLOURS, colour, lang)
    if lang == "zh":
        return image, f"图中有几个{s}？", str(n), f"白色背景上有{n}个{c}的{s}。"
    plural = s if n == 1 else s + "s"
    return image, f"How many {s}s are there?", str(n), f"{n} {c} {plural} on a white background."


def _make_position(rng: random.Random, lang: str, size: int):
    where, shape, colour = rng.choice(list(POSITIONS)), rng.choice(list(SHAPES)), rng.choice(list(COLOURS))
    image, draw = _canvas(size)
    edge, middle = rng.uniform(0.14, 0.22) * size, rng.uniform(0.4, 0.6) * size
    cx, cy = {"left": (edge, middle), "right": (size - edge, middle), "top": (middle, edge),
              "bottom": (middle, size - edge)}[where]
    _draw_shape(draw, shape, cx, cy, size * 0.11, RGB[colour])
    p, s, c = spoken(POSITIONS, where, lang), spoken(SHAPES, shape, lang), spoken(COLOURS, colour, lang)
    if lang == "zh":
        return image, "形状在图片的哪一边？（左边、右边、上边、下边）", p, f"一个{c}的{s}位于图片的{p}。"
    return (image, "Is the shape at the left, right, top or bottom?", p,
            f"{_article(c).capitalize()} {c} {s} near the {p} edge of the image.")


def _bar_chart(rng: random.Random, size: int, unique_max: bool) -> tuple[Image.Image, list[int]]:
    n = rng.choice((3, 4))
    while True:
        values = [rng.randint(1, 9) for _ in range(n)]
        if not unique_max or values.count(max(values)) == 1:
            break
    image, draw = _canvas(size)
    y_of = _gridlines(draw, size, 10)
    left, _, right, bottom = _plot_area(size)
    slot = (right - left) / n
    colour = RGB[rng.choice(list(COLOURS))]
    font = _latin_font(max(6, int(size * 0.16)))
    for i, value in enumerate(values):
        x0 = left + slot * (i + 0.2)
        draw.rectangle((x0, y_of(value), x0 + slot * 0.6, bottom), fill=colour)
        draw.text((x0 + slot * 0.3, bottom + 1), BAR_LABELS[i], font=font, fill=INK, anchor="mt")
    return image, values


def _make_bar_max(rng: random.Random, lang: str, size: int):
    image, values = _bar_chart(rng, size, unique_max=True)
    label = BAR_LABELS[values.index(max(values))]
    listing = ", ".join(f"{BAR_LABELS[i]}={v}" for i, v in enumerate(values))
    if lang == "zh":
        return image, "哪根柱子最高？", label, f"一张柱状图，{len(values)}根柱子：{listing}。"
    return image, "Which bar is the tallest?", label, f"A bar chart with {len(values)} bars: {listing}."


def _make_bar_value(rng: random.Random, lang: str, size: int):
    image, values = _bar_chart(rng, size, unique_max=False)
    i = rng.randrange(len(values))
    listing = ", ".join(f"{BAR_LABELS[j]}={v}" for j, v in enumerate(values))
    if lang == "zh":
        return image, f"柱子{BAR_LABELS[i]}的数值是多少？", str(values[i]), f"一张柱状图，{len(values)}根柱子：{listing}。"
    return (image, f"What is the value of bar {BAR_LABELS[i]}?", str(values[i]),
            f"A bar chart with {len(values)} bars: {listing}.")


def _line_chart(rng: random.Random, size: int, values: list[int]) -> Image.Image:
    image, draw = _canvas(size)
    y_of = _gridlines(draw, size, 10)
    left, _, right, _ = _plot_area(size)
    step = (right - left) / (len(values) - 1)
    points = [(left + i * step, y_of(v)) for i, v in enumerate(values)]
    colour = RGB[rng.choice(list(COLOURS))]
    draw.line(points, fill=colour, width=max(1, size // 32))
    for x, y in points:
        draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=colour)
    return image


def _make_line_trend(rng: random.Random, lang: str, size: int):
    trend = rng.choice(list(TRENDS))
    values = sorted(rng.sample(range(10), 5), reverse=trend == "down")
    image = _line_chart(rng, size, values)
    t = spoken(TRENDS, trend, lang)
    if lang == "zh":
        return image, "这条折线是上升还是下降？", t, f"一张折线图，数值从{values[0]}{t}到{values[-1]}。"
    return (image, "Does the line go up or down?", t,
            f"A line chart that goes {t} from {values[0]} to {values[-1]}.")


def _make_line_max(rng: random.Random, lang: str, size: int):
    values = [rng.randint(0, 9) for _ in range(5)]
    image = _line_chart(rng, size, values)
    listing = ", ".join(map(str, values))
    if lang == "zh":
        return image, "折线的最大值是多少？", str(max(values)), f"一张折线图，五个点的数值为{listing}。"
    return image, "What is the highest value of the line?", str(max(values)), f"A line chart of five points: {listing}."


def _make_digits(rng: random.Random, lang: str, size: int):
    digits = rng.randint(1, 4)
    number = str(rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1))
    image = _draw_text(number, size, rng)
    if lang == "zh":
        return image, "图中写的数字是多少？", number, f"白色背景上写着数字{number}。"
    return image, "What number is written in the image?", number, f"The number {number} written on a white background."


def _make_word(rng: random.Random, lang: str, size: int):
    word = rng.choice(WORDS)
    image = _draw_text(word, size, rng)
    if lang == "zh":
        return image, "图中写的是什么英文单词？", word, f"白色背景上写着英文单词“{word}”。"
    return image, "What word is written in the image?", word, f'The word "{word}" written on a white background.'


def _make_zh_text(rng: random.Random, lang: str, size: int):
    text = rng.choice(ZH_TEXTS)
    image = _draw_text(text, size, rng, cjk=True)
    if lang == "zh":
        return image, "图中写的是什么字？", text, f"白色背景上写着“{text}”。"
    return (image, "What Chinese text is written in the image?", text,
            f'The Chinese text "{text}" on a white background.')


MAKERS: dict[str, Callable] = {
    "colour": lambda rng, lang, size: _make_shape(rng, lang, size, "colour"),
    "shape": lambda rng, lang, size: _make_shape(rng, lang, size, "shape"),
    "count": _make_count,
    "position": _make_position,
    "bar_max": _make_bar_max,
    "bar_value": _make_bar_value,
    "line_trend": _make_line_trend,
    "line_max": _make_line_max,
    "digits": _make_digits,
    "word": _make_word,
    "zh_text": _make_zh_text,
}


# --- sets -----------------------------------------------------------------------------------------

def make_example(kind: str, lang: str, rng: random.Random, size: int = DEFAULT_SIZE) -> VLExample:
    """One example of `kind` in `lang`, drawn from `rng`."""
    if kind not in MAKERS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(LANGS)}")
    if size < 16:
        raise ValueError(f"image size {size} is too small to draw on; use at least 16 pixels")
    image, question, answer, caption = MAKERS[kind](rng, lang, size)
    return VLExample(image, kind, lang, question, answer, caption)


@lru_cache(maxsize=1)
def _warn_unavailable() -> None:
    """Say once per process which default kinds are left out, and why."""
    for kind, reason in unavailable_kinds().items():
        log.warning("vl demo set: skipping kind %r: %s", kind, reason)


def _resolve_kinds(kinds: Sequence[str] | None) -> tuple[str, ...]:
    if kinds is None:
        _warn_unavailable()
        return available_kinds()
    unknown = [kind for kind in kinds if kind not in MAKERS]
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; expected some of {', '.join(KINDS)}")
    if not kinds:
        raise ValueError("kinds is empty; leave it out for every available kind")
    return tuple(kinds)


def generate(n: int, seed: int = 0, stream: str = "train", *, size: int = DEFAULT_SIZE,
             kinds: Sequence[str] | None = None, langs: Sequence[str] = LANGS) -> list[VLExample]:
    """The first `n` examples of a stream: example i cycles through the kinds (i mod their number) and
    draws its language and content from `random.Random(f"{seed}:{stream}:{i}")`."""
    chosen = _resolve_kinds(kinds)
    if not langs:
        raise ValueError("langs is empty; use ('en',), ('zh',) or both")
    out = []
    for i in range(n):
        rng = random.Random(f"{seed}:{stream}:{i}")
        out.append(make_example(chosen[i % len(chosen)], rng.choice(tuple(langs)), rng, size))
    return out


def image_digest(image: Image.Image) -> str:
    """A content hash of the pixels (size and mode included)."""
    return hashlib.sha1(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()


def demo_split(n_train: int, n_heldout: int, seed: int = 0, *, size: int = DEFAULT_SIZE,
               kinds: Sequence[str] | None = None, langs: Sequence[str] = LANGS
               ) -> tuple[list[VLExample], list[VLExample]]:
    """(train, held-out): two streams of one seed; no held-out image equals a train image."""
    train = generate(n_train, seed, "train", size=size, kinds=kinds, langs=langs)
    seen = {image_digest(example.image) for example in train}
    chosen = _resolve_kinds(kinds) if kinds is not None else available_kinds()
    heldout: list[VLExample] = []
    i = 0
    while len(heldout) < n_heldout:
        if i > 100 * (n_heldout + 10):
            raise RuntimeError(f"only {len(heldout)} of {n_heldout} held-out images differ from the train set; "
                               "ask for fewer examples or a larger image size")
        rng = random.Random(f"{seed}:heldout:{i}")
        example = make_example(chosen[len(heldout) % len(chosen)], rng.choice(tuple(langs)), rng, size)
        if image_digest(example.image) not in seen:
            heldout.append(example)
        i += 1
    return train, heldout
