"""Multi-needle retrieval and multi-hop NIAH: needle placement, chains, scoring, the grids."""

import argparse
import json
import random
import re

import pytest

from lmforge.eval import haystack, heatmap, multi_needles, niah, niah_multi
from lmforge.eval.cli import register
from lmforge.eval.multi_needles import needle_depths, reasoning_chain, reasoning_score, retrieval_needles
from lmforge.generate import SamplingParams


def _slot_pattern(template: str) -> str:
    escaped = re.escape(template)
    escaped = escaped.replace(re.escape("{name}"), r"(?P<name>\w+)")
    return escaped.replace(re.escape("{value}"), r"(?P<value>[\w ]+?)")


class MultiReader:
    """Reads the facts of a multi-needle prompt perfectly and answers the first `share` of the
    questions, in the order asked."""

    name, fingerprint, max_length = "multi-reader", "m" * 64, None

    def __init__(self, share: float = 1.0):
        self.share = share

    def generate(self, prompts, params: SamplingParams, progress=None, *, truncate=True):
        out = []
        for prompt in prompts:
            document, question = prompt.rsplit("\n\n", 1)
            facts, asked = {}, []
            for fact, q, _ in multi_needles.RETRIEVAL_FACTS["en"] + multi_needles.RETRIEVAL_FACTS["zh"]:
                facts.update((m["name"], m["value"]) for m in re.finditer(_slot_pattern(fact), document))
                asked += [(m.start(), m["name"]) for m in re.finditer(_slot_pattern(q), question)]
            facts.update(re.findall(r"The pass key for the (\w+) door is (\d+)\.", document))
            asked += [(m.start(), m[1]) for m in re.finditer(r"the (\w+) door", question)]
            answers = [facts[name] for _, name in sorted(asked)]
            out.append(" " + ", ".join(answers[:round(len(answers) * self.share)]))
        return out

    def loglikelihood(self, requests, progress=None):
        raise AssertionError("not used by the multi-needle variants")


class ChainFollower:
    """Follows the family (or door) links of a multi-hop prompt to their end."""

    name, fingerprint, max_length = "chain-follower", "c" * 64, None

    def generate(self, prompts, params, progress=None, *, truncate=True):
        return [" " + follow_chain(p.rsplit("\n\n", 1)[0], p.rsplit("\n\n", 1)[1])[-1] for p in prompts]

    def loglikelihood(self, requests, progress=None):
        raise AssertionError("not used")


def follow_chain(document: str, question: str) -> list[str]:
    """The entities from the one the question asks about to the end of its chain."""
    parent = dict((child, par) for par, child in re.findall(r"(\w+) is the (?:father|mother) of (\w+)\.", document))
    parent.update((child, par) for par, child in re.findall(r"(\w+)是(\w+)的(?:父亲|母亲)。", document))
    parent.update(re.findall(r"The (\w+) door opens with the pass key of the (\w+) door\.", document))
    parent.update(re.findall(r"The pass key for the (\w+) door is (\d+)\.", document))
    start = re.search(r"ancestor of (\w+)|(\w+)能追溯|pass key for the (\w+) door\?", question)
    chain = [next(g for g in start.groups() if g)]
    while chain[-1] in parent:
        chain.append(parent[chain[-1]])
        assert len(chain) < 50, "the links form a cycle"
    return chain


def test_needle_depths_follow_needlebench():
    assert needle_depths(0, 3) == [0, 10, 20]
    assert needle_depths(95, 3) == [95, 100, 100]
    assert needle_depths(40, 2, gap=25) == [40, 65]


def test_insert_needles_at_their_depths_in_order():
    hay = "".join(f"Sentence number {i:03d} is here. " for i in range(100))
    text = haystack.insert_needles(hay, ["NEEDLE-A.", "NEEDLE-B.", "NEEDLE-C."], [10, 50, 50])
    positions = [text.index(n) for n in ("NEEDLE-A.", "NEEDLE-B.", "NEEDLE-C.")]
    assert positions == sorted(positions)  # equal depths keep the given order
    assert abs(positions[0] / len(text) - 0.10) < 0.02 and abs(positions[1] / len(text) - 0.50) < 0.02
    assert text.replace("NEEDLE-A. ", "").replace("NEEDLE-B. ", "").replace("NEEDLE-C. ", "") == hay
    assert haystack.insert_needles(hay, ["X."], [30]) == haystack.insert_needle(hay, "X.", 30)


@pytest.mark.parametrize("kind", niah.KINDS)
def test_multi_needle_prompt_has_every_needle_at_its_depth(tokenizer, kind):
    made = retrieval_needles(kind, 4, random.Random(3))
    assert len(set(made.answers)) == 4 and len(made.texts) == 4
    depths = needle_depths(20, 4, gap=20)  # 20, 40, 60, 80
    prompt = haystack.build_prompt(tokenizer, kind, made.texts, made.question, 600, depths, offset=77)
    assert abs(len(tokenizer.encode(prompt)) + 1 - 600) <= 30
    header, footer = haystack.TEMPLATES[kind]
    body = prompt[len(header):len(prompt) - len(footer.format(question=made.question))]
    at = [body.index(t) for t in made.texts]
    assert at == sorted(at)
    hay = body
    for t in made.texts:
        hay = hay.replace(t, "", 1)
    for i, depth in enumerate(depths):
        # In the haystack's own characters: at the depth, or moved back over one sentence at most.
        pos, target = at[i] - sum(len(t) for t in made.texts[:i]), int(len(hay) * depth / 100)
        assert pos <= target + 2 * len(depths), (pos, target)
        assert not any(ch in haystack.SENTENCE_ENDS for ch in hay[pos + 1:target - 2 * len(depths)]), (pos, target)


