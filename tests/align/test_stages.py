"""`lmforge sft` / `rm` / `dpo` end to end on a tiny model: they train, export, measure, resume, refuse
bad settings, and the reward model learns the checkers' ranking (a test that fails if it does not)."""

import dataclasses
import json

import pytest
import torch

from lmforge.align.config import DPOSection, RMSection, SFTSection

FAST = dict(train_examples=48, eval_examples=16, steps=4, global_batch=4, micro_batch=2, log_every=1,
            max_new_tokens=4, ckpt_every=2, tensorboard=False)


def test_sft_trains_exports_measures_and_resumes(tiny_dir, tmp_path):
    from lmforge.align.sft import sft
    from lmforge.model import load_model

    cfg = SFTSection(init_from=str(tiny_dir), **FAST)
    s = sft(cfg, tmp_path / "sft", resume=False)
    assert s["steps"] == 4 and set(s["accuracy_after"]) >= {"add", "all"} and 0 <= s["accuracy_after"]["all"] <= 1
    pk = s["pass_at_k"]  # the ceiling for RL: any of 8 sampled answers right, per task
    assert (pk["k"], pk["temperature"]) == (8, 1.0) and set(pk["accuracy"]) == set(s["accuracy_after"])
    load_model(tmp_path / "sft" / "model")  # a loadable HF directory
    assert json.loads((tmp_path / "sft" / "sft.json").read_text())["conversations"] == 48
    # a longer run continues from the step-4 checkpoint instead of starting over
    s = sft(dataclasses.replace(cfg, steps=6), tmp_path / "sft", resume=True)
    steps = [json.loads(line)["step"] for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert s["steps"] == 6 and steps == [1, 2, 3, 4, 5, 6]


def test_sft_with_lora_merges_its_adapters_and_changes_the_model(tiny_dir, tmp_path):
    from lmforge.align.sft import sft
    from lmforge.model import load_model

    s = sft(SFTSection(init_from=str(tiny_dir), lora_rank=2, lr=1e-2, **FAST), tmp_path / "lora", resume=False)
    assert s["trainable_params"] < 0.2 * load_model(tiny_dir).num_params()
    a, b = load_model(tiny_dir).state_dict(), load_model(tmp_path / "lora" / "model").state_dict()
    assert set(a) == set(b)
    assert not torch.equal(a["layers.0.attention.wqkv.weight"], b["layers.0.attention.wqkv.weight"])
    assert torch.equal(a["tok_embeddings.weight"], b["tok_embeddings.weight"])  # frozen


def test_sft_reads_a_jsonl_file_and_skips_bad_lines(tiny_dir, tmp_path):
    from lmforge.align.sft import sft

    data = tmp_path / "chat.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    data.write_text("\n".join([json.dumps(good)] * 5 + ["{broken", json.dumps({"messages": []})]) + "\n")
    s = sft(SFTSection(init_from=str(tiny_dir), data=str(data), **FAST), tmp_path / "sft", resume=False)
    assert s["conversations"] == 5 and s["accuracy_after"] is None


def test_reward_model_learns_the_checkers_ranking(tiny_dir, tmp_path):
    from lmforge.align.rm import rm

    cfg = RMSection(init_from=str(tiny_dir), loss="bt", **{**FAST, "steps": 80, "train_examples": 300,
                                                           "global_batch": 16, "micro_batch": 16, "eval_examples": 40},
                    lr=3e-3, ensemble=1)
    s = rm(cfg, tmp_path / "rm", resume=False)
    assert s["accuracy"]["held_out"]["member 0"] > 0.6  # 0.69 when written; chance is 0.5 and half the pairs need arithmetic
    # the form is learned: the right answer beats a malformed one on held-out prompts
    import random

    from lmforge.align.conversations import Pair
    from lmforge.align.reward import load_reward_model
    from lmforge.align.rm import pair_scores
    from lmforge.align.tasks import TASKS, make_examples
    from lmforge.tokenizer import Tokenizer

    rng = random.Random(0)
    probe = [Pair([{"role": "user", "content": ex.prompt}], ex.answer, TASKS[ex.task].malformed(ex, rng))
             for ex in make_examples(40, seed=11, split="test")]
    scores = pair_scores(load_reward_model(s["members"][0]), Tokenizer.load(tiny_dir), probe, cfg)
    assert float((scores[0] > scores[1]).float().mean()) > 0.8  # 0.95 when written


def test_rm_ensemble_writes_members_a_soup_and_the_exploit_probe(tiny_dir, tmp_path):
    from lmforge.align.reward import load_reward_model
    from lmforge.align.rm import rm

    s = rm(RMSection(init_from=str(tiny_dir), ensemble=2, **FAST), tmp_path / "rm", resume=False)
    assert s["biased_pairs"] > 0 and len(s["members"]) == 2
    rows = s["accuracy"]["exploit"]
    assert {"member 0", "member 1", "ensemble mean", "ensemble min", "ensemble mean_minus_std", "soup"} == set(rows)
    soup, m0, m1 = (load_reward_model(p).state_dict() for p in (s["soup"], *s["members"]))
    assert torch.allclose(soup["score.weight"], (m0["score.weight"] + m1["score.weight"]) / 2)


@pytest.mark.parametrize("loss", ["dpo", "simpo"])
def test_dpo_and_simpo_train_and_export(tiny_dir, tmp_path, loss):
    from lmforge.align.dpo import dpo

    s = dpo(DPOSection(init_from=str(tiny_dir), loss=loss, **{**FAST, "steps": 2}), tmp_path / loss, resume=False)
    assert s["steps"] == 2 and (tmp_path / loss / "model" / "config.json").is_file()
    assert s["accuracy_before"] is not None


def test_sections_refuse_bad_values():
    with pytest.raises(ValueError, match="unknown"):
        SFTSection(tasks=["calculus"])
    with pytest.raises(ValueError, match="global_batch"):
        SFTSection(global_batch=6, micro_batch=4)
    with pytest.raises(ValueError, match="loss"):
        RMSection(loss="hinge")
    with pytest.raises(ValueError, match="combine"):
        RMSection(combine="median")
