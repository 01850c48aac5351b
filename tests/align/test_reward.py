"""The reward model: export that transformers loads as LlamaForSequenceClassification with the same
scores, our loader's round trip, and refusal of a directory that is not a reward model."""

import pytest
import torch

from lmforge.align.reward import RewardModel, load_reward_model, reward_ids, save_reward_model, score

CONVS = [[{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"}],
         [{"role": "user", "content": "Reverse the word: cat"}, {"role": "assistant", "content": "the word tac"}]]


@pytest.fixture(scope="module")
def rm_dir(tiny_dir, tmp_path_factory):
    from lmforge.model import load_model

    rm = RewardModel.from_lm(load_model(tiny_dir), seed=3)
    torch.nn.init.normal_(rm.score.weight)  # a head that gives distinct scores
    return rm, save_reward_model(rm, tmp_path_factory.mktemp("rm") / "rm", tiny_dir)


def test_scores_read_the_reward_token_and_survive_our_round_trip(rm_dir, task_tokenizer):
    rm, path = rm_dir
    ours = score(rm, task_tokenizer, CONVS)
    assert ours.shape == (2,) and ours[0] != ours[1]
    assert torch.allclose(score(load_reward_model(path), task_tokenizer, CONVS), ours, atol=1e-6)
    ids = reward_ids(task_tokenizer, CONVS[0])
    assert ids[-1] == task_tokenizer.eos_id  # the reward token
    # padding to a longer row does not change a score (causal: the reward token never sees the pad)
    single = score(rm, task_tokenizer, CONVS[:1])
    assert torch.allclose(single, ours[:1], atol=1e-6)


def test_transformers_loads_the_export_as_a_sequence_classifier_with_the_same_scores(rm_dir, task_tokenizer):
    from transformers import AutoModelForSequenceClassification

    rm, path = rm_dir
    hf = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    assert type(hf).__name__ == "LlamaForSequenceClassification" and hf.config.num_labels == 1
    for conv, want in zip(CONVS, score(rm, task_tokenizer, CONVS)):
        ids = torch.tensor([reward_ids(task_tokenizer, conv)])
        with torch.no_grad():
            got = hf(input_ids=ids).logits[0, 0]
        assert float(got) == pytest.approx(float(want), abs=1e-5)


def test_a_language_model_directory_is_not_a_reward_model(tiny_dir):
    with pytest.raises(ValueError, match="not a reward model"):
        load_reward_model(tiny_dir)


def test_packed_rows_give_the_rewards_of_padded_rows(rm_dir, task_tokenizer):
    from lmforge.align.pair_rows import reward_batch

    rm, _ = rm_dir
    seqs = [reward_ids(task_tokenizer, c) for c in CONVS * 3]
    pairs = list(zip(seqs[0::2], seqs[1::2]))
    padded = reward_batch(pairs, 0)
    packed = reward_batch(pairs, 0, seq_len=2 * max(map(len, seqs)) + 1)
    assert packed.input_ids.shape[0] < padded.input_ids.shape[0]  # several sequences share a row
    with torch.no_grad():
        a = rm(padded.input_ids, ends=padded.seq_ends, document_ids=padded.document_ids)
        b = rm(packed.input_ids, ends=packed.seq_ends, document_ids=packed.document_ids)
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("option", ["smear_keys", "qk_norm"])
def test_a_reward_model_without_a_llama_form_saves_in_the_internlm2_layout_and_scores_the_same(tmp_path, option):
    import json

    from lmforge.align.reward import score_ids
    from tests.helpers import tiny_model_with

    rm = RewardModel.from_lm(tiny_model_with(option, seed=6)).eval()
    path = save_reward_model(rm, tmp_path / "rm")
    assert json.loads((path / "config.json").read_text())["architectures"] == ["InternLM2ForRewardModel"]
    g = torch.Generator().manual_seed(7)
    seqs = [torch.randint(3, rm.cfg.vocab_size, (n,), generator=g).tolist() for n in (5, 9, 3)]
    torch.testing.assert_close(score_ids(load_reward_model(path), seqs, 0), score_ids(rm, seqs, 0))