@pytest.mark.parametrize("kind", niah.KINDS)
def test_multi_needle_scores_the_share_retrieved(tokenizer, tmp_path, kind):
    common = dict(variant="multi_needle", lengths=[128, 384], depths=[0, 50], repeats=2, kind=kind, needles=4)
    perfect = niah.run_niah(MultiReader(), tokenizer, out_dir=tmp_path, **common)
    assert perfect["average"] == 100 and perfect["exact_average"] == 1.0
    assert perfect["found_by_needle"] == [100.0] * 4
    half = niah.run_niah(MultiReader(share=0.5), tokenizer, **common)
    assert half["average"] == 50 and half["exact_average"] == 0.0
    assert half["scores"] == [[50.0, 50.0], [50.0, 50.0]] and half["found_by_needle"] == [100, 100, 0, 0]
    png = tmp_path / f"niah_{kind}_multi_needle.png"
    assert perfect["heatmap"] == str(png) and png.read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / f"niah_{kind}_multi_needle.json").read_text())
    assert len(saved["items"]) == 8 and saved["items"][0]["needle_depths"] == [0, 10, 20, 30]


@pytest.mark.parametrize("kind", niah.KINDS)
@pytest.mark.parametrize("hops", [1, 2, 5])
def test_chain_needs_every_hop(kind, hops):
    made = reasoning_chain(kind, hops, random.Random(hops))
    document = " ".join(made.texts)
    chain = follow_chain(document, made.question)
    assert chain == made.chain and chain[-1] == made.answers[0]
    assert len(chain) == hops + 1 and len(set(chain)) == hops + 1
    # The answer is stated once, in the last link only: no fact but the chain's end leads to it.
    assert sum(made.answers[0] in t for t in made.texts) == 1
    assert not any(made.answers[0] in t for t in made.texts if chain[-2] not in t)
    # Every link is needed: drop any one and the chain no longer reaches the answer.
    links = [t for t in made.texts if not (kind == "passkey" and made.others[0] in t)]  # not the decoy door
    assert len(links) == hops
    for link in links:
        rest = " ".join(t for t in made.texts if t != link)
        assert follow_chain(rest, made.question)[-1] != made.answers[0]


def test_chain_is_reproducible_with_a_seed():
    for kind in niah.KINDS:
        assert reasoning_chain(kind, 4, random.Random(7)) == reasoning_chain(kind, 4, random.Random(7))
        assert retrieval_needles(kind, 3, random.Random(7)) == retrieval_needles(kind, 3, random.Random(7))
    assert reasoning_chain("en", 4, random.Random(7)) != reasoning_chain("en", 4, random.Random(8))


def test_reasoning_score_is_exact():
    made = reasoning_chain("en", 3, random.Random(0))
    answer, first = made.answers[0], made.chain[0]
    assert reasoning_score(f" {answer}.", made) == 100
    assert reasoning_score(f" {first}, then {answer}", made) == 0  # listing the chain is not an answer
    assert reasoning_score(" nobody", made) == 0


def test_multi_hop_grid_is_hops_by_length(tokenizer, tmp_path, monkeypatch):
    drawn = {}

    def plot(scores, rows, lengths, path, title, window=None, **labels):
        drawn.update(rows=rows, **labels)
        return heatmap.plot_heatmap(scores, rows, lengths, path, title, window, **labels)

    monkeypatch.setattr(niah_multi, "plot_heatmap", plot)
    result = niah.run_niah(ChainFollower(), tokenizer, variant="multi_hop", lengths=[128, 256], depths=[0, 60],
                           repeats=1, kind="en", hops=[1, 3], out_dir=tmp_path)
    assert result["scores"] == [[100.0, 100.0], [100.0, 100.0]] and result["hops"] == [1, 3]
    assert set(result["scores_by_depth"]) == {"1", "3"} and len(result["scores_by_depth"]["3"]) == 2
    assert (tmp_path / "niah_en_multi_hop.png").is_file()
    assert drawn == {"rows": [1, 3], "row_labels": ["1 hop", "3 hops"], "ylabel": "hops"}
    wrong = niah.run_niah(MultiReader(), tokenizer, variant="multi_hop", lengths=[128], depths=[0], repeats=1,
                          kind="zh", hops=[2])
    assert wrong["average"] == 0


def test_unknown_variant_is_refused(tokenizer):
    with pytest.raises(ValueError, match="multi_needle"):
        niah.run_niah(MultiReader(), tokenizer, variant="multi", lengths=[64], depths=[0], repeats=1)


def test_cli_runs_both_variants_on_a_checkpoint(llama_checkpoint, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="lmforge")
    register(parser.add_subparsers(dest="command", required=True))
    defaults = parser.parse_args(["eval", "niah", "ckpt", "--variant", "multi_needle"])
    assert defaults.needles == niah.NEEDLE_COUNT == 3 and defaults.hops == [2, 3, 4]
    for variant in ("multi_needle", "multi_hop"):
        args = parser.parse_args(["eval", "niah", str(llama_checkpoint), "--haystack", "passkey", "--variant", variant,
                                  "--needles", "2", "--hops", "1,2", "--lengths", "96", "--depths", "2",
                                  "--repeats", "1", "--max-new-tokens", "3", "--out", str(tmp_path)])
        assert args.fn(args) == 0
        saved = json.loads((tmp_path / f"niah_passkey_{variant}.json").read_text())
        assert saved["variant"] == variant and len(saved["items"]) == (2 if variant == "multi_needle" else 4)
        assert (tmp_path / f"niah_passkey_{variant}.png").is_file()
    assert "NIAH passkey multi_hop: average" in capsys.readouterr().out
