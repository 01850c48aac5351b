"""The step interface: what a Step and a Filter declare, and what the Filter base does for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from lmforge.config import RecipeError
from lmforge.data.dedup.stage import DedupStage, MinHashDedup
from lmforge.data.document import Document
from lmforge.data.pipeline import STEPS, stage_of
from lmforge.data.quality import Fluency
from lmforge.data.safety import Toxicity
from lmforge.data.stage import MapStage
from lmforge.data.step import Filter, Step, TaskStats, batched
from lmforge.data.writers import ShardedWriter


def doc(text: str, language: str = "en") -> Document:
    return Document(text, id=text, metadata={"language": language})


@dataclass
class ShortText(Filter):
    name: ClassVar[str] = "short_text"
    max_chars: int = 5
    languages: list[str] = field(default_factory=lambda: ["en"])

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return len(doc.text) <= self.max_chars or (False, "too_long")


@dataclass
class BatchLength(Filter):
    """Records the batches it is given; drops odd lengths without a reason (the name is the reason)."""

    name: ClassVar[str] = "batch_length"
    batch_size: ClassVar[int] = 3
    languages: list[str] = field(default_factory=lambda: ["en"])
    seen: list = field(default_factory=list)

    def filter_batch(self, docs: list[Document]) -> list[bool | tuple[bool, str]]:
        self.seen.append([d.text for d in docs])
        return [len(d.text) % 2 == 0 for d in docs]


def run(step: Filter, docs: list[Document]) -> tuple[list[str], TaskStats]:
    stats = TaskStats("t", 0)
    step.bind(stats)
    return [d.text for d in step.run(docs)], stats


def test_filter_passes_other_languages_and_counts_drops_with_reasons():
    kept, stats = run(ShortText(), [doc("abc"), doc("abcdefgh"), doc("长长长长长长长长", "zh")])
    assert kept == ["abc", "长长长长长长长长"]
    assert dict(stats.drops["short_text"]) == {"too_long": 1} and dict(stats.drops_lang["short_text"]) == {"en": 1}
    assert stats.dropped == [("abcdefgh", "", "short_text", "too_long")]
    kept, _ = run(ShortText(languages=[]), [doc("长长长长长长长长", "zh")])  # empty: every language
    assert kept == []
    assert Filter.languages is None and Filter().applies_to(doc("x", "fr"))


def test_filter_batch_sees_only_its_languages_in_batches_and_order_is_kept():
    step = BatchLength()
    texts = ["aa", "b", "中文", "cccc", "dd", "e", "ff"]
    kept, stats = run(step, [doc(t, "zh" if t == "中文" else "en") for t in texts])
    assert kept == ["aa", "中文", "cccc", "dd", "ff"]
    assert step.seen == [["aa", "b"], ["cccc", "dd", "e"], ["ff"]]  # batches of 3 read, the zh one passed by
    assert dict(stats.drops["batch_length"]) == {"batch_length": 2}


def test_filter_batch_must_give_one_verdict_per_document():
    class Broken(BatchLength):
        def filter_batch(self, docs):
            return [True]

    with pytest.raises(ValueError, match="gave 1 verdicts for 3 documents"):
        run(Broken(), [doc("a"), doc("b"), doc("c")])


def test_batched_is_lazy_and_keeps_the_remainder():
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([], 3)) == []


class FixedScorer:
    def __init__(self, scores: dict[str, float]):
        self.scores, self.calls = scores, []

    def score(self, texts):
        self.calls.append(list(texts))
        return [self.scores[t] for t in texts]


def test_score_filters_are_filters_scoring_in_batches():
    assert issubclass(Toxicity, Filter) and Toxicity.batch_size > 1
    tox = Toxicity(threshold={"en": 0.5, "zh": 0.8})
    tox.scorer = FixedScorer({"a": 0.6, "b": 0.1, "中": 0.6})
    kept, stats = run(tox, [doc("a"), doc("b"), doc("中", "zh"), doc("fr", "fr")])
    assert kept == ["b", "中", "fr"] and tox.scorer.calls == [["a", "b", "中"]]
    assert dict(stats.drops["toxicity"]) == {"toxic_score_above_0.5": 1}
    flu = Fluency(threshold=0.5, drop=False)  # only write the score
    flu.scorer = FixedScorer({"a": 0.2})
    d = doc("a")
    assert run(flu, [d])[0] == ["a"] and d.scores == {"fluency_score": 0.2}
    flu.drop = True
    assert flu.filter(doc("a")) == (False, "fluency_score_below_0.5")


@dataclass
class WholeCorpus(Step):
    """A whole-corpus step that is not MinHash dedup: the builder must ask it for its stage."""

    name: ClassVar[str] = "whole"
    whole_corpus: ClassVar[bool] = True

    def corpus_stage(self, **stage_args) -> MapStage:
        return MapStage(**stage_args, steps=[ShortText()])


@dataclass
class Sink(Step):
    name: ClassVar[str] = "sink"
    sink: ClassVar[bool] = True


def test_the_builder_asks_each_step_for_its_stage(tmp_path):
    args = dict(name="s", out=Path(tmp_path), input_dir="in")
    assert STEPS["minhash_dedup"] is MinHashDedup and MinHashDedup.whole_corpus
    dedup = MinHashDedup(threshold=0.8)
    stage = stage_of([dedup], args, "r.toml: stage[0]")
    assert isinstance(stage, DedupStage) and stage.params is dedup
    assert isinstance(stage_of([WholeCorpus()], args, "w").steps[0], ShortText)
    assert isinstance(stage_of([ShortText(), Sink()], args, "w"), MapStage)
    with pytest.raises(RecipeError, match="r.toml: stage.0.: whole needs the whole corpus and must be the only step"):
        stage_of([ShortText(), WholeCorpus()], args, "r.toml: stage[0]")
    with pytest.raises(RecipeError, match="a 'sink' step writes shards and must come last"):
        stage_of([Sink(), ShortText()], args, "w")


def test_step_defaults_declare_a_plain_map_step(tmp_path):
    step = ShortText()
    assert not step.sink and not step.whole_corpus
    assert step.prepare(MapStage(name="s", out=tmp_path, input_dir="in")) is None
    with pytest.raises(NotImplementedError, match="only a whole-corpus step"):
        step.corpus_stage(name="s")


def test_sharded_writer_publishes_on_success_and_leaves_nothing_on_error(tmp_path):
    with ShardedWriter(tmp_path / "ok", rank=0, max_docs_per_file=1) as writer:
        writer.write(doc("a"))
        writer.write(doc("b"))
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["00000.000.jsonl.gz", "00000.001.jsonl.gz"]
    with pytest.raises(RuntimeError, match="killed"):
        with ShardedWriter(tmp_path / "bad", rank=0, max_docs_per_file=1) as writer:
            writer.write(doc("a"))
            writer.write(doc("b"))
            raise RuntimeError("killed")
    assert list((tmp_path / "bad").iterdir()) == []
