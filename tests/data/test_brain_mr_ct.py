"""Tests for :mod:`pipelines.data.brain_mr_ct`: npz -> NIfTI round trip, head masks, patient-level split, errors."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipelines.data import brain_mr_ct
from pipelines.errors import InputError, OutputExistsError, PipelineError

N_PATIENTS = 14
N_SLICES = 306


@pytest.fixture(scope="module")
def npz(brain_npz: Path) -> dict[str, np.ndarray]:
    with np.load(brain_npz) as archive:
        return {key: archive[key] for key in archive.files}


@pytest.fixture(scope="module")
def datalist(brain_mr_ct_dir: Path) -> dict:
    return json.loads((brain_mr_ct_dir / "datalist.json").read_text(encoding="utf-8"))


def test_voxels_survive_npz_to_nifti(brain_mr_ct_dir, datalist, npz):
    """MR volumes are the file's; a CT is the file's after its recorded level shift (no registration by default)."""
    assert not datalist["ct_registration"]["enabled"] and not (brain_mr_ct_dir / "registration.json").exists()
    assert [c["case_id"] for c in datalist["cases"]] == [f"brain_{p:02d}" for p in range(1, N_PATIENTS + 1)]
    assert sum(c["num_slices"] for c in datalist["cases"]) == N_SLICES
    for case in datalist["cases"]:
        indices = np.flatnonzero(npz["patient"] == case["patient"])
        indices = indices[np.argsort(npz["slice"][indices])]  # slices stacked in slice order
        assert case["npz_indices"] == indices.tolist()
        for modality in brain_mr_ct.MODALITIES:
            image = nib.load(brain_mr_ct_dir / case[modality])
            voxels = np.asanyarray(image.dataobj)
            assert voxels.dtype == np.uint8 and voxels.shape == (256, 256, len(indices))
            expected = np.moveaxis(npz[modality][indices], 0, -1)
            if modality == "ct":
                expected = brain_mr_ct.shift_window(expected, case["ct_shift"])
            np.testing.assert_array_equal(voxels, expected, err_msg=case[modality])
        assert case["image"] == case["t1"] and case["label"] == case["ct"]


def test_ct_harmonisation_moves_the_second_source_only(datalist):
    """Patients 6, 7, 9 (the second head source) move ~-40 onto the others' level; the test patients' level is not moved."""
    shifts = {c["case_id"]: c["ct_shift"] for c in datalist["cases"]}
    moved = {cid for cid, d in shifts.items() if d}
    assert moved == {"brain_06", "brain_07", "brain_09"}
    assert all(-45 <= shifts[cid] <= -38 for cid in moved)
    assert datalist["ct_harmonisation"]["shifted"] == {cid: shifts[cid] for cid in sorted(moved)}
    assert not moved & set(datalist["splits"]["seed"]["test"])  # the seed split is scored against the file's CT
    levels = [c["ct_level"] + c["ct_shift"] for c in datalist["cases"] if c["region"] == "head"]
    assert max(levels) - min(levels) <= 2 * brain_mr_ct.DEFAULT_HARMONISE_TOLERANCE


@pytest.mark.parametrize("case_id", ["brain_01", "brain_07"])
def test_registration_brings_the_ct_outline_onto_the_mr(npz, case_id):
    """On real slices: the CT / T1 head-mask Dice rises where a registration is kept, and never falls."""
    patient = int(case_id[-2:])
    indices = np.flatnonzero(npz["patient"] == patient)
    ct, t1 = (np.moveaxis(npz[m][indices], 0, -1) for m in ("ct", "t1"))
    registered, outcomes = brain_mr_ct.register_ct(ct, t1)
    kept = [o for o in outcomes if o.accepted]
    assert registered.shape == ct.shape and registered.dtype == np.uint8 and len(kept) >= len(outcomes) // 2
    assert all(o.dice_after > o.dice_before for o in kept)
    assert np.mean([o.dice_after for o in outcomes]) > np.mean([o.dice_before for o in outcomes]) + 0.005
    for k, outcome in enumerate(outcomes):
        if outcome.accepted:  # nearest neighbour: only the slice's own values, 0 outside the moved field
            assert set(np.unique(registered[..., k])) <= set(np.unique(ct[..., k])) | {0}
        else:
            np.testing.assert_array_equal(registered[..., k], ct[..., k])


def test_convert_records_the_registration(brain_npz, tmp_path, monkeypatch):
    """``register=True`` wiring: registered CTs are written, masks follow them, the outcomes are recorded."""
    from pipelines.data.registration import SliceRegistration

    def fake_register(ct, mr, threshold):  # a one-pixel roll stands in for the (minute-long) real registration
        moved = np.roll(ct, 1, axis=0)
        return moved, [SliceRegistration(moved[..., k], True, 0.9, 0.95, (1.0,) * 8) for k in range(ct.shape[-1])]

    monkeypatch.setattr(brain_mr_ct, "register_ct", fake_register)
    datalist = json.loads(brain_mr_ct.convert(brain_npz, tmp_path, register=True).read_text(encoding="utf-8"))
    registration = json.loads((tmp_path / "registration.json").read_text(encoding="utf-8"))
    case = datalist["cases"][0]
    assert datalist["ct_registration"]["enabled"] and len(registration[case["case_id"]]) == case["num_slices"]
    assert case["ct_registration"] == {"kept": case["num_slices"], "slices": case["num_slices"],
                                       "mask_dice_before": 0.9, "mask_dice_after": 0.95}
    with np.load(brain_npz) as archive:
        first = np.moveaxis(archive["ct"][case["npz_indices"]], 0, -1)
    written = np.asanyarray(nib.load(tmp_path / case["ct"]).dataobj)
    np.testing.assert_array_equal(written, np.roll(first, 1, axis=0))
    mask = np.asanyarray(nib.load(tmp_path / case["mask"]).dataobj)
    np.testing.assert_array_equal(mask[..., 0], brain_mr_ct.head_mask(written[..., 0]))
    # preparing again without registration replaces the dataset and leaves no stale record behind
    brain_mr_ct.convert(brain_npz, tmp_path, overwrite=True)
    assert not (tmp_path / "registration.json").exists()


def test_unpaired_halves_hold_both_head_sources(datalist):
    source = {c["case_id"]: c["source"] for c in datalist["cases"]}
    for half in ("train_mr", "train_ct"):
        assert {source[c] for c in datalist["splits"]["seed"][half]} == {0, 1}, half


def test_ct_level_is_the_soft_tissue_peak_not_air_or_bone():
    rng = np.random.default_rng(0)
    tissue = rng.normal(120, 15, 5000).clip(1, 254)
    values = np.concatenate([tissue, np.zeros(4000), np.full(4000, 255)]).round().astype(np.uint8)
    assert abs(brain_mr_ct.ct_level(values) - 120) <= 3


def test_harmonisation_shifts_use_the_group_median_and_the_tolerance():
    levels = {"a": 100, "b": 104, "c": 150, "d": 108, "x": 140, "y": 131}
    groups = {"a": 0, "b": 0, "c": 0, "d": 0, "x": 1, "y": 1}  # group 0 median 106, group 1 median 135.5
    assert brain_mr_ct.harmonisation_shifts(levels, groups, tolerance=20) == {
        "a": 0, "b": 0, "c": -44, "d": 0, "x": 0, "y": 0
    }
    assert brain_mr_ct.harmonisation_shifts(levels, groups, tolerance=1)["a"] == 6


def test_shift_window_keeps_saturated_values():
    volume = np.array([0, 1, 30, 120, 230, 254, 255], np.uint8)
    np.testing.assert_array_equal(brain_mr_ct.shift_window(volume, -40), [0, 0, 0, 80, 190, 214, 255])
    np.testing.assert_array_equal(brain_mr_ct.shift_window(volume, 40), [0, 41, 70, 160, 255, 255, 255])
    assert brain_mr_ct.shift_window(volume, 0) is volume


def test_harmonisation_can_be_switched_off(brain_npz, npz, tmp_path, monkeypatch):
    """``harmonise_ct=False`` writes the file's CT for every patient (volumes captured, not written)."""
    written: dict[str, np.ndarray] = {}

    def capture(volume: np.ndarray, affine: np.ndarray, path: Path, *args: object, **kwargs: object) -> None:
        written[str(path.relative_to(tmp_path))] = volume

    monkeypatch.setattr(brain_mr_ct, "write_volume", capture)
    datalist_path = brain_mr_ct.convert(brain_npz, tmp_path, harmonise_ct=False)
    datalist = json.loads(datalist_path.read_text(encoding="utf-8"))
    assert all(c["ct_shift"] == 0 for c in datalist["cases"]) and datalist["ct_harmonisation"]["shifted"] == {}
    brain_06 = next(c for c in datalist["cases"] if c["case_id"] == "brain_06")
    assert brain_06["ct_level"] >= 140  # still measured, not moved
    np.testing.assert_array_equal(written[brain_06["ct"]], np.moveaxis(npz["ct"][brain_06["npz_indices"]], 0, -1))


