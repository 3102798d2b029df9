"""``pipelines measure`` through :func:`pipelines.cli.main`: the three forms, exit status, tracking."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipelines.cli import main

REQUIRED = ["case", "lv_edv_ml", "lv_esv_ml", "lv_sv_ml", "lv_ef_pct", "lv_mass_g", "rv_edv_ml", "rv_esv_ml",
            "rv_ef_pct", "ed_frame", "es_frame", "qc_flags"]


@pytest.fixture(autouse=True)
def untracked(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def run_cli(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert set(REQUIRED) <= set(reader.fieldnames or [])
        return list(reader)


def test_pair_form(tmp_path, capsys, pair_files):
    ed, es = pair_files()
    out = tmp_path / "out"
    code, stdout, _ = run_cli(capsys, "measure", "--ed", ed, "--es", es, "--output", out, "--case", "p1")
    assert code == 0
    assert stdout.split() == [str(out / "p1.json"), str(out / "p1_bullseye.png"), str(out / "measures.csv")]
    assert [row["case"] for row in table(out / "measures.csv")] == ["p1"]
    # a second run without --overwrite is an error of the whole command
    code, _, err = run_cli(capsys, "measure", "--ed", ed, "--es", es, "--output", out, "--case", "p1")
    assert code == 2 and err.startswith("error: ") and "--overwrite" in err
    code, _, _ = run_cli(capsys, "measure", "--ed", ed, "--es", es, "--output", out, "--case", "p1", "--overwrite")
    assert code == 0


def test_cine_form(tmp_path, capsys, ph):
    cine = ph.save_labels(tmp_path / "beat_4d.nii.gz", ph.cine_labels(), (*ph.SPACING, 30.0))
    out = tmp_path / "out"
    code, stdout, _ = run_cli(capsys, "measure", "--cine", cine, "--output", out)
    assert code == 0 and str(out / "beat_volume_curve.png") in stdout.split()
    row = table(out / "measures.csv")[0]
    assert (row["case"], row["ed_frame"], row["es_frame"]) == ("beat", "3", "6")


def test_batch_with_a_bad_case_exits_1_and_writes_the_good_one(tmp_path, capsys, ph, pair_files):
    folder = tmp_path / "batch"
    pair_files(name="good", folder=folder)
    bad_ed, es = ph.clean_pair()
    bad_ed[bad_ed == 3] = 0
    pair_files(bad_ed, es, name="bad", folder=folder)
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "measure", "--batch", folder, "--output", out)
    assert code == 1
    assert str(out / "good.json") in stdout.split()
    assert "1 of 2 inputs failed" in err and f"{folder / 'bad_ed.nii.gz'}: no LV cavity" in err
    assert [row["case"] for row in table(out / "measures.csv")] == ["good"]


def test_bad_single_input_is_one_error_line(tmp_path, capsys, ph, pair_files):
    ed_labels, es_labels = ph.clean_pair()
    ed_labels[1, 1, 1] = 9
    ed, es = pair_files(ed_labels, es_labels)
    code, stdout, err = run_cli(capsys, "measure", "--ed", ed, "--es", es, "--output", tmp_path / "out")
    assert code == 2 and stdout == ""
    assert err.strip().splitlines() == [f"error: {ed}: label values outside {{0, 1, 2, 3, 255}}: 9"]


@pytest.mark.parametrize(
    "argv",
    [["--ed", "a.nii.gz"], ["--cine", "a.nii.gz", "--es", "b.nii.gz"], ["--batch", ".", "--case", "x"]],
    ids=["ed_without_es", "cine_with_es", "batch_with_case"],
)
def test_inconsistent_options_are_an_error(tmp_path, capsys, argv):
    code, _, err = run_cli(capsys, "measure", *argv, "--output", tmp_path / "out")
    assert code == 2 and err.startswith("error: ")


def test_tracking_logs_the_table_and_per_case_metrics(tmp_path, capsys, pair_files):
    mlflow = pytest.importorskip("mlflow")
    ed, es = pair_files()
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    code, _, _ = run_cli(capsys, "measure", "--ed", ed, "--es", es, "--output", tmp_path / "out", "--tracking-uri", uri)
    assert code == 0
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("measure")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["form"] == "pair"
    row = table(tmp_path / "out" / "measures.csv")[0]
    assert run.data.metrics["phantom/lv_ef_pct"] == pytest.approx(float(row["lv_ef_pct"]))
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"measures.csv", "phantom.json", "phantom_bullseye.png"} <= artifacts
