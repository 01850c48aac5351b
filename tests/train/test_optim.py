"""AdaLomo against its formula (arXiv 2310.10195; docs/papers.md §6), its memory, and the LR
schedules."""

import math

import pytest
import torch

from lmforge.train.adalomo import AdaLomo
from lmforge.train.schedule import lr_at


def reference_adalomo(params, grads_per_step, lr, wd):
    """AdaLomo written directly from the formula, one tensor at a time, no shared code."""
    params = [p.clone().double() for p in params]
    state = [None] * len(params)
    for t, grads in enumerate(grads_per_step, start=1):
        beta = 1 - t ** -0.8
        for i, (p, g) in enumerate(zip(params, grads)):
            g = g.double()
            sq = g**2 + 1e-30
            if p.dim() == 2:
                r_new, c_new = sq.mean(dim=1), sq.mean(dim=0)
                if state[i] is None:
                    state[i] = (torch.zeros_like(r_new), torch.zeros_like(c_new))
                r = beta * state[i][0] + (1 - beta) * r_new
                c = beta * state[i][1] + (1 - beta) * c_new
                state[i] = (r, c)
                v = torch.outer(r / r.mean(), c)
            else:
                prev = state[i] if state[i] is not None else torch.zeros_like(sq)
                v = beta * prev + (1 - beta) * sq
                state[i] = v
            u = g / v.sqrt()
            u = u / max(1.0, (u.pow(2).mean().sqrt() / 1.0).item())
            step = lr * max(1e-3, p.pow(2).mean().sqrt().item())
            params[i] = p * (1 - step * wd) - step * u
    return params


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(12, 7, generator=g) * 0.1
    b = torch.randn(7, generator=g) * 0.1
    x = torch.randn(16, 12, generator=g)
    return w, b, x


def _grads(w, b, x):
    w, b = w.clone().requires_grad_(), b.clone().requires_grad_()
    ((x @ w + b).tanh().pow(2).sum()).backward()
    return [w.grad, b.grad]


@pytest.mark.parametrize("fused", [False, True])
def test_two_steps_equal_the_formula(fused):
    w0, b0, x = _problem()
    lr, wd = 0.05, 0.1
    w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
    opt = AdaLomo([{"params": [w], "weight_decay": wd}, {"params": [b], "weight_decay": wd}], lr=lr)
    if fused:
        opt.attach()
    grads_seen = []
    for _ in range(2):
        grads_seen.append(_grads(w.detach(), b.detach(), x))
        loss = (x @ w + b).tanh().pow(2).sum()
        if fused:
            opt.begin_fused_step()
            loss.backward()
            opt.end_fused_step()
            assert w.grad is None and b.grad is None  # freed inside backward
        else:
            loss.backward()
            opt.step()
            opt.zero_grad()
    expected = reference_adalomo([w0, b0], grads_seen, lr, wd)
    torch.testing.assert_close(w.detach().double(), expected[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(b.detach().double(), expected[1], rtol=1e-5, atol=1e-7)


def test_state_of_a_square_matrix_is_linear_in_d():
    d = 256
    w = torch.nn.Parameter(torch.randn(d, d))
    opt = AdaLomo([w], lr=1e-3)
    w.grad = torch.randn(d, d)
    opt.step()
    state = sum(t.numel() for t in opt.state[w].values() if torch.is_tensor(t))
    assert state == 2 * d  # row and column statistics, not d * d


def test_cosine_schedule_warms_up_and_ends_at_ten_percent():
    kw = dict(peak=1.0, total=100, warmup=10)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(99, **kw) == pytest.approx(0.1, abs=1e-3)
    mid = lr_at(55, **kw)
    assert mid == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))


def test_wsd_schedule_is_flat_then_decays_linearly():
    kw = dict(peak=2.0, total=100, warmup=10, schedule="wsd", decay_fraction=0.2)
    assert lr_at(50, **kw) == lr_at(79, **kw) == 2.0
    assert lr_at(90, **kw) == pytest.approx(2.0 - 1.8 * 0.5)
    assert lr_at(100, **kw) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="schedule"):
        lr_at(50, peak=1, total=10, warmup=0, schedule="linear")


RTOL_MUON = 0.15  # torch's Newton-Schulz runs in bfloat16 (~5-10% off float64 here); a wrong
# learning-rate scale, step count or coefficients is off by 20-40%


def reference_muon_update(grads, lr, wd, p0, momentum=0.95, coeffs=(3.4445, -4.775, 2.0315), steps=5):
    """Muon written from its definition (Keller Jordan's Muon; arXiv 2502.16982 for the AdamW-matching
    scale), in float64: Nesterov momentum, the quintic Newton-Schulz iteration on the Frobenius-normalised
    update, the step scaled by 0.2 sqrt(max(A, B)), decoupled weight decay."""
    p, buf = p0.double().clone(), torch.zeros_like(p0, dtype=torch.float64)
    a, b, c = coeffs
    for g in grads:
        g = g.double()
        buf = momentum * buf + (1 - momentum) * g
        x = (1 - momentum) * g + momentum * buf  # Nesterov
        tall = x.shape[0] > x.shape[1]
        x = x.T if tall else x
        x = x / x.norm()
        for _ in range(steps):
            m = x @ x.T
            x = a * x + (b * m + c * m @ m) @ x
        x = x.T if tall else x
        p = p * (1 - lr * wd) - lr * 0.2 * math.sqrt(max(p.shape)) * x
    return p


