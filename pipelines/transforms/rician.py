"""Seeded Rician noise at a fixed level, for evaluating denoisers on the same noisy images every time.

MR magnitude images are the modulus of a complex signal whose real and imaginary channels carry independent
Gaussian noise, so a clean magnitude ``x`` (here normalised to [0, 1]) is observed as

    y = sqrt((x + n1)^2 + n2^2),   n1, n2 ~ N(0, sigma^2) i.i.d. per pixel,

which is Rician distributed: biased upwards where the signal is low (E[y | x = 0] = sigma sqrt(pi / 2)) and close
to Gaussian, ``N(x, sigma^2)``, where ``x >> sigma``. Training uses MONAI's ``RandRicianNoised`` (the same formula,
sigma drawn uniformly from ``[0, std]`` per image); MONAI has no deterministic version whose noise depends only on
the case and the level, which a fair evaluation needs, so :class:`RicianNoised` adds it here. Its generator is
seeded from ``(seed, case id, sigma)``: a patient at a level gets the same noise whatever the order, the subset
size or the process that loads it (validation, ``pipelines evaluate``, ``benchmarks/denoising.py``).
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

__all__ = ["RicianNoised", "noise_seed", "rician_noise"]


def noise_seed(case_id: str, sigma: float, seed: int = 0) -> int:
    """A 32-bit seed that depends only on ``(seed, case_id, sigma)`` (CRC-32, stable across processes and runs)."""
    return zlib.crc32(f"{int(seed)}:{case_id}:{float(sigma):.6g}".encode())


def rician_noise(image: np.ndarray | torch.Tensor, sigma: float, seed: int) -> np.ndarray | torch.Tensor:
    """Return ``sqrt((x + n1)^2 + n2^2)`` with ``n1, n2 ~ N(0, sigma^2)`` drawn from ``numpy.random.default_rng(seed)``.

    Args:
        image: the clean image ``x`` (any shape), on the intensity scale of ``sigma`` (e.g. [0, 1]).
        sigma: the noise standard deviation of each quadrature channel; 0 returns ``|x|``.
        seed: the generator's seed; the same seed gives the same noise.

    Returns:
        The noisy image, float32, of the input's type (a ``MetaTensor`` keeps its metadata).
    """
    if sigma < 0:
        raise ValueError(f"sigma must be non-negative, got {sigma}")
    rng = np.random.default_rng(int(seed))
    shape = tuple(image.shape)
    n1 = rng.normal(0.0, float(sigma), size=shape).astype(np.float32)
    n2 = rng.normal(0.0, float(sigma), size=shape).astype(np.float32)
    if isinstance(image, torch.Tensor):
        x = image.float()
        noisy = torch.sqrt((x + torch.from_numpy(n1).to(x.device)) ** 2 + torch.from_numpy(n2).to(x.device) ** 2)
        if isinstance(image, MetaTensor) and not isinstance(noisy, MetaTensor):
            noisy = MetaTensor(noisy, meta=image.meta)
        return noisy
    x = np.asarray(image, dtype=np.float32)
    return np.sqrt((x + n1) ** 2 + n2**2)


class RicianNoised(MapTransform):
    """Add seeded Rician noise of a fixed level to ``keys`` (see the module docstring for the model and the seed).

    The level is ``sigma`` or, when ``sigma_key`` is given, the item's own ``item[sigma_key]`` (so one dataset can
    hold every patient at every level, see :func:`pipelines.data.noise_levels.noise_level_items`).

    Args:
        keys: keys of the clean images to replace by their noisy versions.
        sigma: the noise level on the image's intensity scale; used when ``sigma_key`` is None or absent.
        sigma_key: item key holding the level, or None.
        id_key: item key of the case id that seeds the noise (with ``sigma`` and ``seed``).
        seed: a global seed, to draw another noise realisation for every case.
        allow_missing_keys: do not raise for absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        sigma: float | None = None,
        sigma_key: str | None = "noise_sigma",
        id_key: str = "case_id",
        seed: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.sigma = sigma
        self.sigma_key = sigma_key
        self.id_key = id_key
        self.seed = int(seed)

    def _level(self, d: Mapping[Hashable, Any]) -> float:
        if self.sigma_key is not None and self.sigma_key in d:
            return float(d[self.sigma_key])
        if self.sigma is None:
            raise KeyError(f"no noise level: the item has no {self.sigma_key!r} and no sigma was given")
        return float(self.sigma)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        sigma = self._level(d)
        case_id = str(d.get(self.id_key, ""))
        for index, key in enumerate(self.key_iterator(d)):
            d[key] = rician_noise(d[key], sigma, noise_seed(f"{case_id}/{index}", sigma, self.seed))
        return d