def test_headers_carry_the_documented_nominal_affine(brain_mr_ct_dir, datalist):
    expected = np.diag([brain_mr_ct.DEFAULT_SPACING_MM] * 2 + [brain_mr_ct.DEFAULT_SLICE_SPACING_MM, 1.0])
    assert datalist["inplane_spacing_mm"] == 1.0 and datalist["slice_spacing_mm"] == 5.0
    for case in datalist["cases"][:2]:
        header = nib.load(brain_mr_ct_dir / case["ct"]).header
        np.testing.assert_allclose(header.get_sform(), expected)
        np.testing.assert_allclose(header.get_qform(), expected)
        assert header.get_xyzt_units()[0] == "mm"


def test_masks_cover_the_head_and_agree_with_t1(brain_mr_ct_dir, datalist):
    """The CT mask is binary, non-trivial and overlaps a crude T1 foreground (the README's ~0.9 Dice)."""
    dices = []
    for case in datalist["cases"]:
        mask = np.asanyarray(nib.load(brain_mr_ct_dir / case["mask"]).dataobj)
        t1 = np.asanyarray(nib.load(brain_mr_ct_dir / case["t1"]).dataobj)
        assert set(np.unique(mask).tolist()) <= {0, 1}
        assert 0.1 < mask.mean() < 0.95, case["case_id"]
        t1_foreground = t1 > brain_mr_ct.DEFAULT_MASK_THRESHOLD
        dices.append(2 * (mask & t1_foreground).sum() / (mask.sum() + t1_foreground.sum()))
    assert np.median(dices) > 0.85


