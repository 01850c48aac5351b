"""Image benchmark task files: your own multiple-choice (MMMU style) or free-form (VQA) image QA.

Paper: InternVL3, arXiv 2504.10479 (section 3: MMMU, MMBench, VQAv2, TextVQA evaluation);
docs/papers.md §10. The scoring follows MMMU (Yue et al. 2023, arXiv 2311.16502) for letters and
VQAv2 (Goyal et al. 2017, arXiv 1612.00837) for free-form answers. One JSON object per line:

    {"id": "q1", "image": "img/chart.png", "question": "Which bar is tallest?",
     "options": ["red", "green", "blue"], "answer": "C", "category": "charts"}
    {"id": "q2", "images": ["a.png", "b.png"], "question": "What colour is the square?",
     "answers": ["red", "red", "dark red"]}

- `image` (one) or `images` (a list): paths relative to the task file, absolute paths or data URLs;
- `question`: a string; `<image>` placeholders, one per image, place the images in it;
- multiple choice: `options`, 2 to 26 strings, and `answer`, the letter (A, B, ...), the 0-based
  index or the text of the right option (an upper-case letter is always read as a letter);
- free-form: `answer` (a string or number) or `answers` (a list of them, e.g. VQAv2's ten);
- optional `id` (default `line<N>`) and `category` (accuracy is also reported per category).

A bad record is reported as `FILE:LINE: ...`, counted and skipped; a file with no usable record
is an error.

Prompts (InternVL's evaluation prompts): multiple choice lists the options as `A. text` lines
after the question and ends with "Answer with the option's letter from the given choices
directly."; free-form ends with "Answer the question using a single word or phrase."

The letter of a generation (`extract_letter`), first rule that applies, letters limited to the
record's options:
1. it starts with a letter, optionally in brackets or after `*`/quotes, not followed by another
   letter or digit: "B", "B.", "(B) cat", "**C**";
2. "answer is X", "answer: X", "option X" (the last such, X possibly bracketed; any case);
3. exactly one distinct letter in brackets "(X)" in the text;
4. exactly one option whose text (normalised as for VQA) appears in the generation;
otherwise no letter, which is scored wrong.

Free-form scoring uses the first line of the generation, normalised (`normalize_vqa`: lower
case, punctuation removed except in numbers, number words zero..ten as digits, articles a/an/the
dropped, spaces collapsed). `exact` is 1 when it equals any normalised answer; with several
answers the score is VQAv2's accuracy min(#answers equal to it / 3, 1) (the official script also
averages over the ten leave-one-out subsets of its ten answers, which gives 0.3 instead of 1/3
for one match and 0.9 instead of 1 for three).
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.eval.jsonl_records import read_records

MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
VQA_INSTRUCTION = "Answer the question using a single word or phrase."
LETTERS = string.ascii_uppercase


class VLTaskError(ValueError):
    """A task file that cannot be used; the message names the file (and the line)."""


@dataclass
class VLRecord:
    id: str
    line: int
    images: list[str]          # resolved paths or data URLs
    question: str
    options: list[str] | None = None
    gold: str | None = None    # the right letter, multiple choice only
    answers: list[str] = field(default_factory=list)  # free-form references
    category: str | None = None

    @property
    def kind(self) -> str:
        return "mc" if self.options is not None else "vqa"


# ---- scoring maths ------------------------------------------------------------------------------

_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten".split())}
_ARTICLES = {"a", "an", "the"}
_PUNCT = re.compile(r"[!\"#$%&'()*+,\-/:;<=>?@\[\\\]^_`{|}~\u3000-\u303f\uff00-\uffef]")
_PERIOD = re.compile(r"(?<!\d)\.|\.(?!\d)")  # a period that is not a decimal point


def normalize_vqa(text: str) -> str:
    """VQAv2-style normalisation: lower case, punctuation to spaces (decimal points kept), number
    words to digits, articles dropped, whitespace collapsed. Chinese punctuation goes too."""
    text = _PERIOD.sub(" ", _PUNCT.sub(" ", text.lower().replace("\u2019", "'").replace("'", "")))
    words = [_NUMBER_WORDS.get(w, w) for w in text.split() if w not in _ARTICLES]
    return " ".join(words)


def first_line(text: str) -> str:
    return next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")


def vqa_scores(prediction: str, answers: list[str]) -> tuple[float, float]:
    """(exact match against any answer, VQAv2 accuracy min(#answers equal / 3, 1)) of a prediction;
    with one answer both are the exact match."""
    pred = normalize_vqa(first_line(prediction))
    refs = [normalize_vqa(a) for a in answers]
    exact = float(pred in refs)
    if len(refs) == 1:
        return exact, exact
    return exact, min(refs.count(pred) / 3.0, 1.0)


def extract_letter(generation: str, options: list[str]) -> str | None:
    """The option letter a generation chose (module docstring, rules 1-4), or None."""
    valid = LETTERS[:len(options)]
    text = generation.strip()
    m = re.match(r"[\s(\[*\"'`]*([A-Za-z])(?![A-Za-z0-9])", text)
    if m and m.group(1) in valid:
        return m.group(1)
    said = re.findall(r"(?:answer\s*(?:is|:)|option)\s*[(\[*]*\s*([A-Z])(?![A-Za-z0-9])", text, re.I)
    said = [s.upper() for s in said if s.upper() in valid]
    if said:
        return said[-1]
    bracketed = {b for b in re.findall(r"\(([A-Z])\)", text) if b in valid}
    if len(bracketed) == 1:
        return bracketed.pop()
    norm = f" {normalize_vqa(text)} "
    named = [LETTERS[i] for i, o in enumerate(options) if normalize_vqa(o) and f" {normalize_vqa(o)} " in norm]
    return named[0] if len(named) == 1 else None


def mc_prompt(question: str, options: list[str]) -> str:
    lines = [question.rstrip()] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]
    return "\n".join(lines + [MC_INSTRUCTION])


def vqa_prompt(question: str) -> str:
    return f"{question.rstrip()}\n{VQA_INSTRUCTION}"


def prompt(record: VLRecord) -> str:
    return mc_prompt(record.question, record.options) if record.options is not None else vqa_prompt(record.question)


def score(record: VLRecord, generation: str) -> dict:
    """The scored item: prediction (letter or normalised answer), `score` (accuracy of this item)
    and, free-form, `exact`."""
    if record.options is not None:
        letter = extract_letter(generation, record.options)
        return {"prediction": letter, "score": float(letter == record.gold)}
    exact, acc = vqa_scores(generation, record.answers)
    return {"prediction": normalize_vqa(first_line(generation)), "score": acc, "exact": exact}


# ---- reading ------------------------------------------------------------------------------------

def _answer_text(value: object, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"field {name!r} must be a string or a number, got {json.dumps(value)[:60]}")
    return str(value)


def _gold_letter(value: object, options: list[str]) -> str:
    n = len(options)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < n:
            raise ValueError(f"'answer' index {value} is outside the {n} options (0..{n - 1})")
        return LETTERS[value]
    if isinstance(value, str):
        v = value.strip()
        # An upper-case letter is a letter; a lower-case one only when no option is that text.
        if v in options and not (len(v) == 1 and v in LETTERS):
            return LETTERS[options.index(v)]
        if len(v) == 1 and v.upper() in LETTERS:
            if v.upper() not in LETTERS[:n]:
                raise ValueError(f"'answer' {v!r} is not one of the {n} options' letters {list(LETTERS[:n])}")
            return v.upper()
    raise ValueError(f"'answer' {json.dumps(value)[:60]} is neither a letter, a 0-based index nor an option's text")


def _image_ref(value: object, base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"an image must be a non-empty string (a path or a data URL), got {json.dumps(value)[:60]}")
    if value.startswith("data:"):
        return value
    if re.match(r"[a-z][a-z0-9+.-]*://", value, re.I):
        raise ValueError(f"image {value[:60]!r}: remote URLs are not fetched; download the image and give its path")
    path = (base / value).resolve()
    if not path.is_file():
        raise ValueError(f"image {value!r} not found (looked for {path})")
    return str(path)


def parse_record(row: object, line: int, base: Path) -> VLRecord:
    """One record; a ValueError names the field that is wrong and what it should be."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    if ("image" in row) == ("images" in row):
        raise ValueError("needs exactly one of 'image' (a path) or 'images' (a list of paths)")
    refs = [row["image"]] if "image" in row else row["images"]
    if not isinstance(refs, list) or not refs:
        raise ValueError("field 'images' must be a non-empty list of paths")
    images = [_image_ref(r, base) for r in refs]
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("field 'question' must be a non-empty string")
    slots = question.count("<image>")
    if slots and slots != len(images):
        raise ValueError(f"the question has {slots} <image> placeholder(s) for {len(images)} image(s)")
    category = row.get("category")
    if category is not None and not isinstance(category, (str, int)):
        raise ValueError("field 'category' must be a string")
    rec = VLRecord(id=str(row.get("id", f"line{line}")), line=line, images=images, question=question,
                   category=None if category is None else str(category))
    if "options" in row:
        options = row["options"]
        if not isinstance(options, list) or not all(isinstance(o, (str, int, float)) and not isinstance(o, bool)
                                                    for o in options):
            raise ValueError("field 'options' must be a list of strings")
        if not 2 <= len(options) <= len(LETTERS):
            raise ValueError(f"field 'options' has {len(options)} entries; multiple choice needs 2 to 26")
        if "answer" not in row:
            raise ValueError("a multiple-choice record needs 'answer' (a letter, an index or an option's text)")
        rec.options = [str(o) for o in options]
        rec.gold = _gold_letter(row["answer"], rec.options)
    elif "answers" in row:
        answers = row["answers"]
        if not isinstance(answers, list) or not answers:
            raise ValueError("field 'answers' must be a non-empty list of strings")
        rec.answers = [_answer_text(a, "answers") for a in answers]
    elif "answer" in row:
        rec.answers = [_answer_text(row["answer"], "answer")]
    else:
        raise ValueError("needs 'options' + 'answer' (multiple choice) or 'answer' / 'answers' (free-form)")
    return rec


def read_vl_tasks(path: str | Path) -> tuple[list[VLRecord], list[str]]:
    """(the usable records, one message per skipped record naming the file, line and field)."""
    path = Path(path)
    if not path.is_file():
        raise VLTaskError(f"{path}: no such task file")
    base = path.resolve().parent
    return read_records(path, lambda row, line: parse_record(row, line, base), VLTaskError)
