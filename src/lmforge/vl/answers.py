"""The answer spaces of the generated image questions, and the checker that grades a model's reply.

Paper: InternVL3 (arXiv 2504.10479), sections 2.3-2.4 (accuracy on held-out data; MPO's preference
pairs come from a checker); docs/papers.md §10. The images themselves are drawn in `synth.py`.

Every kind of question has a small closed answer space written below in English and Chinese. The
checker normalises both the reference and the prediction to one canonical key and compares keys:

* case, surrounding whitespace, a trailing `<|im_end|>`, punctuation (ASCII and full-width) and a
  leading article ("a", "an", "the") are ignored;
* synonyms count: "红"/"红色", "purple"/"violet", "左"/"左边"/"左侧", "上升"/"向上"/"up";
* numbers may be digits, English words (zero..twenty) or Chinese numerals (零..九十九, 两);
* a reply in the other language is accepted when it names the same thing ("red" to a question asked
  in Chinese): the demo measures what the model saw, not which language it answered in;
* text-reading kinds (`digits`, `word`, `zh_text`) must match exactly after that normalisation.

Anything else is wrong: a sentence around the answer ("The colour is red.") is not parsed, since
the demo trains the model to answer with the bare value.
"""

from __future__ import annotations

import random
import re
import unicodedata

END_OF_TURN = "<|im_end|>"

# canonical key: (English, Chinese, other accepted spellings)
COLOURS = {
    "red": ("red", "红色", ("红",)),
    "green": ("green", "绿色", ("绿",)),
    "blue": ("blue", "蓝色", ("蓝",)),
    "yellow": ("yellow", "黄色", ("黄",)),
    "orange": ("orange", "橙色", ("橙", "橘色", "橘黄色")),
    "purple": ("purple", "紫色", ("紫", "violet")),
    "black": ("black", "黑色", ("黑",)),
}
RGB = {"red": (220, 30, 30), "green": (30, 160, 50), "blue": (30, 70, 220), "yellow": (235, 200, 0),
       "orange": (245, 130, 20), "purple": (130, 40, 170), "black": (20, 20, 20)}
SHAPES = {
    "circle": ("circle", "圆形", ("圆", "圆圈", "round")),
    "square": ("square", "正方形", ("方形", "方块", "正方")),
    "triangle": ("triangle", "三角形", ("三角",)),
    "diamond": ("diamond", "菱形", ("rhombus", "菱")),
}
POSITIONS = {
    "left": ("left", "左边", ("左", "左侧", "左面", "左方")),
    "right": ("right", "右边", ("右", "右侧", "右面", "右方")),
    "top": ("top", "上边", ("上", "上方", "上面", "顶部", "up", "upper", "above")),
    "bottom": ("bottom", "下边", ("下", "下方", "下面", "底部", "down", "lower", "below")),
}
TRENDS = {
    "up": ("up", "上升", ("向上", "升", "increases", "increasing", "rises", "goes up")),
    "down": ("down", "下降", ("向下", "降", "decreases", "decreasing", "falls", "goes down")),
}
BAR_LABELS = ("A", "B", "C", "D")
WORDS = ("cat", "dog", "sun", "red", "box", "map", "pen", "cup", "hat", "tree", "bird", "fish", "book", "star",
         "moon", "cake", "door", "lamp", "ship", "rain", "blue", "milk", "road", "leaf")
ZH_TEXTS = ("山水", "中国", "你好", "天空", "大海", "学习", "月亮", "花朵", "朋友", "太阳", "春天", "火车", "白云",
            "小猫", "老师", "音乐")
EN_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
              "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")
ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}

VOCABULARIES = {"colour": COLOURS, "shape": SHAPES, "position": POSITIONS, "line_trend": TRENDS}
NUMBER_KINDS = ("count", "bar_value", "line_max")
KINDS = ("colour", "shape", "count", "position", "bar_max", "bar_value", "line_trend", "line_max", "digits", "word",
         "zh_text")

_PUNCTUATION = re.compile(r"[\s\.,;:!\?\"'`“”‘’。，；：！？、（）()\[\]【】]+")


def normalize(text: str) -> str:
    """Lower case, NFKC (full-width to ASCII), no trailing end-of-turn, no punctuation or spaces at the
    ends, inner whitespace collapsed, no leading English article."""
    text = unicodedata.normalize("NFKC", text).strip()
    if text.endswith(END_OF_TURN):
        text = text[: -len(END_OF_TURN)]
    text = _PUNCTUATION.sub(" ", text.lower()).strip()
    return re.sub(r"^(a|an|the) ", "", text)


