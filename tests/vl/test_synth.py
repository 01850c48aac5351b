"""The generated demo set: deterministic by seed, disjoint splits, every kind drawn in both languages
and gradable by check_answer (the true answer passes, a wrong one fails)."""

import logging
import random
from pathlib import Path

import pytest

from lmforge.vl import synth
from lmforge.vl.answers import KINDS, answer_key, check_answer, parse_number, wrong_answer
from lmforge.vl.synth import available_kinds, demo_split, generate, image_digest, make_example, unavailable_kinds


def test_same_seed_same_examples_and_other_seed_differs():
    a, b, c = generate(22, seed=5), generate(22, seed=5), generate(22, seed=6)
    assert [(e.kind, e.lang, e.question, e.answer, e.caption, image_digest(e.image)) for e in a] == \
           [(e.kind, e.lang, e.question, e.answer, e.caption, image_digest(e.image)) for e in b]
    assert [image_digest(e.image) for e in a] != [image_digest(e.image) for e in c]
    assert [image_digest(e.image) for e in generate(5, seed=5)] == [image_digest(e.image) for e in a[:5]]


def test_demo_split_is_disjoint_by_image_and_covers_every_kind():
    train, heldout = demo_split(200, 60, seed=1)
    assert len(train) == 200 and len(heldout) == 60
    assert not {image_digest(e.image) for e in train} & {image_digest(e.image) for e in heldout}
    assert {e.kind for e in heldout} == set(available_kinds()) == {e.kind for e in train}
    assert {e.lang for e in train} == {"en", "zh"}


def test_image_size_is_configurable():
    assert {e.image.size for e in generate(len(KINDS), size=96, kinds=available_kinds())} == {(96, 96)}
    with pytest.raises(ValueError, match="too small"):
        generate(1, size=8)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "zh_text"])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_kind_is_checkable(kind, lang):
    rng = random.Random(f"{kind}{lang}")
    for _ in range(12):
        example = make_example(kind, lang, rng)
        assert example.image.mode == "RGB" and example.image.size == (64, 64)
        assert example.question and example.caption and example.answer
        assert check_answer(example, example.answer)
        assert check_answer(example, f"  {example.answer.upper()}。<|im_end|>")
        assert not check_answer(example, wrong_answer(example, rng))
        assert not check_answer(example, "I do not know")
        if lang == "zh":
            assert any("\u4e00" <= ch <= "\u9fff" for ch in example.question + example.caption)


def test_zh_text_is_skipped_cleanly_without_a_cjk_font(monkeypatch, caplog):
    monkeypatch.setenv("LMFORGE_CJK_FONT", "/nonexistent/font.ttf")
    synth.cjk_font.cache_clear()
    synth._warn_unavailable.cache_clear()
    synth._cjk.cache_clear()
    try:
        assert "zh_text" in unavailable_kinds() and "zh_text" not in available_kinds()
        with caplog.at_level(logging.WARNING, logger="lmforge.vl.synth"):
            examples = generate(30)
        assert "zh_text" not in {e.kind for e in examples}
        assert "skipping kind 'zh_text'" in caplog.text
        with pytest.raises(ValueError, match="fonts-noto-cjk"):
            generate(1, kinds=["zh_text"])
    finally:
        synth.cjk_font.cache_clear()
        synth._warn_unavailable.cache_clear()
        synth._cjk.cache_clear()


def test_a_latin_font_is_not_taken_for_a_cjk_one(monkeypatch):
    latin = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not latin.is_file():
        pytest.skip("DejaVuSans is not installed")
    monkeypatch.setenv("LMFORGE_CJK_FONT", str(latin))
    synth.cjk_font.cache_clear()
    try:
        assert synth.cjk_font() is None
    finally:
        synth.cjk_font.cache_clear()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_zh_text_kind(monkeypatch, lang):
    if synth.cjk_font() is None:  # exercise the drawing and checking with a stand-in font
        monkeypatch.setattr(synth, "_cjk", synth._latin_font)
    example = make_example("zh_text", lang, random.Random(0))
    assert example.answer in synth.ZH_TEXTS and example.image.size == (64, 64)
    assert check_answer(example, example.answer) and not check_answer(example, wrong_answer(example, random.Random(1)))


@pytest.mark.parametrize("kind, answer, prediction, ok", [
    ("count", "3", "three", True), ("count", "3", "三", True), ("count", "3", "3个", False),
    ("count", "2", "两", True), ("line_max", "10", "十", True), ("bar_value", "7", "Seven.", True),
    ("colour", "red", "红色", True), ("colour", "红色", "红", True), ("colour", "red", "the red", True),
    ("colour", "red", "The colour is red.", False), ("position", "左边", "left", True), ("position", "top", "上方", True),
    ("line_trend", "上升", "Up", True), ("line_trend", "down", "上升", False), ("bar_max", "B", "bar b", True),
    ("bar_max", "B", "柱子B", True), ("bar_max", "B", "C", False), ("digits", "4721", "4,721", True),
    ("digits", "4721", "4712", False), ("word", "cat", "Cat!", True), ("word", "cat", "cats", False),
    ("shape", "circle", "圆", True), ("shape", "正方形", "square", True), ("shape", "circle", "square", False),
])
def test_normalisation(kind, answer, prediction, ok):
    assert check_answer(kind, prediction, answer) is ok


def test_number_words_and_bad_references():
    assert [parse_number(t) for t in ("零", "十一", "二十", "九十九", "twenty", "12")] == [0, 11, 20, 99, 20, 12]
    assert parse_number("十两") is None and parse_number("abc") is None
    assert answer_key("colour", "magenta") is None
    with pytest.raises(ValueError, match="needs answer="):
        check_answer("colour", "red")
    with pytest.raises(ValueError, match="not a valid 'colour' answer"):
        check_answer("colour", "red", "magenta")
    with pytest.raises(ValueError, match="unknown question kind"):
        check_answer("smell", "x", "y")