def test_muon_updates_block_matrices_by_its_formula_and_the_rest_by_adamw():
    from lmforge.train.optim import OptimizerList, build_optimizer
    from tests.helpers import tiny_model

    torch.manual_seed(0)
    model = tiny_model().train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, "muon", lr=0.01, weight_decay=0.1)
    assert isinstance(opt, OptimizerList)
    muon, adamw = opt.optimizers
    muon_ids = {id(p) for g in muon.param_groups for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in muon_ids}
    assert names == {n for n, p in model.named_parameters() if p.dim() == 2 and n.startswith("layers.")}
    assert "tok_embeddings.weight" not in names and not any("norm" in n for n in names)
    grads = []
    for _ in range(2):
        ids = torch.randint(0, 300, (2, 16))
        logits = model.logits(model.forward_hidden(ids))
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 300), ids[:, 1:].reshape(-1))
        loss.backward()
        grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
        opt.step()
        opt.zero_grad()
    name = "layers.0.feed_forward.w1.weight"  # tall (160 x 64): the transposed branch
    for n in (name, "layers.1.attention.wqkv.weight"):
        want = reference_muon_update([g[n] for g in grads], 0.01, 0.1, before[n])
        got = dict(model.named_parameters())[n].detach().double()
        d_got, d_want = got - before[n].double(), want - before[n].double()
        assert float((d_got - d_want).norm() / d_want.norm()) < RTOL_MUON, n
    emb = dict(model.named_parameters())["tok_embeddings.weight"]
    assert adamw.state[emb]["step"] == 2  # AdamW's state, not Muon's


def test_embedding_and_head_learning_rate_scales_are_adamw_at_the_scaled_rate():
    """`train.embed_lr_scale` / `head_lr_scale`: the embedding matrix and the LM head step as AdamW
    at lr x scale would; the other parameters at lr; a recipe with another optimizer is refused."""
    from lmforge.train.config import TrainSection
    from lmforge.train.optim import build_optimizer, set_lr
    from tests.helpers import tiny_model

    torch.manual_seed(0)
    model = tiny_model().train()
    twin = tiny_model().train()
    twin.load_state_dict(model.state_dict())
    opt = build_optimizer(model, "adamw", lr=1.0, weight_decay=0.1, embed_lr_scale=10.0, head_lr_scale=0.5)
    special = {"tok_embeddings.weight": 10.0, "output.weight": 0.5}
    ref = torch.optim.AdamW([{"params": [p], "lr": 1e-3 * special.get(n, 1.0),
                              "weight_decay": 0.1 if p.dim() >= 2 else 0.0} for n, p in twin.named_parameters()],
                            betas=(0.9, 0.95), eps=1e-8)
    for _ in range(3):
        ids = torch.randint(0, 300, (2, 16))
        for m in (model, twin):
            logits = m.logits(m.forward_hidden(ids))
            torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 300), ids[:, 1:].reshape(-1)).backward()
        set_lr(opt, 1e-3)
        opt.step(), ref.step()
        opt.zero_grad(), ref.zero_grad()
    for (n, a), b in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-6), n
    assert sorted(g.get("lr_scale", 1.0) for g in opt.param_groups) == [0.5, 1.0, 1.0, 10.0]
    assert len(build_optimizer(model, "adamw", lr=1.0).param_groups) == 2  # unscaled: the two groups as before
    with pytest.raises(ValueError, match="AdamW only"):  # refused with the recipe, before any work
        TrainSection(shards="x", optimizer="muon", embed_lr_scale=2.0)


def test_smeared_key_gates_step_at_their_own_scaled_rate_without_decay():
    """`train.smear_lr_scale`: every layer's smeared-key gates share one AdamW group at lr x scale and
    no weight decay; every other parameter steps exactly as without the scale. Another optimizer is
    refused with the recipe."""
    from lmforge.train.config import TrainSection
    from lmforge.train.optim import build_optimizer, set_lr
    from tests.helpers import tiny_model

    model, twin = tiny_model(smear_keys=True).train(), tiny_model(smear_keys=True).train()
    opt = build_optimizer(model, "adamw", lr=1.0, smear_lr_scale=20.0)
    ref = build_optimizer(twin, "adamw", lr=1.0)
    (gates,) = [g for g in opt.param_groups if g.get("lr_scale") == 20.0]
    names = {p: n for n, p in model.named_parameters()}
    assert sorted(names[p] for p in gates["params"]) == [f"layers.{i}.attention.smear" for i in range(2)]
    assert gates["weight_decay"] == 0.0
    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    for m, o in ((model, opt), (twin, ref)):
        logits = m.logits(m.forward_hidden(ids))
        torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 300), ids[:, 1:].reshape(-1)).backward()
        set_lr(o, 1e-3)
        o.step()
    for (n, a), b in zip(model.named_parameters(), twin.parameters()):
        if n.endswith("attention.smear"):  # Adam's first step moves each scalar by about its rate
            assert torch.allclose(a.abs(), torch.full_like(a, 20e-3), rtol=1e-3), (n, a)
            assert torch.allclose(b.abs(), torch.full_like(b, 1e-3), rtol=1e-3), (n, b)
        else:
            assert torch.equal(a, b), n
    with pytest.raises(ValueError, match="smear_lr_scale = 2.0: the rate scales apply to AdamW only"):
        TrainSection(shards="x", optimizer="muon", smear_lr_scale=2.0)