def vocabulary_key(vocabulary: dict, text: str) -> str | None:
    """The canonical key `text` names in `vocabulary` (English, Chinese or a synonym), else None."""
    text = normalize(text)
    for key, (en, zh, others) in vocabulary.items():
        if text in (en, zh, *others):
            return key
    return None


def parse_number(text: str) -> int | None:
    """A whole number from digits, an English word (zero..twenty) or Chinese numerals up to 99."""
    text = normalize(text).replace(",", "").replace(" ", "")
    if text.isdigit():
        return int(text)
    if text in EN_NUMBERS:
        return EN_NUMBERS.index(text)
    return _zh_number(text)


def _zh_number(text: str) -> int | None:
    if not text:
        return None
    if "十" not in text:
        return ZH_DIGITS.get(text) if len(text) == 1 else None
    tens, _, ones = text.partition("十")
    if len(tens) > 1 or len(ones) > 1 or "两" in (tens, ones):  # 两 says 2 alone, never inside 二十二
        return None
    tens_value = 1 if tens == "" else ZH_DIGITS.get(tens)
    ones_value = 0 if ones == "" else ZH_DIGITS.get(ones)
    if tens_value is None or ones_value is None or tens_value == 0:
        return None
    return tens_value * 10 + ones_value


def answer_key(kind: str, text: str) -> str | None:
    """The canonical form of an answer to a question of `kind`; None when it is not a valid answer."""
    if kind in VOCABULARIES:
        return vocabulary_key(VOCABULARIES[kind], text)
    if kind in NUMBER_KINDS:
        value = parse_number(text)
        return None if value is None else str(value)
    if kind == "bar_max":
        text = re.sub(r"^(bar|柱子|柱)\s*|\s*(bar|柱子|柱)$", "", normalize(text))
        return text.upper() if text.upper() in BAR_LABELS else None
    if kind == "digits":
        text = normalize(text).replace(",", "").replace(" ", "")
        return text if text.isdigit() else None
    if kind in ("word", "zh_text"):
        return normalize(text).replace(" ", "") or None
    raise ValueError(f"unknown question kind {kind!r}; expected one of {', '.join(KINDS)}")


def check_answer(example_or_kind, prediction: str, answer: str | None = None) -> bool:
    """Whether `prediction` answers the question correctly.

    Pass a `VLExample` (its kind and answer are used), or a kind name and the reference `answer`.
    """
    if isinstance(example_or_kind, str):
        kind = example_or_kind
        if answer is None:
            raise ValueError("check_answer(kind, prediction) needs answer=: the reference answer to compare with")
    else:
        kind, answer = example_or_kind.kind, answer if answer is not None else example_or_kind.answer
    reference = answer_key(kind, answer)
    if reference is None:
        raise ValueError(f"the reference answer {answer!r} is not a valid {kind!r} answer")
    return answer_key(kind, prediction) == reference


def spoken(vocabulary: dict, key: str, lang: str) -> str:
    """How `key` of a vocabulary is said in `lang` ("en" or "zh")."""
    en, zh, _ = vocabulary[key]
    return zh if lang == "zh" else en


def wrong_answer(example, rng: random.Random) -> str:
    """A well-formed answer of the same kind and language that `check_answer` rejects (for MPO pairs
    and for tests)."""
    kind, lang, answer = example.kind, example.lang, example.answer
    for _ in range(1000):
        if kind in VOCABULARIES:
            candidate = spoken(VOCABULARIES[kind], rng.choice(list(VOCABULARIES[kind])), lang)
        elif kind in NUMBER_KINDS:
            candidate = str(max(0, int(answer_key(kind, answer)) + rng.choice((-2, -1, 1, 2))))
        elif kind == "bar_max":
            candidate = rng.choice(BAR_LABELS)
        elif kind == "digits":
            i = rng.randrange(len(answer))
            candidate = answer[:i] + str((int(answer[i]) + rng.randint(1, 9)) % 10) + answer[i + 1:]
        elif kind == "word":
            candidate = rng.choice(WORDS)
        elif kind == "zh_text":
            candidate = rng.choice(ZH_TEXTS)
        else:
            raise ValueError(f"unknown question kind {kind!r}")
        if not check_answer(kind, candidate, answer):
            return candidate
    raise RuntimeError(f"no wrong answer found for {kind!r} {answer!r}")
