"""Packed rows: attention never crosses a document and positions restart (the backends that
compute it: test_attention_backends.py)."""

import pytest
import torch

from lmforge.model.attention import positions_from_documents
from tests.helpers import tiny_model


def test_positions_restart_per_document():
    docs = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 2]])
    assert positions_from_documents(docs).tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]


@pytest.mark.parametrize("ratio", [1, 2, 4])
def test_packed_row_equals_documents_run_alone(ratio):
    model = tiny_model(seed=ratio, ratio=ratio)
    g = torch.Generator().manual_seed(0)
    lengths = [7, 12, 5]
    docs = [torch.randint(0, model.cfg.vocab_size, (n,), generator=g) for n in lengths]
    row = torch.cat(docs)[None]
    doc_ids = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[None]
    with torch.no_grad():
        packed = model(row, document_ids=doc_ids)[0]
        alone = torch.cat([model(d[None])[0] for d in docs])
    assert (packed - alone).abs().max().item() <= 1e-5


def test_packed_batch_with_backward_on_cpu():
    model = tiny_model().train()
    x = torch.randint(0, model.cfg.vocab_size, (2, 16))
    doc_ids = torch.tensor([[0] * 10 + [1] * 6, [0] * 3 + [1] * 13])
    model(x, document_ids=doc_ids).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
