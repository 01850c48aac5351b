"""The alignment losses against their formulas and against TRL: COOL's conditional RM loss by hand,
Bradley-Terry, and DPO / SimPO on the same batch as TRL's DPOTrainer (float tolerance)."""

import math

import pytest
import torch

from lmforge.align.losses import PreferenceLoss, RewardLoss, bt_loss, cool_loss, reference_logps


def test_cool_loss_is_the_reports_formula():
    chosen, rejected = torch.tensor([1.0, -0.5, 3.0]), torch.tensor([0.0, 0.5, -4.0])
    total, rank, penalty = cool_loss(chosen, rejected, gamma=2.0, barrier=0.02, bound=5.0)
    for i in range(3):
        c, r = float(chosen[i]), float(rejected[i])
        p = 1 / (1 + math.exp(-(c - r)))
        want_rank = -((1 - 2 * max(0.0, p - 0.5)) ** 2) * math.log(p)
        want_pen = -(math.log(c + 5) + math.log(5 - c)) - (math.log(r + 5) + math.log(5 - r))
        assert float(rank[i]) == pytest.approx(want_rank, rel=1e-5)
        assert float(penalty[i]) == pytest.approx(want_pen, rel=1e-5)
        assert float(total[i]) == pytest.approx(want_rank + 0.02 * want_pen, rel=1e-5)
    # a hard pair (P < 0.5) keeps the whole log loss; an easy one is decayed; BT never is
    assert float(rank[1]) == pytest.approx(float(bt_loss(chosen[1:2], rejected[1:2])), rel=1e-6)
    assert float(rank[2]) < 1e-3 * float(bt_loss(chosen[2:], rejected[2:]))
    # past the barrier: large and finite, not NaN
    assert torch.isfinite(cool_loss(torch.tensor([7.0]), torch.tensor([0.0]))[0]).all()


class _FakeRM(torch.nn.Module):
    def forward(self, ids, *, seq_ends, loss_fn, **kwargs):
        return loss_fn(ids[:, 0].float())  # the reward is the first token id


def test_reward_loss_sums_pairs_over_the_divisor():
    from lmforge.train.batch import Batch

    ids = torch.tensor([[3], [1], [0], [2]])  # pairs (3 > 1) right, (0 < 2) wrong
    b = Batch(ids, ids, ids, seq_ends=torch.zeros(4, dtype=torch.long))
    loss, parts = RewardLoss("bt")(_FakeRM(), b, divisor=2.0)
    want = (-torch.nn.functional.logsigmoid(torch.tensor(2.0)) - torch.nn.functional.logsigmoid(torch.tensor(-2.0))) / 2
    assert float(loss) == pytest.approx(float(want)) and float(parts["acc"]) == 0.5
    assert RewardLoss().count(b) == 2


