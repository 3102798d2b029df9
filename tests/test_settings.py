"""Tests for :mod:`pipelines.settings`: ``--set KEY=VALUE`` parsing and the check that a key exists."""

from __future__ import annotations

import pytest

from pipelines import api
from pipelines.errors import PipelineError
from pipelines.settings import COMMAND_CONFIGS, check_settings, parse_setting


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("num_epochs=40", ("num_epochs", 40)),
        ("learning_rate=0.5", ("learning_rate", 0.5)),
        ("amp=false", ("amp", False)),
        ("max_cases=null", ("max_cases", None)),
        ("validate#tta_inferer#flip_axes=[0, 1]", ("validate#tta_inferer#flip_axes", [0, 1])),
        ("synthetic_datalist=runs/syn/datalist.json", ("synthetic_datalist", "runs/syn/datalist.json")),
        ("note=a=b", ("note", "a=b")),  # only the first '=' separates
        ("split=", ("split", "")),
    ],
)
def test_parse_setting(text: str, expected: tuple) -> None:
    assert parse_setting(text) == expected


@pytest.mark.parametrize("text", ["num_epochs", "=3", " =3"])
def test_parse_setting_needs_a_key_and_an_equals_sign(text: str) -> None:
    with pytest.raises(PipelineError, match="expected KEY=VALUE"):
        parse_setting(text)


def _files(command: str) -> list[str]:
    return api.config_files(api.resolve_bundle("lv_segmentation_unet"), COMMAND_CONFIGS[command])


def test_existing_keys_and_new_arguments_of_components_are_accepted() -> None:
    check_settings(_files("train"), {"num_epochs": 3, "train#augmentation#0#prob": 0.0,
                                     "network_def#network#dropout": 0.2})
    # an argument the component does not set yet: its parent is a dict of the configs
    check_settings(_files("evaluate"), {"validate#tta_inferer#transpose_axes": [0, 1]})
    check_settings(_files("train"), {})


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("num_epoch", "num_epoch: no such key in the bundle's configs (lv_segmentation_unet/train.json)"),
        ("num_epochs#x", "'num_epochs' is not a component"),
        ("validat#tta_inferer#flip_axes", "no such key"),
    ],
)
def test_a_mistyped_key_is_refused(key: str, message: str) -> None:
    with pytest.raises(PipelineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_settings(_files("train"), {key: 1})


def test_a_layered_bundle_resolves_its_commands_configs() -> None:
    """mr_to_ct_paired layers its configs over mr_to_ct_cyclegan's: predict ends with its own inference.json."""
    files = api.config_files(api.resolve_bundle("mr_to_ct_paired"), COMMAND_CONFIGS["predict"])
    assert [f.rsplit("/", 2)[-2:] for f in files][-1] == ["configs", "inference.json"]
    assert COMMAND_CONFIGS["evaluate"] == ["train.json", "evaluate.json"]


def test_cli_set_reaches_the_run_config(sunnybrook_dir, tmp_path, capsys) -> None:
    """`pipelines evaluate ... --set` changes the evaluated config: the config saved with the run holds the values."""
    import json

    from pipelines.cli import main

    checkpoint = api.BUNDLES_DIR / "lv_segmentation_unet" / "models" / "model.pt"
    code = main(["evaluate", "lv_segmentation_unet", "--data", str(sunnybrook_dir), "--checkpoint", str(checkpoint),
                 "--output", str(tmp_path / "ev"), "--max-cases", "1", "--set", "validate#tta_inferer#flip_axes=[]",
                 "--set", "validate#tta_inferer#transpose_axes=[0, 1]"])
    assert code == 0, capsys.readouterr().err
    (saved,) = (tmp_path / "ev").glob("config_*.json")
    tta = json.loads(saved.read_text(encoding="utf-8"))["validate"]["tta_inferer"]
    assert tta["flip_axes"] == [] and tta["transpose_axes"] == [0, 1]


def test_cli_refuses_a_mistyped_key_before_any_work(sunnybrook_dir, tmp_path, capsys) -> None:
    from pipelines.cli import main

    code = main(["train", "lv_segmentation_unet", "--data", str(sunnybrook_dir), "--output", str(tmp_path / "run"),
                 "--set", "num_epoch=3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: --set num_epoch: no such key in the bundle's configs "
                                 "(lv_segmentation_unet/train.json)"]
    assert not (tmp_path / "run").exists()
