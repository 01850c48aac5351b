"""Conversations as training rows: the assistant-token mask, packing with document boundaries, the
SFT loader's order and resume, and the mask and loss against TRL's SFTTrainer on the same model."""

import pytest
import torch

from lmforge.align.chat_rows import SFTLoader, build_rows, encode_conversation, encode_prompt_answer, fit_to_row, pack
from lmforge.model.loss import IGNORE_INDEX
from lmforge.tokenizer.special import IM_END

CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add 2 and 3."},
        {"role": "assistant", "content": "5"}, {"role": "user", "content": "Reverse the word: cat"},
        {"role": "assistant", "content": "tac"}]


def test_mask_covers_exactly_the_assistant_turns_and_their_end_of_turn(task_tokenizer):
    tok = task_tokenizer
    enc = encode_conversation(tok, CONV)
    assert tok.decode(enc.ids) == tok.render_chat(CONV, add_generation_prompt=False)
    learned = tok.decode([i for i, m in zip(enc.ids, enc.mask) if m])
    assert learned == f"5{IM_END}\ntac{IM_END}\n"
    # the prompt-completion form gives the last turn's mask
    last = encode_prompt_answer(tok, CONV[:-1], "tac")
    assert last.ids == enc.ids and tok.decode([i for i, m in zip(last.ids, last.mask) if m]) == f"tac{IM_END}\n"


def test_packed_rows_keep_documents_apart_and_count_only_assistant_targets(task_tokenizer):
    tok = task_tokenizer
    enc = [encode_conversation(tok, CONV[1:3]), encode_conversation(tok, CONV)]
    groups = pack(enc, seq_len=200)
    assert groups == [[0, 1]]
    b = build_rows(enc, groups, seq_len=200)
    n0 = len(enc[0].ids)
    assert b.document_ids[0, n0 - 1] == 0 and b.document_ids[0, n0] == 1  # the second conversation
    assert b.targets[0, n0 - 1] == IGNORE_INDEX  # no target across the boundary
    assert b.n_targets == sum(enc[0].mask[1:]) + sum(enc[1].mask[1:])
    assert (b.document_ids[0, n0 + len(enc[1].ids):] == 2).all()  # padding: a document of its own
    # a conversation longer than a row is the caller's to cut first (the SFT loader does, fit_to_row)
    with pytest.raises(ValueError, match="more than a row"):
        pack(enc, seq_len=10)
    cut = [fit_to_row(e, 11) for e in enc]
    assert pack(cut, seq_len=10) == [[0], [1]]


def test_loader_is_deterministic_and_resumes_where_it_stopped(task_tokenizer):
    from lmforge.align.tasks import make_examples

    tok = task_tokenizer
    enc = [encode_conversation(tok, ex.messages()) for ex in make_examples(40, seed=1)]
    a = SFTLoader(enc, 64, global_batch=4, micro_batch=2, seed=3)
    first = [a.next_step() for _ in range(5)]
    state = a.state_dict()
    rest = [a.next_step() for _ in range(5)]
    b = SFTLoader(enc, 64, global_batch=4, micro_batch=2, seed=3)
    b.load_state_dict(state)
    for x, y in zip(rest, [b.next_step() for _ in range(5)]):
        assert all(torch.equal(u.input_ids, v.input_ids) and torch.equal(u.loss_mask, v.loss_mask) for u, v in zip(x, y))
    # two data-parallel ranks split each step's rows
    r0 = SFTLoader(enc, 64, 4, 2, dp_rank=0, dp_size=2, seed=3).next_step()
    r1 = SFTLoader(enc, 64, 4, 2, dp_rank=1, dp_size=2, seed=3).next_step()
    assert torch.equal(torch.cat([r0[0].input_ids, r1[0].input_ids]), torch.cat([b.input_ids for b in first[0]]))


def test_mask_and_loss_match_trl_sft_trainer(task_tokenizer, tiny_dir, tmp_path):
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from lmforge.align.tasks import make_examples
    from lmforge.model import load_model, save_model
    from lmforge.train.losses import NextTokenLoss

    tok = task_tokenizer
    llama = tmp_path / "llama"
    save_model(load_model(tiny_dir), llama, fmt="llama")
    tok.save(llama)
    examples = make_examples(6, seed=3)
    data = Dataset.from_list([{"prompt": ex.messages("Answer briefly.")[:-1],
                               "completion": ex.messages()[-1:]} for ex in examples])
    hf_model = AutoModelForCausalLM.from_pretrained(llama, dtype=torch.float32)
    args = SFTConfig(output_dir=str(tmp_path / "trl"), completion_only_loss=True, max_length=256, packing=False,
                     report_to="none", per_device_train_batch_size=6, use_cpu=True, bf16=False)
    trainer = SFTTrainer(model=hf_model, args=args, train_dataset=data,
                         processing_class=AutoTokenizer.from_pretrained(llama))
    rows = [trainer.train_dataset[i] for i in range(len(examples))]
    ours = [encode_prompt_answer(tok, ex.messages("Answer briefly.")[:-1], ex.answer) for ex in examples]
    for row, enc in zip(rows, ours):
        assert row["input_ids"] == enc.ids
        # TRL folds its completion mask into the labels: -100 outside the completion
        assert row["labels"] == [i if m else -100 for i, m in zip(enc.ids, enc.mask)]
    batch = trainer.data_collator(rows)
    trl_loss = float(trainer.compute_loss(hf_model, batch))
    b = build_rows(ours, [[i] for i in range(len(ours))], seq_len=max(len(e.ids) for e in ours))
    loss, _ = NextTokenLoss()(load_model(tiny_dir).float(), b, b.n_targets)
    assert float(loss) == pytest.approx(trl_loss, abs=1e-5)
