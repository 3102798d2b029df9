"""A pool of past generated images for the discriminator (Shrivastava et al. 2017; CycleGAN's ``ImagePool``).

Updating the discriminator on a history of fakes, not only the latest ones, reduces oscillation. For each image of a
batch: while the pool holds fewer than ``size`` images, the image is stored and returned; once full, with probability
1/2 a uniformly drawn stored image is returned and replaced by the new one, otherwise the new image is returned.

Unlike the reference code, the randomness comes from the pool's own seeded ``torch.Generator`` and both the stored
images and the generator state are in :meth:`ImagePool.state_dict`, so a resumed run draws exactly what it would have.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ImagePool"]


class ImagePool:
    """A buffer of at most ``size`` past images.

    Args:
        size: capacity; 0 disables the pool (:meth:`query` returns its input).
        seed: seed of the pool's random generator.
    """

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        if size < 0:
            raise ValueError(f"pool size must be non-negative, got {size}")
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch the shape of ``images`` (B, C, ...), mixing them with stored ones; store the new ones.

        ``images`` should be detached (the discriminator step must not reach the generator).
        """
        if self.size == 0:
            return images
        # stored as plain tensors: a MONAI MetaTensor's metadata would make the pool's state unloadable with
        # torch.load(weights_only=True)
        images = images.as_tensor() if hasattr(images, "as_tensor") else images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(1, generator=self.generator).item() < 0.5:
                index = int(torch.randint(self.size, (1,), generator=self.generator).item())
                out.append(self.images[index].to(image.device))
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    __call__ = query

    def state_dict(self) -> dict[str, Any]:
        """The stored images (stacked, or ``None`` when empty), the capacity and the generator state."""
        return {
            "size": self.size,
            "images": torch.stack(self.images) if self.images else None,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; the capacity must match."""
        if int(state["size"]) != self.size:
            raise ValueError(f"pool of size {self.size} cannot load the state of a pool of size {state['size']}")
        images = state["images"]
        self.images = [] if images is None else [image.clone() for image in images]
        self.generator.set_state(state["generator"])
