"""Synthetic cardiac MR slices with their myocardium masks, as NIfTI pairs and a synthetic datalist (issue #5).

The generator of ``mr_synthesis_gan`` draws both channels of a pair jointly, ``G(z, y) = (image, mask)`` (Bowles et
al. 2018: a mask drawn with its image cannot disagree with it by construction, unlike a mask fed to a separate
image generator), conditioned on the Sunnybrook diagnostic group ``y``. :class:`PairSynthesizer` writes each pair as
two single-slice NIfTI volumes with the prepared data's geometry (3 x 3 x 8 mm voxels):

- ``syn_<index:04d>_image.nii.gz``: float32 on the segmentation bundle's intensity scale (0..1);
- ``syn_<index:04d>_mask.nii.gz``: uint8 myocardium mask, the generator's mask channel thresholded at 0.5;

and ``datalist.json`` marked ``"synthetic": true`` (cases with ``image``, ``label``, ``num_slices`` 1, ``category``,
``category_name``), which :func:`pipelines.data.mix_synthetic` mixes into a segmentation bundle's training.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from pipelines.data.sunnybrook import CATEGORY_NAMES
from pipelines.generate.class_images import DATALIST_FILE, ClassImageSynthesizer
from pipelines.io.atomic import atomic_path, atomic_write_json

__all__ = ["PairSynthesizer", "GROUPS"]

logger = logging.getLogger(__name__)

GROUPS = tuple(CATEGORY_NAMES[k] for k in sorted(CATEGORY_NAMES))
MASK_THRESHOLD = 0.5


class PairSynthesizer(ClassImageSynthesizer):
    """Draw ``count`` image / mask pairs of one diagnostic group (or of the groups in turn).

    Args:
        network: the two-channel conditional generator ``G(z, y)`` (``pipelines.networks.conditional_gan``).
        label: a group name of ``classes`` (``hypertrophy``), or None: the groups in turn, ``count`` pairs in all.
        classes: group names in label order (Sunnybrook's four).
        spacing_mm: voxel size of the written volumes (the prepared Sunnybrook data's).
        The other arguments are :class:`~pipelines.generate.class_images.ClassImageSynthesizer`'s.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        checkpoint: str | Path,
        output_dir: str | Path,
        count: int,
        seed: int = 0,
        label: str | None = None,
        overwrite: bool = False,
        device: str | torch.device = "cpu",
        key: str = "model",
        classes: Sequence[str] = GROUPS,
        batch_size: int = 100,
        spacing_mm: Sequence[float] = (3.0, 3.0, 8.0),
    ) -> None:
        super().__init__(network, checkpoint, output_dir, count, seed, label, overwrite, device, key, classes,
                         batch_size, score=False)
        self.affine = np.diag([*(float(s) for s in spacing_mm), 1.0])

    def labels(self) -> list[int]:
        """The group of every pair: ``count`` of ``label``, else the groups in turn (``count`` in all)."""
        if self.label is not None:
            return [self.classes.index(self.label)] * self.count
        return [k % len(self.classes) for k in range(self.count)]

    def _stems(self) -> list[str]:
        return [f"syn_{k:04d}" for k in range(self.count)]

    def targets(self) -> Sequence[Path]:
        files = [self.output_dir / f"{stem}_{part}.nii.gz" for stem in self._stems() for part in ("image", "mask")]
        return [*files, self.output_dir / DATALIST_FILE]

    def decode(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``[N, 2, H, W]``: image and mask probability of one pair per group index in ``labels``."""
        z = torch.randn(len(labels), self.network.latent_size, generator=generator)
        return self.network(z.to(self.device), labels.to(self.device)).float().cpu()

    def _save(self, array: np.ndarray, path: Path) -> None:
        with atomic_path(path, overwrite=self.overwrite) as tmp:
            nib.save(nib.Nifti1Image(array[..., None], self.affine), tmp)

    def draw(self, generator: torch.Generator) -> tuple[torch.Tensor, list[int]]:
        """All ``count`` pairs ``[count, 2, H, W]`` (image, mask probability) and the group of each."""
        labels = torch.tensor(self.labels(), dtype=torch.long)
        pairs = torch.cat([self.decode(chunk, generator) for chunk in torch.split(labels, self.batch_size)])
        return pairs, labels.tolist()

    def write(self, generator: torch.Generator) -> Mapping[str, Any]:
        pairs, groups = self.draw(generator)
        labels = torch.tensor(groups, dtype=torch.long)
        if pairs.shape[1] != 2:
            raise ValueError(f"expected a two-channel (image, mask) generator, got {pairs.shape[1]} channels")
        cases, written = [], []
        for stem, pair, group in zip(self._stems(), pairs.numpy(), labels.tolist()):
            image = self.output_dir / f"{stem}_image.nii.gz"
            mask = self.output_dir / f"{stem}_mask.nii.gz"
            # NIfTI's first two axes are the image's columns and rows as nibabel reads the prepared volumes
            self._save(np.clip(pair[0], 0, 1).astype(np.float32), image)
            self._save((pair[1] > MASK_THRESHOLD).astype(np.uint8), mask)
            written += [image, mask]
            cases.append({"case_id": stem, "image": image.name, "label": mask.name, "num_slices": 1,
                          "category": int(group), "category_name": self.classes[group], "synthetic": True})
        datalist = {
            "name": "synthetic",
            "description": f"{len(cases)} image / mask pairs drawn by {type(self).__name__} from {self.checkpoint} "
            f"(seed {self.seed})",
            "synthetic": True,
            "categories": {str(k): name for k, name in enumerate(self.classes)},
            "cases": cases,
        }
        atomic_write_json(self.output_dir / DATALIST_FILE, datalist, overwrite=True)
        fractions = (pairs[:, 1] > MASK_THRESHOLD).float().mean(dim=(1, 2))
        return {
            "written": written,
            "per_group": {self.classes[k]: int((labels == k).sum()) for k in labels.unique().tolist()},
            "mask_fraction_mean": float(fractions.mean()),
            "empty_masks": int((fractions == 0).sum()),
        }
