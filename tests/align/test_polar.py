"""POLAR: the reference/candidate input, the pre-training pairs drawn from a policy pool, the ranked
triples, and the stage end to end on a pool of one tiny model at two temperatures."""

import json

from lmforge.align.config import PolarSection
from lmforge.align.polar import polar, polar_ids, pretraining_pairs, ranked_triples, triple_pairs
from lmforge.align.tasks import check, make_examples

PROMPT = [{"role": "user", "content": "Add 2 and 3."}]


def test_input_is_reference_then_candidate_then_the_reward_token(task_tokenizer):
    tok = task_tokenizer
    ids = polar_ids(tok, PROMPT, "5", "6")
    ref = tok.encode(tok.render_chat([*PROMPT, {"role": "assistant", "content": "5"}], add_generation_prompt=False))
    cand = tok.encode(tok.render_chat([*PROMPT, {"role": "assistant", "content": "6"}], add_generation_prompt=False))
    assert ids == ref + cand + [tok.eos_id]
    assert cand[0] == tok.bos_id  # the candidate's BOS separates the two


def test_pretraining_pairs_put_the_same_policy_first_and_skip_identical_candidates(task_tokenizer):
    tok = task_tokenizer
    pool = [{"answers": [["a1", "a2"], ["x", "y"]]}, {"answers": [["b1", "b2"], ["y", "z"]]}]
    prompts = [PROMPT, PROMPT]
    pairs = pretraining_pairs(tok, prompts, pool, seed=0, seq_len=512)
    # prompt 0: A=0 (a1, a2 vs b1), A=1 (b1, b2 vs a1); prompt 1: A=0 has y == B's first answer: skipped
    assert pairs[0] == (polar_ids(tok, PROMPT, "a1", "a2"), polar_ids(tok, PROMPT, "a1", "b1"))
    assert pairs[1] == (polar_ids(tok, PROMPT, "b1", "b2"), polar_ids(tok, PROMPT, "b1", "a1"))
    assert len(pairs) == 3


def test_triples_are_ranked_by_the_checkers(task_tokenizer):
    examples = make_examples(16, seed=2)
    for ex, (_, ref, ranked) in zip(examples, ranked_triples(examples, seed=0)):
        assert ref == ex.answer and [check(ex, r) for r in ranked] == ["correct", "wrong", "malformed"]
    assert len(triple_pairs(task_tokenizer, ranked_triples(examples, 0), seq_len=512)) == 2 * 16


def test_stage_samples_the_pool_trains_and_reports_the_ablation(tiny_dir, tmp_path):
    cfg = PolarSection(init_from=str(tiny_dir), policies=[str(tiny_dir)], temperatures=[0.5, 1.5], prompts=6,
                       pretrain_steps=2, steps=2, train_examples=12, eval_examples=8, global_batch=4, micro_batch=4,
                       max_new_tokens=4, tensorboard=False)
    s = polar(cfg, tmp_path / "polar", resume=False)
    assert s["pretraining_pairs"] > 0 and s["finetuning_pairs"] == 24
    assert set(s["accuracy"]) == {"pre-trained only", "POLAR (pre-trained + fine-tuned)", "fine-tuned only"}
    pool = json.loads((tmp_path / "polar" / "samples.json").read_text())
    assert len(pool) == 2 and all(len(p["answers"]) == 6 for p in pool)
    assert (tmp_path / "polar" / "finetune" / "model" / "config.json").is_file()
