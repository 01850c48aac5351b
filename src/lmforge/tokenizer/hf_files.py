"""Reading and writing tokenizer directories in the Hugging Face layout.

Paper: InternLM2 report, arXiv 2403.17297; docs/papers.md §1.

A tokenizer directory holds `tokenizer.json` (the `tokenizers` pipeline), `tokenizer_config.json`
(special token names, `model_max_length`, the chat template, `tokenizer_class`) and
`special_tokens_map.json`; `transformers.AutoTokenizer.from_pretrained(dir)` loads it offline as a
`PreTrainedTokenizerFast`. Released InternLM2 checkpoints ship a SentencePiece `tokenizer.model`
instead, which `sentencepiece.py` converts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as BackendTokenizer

from lmforge.tokenizer.special import IM_END

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
SENTENCEPIECE_MODEL = "tokenizer.model"
# transformers >= 4.47 may keep the template in its own file instead of tokenizer_config.json.
CHAT_TEMPLATE_FILE = "chat_template.jinja"


def read_backend(path: Path) -> BackendTokenizer:
    """Load a `tokenizer.json`; a file `tokenizers` cannot parse is a ValueError naming it."""
    try:
        return BackendTokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception for bad JSON or schema
        raise ValueError(
            f"{path} is not a valid tokenizers file ({e}); re-create it with "
            "Tokenizer.save() or train_bpe(), or delete it to fall back to tokenizer.model"
        ) from e


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); fix or delete it") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _token_name(value: Any) -> str | None:
    # transformers writes special tokens either as plain strings or as AddedToken dicts.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def read_config(directory: Path) -> dict[str, Any]:
    """The settings lmforge uses from `tokenizer_config.json` (absent keys are left out).

    Returns a dict with any of: bos_token, eos_token, unk_token, pad_token (strings),
    chat_template (str), model_max_length (int).
    """
    out: dict[str, Any] = {}
    config_path = directory / TOKENIZER_CONFIG
    config = _read_json(config_path) if config_path.is_file() else {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
        if key in config:
            out[key] = _token_name(config[key])
    template = config.get("chat_template")
    if isinstance(template, list):
        # The multi-template form: [{"name": "default", "template": ...}, ...].
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    template_file = directory / CHAT_TEMPLATE_FILE
    if template is None and template_file.is_file():
        template = template_file.read_text(encoding="utf-8")
    if isinstance(template, str):
        out["chat_template"] = template
    max_len = config.get("model_max_length")
    if isinstance(max_len, (int, float)) and max_len > 0:
        out["model_max_length"] = int(max_len)
    return out


def write_files(
    directory: Path,
    backend: BackendTokenizer,
    *,
    bos_token: str | None,
    eos_token: str | None,
    unk_token: str | None,
    pad_token: str | None,
    extra_special_tokens: list[str],
    chat_template: str | None,
    model_max_length: int,
) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    backend.save(str(directory / TOKENIZER_JSON))
    names = {"bos_token": bos_token, "eos_token": eos_token, "unk_token": unk_token,
             "pad_token": pad_token}
    names = {k: v for k, v in names.items() if v is not None}
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **names,
        # InternLM2 prepends <s> by default (add_bos_token=True) and never appends </s>; the
        # post-processor in tokenizer.json does the same, and lmforge's encode(add_bos=True).
        "add_bos_token": bos_token is not None,
        "add_eos_token": False,
        "model_max_length": model_max_length,
        # Decoding must give back the exact text; transformers' cleanup would edit spaces.
        "clean_up_tokenization_spaces": False,
    }
    if chat_template is not None:
        config["chat_template"] = chat_template
    special_map: dict[str, Any] = dict(names)
    if extra_special_tokens:
        special_map["additional_special_tokens"] = extra_special_tokens
    for name, data in ((TOKENIZER_CONFIG, config), (SPECIAL_TOKENS_MAP, special_map)):
        text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
        (directory / name).write_text(text, encoding="utf-8")
    declare_turn_end(directory)


GENERATION_CONFIG = "generation_config.json"


def declare_turn_end(directory: Path) -> None:
    """In a model directory (one with generation_config.json) whose tokenizer has the chat format's
    `<|im_end|>`, list it in `eos_token_id` beside `</s>`, as InternLM2's chat checkpoints do ([2,
    92542]), so transformers' `generate` (and TRL, vLLM, lm-eval) end a chat turn where lmforge's
    engine does, instead of writing past it. Other keys are kept; nothing to do without either file."""
    directory = Path(directory)
    gen_path, tok_path = directory / GENERATION_CONFIG, directory / TOKENIZER_JSON
    if not gen_path.is_file() or not tok_path.is_file():
        return
    turn_end = read_backend(tok_path).token_to_id(IM_END)
    if turn_end is None:
        return
    gen = _read_json(gen_path)
    eos = gen.get("eos_token_id")
    eos = [] if eos is None else list(eos) if isinstance(eos, list) else [eos]
    if turn_end not in eos:
        gen["eos_token_id"] = [*eos, turn_end]
        gen_path.write_text(json.dumps(gen, indent=2) + "\n", encoding="utf-8")


def declare_named_tokens(directory: Path, names: dict[str, str]) -> None:
    """Add model-specific named special tokens (e.g. `context_image_token`, which transformers'
    InternVL processor reads as `tokenizer.context_image_token`) to `tokenizer_config.json`, as the
    `extra_special_tokens` mapping transformers 4.5x and 5.x both read; other keys are kept."""
    path = Path(directory) / TOKENIZER_CONFIG
    config = _read_json(path) if path.is_file() else {}
    declared = config.get("extra_special_tokens")
    config["extra_special_tokens"] = {**(declared if isinstance(declared, dict) else {}), **names}
    path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


# The files that make a tokenizer directory; they travel with every exported checkpoint.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model")


def copy_tokenizer_files(src: str | Path, dst: str | Path) -> list[str]:
    """Copy whichever tokenizer files `src` holds into `dst` (and declare the chat turn's end in its
    generation_config.json, if it has one); return their names."""
    copied = []
    for name in TOKENIZER_FILES:
        if (Path(src) / name).is_file():
            shutil.copyfile(Path(src) / name, Path(dst) / name)
            copied.append(name)
    declare_turn_end(Path(dst))
    return copied
