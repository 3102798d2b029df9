"""Chamber volumes, ejection fractions, myocardial mass, and the choice of ED / ES frames of a cine.

With ``n_k`` the number of voxels of label ``k`` in a frame and ``dx, dy, dz`` the voxel size in mm:

- volume of label ``k`` (mL) ``V_k = n_k * (dx * dy * dz / 1000)`` (exactly this order of operations);
- stroke volume ``SV = EDV - ESV``; ejection fraction ``EF = 100 * (EDV - ESV) / EDV`` (%, undefined when EDV = 0);
- LV myocardial mass (g) ``M = 1.05 * V_2(ED)`` (myocardial density 1.05 g/mL);
- in a cine, ED is the frame of largest LV cavity volume and ES the frame of smallest, among the frames that hold
  an LV cavity at all (ties: the earliest frame).

Unlabelled slices (255) count as background, so they add nothing to any volume.
"""

from __future__ import annotations

import numpy as np

from pipelines.measure.labels import LV, MYO, RV

__all__ = ["MYOCARDIAL_DENSITY_G_PER_ML", "label_volume_ml", "frame_volumes_ml", "ejection_fraction_pct",
           "ed_es_frames", "chamber_volumes"]

MYOCARDIAL_DENSITY_G_PER_ML = 1.05


def label_volume_ml(labels: np.ndarray, label: int, voxel_volume_ml: float) -> float:
    """``count(labels == label) * voxel_volume_ml`` for a frame (any shape)."""
    return int(np.count_nonzero(labels == label)) * voxel_volume_ml


def frame_volumes_ml(cine: np.ndarray, label: int, voxel_volume_ml: float) -> np.ndarray:
    """The volume (mL) of ``label`` in every frame of a cine ``(x, y, z, t)``; shape ``(t,)``."""
    counts = np.count_nonzero(cine == label, axis=(0, 1, 2))
    return np.array([int(n) * voxel_volume_ml for n in counts], dtype=float)


def ejection_fraction_pct(edv_ml: float, esv_ml: float) -> float:
    """``100 * (EDV - ESV) / EDV``; NaN when ``EDV`` is 0."""
    return 100.0 * (edv_ml - esv_ml) / edv_ml if edv_ml > 0 else float("nan")


def ed_es_frames(lv_volumes_ml: np.ndarray) -> tuple[int, int]:
    """0-based indices of the largest (ED) and smallest (ES) non-zero LV cavity volume; ties go to the earliest.

    Raises:
        ValueError: no frame holds an LV cavity.
    """
    volumes = np.asarray(lv_volumes_ml, dtype=float)
    present = np.flatnonzero(volumes > 0)
    if present.size == 0:
        raise ValueError("no frame holds an LV cavity")
    ed = int(present[np.argmax(volumes[present])])
    es = int(present[np.argmin(volumes[present])])
    return ed, es


def chamber_volumes(ed: np.ndarray, es: np.ndarray, voxel_volume_ml: float) -> dict[str, float]:
    """LV and RV volumes, stroke volume, ejection fractions and LV mass of an ED / ES pair of frames.

    Args:
        ed: the ED frame ``(x, y, z)``, unlabelled slices already set to background.
        es: the ES frame, likewise.
        voxel_volume_ml: ``dx * dy * dz / 1000``.

    Returns:
        ``lv_edv_ml, lv_esv_ml, lv_sv_ml, lv_ef_pct, lv_mass_g, rv_edv_ml, rv_esv_ml, rv_sv_ml, rv_ef_pct``.
    """
    lv_edv = label_volume_ml(ed, LV, voxel_volume_ml)
    lv_esv = label_volume_ml(es, LV, voxel_volume_ml)
    rv_edv = label_volume_ml(ed, RV, voxel_volume_ml)
    rv_esv = label_volume_ml(es, RV, voxel_volume_ml)
    return {
        "lv_edv_ml": lv_edv,
        "lv_esv_ml": lv_esv,
        "lv_sv_ml": lv_edv - lv_esv,
        "lv_ef_pct": ejection_fraction_pct(lv_edv, lv_esv),
        "lv_mass_g": label_volume_ml(ed, MYO, voxel_volume_ml) * MYOCARDIAL_DENSITY_G_PER_ML,
        "rv_edv_ml": rv_edv,
        "rv_esv_ml": rv_esv,
        "rv_sv_ml": rv_edv - rv_esv,
        "rv_ef_pct": ejection_fraction_pct(rv_edv, rv_esv),
    }
