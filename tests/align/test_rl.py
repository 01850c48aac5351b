"""Online RL: the policy loss against TRL's GRPOTrainer on the same batch, group advantages and GAE
against their formulas, seeded rollouts that reproduce, and a zero learning rate that leaves the
policy unchanged."""

import pytest
import torch

from lmforge.align.advantages import gae, grpo_advantages, rloo_advantages
from lmforge.align.losses import PolicyLoss
from lmforge.model.loss import IGNORE_INDEX
from lmforge.train.batch import Batch


def test_group_advantages():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # two prompts x 3 answers
    g = grpo_advantages(r, 3, eps=0.0 + 1e-12)
    first = torch.tensor([1.0, 0.0, 0.0])
    assert torch.allclose(g[:3], (first - first.mean()) / first.std(), atol=1e-5)
    assert torch.allclose(g[3:], torch.zeros(3), atol=1e-4)  # all equal: no signal
    loo = rloo_advantages(r, 3)
    assert torch.allclose(loo[:3], torch.tensor([1.0, -0.5, -0.5]))
    with pytest.raises(ValueError, match="group >= 2"):
        rloo_advantages(r, 1)


def test_gae_is_the_discounted_sum_of_td_errors():
    torch.manual_seed(0)
    r, v = torch.randn(2, 5), torch.randn(2, 5)
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 1]], dtype=torch.bool)
    gamma, lam = 0.9, 0.8
    adv, ret = gae(r, v, mask, gamma, lam)
    for b in range(2):
        idx = mask[b].nonzero()[:, 0].tolist()
        for k, t in enumerate(idx):
            want = 0.0
            for j, u in enumerate(idx[k:]):
                nxt = v[b, u + 1] if u + 1 in idx else 0.0
                want += (gamma * lam) ** j * (r[b, u] + gamma * nxt - v[b, u])
            assert float(adv[b, t]) == pytest.approx(float(want), abs=1e-5)
            assert float(ret[b, t]) == pytest.approx(float(want + v[b, t]), abs=1e-5)
    assert (adv[~mask] == 0).all()


@pytest.fixture(scope="module")
def grpo_trl(tiny_dir, tmp_path_factory):
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from lmforge.model import load_model, save_model
    from lmforge.tokenizer import Tokenizer

    llama = tmp_path_factory.mktemp("grpo") / "llama"
    save_model(load_model(tiny_dir), llama, fmt="llama")
    Tokenizer.load(tiny_dir).save(llama)
    hf = AutoModelForCausalLM.from_pretrained(llama, dtype=torch.float32)

    def make(loss_type, beta, weighted):
        args = GRPOConfig(output_dir=str(llama.parent / "out"), loss_type=loss_type, beta=beta, report_to="none",
                          use_bias_correction_kl=weighted,
                          use_cpu=True, bf16=False, per_device_train_batch_size=4, num_generations=2,
                          max_completion_length=8, epsilon=0.2)
        return GRPOTrainer(model=hf, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)], args=args,
                           train_dataset=Dataset.from_list([{"prompt": "hi"}] * 4),
                           processing_class=AutoTokenizer.from_pretrained(llama))
    return hf, make


@pytest.mark.parametrize("aggregate, loss_type, weighted", [("token", "bnpo", True), ("sequence", "grpo", True),
                                                            ("token", "bnpo", False)])
def test_policy_loss_matches_trl_grpo(grpo_trl, tiny_dir, aggregate, loss_type, weighted):
    from lmforge.model import load_model

    hf, make = grpo_trl
    g = torch.Generator().manual_seed(0)
    B, P, C = 4, 5, 6
    prompt, completion = torch.randint(3, 300, (B, P), generator=g), torch.randint(3, 300, (B, C), generator=g)
    cmask = torch.ones(B, C, dtype=torch.long)
    cmask[1, 4:], cmask[3, 2:] = 0, 0
    adv = torch.tensor([1.0, -0.5, 0.3, -0.8])
    old = -3 + 0.3 * torch.randn(B, C, generator=g)
    ref = -3 + 0.3 * torch.randn(B, C, generator=g)
    trainer = make(loss_type, 0.05, weighted)
    inputs = {"prompt_ids": prompt, "prompt_mask": torch.ones_like(prompt), "completion_ids": completion,
              "completion_mask": cmask, "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref,
              "num_items_in_batch": cmask.sum()}
    theirs = float(trainer._compute_loss(hf, inputs).detach())

    ids = torch.cat([prompt, completion], 1)
    L = P + C - 1
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[:, P - 1:] = cmask.bool()
    targets = ids[:, 1:].masked_fill(~mask, IGNORE_INDEX)
    full = torch.zeros(B, L)
    full_ref = torch.zeros(B, L)
    full[:, P - 1:], full_ref[:, P - 1:] = old, ref
    b = Batch(ids[:, :-1], targets, torch.zeros(B, L, dtype=torch.long), loss_mask=mask, advantages=adv,
              old_logps=full, ref_logps=full_ref)
    loss_fn = PolicyLoss(clip=0.2, beta=0.05, aggregate=aggregate, kl_weighted=weighted)
    ours, _ = loss_fn(load_model(tiny_dir).float(), b, loss_fn.count(b))
    assert float(ours) == pytest.approx(theirs, abs=1e-5)