def test_head_mask_fills_a_ring_and_drops_specks():
    image = np.zeros((64, 64), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    radius = np.hypot(yy - 32, xx - 32)
    image[(radius > 20) & (radius < 24)] = 200  # skull ring, dark inside
    image[2:4, 2:4] = 255  # a speck, removed by the opening
    mask = brain_mr_ct.head_mask(image)
    assert mask[32, 32] and mask[32, 12] and not mask[2, 2] and not mask[32, 60]
    assert not brain_mr_ct.head_mask(np.zeros((8, 8), np.uint8)).any()


@pytest.mark.parametrize("name", ["seed", "all"])
def test_splits_are_by_patient_disjoint_and_complete(datalist, name):
    split = datalist["splits"][name]
    region = {c["case_id"]: c["region"] for c in datalist["cases"]}
    covered = {c for c in region if name == "all" or region[c] == "head"}  # seed: the 9 heads only
    train, validation, test = (set(split[k]) for k in ("train", "validation", "test"))
    assert not train & validation and not train & test and not validation & test
    assert train | validation | test == covered
    assert (len(validation), len(test)) == (1, 2)
    assert {region[c] for c in test} == ({"head", "body"} if name == "all" else {"head"})
    # unpaired training: every train patient gives either its MR or its CT, never both
    assert not set(split["train_mr"]) & set(split["train_ct"])
    assert set(split["train_mr"]) | set(split["train_ct"]) == train
    assert abs(len(split["train_mr"]) - len(split["train_ct"])) <= 1
    assert datalist["seed"] == 0


def test_split_depends_only_on_the_seed(brain_npz, datalist, tmp_path, monkeypatch):
    """Re-splitting with the same seed gives the same subsets (images are not rewritten: they are stubbed out)."""
    monkeypatch.setattr(brain_mr_ct, "write_volume", lambda *args, **kwargs: None)
    monkeypatch.setattr(brain_mr_ct, "head_mask", lambda image, threshold: image > threshold)
    again = json.loads(brain_mr_ct.convert(brain_npz, tmp_path / "same").read_text(encoding="utf-8"))
    other = json.loads(brain_mr_ct.convert(brain_npz, tmp_path / "other", seed=5).read_text(encoding="utf-8"))
    assert again["splits"] == datalist["splits"]
    assert other["splits"] != datalist["splits"] and other["seed"] == 5


def test_refuses_to_overwrite(brain_npz, brain_mr_ct_dir, tmp_path):
    with pytest.raises(OutputExistsError, match="datalist.json"):
        brain_mr_ct.convert(brain_npz, brain_mr_ct_dir)
    # a stray image from an earlier run is not replaced either
    stray = tmp_path / "images" / "ct" / "brain_01.nii.gz"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="brain_01.nii.gz"):
        brain_mr_ct.convert(brain_npz, tmp_path)
    assert stray.read_bytes() == b"precious"
    assert not (tmp_path / "datalist.json").exists()


