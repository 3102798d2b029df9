"""The whole chain on a Sunnybrook DICOM cine as distributed: DICOM folder -> 4D labels -> cardiac function.

    pipelines data sunnybrook_dicom --output work_data/sunnybrook_dicom
    python benchmarks/sunnybrook_cine.py --data work_data/sunnybrook_dicom --output runs/sunnybrook_cine

For every study of the prepared Sunnybrook folder (an external check: never used for training or selection) it runs
``pipelines predict cardiac_sax_segmentation`` on the study's original DICOM cine folder, measures the 4D labels
(``pipelines measure --cine``: the volume-time curve, ED = largest and ES = smallest LV cavity), and compares with
the experts:

* ED / ES: the frames found from the predicted volume curve against the phases the experts contoured
  (distance in frames, around the cycle);
* LV cavity volume at the experts' ED and ES phases, over the slices the experts contoured (Sunnybrook contours
  stop short of the base and apex), predicted against the experts' contours; LV myocardium volume at ED likewise;
* Dice of the LV cavity (ED, ES) and LV myocardium (ED) on the contoured slices. Sunnybrook has no RV contours.

Writes ``sunnybrook_cine.json``, the measure outputs (``measures/``: volume curve, bull's-eye) and
``<study>_overlay.png`` (predicted and expert contours on basal, mid and apical slices at ED and ES) under
``--output``, and prints one JSON line per study.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from pipelines import api
from pipelines.data.datalist import load_datalist
from pipelines.io.atomic import atomic_write_json
from pipelines.io.console import tolerant_streams
from pipelines.measure import measure_cine

BUNDLE = "cardiac_sax_segmentation"
MYO, LV = 2, 3


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum() + b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def cycle_distance(a: int, b: int, frames: int) -> int:
    """Frames between phases ``a`` and ``b`` of a cycle of ``frames`` phases (the short way round)."""
    d = abs(a - b) % frames
    return min(d, frames - d)


def compare_study(frames: dict[str, dict[str, Any]], labels_4d: Path, measured: dict[str, Any]) -> dict[str, Any]:
    """The predicted cine against the experts' ED and ES label maps of one study."""
    predicted = nib.load(labels_4d)
    cine = np.asarray(predicted.dataobj)
    zooms = predicted.header.get_zooms()[:3]
    voxel_ml = float(np.prod(zooms)) / 1000.0
    n_frames = cine.shape[3]
    result: dict[str, Any] = {"frames": n_frames}
    for name, item in frames.items():
        phase = int(item["phase_index"])
        expert = np.asarray(nib.load(item["label"]).dataobj)
        pred = cine[..., phase]
        slices = [int(z) for z in item["labelled_slices"]]
        exp_s, pred_s = expert[..., slices], pred[..., slices]
        found = int(measured["row"][f"{name}_frame"]) - 1  # measure numbers frames from 1
        result[name] = {
            "expert_phase": phase,
            "found_phase": found,
            "phase_distance": cycle_distance(found, phase, n_frames),
            "expert_lv_ml": float((exp_s == LV).sum() * voxel_ml),
            "predicted_lv_ml_contoured_slices": float((pred_s == LV).sum() * voxel_ml),
            "predicted_lv_ml_all_slices": float((pred == LV).sum() * voxel_ml),
            "dice_lv": _dice(exp_s == LV, pred_s == LV),
        }
        if MYO in item["labels_drawn"]:
            result[name].update({
                "expert_myo_ml": float((exp_s == MYO).sum() * voxel_ml),
                "predicted_myo_ml_contoured_slices": float((pred_s == MYO).sum() * voxel_ml),
                "dice_myo": _dice(exp_s == MYO, pred_s == MYO),
            })
    ed, es = result["ed"], result["es"]
    result["expert_lvef_contoured_slices"] = 100 * (ed["expert_lv_ml"] - es["expert_lv_ml"]) / ed["expert_lv_ml"]
    result["predicted_lvef_contoured_slices"] = 100 * (
        ed["predicted_lv_ml_contoured_slices"] - es["predicted_lv_ml_contoured_slices"]
    ) / ed["predicted_lv_ml_contoured_slices"]
    result["measured"] = {k: measured["measures"][k] for k in ("lv_edv_ml", "lv_esv_ml", "lv_ef_pct", "lv_mass_g")}
    result["qc_flags"] = measured["qc_flags"]
    return result


def overlay(frames: dict[str, dict[str, Any]], image_4d: Path, labels_4d: Path, path: Path, study: str) -> None:
    """Basal, mid and apical contoured slices at the experts' ED and ES phases: predicted and expert contours."""
    from pipelines.visualize import label_overlay_figure, save_figure

    image = np.asarray(nib.load(image_4d).dataobj)
    labels = np.asarray(nib.load(labels_4d).dataobj)
    panels: dict[str, list[Any]] = {"images": [], "predicted": [], "reference": [], "titles": []}
    for name, item in frames.items():
        expert = np.asarray(nib.load(item["label"]).dataobj)
        slices = [int(z) for z in item["labelled_slices"]]
        for z in (slices[0], slices[len(slices) // 2], slices[-1]):
            phase = int(item["phase_index"])
            panels["images"].append(image[..., z, phase])
            panels["predicted"].append(labels[..., z, phase])
            panels["reference"].append(expert[..., z])
            panels["titles"].append(f"{name.upper()} (phase {phase}), slice {z}")
    fig = label_overlay_figure(panels["images"], panels["predicted"], panels["reference"], panels["titles"],
                               title=f"{study}: cardiac_sax_segmentation on the DICOM cine")
    save_figure(fig, path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    tolerant_streams()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="prepared folder of pipelines data sunnybrook_dicom")
    parser.add_argument("--output", required=True)
    parser.add_argument("--checkpoint", help="weights (default: the bundle's shipped models/model.pt)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="bundle config override for predict (e.g. validate#tta_inferer#flip_axes=[])")
    args = parser.parse_args(argv)
    from pipelines.settings import parse_setting

    overrides = dict(parse_setting(text) for text in args.settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    datalist = load_datalist(args.data)
    output = Path(args.output)
    studies: dict[str, dict[str, dict[str, Any]]] = {}
    for case in datalist["cases"]:
        item = {**case, "label": str(Path(datalist["_root"]) / case["label"])}
        studies.setdefault(case["patient"], {})[case["frame"]] = item
    results = {}
    for study, frames in sorted(studies.items()):
        dicom_folder = Path(datalist["source"]) / "SCD_DeidentifiedImages" / study / "CINESAX"
        predictions = output / "predictions"
        labels_4d = predictions / f"{study}_seg.nii.gz"
        if not labels_4d.is_file():
            # the DICOM folder is named CINESAX: predict it under the study's name
            report = api.predict(BUNDLE, dicom_folder, output / "tmp" / study, checkpoint=args.checkpoint,
                                 uncertainty=True, overwrite=True, overrides=overrides)
            if not report.ok:
                raise SystemExit(f"{study}: prediction failed: {report.failed}")
            predictions.mkdir(parents=True, exist_ok=True)
            for path in report.written:
                path.replace(predictions / path.name.replace("CINESAX", study, 1))
        measured = measure_cine(labels_4d, output / "measures", case=study, overwrite=True)
        results[study] = compare_study(frames, labels_4d, measured)
        image_4d = Path(datalist["_root"]) / frames["ed"]["image_4d"]
        overlay(frames, image_4d, labels_4d, output / f"{study}_overlay.png", study)
        print(json.dumps({"study": study, **results[study]}, default=str))
    atomic_write_json(output / "sunnybrook_cine.json", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