def test_rollouts_reproduce_with_a_seed_and_keep_the_end_of_turn(tiny_dir):
    from lmforge.align.rollout import rollout
    from lmforge.generate.engine import Engine
    from lmforge.inference import load_for_inference
    from lmforge.tokenizer.special import IM_END

    model, tok = load_for_inference(tiny_dir, device="cpu")
    prompts = [[{"role": "user", "content": "Add 2 and 3."}], [{"role": "user", "content": "Reverse: cat"}]]

    def run(seed):
        return rollout(Engine(model, tok, kv_blocks=64, max_batch=8), tok, prompts, group=3, max_new_tokens=6,
                       seed=seed)
    a, b, c = run(5), run(5), run(6)
    assert [r.completion for r in a] == [r.completion for r in b]
    assert [r.completion for r in a] != [r.completion for r in c]
    assert len({tuple(r.completion) for r in a[:3]}) > 1  # the group's answers differ
    for r in a:
        assert r.prompt == tok.encode_chat(prompts[0 if r in a[:3] else 1], add_generation_prompt=True)
        assert r.finish == "length" or r.completion[-1] == tok.token_to_id(IM_END)


def test_zero_learning_rate_leaves_the_policy_unchanged_and_the_stage_reports(tiny_dir, tmp_path):
    from lmforge.align.config import RLSection
    from lmforge.align.rl import rl
    from lmforge.model import load_model

    cfg = RLSection(init_from=str(tiny_dir), steps=2, lr=0.0, kl=0.1, global_batch=2, group=2, train_examples=8,
                    eval_examples=8, max_new_tokens=4, eval_every=1, tensorboard=False)
    s = rl(cfg, tmp_path / "rl", resume=False)
    a, b = load_model(tiny_dir).state_dict(), load_model(tmp_path / "rl" / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert s["steps"] == 2 and s["accuracy_before"] == s["accuracy_after"]
    assert (tmp_path / "rl" / "curves.png").is_file()


def test_rl_on_some_tasks_also_measures_every_task_and_the_report_shows_them(tiny_dir, tmp_path):
    from lmforge.align.config import RLSection
    from lmforge.align.rl import rl
    from lmforge.align.tasks import TASKS
    from lmforge.report.build import _rl_section
    from lmforge.report.page import ReportPage

    cfg = RLSection(init_from=str(tiny_dir), steps=1, lr=0.0, tasks=["first_word"], global_batch=2, group=2,
                    train_examples=8, eval_examples=16, every_examples=24, max_new_tokens=4, eval_every=0,
                    tensorboard=False)
    s = rl(cfg, tmp_path / "rl", resume=False)
    assert set(s["accuracy_before"]) == {"first_word", "all"}  # the trained subset's own held-out prompts
    assert set(s["accuracy_every_before"]) == {*TASKS, "all"}  # and every task's
    assert s["accuracy_every_before"] == s["accuracy_every_after"]  # lr 0: the same model on the same prompts
    # the paired change: the same verdicts on the same prompts, nothing gained or lost
    assert set(s["change"]) == {"trained", "every"}
    assert (s["change"]["trained"]["all"]["n"], s["change"]["every"]["all"]["n"]) == (16, 24)
    assert all((c["gained"], c["lost"], c["p"]) == (0, 0, 1.0) for part in s["change"].values() for c in part.values())
    s["curves"] = None  # the plot is the run's business
    page = ReportPage("t")
    _rl_section(page, s, None, {}, tmp_path)
    (sec,) = page.sections
    assert "trained on first_word only" in sec.blocks[0][1]
    assert [row[0] for row in sec.blocks[1][2]] == [*TASKS, "all"]
    assert sec.blocks[1][1][-1] == "one answer" and set(s["one_answer_every"]) == {*TASKS, "all"}
    assert "on first_word, +0.0 points (SE 0.0, p = 1; 0 gained, 0 lost of 16); on every task" in sec.blocks[2][1]
    s.pop("accuracy_every_after")  # a run on every task shows its own table
    s["change"].pop("every")
    page = ReportPage("t")
    _rl_section(page, s, None, {}, tmp_path)
    assert [row[0] for row in page.sections[0].blocks[1][2]] == ["first_word", "all"]


def test_a_step_raises_the_log_prob_of_answers_with_positive_advantage(tiny_dir):
    from lmforge.align.config import RLSection
    from lmforge.align.losses import token_logps
    from lmforge.align.rl import rl_batch
    from lmforge.align.rollout import rollout
    from lmforge.generate.engine import Engine
    from lmforge.model import load_model
    from lmforge.tokenizer import Tokenizer
    from lmforge.train.parallel import init_distributed
    from lmforge.train.trainer import Trainer

    tok = Tokenizer.load(tiny_dir)
    trainer = Trainer(load_model(tiny_dir).float(), RLSection(init_from=str(tiny_dir), lr=1e-2).train_section(),
                      init_distributed(device="cpu"))
    model = trainer.model
    prompts = [[{"role": "user", "content": "Add 2 and 3."}], [{"role": "user", "content": "Reverse: cat"}]]
    rolls = rollout(Engine(model, tok, kv_blocks=64, max_batch=8), tok, prompts, group=4, max_new_tokens=6, seed=1)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 1.0])
    batches = rl_batch(rolls, adv, model, None, 0, 8)
    before = (token_logps(model, batches[0]) * batches[0].loss_mask).sum(1)
    model.train()
    trainer.step(batches, PolicyLoss(), 1e-2)
    delta = (token_logps(model, batches[0]) * batches[0].loss_mask).sum(1) - before
    assert delta[adv > 0].mean() > 0 > delta[adv < 0].mean()