def test_missing_array_is_a_one_line_error_naming_the_file(tmp_path):
    path = tmp_path / "partial.npz"
    images = np.zeros((3, 8, 8), np.uint8)
    np.savez(path, ct=images, t1=images, patient=np.ones(3, np.int16), slice=np.arange(3, dtype=np.int16))
    with pytest.raises(InputError) as excinfo:
        brain_mr_ct.load_npz(path)
    message = str(excinfo.value)
    assert str(path) in message and "t2" in message and "\n" not in message


def test_mismatched_shapes_and_unreadable_files_are_errors(tmp_path):
    path = tmp_path / "bad.npz"
    images = np.zeros((3, 8, 8), np.uint8)
    np.savez(path, ct=images, t1=images, t2=images[:2], patient=np.ones(3), slice=np.arange(3))
    with pytest.raises(InputError, match="shapes do not match"):
        brain_mr_ct.load_npz(path)
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    with pytest.raises(InputError, match="not a readable"):
        brain_mr_ct.load_npz(text)


def test_prepare_without_a_local_file_says_there_is_no_download(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINES_DATA", str(tmp_path))
    with pytest.raises(PipelineError, match="no public download") as excinfo:
        brain_mr_ct.prepare(tmp_path / "out")
    assert "--source" in str(excinfo.value) and "\n" not in str(excinfo.value)
    with pytest.raises(InputError, match="no such file"):
        brain_mr_ct.prepare(tmp_path / "out", source=tmp_path / "elsewhere.npz")


def test_cli_prepares_brain_mr_ct_and_names_a_missing_source(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pipelines.cli import main

    code = main(["data", "brain_mr_ct", "--source", str(tmp_path / "absent.npz"), "--output", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "absent.npz" in err[0]


def test_keep_ct_window_is_a_brain_mr_ct_option(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pipelines.cli import main

    code = main(["data", "mednist", "--keep-ct-window", "--output", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "brain_mr_ct options" in err[0]
    assert not (tmp_path / "out").exists()
