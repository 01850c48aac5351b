"""Scaling-law fit: recovers a known power law and plots it."""

import json

import pytest

from lmforge.eval.scaling import fit_power_law, run_scaling


def test_fit_recovers_known_law(tmp_path):
    E, A, alpha = 1.7, 400.0, 0.3
    runs = [{"params": n, "tokens": 20 * n, "loss": E + A * (6 * n * 20 * n) ** -alpha}
            for n in (1e5, 3e5, 1e6, 3e6, 1e7)]
    fit = fit_power_law([6 * r["params"] * r["tokens"] for r in runs], [r["loss"] for r in runs], n_grid=2000)
    assert fit["alpha"] == pytest.approx(alpha, rel=0.02)
    assert fit["E"] == pytest.approx(E, abs=0.01)
    assert fit["r2"] > 0.999
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps(runs))
    result = run_scaling(sweep)  # flops derived as 6 N D
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert result["alpha"] == pytest.approx(alpha, rel=0.05)


def test_bad_sweep(tmp_path):
    sweep = tmp_path / "s.jsonl"
    sweep.write_text('{"loss": 3.0, "flops": 1e9}\n{"loss": 2.9\n')
    with pytest.raises(ValueError, match=r"s.jsonl:2: invalid JSON"):
        run_scaling(sweep)
    with pytest.raises(ValueError, match="at least 3 runs"):
        fit_power_law([1.0, 2.0], [3.0, 2.0])