@pytest.mark.parametrize("beta", [0.0, 0.05])
def test_on_policy_batches_need_no_separate_log_prob_pass(tiny_dir, beta):
    """One update per rollout: the loss's own (detached) log-probs stand in for the sampling policy's,
    giving the loss and gradient of a batch that carries them from a separate forward."""
    from lmforge.align.rl import rl_batch
    from lmforge.align.rollout import rollout
    from lmforge.generate.engine import Engine
    from lmforge.model import load_model
    from lmforge.tokenizer import Tokenizer

    tok = Tokenizer.load(tiny_dir)
    model = load_model(tiny_dir).float()
    reference = load_model(tiny_dir).float().requires_grad_(False)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.01 * torch.randn_like(p))  # a reference apart from the policy, so the KL term is not 0
    prompts = [[{"role": "user", "content": "Add 2 and 3."}], [{"role": "user", "content": "Reverse: cat"}]]
    rolls = rollout(Engine(model, tok, kv_blocks=64, max_batch=8), tok, prompts, group=4, max_new_tokens=6, seed=1)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5, -1.0, 1.0, -2.0, 2.0])
    results = []
    for old in (True, False):
        batch = rl_batch(rolls, adv, model, reference if beta else None, 0, 8, old_logps=old)[0]
        assert (batch.old_logps is not None) == old
        model.zero_grad()
        loss, _ = PolicyLoss(beta=beta)(model, batch, float(batch.loss_mask.sum()))
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (a, ga), (b, gb) = results
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert max(float((x - y).abs().max()) for x, y in zip(ga, gb)) < 1e-5
    assert any(float(g.abs().max()) > 1e-4 for g in ga)  # a real gradient, not zeros on both sides


