"""Image-text data on disk: InternVL's chat JSONL, written from the demo set and read back safely.

Paper: InternVL3 (arXiv 2504.10479), sections 2.2-2.3 (image-text data for native multimodal
pre-training and SFT); docs/papers.md §10. The format is InternVL's own fine-tuning format, one
record a line:

    {"id": "colour-000001",
     "image": "images/000001.png"            (one path)  or  ["a.png", "b.png"]  (several)  or absent,
     "image_base64": "<base64 or data: URL>" (or a list: the images inline, instead of "image"),
     "conversations": [{"from": "human", "value": "<image>\\nWhat colour is the shape?"},
                       {"from": "gpt", "value": "red"}],
     ...any other keys (kind, lang, task) are kept as `meta`}

Relative image paths are resolved against the JSONL file's folder (or `image_root`). Each `<image>`
placeholder in the conversation stands for the next image, in order; the model side later expands it
to `<img><IMG_CONTEXT>...</img>`. InternVL's convention for a record with exactly one image and no
placeholder: `<image>\\n` is put before the first human turn. With two or more images the
placeholders must be written, since their places cannot be guessed.

Bad records are counted and skipped, as in `lmforge.align.conversations` (the same `Skipped`
counter, one count per reason, the first places as file:line: reason): a line that is not JSON,
empty or missing conversations, a bad role or turn, an `image` field of the wrong type or both
`image` and `image_base64`, a missing or corrupt image (any `images.ImageError`: too large, a
decompression bomb, an unsupported format), and more or fewer `<image>` placeholders than images.
`strict=True` raises `ChatDataError` instead; a file whose records are all bad is an error either way.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from lmforge.align.conversations import ChatDataError, Skipped, conversation_messages
from lmforge.atomic import atomic_path, write_atomic
from lmforge.tokenizer.special import IMAGE_PLACEHOLDER
from lmforge.vl.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageError, load_image
from lmforge.vl.synth import VLExample

IMAGE_TOKEN = IMAGE_PLACEHOLDER  # the name this module's users know it by
DATA_FILE = "data.jsonl"
IMAGE_DIR = "images"
CAPTION_PROMPTS = {"en": "Describe the image briefly.", "zh": "简要描述这张图片。"}
TASKS = ("qa", "caption")
HUMAN_ROLES = ("human", "user")


@dataclass
class VLRecord:
    """One valid record: its images (decoded RGB) and its conversation with one placeholder per image."""

    id: str
    images: list[Image.Image]
    conversations: list[dict[str, str]]  # ShareGPT shape: {"from": ..., "value": ...}
    meta: dict = field(default_factory=dict)  # the record's other keys (kind, lang, task, ...)
    where: str = ""  # file:line

    def messages(self) -> list[dict[str, str]]:
        """The conversation in OpenAI's shape (role/content), placeholders kept in the text."""
        return conversation_messages({"conversations": self.conversations})


# --- writing --------------------------------------------------------------------------------------

def example_records(example: VLExample, index: int, image_ref: dict, tasks: Iterable[str] = ("qa",)) -> list[dict]:
    """The JSONL records of one example: a question-answer turn and/or a caption turn (pre-training)."""
    records = []
    for task in tasks:
        if task == "qa":
            human, gpt = example.question, example.answer
        elif task == "caption":
            human, gpt = CAPTION_PROMPTS[example.lang], example.caption
        else:
            raise ValueError(f"unknown task {task!r}; expected some of {', '.join(TASKS)}")
        records.append({"id": f"{example.kind}-{index:06d}-{task}", **image_ref,
                        "conversations": [{"from": "human", "value": f"{IMAGE_TOKEN}\n{human}"},
                                          {"from": "gpt", "value": gpt}],
                        "kind": example.kind, "lang": example.lang, "task": task})
    return records


def write_vl_dataset(examples: Iterable[VLExample], out_dir: str | Path, *, tasks: Iterable[str] = ("qa",),
                     embed_images: bool = False) -> Path:
    """Write `examples` as out_dir/images/NNNNNN.png + out_dir/data.jsonl; returns the JSONL path.

    `tasks` picks the records per example ("qa": the question, "caption": describe the image);
    `embed_images` puts each PNG in the record as `image_base64` instead of a file. Every file is
    written atomically and data.jsonl last, so a killed writer never leaves a JSONL naming a missing image.
    """
    out_dir = Path(out_dir)
    tasks = tuple(tasks)
    if not embed_images:
        (out_dir / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, example in enumerate(examples):
        if embed_images:
            buffer = io.BytesIO()
            example.image.save(buffer, format="PNG")
            image_ref = {"image_base64": base64.b64encode(buffer.getvalue()).decode("ascii")}
        else:
            relative = f"{IMAGE_DIR}/{i:06d}.png"
            with atomic_path(out_dir / relative) as tmp:
                example.image.save(tmp, format="PNG")
            image_ref = {"image": relative}
        lines.extend(json.dumps(r, ensure_ascii=False) + "\n" for r in example_records(example, i, image_ref, tasks))
    path = out_dir / DATA_FILE
    write_atomic(path, "".join(lines))
    return path


# --- reading --------------------------------------------------------------------------------------

def _image_sources(record: dict, root: Path) -> list[tuple[str, object]]:
    """(name for messages, source for load_image) of each image of a record, in order."""
    has_paths, has_inline = "image" in record, "image_base64" in record
    if has_paths and has_inline:
        raise ValueError("bad image field: both 'image' and 'image_base64' are set; use one of them")
    key = "image" if has_paths else "image_base64"
    raw = record.get(key)
    if raw is None:
        return []
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(item, str) and item for item in items):
        raise ValueError(f"bad image field: {key!r} must be a non-empty string or a list of them")
    if key == "image":
        return [(f"'image' {item}", root / item) for item in items]
    sources: list[tuple[str, object]] = []
    for i, item in enumerate(items):
        if item[:5].lower() == "data:":
            sources.append((f"'image_base64'[{i}]", item))
            continue
        try:
            sources.append((f"'image_base64'[{i}]", base64.b64decode(item, validate=True)))
        except ValueError as e:
            raise ValueError(f"bad image: 'image_base64'[{i}] is not valid base64 ({e})") from None
    return sources


