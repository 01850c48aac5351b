"""Next-token sampling (lmforge.generate.sampling): the batched inverse-transform draw follows the
distribution, never draws a token of probability 0, and a row's draw depends on its own seed only."""

import torch

from lmforge.generate.sampling import Choice, SamplingParams, draw, sample_rows


def test_draw_follows_the_distribution():
    probs = torch.tensor([0.5, 0.0, 0.3, 0.15, 0.05])
    n = 40_000
    ids = draw(probs.expand(n, -1).contiguous(), [torch.Generator().manual_seed(s) for s in range(n)])
    counts = torch.bincount(ids, minlength=5).double()
    expected = probs.double() * n
    assert counts[1] == 0  # probability 0: never
    keep = expected > 0
    chi2 = float((((counts - expected) ** 2)[keep] / expected[keep]).sum())
    assert chi2 < 16.3  # chi-square, 3 degrees of freedom, p = 0.001
    # and without generators (the global one)
    assert set(draw(probs.expand(2000, -1).contiguous()).tolist()) <= {0, 2, 3, 4}


def test_a_rows_draw_depends_on_its_seed_only():
    torch.manual_seed(0)
    logits = torch.randn(6, 50)
    params = [SamplingParams(temperature=t, top_k=k, top_p=p, seed=0)
              for t, k, p in [(1.0, 0, 1.0), (0.7, 0, 1.0), (0.0, 0, 1.0), (1.3, 10, 0.9), (1.0, 10, 0.9), (0.5, 0, 0.8)]]

    def gens():
        return [torch.Generator().manual_seed(100 + r) for r in range(6)]

    together = [c.token_id for c in sample_rows(logits, params, gens(), [torch.tensor([], dtype=torch.long)] * 6)]
    for r in range(6):  # each row alone, with its own generator, draws what it drew in the batch
        alone = sample_rows(logits[r:r + 1], params[r:r + 1], gens()[r:r + 1], [torch.tensor([], dtype=torch.long)])
        assert alone[0].token_id == together[r]
    assert together[2] == int(logits[2].argmax())  # temperature 0: greedy
    # top-k 10: only the ten most likely tokens, over many draws
    many = [sample_rows(logits[3:4], params[3:4], [torch.Generator().manual_seed(s)], [torch.tensor([], dtype=torch.long)])[0]
            for s in range(300)]
    assert {c.token_id for c in many} <= set(logits[3].topk(10).indices.tolist())
    assert isinstance(many[0], Choice)


def test_repetition_penalty_applies_before_the_draw():
    logits = torch.tensor([[5.0, 4.9, -3.0]])
    params = [SamplingParams(temperature=0.0, repetition_penalty=2.0)]
    # token 0 seen: 5.0 / 2 = 2.5 < 4.9, so greedy takes token 1
    assert sample_rows(logits, params, [None], [torch.tensor([0])])[0].token_id == 1