def test_reward_models_can_give_the_reward_while_the_checkers_measure(tiny_dir, tmp_path):
    import json

    from lmforge.align.config import RLSection
    from lmforge.align.reward import RewardModel, save_reward_model
    from lmforge.align.rl import rl
    from lmforge.model import load_model

    dirs = []
    for seed in (1, 2):
        rm = RewardModel.from_lm(load_model(tiny_dir), seed=seed)
        torch.nn.init.normal_(rm.score.weight)
        dirs.append(str(save_reward_model(rm, tmp_path / f"rm{seed}", tiny_dir)))
    cfg = RLSection(init_from=str(tiny_dir), steps=1, reward="rm", reward_models=dirs, global_batch=2, group=2,
                    train_examples=8, eval_examples=4, max_new_tokens=4, eval_every=0, tensorboard=False)
    rl(cfg, tmp_path / "rl", resume=False)
    row = [json.loads(line) for line in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()
           if "reward" in json.loads(line)][0]
    assert any(k.startswith("acc_") for k in row) and row["reward"] != row["accuracy"]
    with pytest.raises(ValueError, match="reward_models"):
        RLSection(reward="rm")


def test_best_of_groups_keeps_only_groups_with_a_standout():
    from lmforge.align.rl import best_of_groups

    r = torch.tensor([0.0, 1.0, 0.0, 0.5, 0.5, 0.5, -1.0, 0.2, 0.9])
    assert best_of_groups(r, 3) == [1, 8]  # the middle group's answers are all equal
    assert best_of_groups(r, 3, min_reward=1.0) == [1]  # checker rewards: only correct answers


def test_rft_with_polar_rewards_trains_on_the_best_answers(tiny_dir, tmp_path):
    from lmforge.align.config import RLSection
    from lmforge.align.reward import RewardModel, save_reward_model
    from lmforge.align.rl import rl
    from lmforge.model import load_model

    rm = RewardModel.from_lm(load_model(tiny_dir), seed=4)
    torch.nn.init.normal_(rm.score.weight)
    polar_dir = save_reward_model(rm, tmp_path / "polar", tiny_dir)
    cfg = RLSection(init_from=str(tiny_dir), steps=2, algorithm="rft", reward="polar", polar_model=str(polar_dir),
                    lr=1e-2, global_batch=2, group=3, train_examples=8, eval_examples=4, max_new_tokens=4,
                    eval_every=0, tensorboard=False)
    s = rl(cfg, tmp_path / "rl", resume=False)
    a, b = load_model(tiny_dir).state_dict(), load_model(tmp_path / "rl" / "model").state_dict()
    assert s["steps"] == 2 and any(not torch.equal(a[k], b[k]) for k in a)  # it learned something
    with pytest.raises(ValueError, match="polar_model"):
        RLSection(reward="polar")


def test_ppo_warms_the_critic_up_alone_then_moves_the_policy(tiny_dir, tmp_path):
    import json

    from lmforge.align.config import RLSection
    from lmforge.align.reward import RewardModel, save_reward_model
    from lmforge.align.rl import rl
    from lmforge.model import load_model

    rm_dir = save_reward_model(RewardModel.from_lm(load_model(tiny_dir), seed=5), tmp_path / "rm", tiny_dir)
    base = dict(init_from=str(tiny_dir), algorithm="ppo", reward="rm", reward_models=[str(rm_dir)], kl=0.01,
                lr=1e-2, critic_lr=1e-2, global_batch=2, group=2, train_examples=8, eval_examples=4,
                max_new_tokens=4, eval_every=0, tensorboard=False)
    rl(RLSection(steps=2, critic_warmup=2, **base), tmp_path / "warm", resume=False)
    a = load_model(tiny_dir).state_dict()
    assert all(torch.equal(a[k], v) for k, v in load_model(tmp_path / "warm" / "model").state_dict().items())
    rows = [json.loads(line) for line in (tmp_path / "warm" / "metrics.jsonl").read_text().splitlines()]
    assert all("vf" in r for r in rows if "reward" in r)  # the critic trained at every step
    rl(RLSection(steps=2, critic_warmup=1, **base), tmp_path / "ppo", resume=False)
    b = load_model(tmp_path / "ppo" / "model").state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)  # after the warm-up the policy moves


def test_value_loss_is_zero_at_the_critics_own_values_and_half_squared_error_otherwise(tiny_dir):
    from lmforge.align.chat_rows import Encoded
    from lmforge.align.losses import ValueLoss, token_values
    from lmforge.align.pair_rows import lm_batch
    from lmforge.align.reward import RewardModel
    from lmforge.model import load_model

    critic = RewardModel.from_lm(load_model(tiny_dir), seed=0)
    torch.nn.init.normal_(critic.score.weight)
    b = lm_batch([Encoded(list(range(3, 12)), [False] * 5 + [True] * 4),
                  Encoded(list(range(20, 26)), [False] * 4 + [True] * 2)], 0)
    b.rewards = token_values(critic, b)
    loss, _ = ValueLoss()(critic, b, ValueLoss().count(b))
    assert float(loss) == pytest.approx(0.0, abs=1e-10)
    b.rewards = b.rewards + b.loss_mask.float()  # every return 1 above its value
    loss, _ = ValueLoss()(critic, b, ValueLoss().count(b))
    assert float(loss) == pytest.approx(0.5, abs=1e-5)


