"""Online RLHF's reward-model side (lmforge.align.online): pairs from the policy's answers, the
hacking detector, the patch of the reward models, and rounds inside `lmforge rl`."""

import json

import pytest
import torch

from lmforge.align.online import HackingDetector, PairCollector


def test_detector_fires_on_reward_up_accuracy_down_and_on_length_only():
    d = HackingDetector(window=5)
    for s in range(10):  # both rise: learning, not hacking
        assert d.update(0.1 + 0.05 * s, 0.2 + 0.03 * s, 10.0) is None
    d = HackingDetector(window=5)
    reasons = [d.update(0.1 + 0.05 * s, 0.5 - 0.03 * s, 10.0) for s in range(10)]
    assert reasons[:9] == [None] * 9 and "reward" in reasons[9] and "accuracy" in reasons[9]
    d = HackingDetector(window=5, length_ratio=2.0)
    reasons = [d.update(0.5, 0.5, 10.0 if s < 5 else 30.0) for s in range(10)]
    assert "length" in reasons[9]


def test_detector_fires_on_held_out_accuracy_falling_significantly_while_reward_rises():
    def run(accuracies, rewards, n=200):
        d, reasons = HackingDetector(window=2), []
        reasons.append(d.held_out(accuracies[0], n))  # before the first step: no reward yet
        for acc, r in zip(accuracies[1:], rewards):
            d.update(r, 0.2, 10.0)
            d.update(r, 0.2, 10.0)
            reasons.append(d.held_out(acc, n))
        return reasons

    # 22% -> 11.5% over 200 prompts is 2.8 standard errors: hacking once the reward is up
    reasons = run([0.22, 0.21, 0.18, 0.115], [0.2, 0.4, 0.6])
    assert reasons[:3] == [None] * 3 and "held-out accuracy 0.220 -> 0.115" in reasons[3]
    assert run([0.22, 0.2, 0.19, 0.17], [0.2, 0.4, 0.6])[-1] is None  # a 5-point dip is noise at n = 200
    assert run([0.22, 0.3, 0.15], [0.6, 0.5])[-1] is None  # the reward fell too since the best: not hacking
    assert "held-out" in run([0.22, 0.3, 0.15], [0.5, 0.6])[-1]  # measured from the best (0.30), not the start
    assert run([0.22, 0.11], [0.5], n=40)[-1] is None  # the same drop over 40 prompts is within noise
    d = HackingDetector(window=2)
    d.held_out(0.3, 200), d.update(0.5, 0.2, 10.0), d.reset()
    assert d.held_out(0.1, 200) is None  # after a patch the watch starts again


class _Ex:
    def __init__(self, prompt):
        self.prompt, self.task = prompt, "add"


def test_collector_pairs_accepted_over_rejected_and_marks_what_the_rm_got_wrong():
    examples = [_Ex("What is 2 + 3?"), _Ex("What is 4 + 4?")]
    answers = ["5", "6", "5", "7", "9", "8", "1", "2"]  # group 4: prompt 0 has 2 right, prompt 1 one
    verdicts = torch.tensor([1, 0, 1, 0, 0, 1, 0, 0])
    rewards = torch.tensor([0.9, 0.1, 0.8, 0.95, 0.0, 0.3, 0.5, 0.1])
    c = PairCollector()
    c.add(examples, answers, verdicts, rewards, 4, lambda ex: "math")
    pairs = [(p.chosen, p.rejected) for p in c.pairs]
    assert pairs == [("5", "6"), ("5", "7"), ("8", "9"), ("8", "1"), ("8", "2")]
    assert [(p.chosen, p.rejected) for p in c.offending] == [("5", "7"), ("8", "1")]
    assert all(p.domain == "math" for p in c.pairs)
    assert len(c.take(offending_first=True)) == 2 and c.pairs == [] and c.offending == []
    c.add(examples[:1], answers[:4], verdicts[:4], torch.tensor([0.9, 0.1, 0.8, 0.2]), 4, lambda ex: "math")
    assert c.offending == [] and len(c.take(offending_first=True)) == 2  # none offending: all the pairs


def test_patch_teaches_the_reward_model_the_pairs_it_ranked_wrong(tiny_dir, tmp_path):
    from lmforge.align.config import RLSection, RMSection
    from lmforge.align.online import patch_reward_models
    from lmforge.align.preferences import task_pairs
    from lmforge.align.reward import RewardModel
    from lmforge.align.rm import pair_scores
    from lmforge.align.tasks import make_examples
    from lmforge.model import load_model
    from lmforge.tokenizer import Tokenizer
    from lmforge.train.parallel import init_distributed

    tok = Tokenizer.load(tiny_dir)
    pairs = task_pairs(make_examples(24, seed=3), seed=3)
    rm = RewardModel.from_lm(load_model(tiny_dir).float(), seed=2)
    rm_cfg = RMSection(init_from=str(tiny_dir))
    before = pair_scores(rm, tok, pairs, rm_cfg)
    cfg = RLSection(init_from=str(tiny_dir), reward="rm", reward_models=["unused"], rounds=2, patch_steps=30,
                    patch_lr=2e-3, patch_seq_len=256)
    (patched,) = patch_reward_models([rm], pairs, tok, cfg, tmp_path, console=None, info=init_distributed(device="cpu"))
    after = pair_scores(patched, tok, pairs, rm_cfg)
    assert (after[0] > after[1]).float().mean() > (before[0] > before[1]).float().mean()
    assert (tmp_path / "member-0" / "model" / "config.json").is_file()


def test_rounds_patch_the_reward_model_inside_rl(tiny_dir, tmp_path, monkeypatch):
    from lmforge.align import rl as rl_module
    from lmforge.align.config import RLSection
    from lmforge.align.reward import RewardModel, save_reward_model
    from lmforge.model import load_model

    # A 0.2M-parameter random policy never answers right: the checkers accept every other answer here,
    # so that each group has pairs to learn from.
    def every_other_right(examples, answers, group, malformed, partial=0.0):
        verdicts = torch.tensor([float(i % 2) for i in range(len(answers))])
        return verdicts, verdicts

    monkeypatch.setattr(rl_module, "checker_rewards", every_other_right)
    rm_dir = save_reward_model(RewardModel.from_lm(load_model(tiny_dir), seed=5), tmp_path / "rm", tiny_dir)
    cfg = RLSection(init_from=str(tiny_dir), reward="rm", reward_models=[str(rm_dir)], steps=4, rounds=2,
                    patch_steps=2, global_batch=2, group=2, train_examples=8, eval_examples=4, max_new_tokens=4,
                    eval_every=0, tensorboard=False, lr=1e-3)
    summary = rl_module.rl(cfg, tmp_path / "rl", resume=False)
    assert [p["step"] for p in summary["rm_patches"]] == [2]  # the end of round 1; round 2 ends with the run
    assert summary["rm_patches"][0]["pairs"] > 0 and "round 1 of 2" in summary["rm_patches"][0]["reason"]
    assert all((tmp_path / "rl" / "rm_patches" / "step-00002" / "member-0" / "model" / f).is_file()
               for f in ("config.json", "model.safetensors"))
    rows = [json.loads(line) for line in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "rm_patch_pairs" in r] == [2]
    with pytest.raises(ValueError, match="reward = 'rm'"):
        RLSection(rounds=2)
