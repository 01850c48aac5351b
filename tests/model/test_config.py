import pytest

from lmforge.model import PRESETS, InternLM2, ModelConfig, num_params, preset


def test_7b_preset_counts_7_7b_parameters():
    assert abs(num_params(PRESETS["internlm2-7b"]) - 7.7e9) <= 0.1e9


@pytest.mark.parametrize("name,expected", [("internlm2-1.8b", 1.89e9), ("internlm2-20b", 19.86e9)])
def test_released_sizes(name, expected):
    # The released checkpoints' reported sizes: 1.89B and 19.86B.
    assert abs(num_params(PRESETS[name]) - expected) / expected < 0.01


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_count_matches_built_model(name):
    import torch

    with torch.device("meta"):
        model = InternLM2(PRESETS[name])
    assert model.num_params() == num_params(PRESETS[name])


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="n_kv_heads"):
        ModelConfig(n_heads=32, n_kv_heads=5)
    with pytest.raises(ValueError, match="rope_scaling"):
        ModelConfig(rope_scaling="yarn")
    with pytest.raises(KeyError, match="internlm2-7b"):
        preset("internlm2-8b")