def test_ptx_adds_the_pretraining_loss_to_the_policy_update(tiny_dir, tmp_path):
    """COOL's PTX: policy loss + coef x next-token loss of pre-training rows, each normalised by its
    own count; coef 0 gives the policy's gradient exactly; `lmforge rl` reads the rows from shards."""
    import json

    from lmforge.align.config import RLSection
    from lmforge.align.losses import PolicyLoss, PretrainMix
    from lmforge.align.rl import rl
    from lmforge.model import load_model
    from lmforge.model.loss import lm_loss
    from lmforge.shards import write_shard
    from lmforge.tokenizer import Tokenizer
    from lmforge.train.loader import PackedLoader

    tok = Tokenizer.load(tiny_dir)
    text = "The quick brown fox jumps over the lazy dog. " * 40
    write_shard(tmp_path / "shards", "shard_00000", [[tok.bos_id, *tok.encode(text), tok.eos_id]] * 4,
                tok.vocab_size)
    model = load_model(tiny_dir).float()
    policy_batch = _policy_batch(model, tok)
    pretrain = PackedLoader(tmp_path / "shards", model.cfg.vocab_size, 32, 2, 2).next_step()[0]
    mix = PretrainMix(PolicyLoss(0.2, 0.0), 0.5, ptx_tokens=pretrain.n_targets)
    assert mix.count(pretrain) == 0 and mix.count(policy_batch) == PolicyLoss(0.2, 0.0).count(policy_batch)
    ptx, parts = mix(model, pretrain, 123.0)  # the trainer's divisor is the policy's, not the PTX rows'
    logits = model(pretrain.input_ids, document_ids=pretrain.document_ids)
    expected, _ = lm_loss(logits.float(), pretrain.targets)
    assert torch.allclose(ptx, 0.5 * expected, atol=1e-5) and torch.allclose(parts["ptx"], expected, atol=1e-5)

    grads = []
    for coef in (0.0, None):
        model.zero_grad()
        fn = PolicyLoss(0.2, 0.0) if coef is None else PretrainMix(PolicyLoss(0.2, 0.0), coef, pretrain.n_targets)
        loss, _ = fn(model, policy_batch, float(fn.count(policy_batch)))
        if coef is not None:
            loss = loss + fn(model, pretrain, 1.0)[0]
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(*grads))

    cfg = RLSection(init_from=str(tiny_dir), algorithm="grpo", steps=2, ptx=0.5, ptx_data=str(tmp_path / "shards"),
                    ptx_rows=2, seq_len=32, global_batch=2, group=2, train_examples=8, eval_examples=4,
                    max_new_tokens=4, eval_every=0, tensorboard=False, lr=1e-3)
    rl(cfg, tmp_path / "rl", resume=False)
    rows = [json.loads(line) for line in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["ptx"] > 0 for r in rows if "reward" in r)
    with pytest.raises(ValueError, match="ptx_data"):
        rl(RLSection(init_from=str(tiny_dir), ptx=0.5, steps=1), tmp_path / "no_data", resume=False)
    with pytest.raises(ValueError, match="rft"):
        RLSection(algorithm="rft", ptx=0.5)


def _policy_batch(model, tok):
    """Two prompts x two sampled answers as RL rows, with made-up advantages."""
    from lmforge.align.rl import rl_batch
    from lmforge.align.rollout import rollout
    from lmforge.generate.engine import Engine

    prompts = [[{"role": "user", "content": "Add 2 and 3."}], [{"role": "user", "content": "Reverse: cat"}]]
    rolls = rollout(Engine(model, tok, kv_blocks=64, max_batch=8), tok, prompts, group=2, max_new_tokens=6, seed=1)
    return rl_batch(rolls, torch.tensor([1.0, -1.0, -1.0, 1.0]), model, None, 0, 8)[0]


