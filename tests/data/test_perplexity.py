"""Perplexity scorers with an lmforge checkpoint (quality stage; InternLM2's long-context filter)."""

from __future__ import annotations

import math

import pytest
import torch

from lmforge.data.document import Document
from lmforge.data.pipeline import build_pipeline
from lmforge.data.step import Filter, TaskStats
from lmforge.model import save_model
from lmforge.tokenizer import Tokenizer
from tests.helpers import tiny_model


@pytest.fixture(scope="module")
def checkpoint(small_tokenizer, tmp_path_factory):
    tok = Tokenizer.load(small_tokenizer)
    model = tiny_model(vocab_size=tok.vocab_size, max_seq_len=512)
    path = tmp_path_factory.mktemp("ckpt")
    save_model(model, path)
    tok.save(path)
    return path


def test_perplexity_matches_the_loss(checkpoint):
    from lmforge.scorers.perplexity import PerplexityFilter

    step = PerplexityFilter(model=str(checkpoint), max_tokens=64, threshold=1e9).bind(TaskStats("t", 0))
    step.setup()
    text = "To be, or not to be, that is the question."
    ids = [step.tok.bos_id] + step.tok.encode(text)
    with torch.no_grad():
        logits = step.lm(torch.tensor([ids[:-1]]))
        nll = torch.nn.functional.cross_entropy(logits[0].float(), torch.tensor(ids[1:]))
    assert math.isclose(step.perplexity(text), math.exp(nll.item()), rel_tol=1e-4)
    doc = Document(text, metadata={"language": "en"})
    assert list(step.run([doc])) == [doc] and doc.scores["perplexity"] > 1
    step.languages = ["zh"]  # the Filter base passes other languages through, unscored
    other = Document(text, metadata={"language": "en"})
    assert list(step.run([other])) == [other] and not other.scores
    assert isinstance(step, Filter)


def test_perplexity_gain_filter(checkpoint):
    from lmforge.scorers.perplexity import PerplexityGainFilter

    step = PerplexityGainFilter(model=str(checkpoint), context_tokens=32, target_tokens=16, min_gain=-1e9)
    step.bind(TaskStats("t", 0)).setup()
    text = "The ship sailed at dawn and the crew was glad. " * 20
    g = step.gain(text)
    assert math.isfinite(g)
    assert list(step.run([Document(text)]))[0].scores["ppl_gain"] == round(g, 4)
    short = Document("tiny")
    assert list(step.run([short])) == [] and step.stats.drops["perplexity_gain"]["too_short_to_split"] == 1


def test_recipe_names_model_steps_lazily(checkpoint):
    data = {"pipeline": {"input": "in", "output": "out"},
            "stage": [{"name": "q", "steps": [{"step": "perplexity", "model": str(checkpoint),
                                                "threshold": {"en": 1000.0, "zh": 2000.0}}]}]}
    stage = build_pipeline(data, "t").stages[0]
    assert type(stage.steps[0]).__module__ == "lmforge.scorers.perplexity"
