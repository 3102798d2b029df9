"""Tests for :mod:`pipelines.cli`: exit status and one-line error messages for user mistakes.

Nothing here trains or predicts: every command fails (or, for ``data``, converts the small real archive) before a
bundle workflow is built.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.data import sources

BUNDLE = "lv_segmentation_unet"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    monkeypatch.setattr(sources, "_download", lambda source: pytest.fail(f"test tried to download {source.url}"))
    monkeypatch.delenv(sources.DATA_ENV, raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_data_with_wrong_source_content(tmp_path, capsys):
    source = tmp_path / "scd_lvsegs.npz"
    source.write_bytes(b"not the archive")
    output = tmp_path / "out"
    code, out, err = run_cli(capsys, "data", "sunnybrook", "--source", source, "--output", output)
    assert code == 2
    line = one_error_line(err)
    assert str(source) in line and "sha256" in line
    assert hashlib.sha256(b"not the archive").hexdigest() in line
    assert out == ""
    assert not output.exists()


def test_data_with_missing_source(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "scd_lvsegs.npz"
    code, _, err = run_cli(capsys, "data", "sunnybrook", "--source", missing, "--output", tmp_path / "out")
    assert code == 2
    assert str(missing) in one_error_line(err)
    assert not (tmp_path / "out").exists()


def test_data_converts_then_refuses_to_overwrite(scd_npz, tmp_path, capsys):
    output = tmp_path / "out"
    code, out, err = run_cli(capsys, "data", "sunnybrook", "--source", scd_npz.parent, "--output", output)
    assert code == 0, err
    assert Path(out.strip()) == output / "datalist.json"
    assert len(list((output / "images").glob("*.nii.gz"))) == 45
    before = (output / "datalist.json").read_bytes()

    code, _, err = run_cli(capsys, "data", "sunnybrook", "--source", scd_npz, "--output", output)
    assert code == 2
    line = one_error_line(err)
    assert str(output / "datalist.json") in line and "--overwrite" in line
    assert (output / "datalist.json").read_bytes() == before

    code, _, err = run_cli(capsys, "data", "sunnybrook", "--source", scd_npz, "--output", output, "--overwrite")
    assert code == 0, err


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_missing_input(tmp_path, capsys, command):
    missing = tmp_path / "no_such_image.nii.gz"
    code, out, err = run_cli(capsys, command, BUNDLE, "--input", missing, "--output", tmp_path / "out")
    assert code == 2
    assert str(missing) in one_error_line(err)
    assert out == ""
    assert not (tmp_path / "out").exists()


def test_predict_unsupported_file(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    code, _, err = run_cli(capsys, "predict", BUNDLE, "--input", text, "--output", tmp_path / "out")
    assert code in (1, 2)
    assert "not a supported image" in err and str(text) in err


def test_predict_missing_checkpoint(tmp_path, capsys):
    image = tmp_path / "image.nii.gz"
    image.write_bytes(b"")
    missing = tmp_path / "missing.pt"
    code, _, err = run_cli(
        capsys, "predict", BUNDLE, "--input", image, "--output", tmp_path / "out", "--checkpoint", missing
    )
    assert code == 2
    assert str(missing) in one_error_line(err)


def test_train_without_datalist(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    code, _, err = run_cli(capsys, "train", BUNDLE, "--data", data, "--output", tmp_path / "run")
    assert code == 2
    assert str(data / "datalist.json") in one_error_line(err)
    assert not (tmp_path / "run").exists()


def test_evaluate_without_checkpoint(sunnybrook_dir, tmp_path, capsys):
    missing = tmp_path / "model.pt"
    code, _, err = run_cli(
        capsys, "evaluate", BUNDLE, "--data", sunnybrook_dir, "--checkpoint", missing, "--output", tmp_path / "ev"
    )
    assert code == 2
    assert str(missing) in one_error_line(err)


@pytest.mark.parametrize("fold", ["7", "-1", "fold2", "all"])
def test_train_rejects_bad_fold(tmp_path, capsys, fold):
    with pytest.raises(SystemExit) as excinfo:
        main(["train", BUNDLE, "--data", str(tmp_path), "--output", str(tmp_path / "run"), "--fold", fold])
    assert excinfo.value.code == 2
    assert "fold" in capsys.readouterr().err


def test_unknown_bundle_lists_the_available_ones(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "nonexistent_bundle", "--data", tmp_path, "--output", tmp_path / "run")
    assert code == 2
    line = one_error_line(err)
    assert "nonexistent_bundle" in line and BUNDLE in line


def test_missing_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main([])
    assert excinfo.value.code == 2


def test_explain_needs_an_explain_config(tmp_path, capsys):
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "train.json").write_text("{}")
    code, _, err = run_cli(capsys, "explain", bundle, "--input", tmp_path, "--output", tmp_path / "out")
    assert code == 2
    assert str(bundle / "configs" / "explain.json") in one_error_line(err)


@pytest.mark.parametrize("option", [["--patch-size", "0"], ["--stride", "-4"], ["--occlusion", "noise"],
                                    ["--bbox", "1", "2", "3"], ["--score", "accuracy"]])  # fmt: skip
def test_explain_rejects_bad_options(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as excinfo:
        main(["explain", BUNDLE, "--input", str(tmp_path), "--output", str(tmp_path / "out"), *option])
    assert excinfo.value.code == 2
    assert option[0] in capsys.readouterr().err