def test_dynamic_sampling_draws_until_enough_groups_have_unequal_rewards():
    """DAPO's dynamic sampling: groups with one reward for every answer are dropped and more prompts
    are drawn, at most `max_sample_batches` batches; the seeds are those of the plain loop."""
    import types

    from lmforge.align.config import RLSection
    from lmforge.align.rl import draw_groups, varied_groups

    r = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -0.5, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    assert varied_groups(r, 4).tolist() == [True, False, True, False]

    class Source:  # answers "right" to the prompts whose number is in `varied`, else all "wrong"
        def __init__(self, varied):
            self.varied, self.seeds = varied, []

        def generate(self, prompt_ids, group, max_new_tokens, temperature, top_p, seed):
            self.seeds.append(seed)
            return [types.SimpleNamespace(text="right" if p[0] in self.varied and k == 0 else "wrong")
                    for p in prompt_ids for k in range(group)]

    tok = types.SimpleNamespace(encode_chat=lambda msgs, add_generation_prompt: [int(msgs[0]["content"])])
    train = [types.SimpleNamespace(messages=lambda system, i=i: [{"role": "user", "content": str(i)}, {}])
             for i in range(20)]
    order = list(range(20))

    def score(examples, rolls):
        v = torch.tensor([1.0 if x.text == "right" else 0.0 for x in rolls])
        return v, v

    base = dict(global_batch=3, group=2, seed=5)
    src = Source(varied={1, 4, 5, 9})
    ex, rolls, verdicts, rewards, keep, cursor = draw_groups(
        RLSection(dynamic_sampling=True, max_sample_batches=4, **base), src, tok, train, order, 0, None, score)
    assert cursor == 6 and len(ex) == 6 and len(rolls) == 12  # two batches of 3 prompts held 3 varied groups
    assert [ex[j] for j in keep] == [train[1], train[4], train[5]]
    assert src.seeds == [5 * 1_000_003 + 0, 5 * 1_000_003 + 3 * 2]  # the cursor's seeds, as without it
    src = Source(varied={1})  # too few: it stops after max_sample_batches and trains on what it found
    ex, *_, keep, cursor = draw_groups(RLSection(dynamic_sampling=True, max_sample_batches=2, **base), src, tok,
                                       train, order, 0, None, score)
    assert cursor == 6 and [ex[j] for j in keep] == [train[1]]
    src = Source(varied={1})  # off: one batch, every group kept
    ex, *_, keep, cursor = draw_groups(RLSection(**base), src, tok, train, order, 3, None, score)
    assert cursor == 6 and keep == [0, 1, 2] and ex == train[3:6] and src.seeds == [5 * 1_000_003 + 6]
    with pytest.raises(ValueError, match="PPO's critic"):
        RLSection(dynamic_sampling=True, algorithm="ppo")


def test_partial_credit_grades_wrong_answers_by_their_distance_to_the_reference():
    from lmforge.align.config import RLSection
    from lmforge.align.rl import checker_rewards
    from lmforge.align.tasks import Example, similarity

    sort = Example("sort", "Sort: 3 1 2 9", "1 2 3 9", {"numbers": [3, 1, 2, 9]})
    reverse = Example("reverse", "Reverse the word: stone", "enots", {"word": "stone"})
    assert similarity(sort, "1 2 3 9") == 1.0
    assert similarity(sort, "1 2 4 9") == pytest.approx(3 / 4)  # one number of four replaced
    assert similarity(sort, "1 2 3") == pytest.approx(3 / 4)  # one number left out
    assert similarity(reverse, "enots") == 1.0 and similarity(reverse, "enost") == pytest.approx(3 / 5)
    assert similarity(reverse, "") == 0.0
    answers = ["1 2 3 9", "1 2 4 9", "1, 2, 3, 9", "9 9 9 9"]  # correct, near miss, malformed, far miss
    verdicts, rewards = checker_rewards([sort], answers, 4, -0.5)
    assert verdicts.tolist() == rewards.tolist() == [1.0, 0.0, -0.5, 0.0]
    verdicts, rewards = checker_rewards([sort], answers, 4, -0.5, partial=0.5)
    assert verdicts.tolist() == [1.0, 0.0, -0.5, 0.0]  # accuracy stays the checkers'
    assert rewards.tolist() == pytest.approx([1.0, 0.375, -0.5, 0.125])
    with pytest.raises(ValueError, match="partial credit grades the checkers"):
        RLSection(partial_credit=0.5, reward="rm", reward_models=["x"])
    with pytest.raises(ValueError, match="partial_credit"):
        RLSection(partial_credit=1.0)
