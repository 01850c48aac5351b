"""`lmforge sft / rm / dpo / polar`: thin commands over the stages, with errors a user can act on."""

from pathlib import Path

from lmforge.cli import main

MICRO = Path(__file__).resolve().parents[2] / "recipes" / "micro.toml"


def test_sft_command_fine_tunes_a_given_model(tiny_dir, tmp_path, capsys):
    out = tmp_path / "sft"
    assert main(["sft", str(MICRO), "--init-from", str(tiny_dir), "--out", str(out), "--set", "sft.steps=2"]) == 0
    assert (out / "model" / "config.json").is_file() and (out / "sft.json").is_file()


def test_missing_model_and_bad_data_are_one_line_errors(tmp_path, capsys):
    code = main(["rm", str(MICRO), "--set", f'run.out_dir="{tmp_path}"'])
    err = capsys.readouterr().err
    assert code == 1 and "no model there" in err and "--init-from" in err
    code = main(["dpo", str(MICRO), "--init-from", str(tmp_path), "--set", 'dpo.data="nope.jsonl"'])
    assert code == 1


def test_data_file_that_does_not_exist_is_refused_before_training(tiny_dir, tmp_path, capsys):
    code = main(["sft", str(MICRO), "--init-from", str(tiny_dir), "--out", str(tmp_path / "o"),
                 "--set", 'sft.data="missing.jsonl"'])
    assert code == 1 and "sft.data = 'missing.jsonl': no such file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_help_explains_the_data_formats(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["polar", "--help"])
    text = capsys.readouterr().out
    assert "ShareGPT" in text and "RUN_DIR/sft/model" in text
