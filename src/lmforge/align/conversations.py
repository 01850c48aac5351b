"""Reading chat data: conversations for SFT and preference pairs for reward models and DPO, from
JSONL files (InternLM2 report, arXiv 2403.17297, section 4.1, "Supervised fine-tuning"; docs/papers.md §6).

Two conversation shapes are read, one per line:

    {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}   (OpenAI)
    {"conversations": [{"from": "system"|"human"|"gpt", "value": "..."}, ...]}     (ShareGPT)

and one preference shape:

    {"prompt": "..." or [messages], "chosen": "...", "rejected": "...", "domain": "..."}

The rule for bad records: a line that is not JSON, a message without a role or content, an unknown
role, a conversation without an assistant turn, an empty assistant turn, or a pair whose two answers
are the same is **counted and skipped** (`Skipped` keeps the count per reason and the first few
file:line places, which the commands print). `strict=True` raises instead, naming the file and line.
A file in which every record is bad is an error either way: it is the wrong file.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

Messages = list[dict[str, str]]
ROLES = ("system", "user", "assistant", "environment")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "bot": "assistant", "model": "assistant"}


class ChatDataError(ValueError):
    """A chat data file or record that cannot be used; the message names the file and line."""


@dataclass
class Skipped:
    """What a reader skipped: a count per reason and the first places (file:line: reason)."""

    counts: Counter = field(default_factory=Counter)
    places: list[str] = field(default_factory=list)
    keep_places: int = 5

    def add(self, where: str, reason: str) -> None:
        self.counts[reason.split(":")[0]] += 1
        if len(self.places) < self.keep_places:
            self.places.append(f"{where}: {reason}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Pair:
    """A preference: for `prompt` (messages before the answer), `chosen` is better than `rejected`."""

    prompt: Messages
    chosen: str
    rejected: str
    domain: str = ""

    def to_json(self) -> dict:
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected, "domain": self.domain}


def conversation_messages(record: dict) -> Messages:
    """The OpenAI-shape messages of one record (either shape), validated; ValueError says what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        raw, role_key, text_key, roles = record["messages"], "role", "content", {r: r for r in ROLES}
    elif "conversations" in record:
        raw, role_key, text_key, roles = record["conversations"], "from", "value", SHAREGPT_ROLES
    else:
        raise ValueError("no 'messages' (OpenAI shape) or 'conversations' (ShareGPT shape) key")
    if not isinstance(raw, list) or not raw:
        raise ValueError("the conversation is not a non-empty list of messages")
    messages = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or role_key not in m:
            raise ValueError(f"missing role: message {i} has no {role_key!r}")
        role = roles.get(m[role_key]) if isinstance(m[role_key], str) else None
        if role is None:
            raise ValueError(f"unknown role: message {i} has {role_key}={m[role_key]!r}; expected one of "
                             f"{sorted(roles)}")
        content = m.get(text_key)
        if not isinstance(content, str):
            raise ValueError(f"missing content: message {i} has no string {text_key!r}")
        if role == "assistant" and not content.strip():
            raise ValueError(f"empty assistant turn: message {i}")
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("no assistant turn: nothing to learn from")
    return messages


def pair_from_record(record: dict) -> Pair:
    """A validated preference pair; ValueError says what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    for key in ("prompt", "chosen", "rejected"):
        if key not in record:
            raise ValueError(f"missing field: {key!r}")
    prompt = record["prompt"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list):
        prompt = conversation_messages({"messages": [*prompt, {"role": "assistant", "content": "x"}]})[:-1]
    else:
        raise ValueError("prompt must be a string or a list of messages")
    chosen, rejected = record["chosen"], record["rejected"]
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise ValueError("chosen and rejected must be strings (the assistant's answers)")
    if chosen.strip() == rejected.strip():
        raise ValueError("identical pair: chosen and rejected are the same text, so they teach nothing")
    return Pair(prompt, chosen, rejected, str(record.get("domain", "")))


def _records(path: Path, parse, skipped: Skipped, strict: bool) -> Iterator:
    if not path.is_file():
        raise ChatDataError(f"{path}: no such file (expected JSONL, one record per line)")
    n_lines = 0
    with path.open(encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            n_lines += 1
            try:
                yield parse(json.loads(line))
            except (json.JSONDecodeError, ValueError) as e:
                reason = f"not JSON: {e.msg}" if isinstance(e, json.JSONDecodeError) else str(e)
                if strict:
                    raise ChatDataError(f"{path}:{lineno}: {reason}") from None
                skipped.add(f"{path}:{lineno}", reason)
    if n_lines and skipped.total >= n_lines:
        raise ChatDataError(f"{path}: all {n_lines} records are bad (first: {skipped.places[0]}); check the "
                            "format: one JSON object per line with 'messages' (or 'conversations'), or "
                            "'prompt' / 'chosen' / 'rejected' for preference pairs")


def read_conversations(path: str | Path, strict: bool = False, skipped: Skipped | None = None) -> list[Messages]:
    """Every valid conversation of a JSONL file, in order; bad ones counted in `skipped` (or raised)."""
    return list(_records(Path(path), conversation_messages, skipped if skipped is not None else Skipped(), strict))


def read_pairs(path: str | Path, strict: bool = False, skipped: Skipped | None = None) -> list[Pair]:
    """Every valid preference pair of a JSONL file, in order; bad ones counted in `skipped` (or raised)."""
    return list(_records(Path(path), pair_from_record, skipped if skipped is not None else Skipped(), strict))


def write_jsonl(path: str | Path, records: list[dict]) -> Path:
    """Write records as JSONL atomically (temp file, then rename)."""
    from lmforge.atomic import write_atomic

    path = Path(path)
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path