@pytest.fixture(scope="module")
def dpo_setup(task_tokenizer, tiny_dir, tmp_path_factory):
    """TRL's DPOTrainer on a Llama copy of the tiny model, with another model as its reference."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from lmforge.align.preferences import task_pairs
    from lmforge.align.tasks import make_examples
    from lmforge.model import load_model, save_model
    from tests.helpers import tiny_model

    tok = task_tokenizer
    tmp = tmp_path_factory.mktemp("dpo")
    policy = load_model(tiny_dir).float()
    ref = tiny_model(seed=9, vocab_size=tok.vocab_size, max_seq_len=256, bos_token_id=tok.bos_id,
                     eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    dirs = {}
    for name, m in (("policy", policy), ("ref", ref)):
        save_model(m, tmp / name, fmt="llama")
        tok.save(tmp / name)
        dirs[name] = AutoModelForCausalLM.from_pretrained(tmp / name, dtype=torch.float32)
    pairs = task_pairs(make_examples(3, seed=4), seed=0)
    data = Dataset.from_list([{"prompt": p.prompt, "chosen": [{"role": "assistant", "content": p.chosen}],
                               "rejected": [{"role": "assistant", "content": p.rejected}]} for p in pairs])

    def trl_loss(loss_type, beta, **extra):
        loss_type = loss_type if isinstance(loss_type, list) else [loss_type]
        args = DPOConfig(output_dir=str(tmp / "out"), beta=beta, loss_type=loss_type, report_to="none",
                         per_device_train_batch_size=len(pairs), use_cpu=True, bf16=False, max_length=None, **extra)
        trainer = DPOTrainer(model=dirs["policy"], ref_model=None if loss_type == ["simpo"] else dirs["ref"], args=args,
                             train_dataset=data, processing_class=AutoTokenizer.from_pretrained(tmp / "policy"))
        batch = next(iter(trainer.get_train_dataloader()))
        return float(trainer.compute_loss(dirs["policy"], batch))

    return tok, policy, ref, pairs, trl_loss


def _our_batch(tok, pairs, ref_model=None):
    from lmforge.align.chat_rows import encode_prompt_answer
    from lmforge.align.pair_rows import lm_pair_batch

    enc = [(encode_prompt_answer(tok, p.prompt, p.chosen), encode_prompt_answer(tok, p.prompt, p.rejected))
           for p in pairs]
    b = lm_pair_batch(enc, tok.pad_id or 0)
    if ref_model is not None:
        b.ref_logps = reference_logps(ref_model, b)
    return b


def test_dpo_loss_matches_trl(dpo_setup):
    tok, policy, ref, pairs, trl_loss = dpo_setup
    b = _our_batch(tok, pairs, ref)
    loss, parts = PreferenceLoss("dpo", beta=0.1)(policy, b, divisor=len(pairs))
    assert float(loss) != pytest.approx(math.log(2), abs=1e-4)  # policy and reference differ
    assert float(loss) == pytest.approx(trl_loss("sigmoid", 0.1), abs=1e-5)


def test_simpo_loss_is_its_formula(dpo_setup):  # TRL 1.16 has SimPO only in its experimental CPO trainer
    from lmforge.align.losses import sequence_logps

    tok, policy, _, pairs, _ = dpo_setup
    b = _our_batch(tok, pairs)
    loss, _ = PreferenceLoss("simpo", beta=2.0, gamma=1.0)(policy, b, divisor=len(pairs))
    logps, n = policy(b.input_ids, document_ids=b.document_ids,
                      loss_fn=lambda h, w: sequence_logps(h, w, b.targets, b.loss_mask))
    avg = logps / n
    want = -torch.nn.functional.logsigmoid(2.0 * (avg[0::2] - avg[1::2]) - 1.0).mean()
    assert float(loss) == pytest.approx(float(want), abs=1e-6)


def test_mpo_loss_matches_trl(dpo_setup):
    """InternVL's MPO is TRL's DPOTrainer with loss_type ["sigmoid", "bco_pair", "sft"] and weights
    [0.8, 0.2, 1.0] (TRL's bco_pair has no reward shift: bco_shift off)."""
    from lmforge.align.losses import MPOLoss

    tok, policy, ref, pairs, trl_loss = dpo_setup
    b = _our_batch(tok, pairs, ref)
    loss, parts = MPOLoss(beta=0.1, bco_shift=False)(policy, b, divisor=len(pairs))
    want = trl_loss(["sigmoid", "bco_pair", "sft"], 0.1, loss_weights=[0.8, 0.2, 1.0])
    assert float(loss) == pytest.approx(want, abs=1e-5)
    dpo, _ = PreferenceLoss("dpo", beta=0.1)(policy, b, divisor=len(pairs))
    assert float(parts["dpo"]) == pytest.approx(float(dpo), abs=1e-6)


def test_mpo_reward_shift_is_the_running_mean(dpo_setup):
    from lmforge.align.losses import MPOLoss, sequence_logps

    tok, policy, ref, pairs, _ = dpo_setup
    b = _our_batch(tok, pairs, ref)
    mpo = MPOLoss(beta=0.1)
    mpo(policy, b, divisor=len(pairs))  # first call: delta 0, then the mean reward
    logps, _ = policy(b.input_ids, document_ids=b.document_ids,
                      loss_fn=lambda h, w: sequence_logps(h, w, b.targets, b.loss_mask))
    rewards = 0.1 * (logps - b.ref_logps)
    assert mpo.delta == pytest.approx(float(rewards.mean()), abs=1e-6) and mpo.seen == len(rewards)
    with torch.no_grad():  # evaluation does not move it
        mpo(policy, b, divisor=len(pairs))
    assert mpo.seen == len(rewards)


def test_mpo_reward_shift_travels_with_the_checkpoint(dpo_setup):
    """`align.loop.fit` saves a loss's state_dict in each checkpoint (trainer_state.json) and loads it on resume."""
    import json

    from lmforge.align.losses import MPOLoss

    tok, policy, ref, pairs, _ = dpo_setup
    mpo = MPOLoss(beta=0.1)
    mpo(policy, _our_batch(tok, pairs, ref), divisor=len(pairs))
    resumed = MPOLoss(beta=0.1)
    resumed.load_state_dict(json.loads(json.dumps(mpo.state_dict())))
    assert (resumed.delta, resumed.seen) == (mpo.delta, mpo.seen) and mpo.seen > 0