def _placed(conversations: list[dict], n_images: int) -> list[dict]:
    """The turns with exactly one placeholder per image; ValueError when they cannot be made so."""
    count = sum(turn["value"].count(IMAGE_TOKEN) for turn in conversations)
    if count > n_images:
        raise ValueError(f"too many {IMAGE_TOKEN} placeholders: {count} in 'conversations' for {n_images} "
                         f"image(s); add images or remove placeholders")
    if count == n_images:
        return conversations
    if count == 0 and n_images == 1:  # InternVL's convention: the image goes before the first human turn
        first = next((i for i, t in enumerate(conversations) if t["from"] in HUMAN_ROLES), None)
        if first is None:
            raise ValueError("too few <image> placeholders: the image has no human turn to go before")
        turns = [dict(t) for t in conversations]
        turns[first]["value"] = f"{IMAGE_TOKEN}\n{turns[first]['value']}"
        return turns
    raise ValueError(f"too few {IMAGE_TOKEN} placeholders: {count} in 'conversations' for {n_images} images; "
                     f"write one {IMAGE_TOKEN} where each image goes")


def parse_vl_record(record: object, root: Path, where: str, *, max_image_bytes: int = DEFAULT_MAX_BYTES,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> VLRecord:
    """A validated record with its images loaded; ValueError says what is wrong and in which field."""
    if not isinstance(record, dict):
        raise ValueError(f"not an object: expected a JSON object, got {type(record).__name__}")
    conversations = record.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise ValueError("empty conversations: 'conversations' must be a non-empty list of turns")
    conversation_messages({"conversations": conversations})  # roles, contents, an assistant turn
    turns = [{"from": t["from"], "value": t["value"]} for t in conversations]
    sources = _image_sources(record, root)
    turns = _placed(turns, len(sources))
    images = []
    for name, source in sources:
        if isinstance(source, Path) and not source.is_file():
            raise ValueError(f"missing image: {name}: no such file under {root}")
        try:
            images.append(load_image(source, max_bytes=max_image_bytes, max_pixels=max_pixels, name=name))
        except ImageError as e:
            raise ValueError(f"bad image: {e}") from None
    meta = {k: v for k, v in record.items() if k not in ("id", "image", "image_base64", "conversations")}
    return VLRecord(str(record.get("id", where)), images, turns, meta, where)


def read_vl_dataset(path: str | Path, *, image_root: str | Path | None = None,
                    max_image_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
                    strict: bool = False, skipped: Skipped | None = None) -> Iterator[VLRecord]:
    """Every valid record of a JSONL file (or of a folder's data.jsonl), in order; bad ones are counted
    in `skipped` with file:line and the field (or raised with `strict`)."""
    path = Path(path)
    if path.is_dir():
        path = path / DATA_FILE
    if not path.is_file():
        raise ChatDataError(f"{path}: no such file (expected InternVL chat JSONL, one record per line)")
    root = Path(image_root) if image_root is not None else path.parent
    skipped = skipped if skipped is not None else Skipped()
    n_lines = n_bad = 0
    first_bad = ""
    with path.open(encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            n_lines += 1
            where = f"{path}:{lineno}"
            try:
                record = parse_vl_record(json.loads(line), root, where, max_image_bytes=max_image_bytes,
                                         max_pixels=max_pixels)
            except (json.JSONDecodeError, ValueError) as e:
                reason = f"not JSON: {e.msg}" if isinstance(e, json.JSONDecodeError) else str(e)
                if strict:
                    raise ChatDataError(f"{where}: {reason}") from None
                skipped.add(where, reason)
                first_bad = first_bad or f"{where}: {reason}"
                n_bad += 1
                continue
            yield record
    if n_lines and n_bad >= n_lines:
        raise ChatDataError(f"{path}: all {n_lines} records are bad (first: {first_bad}); check the "
                            "format: one JSON object per line with 'conversations' and 'image' or 'image_base64'")
