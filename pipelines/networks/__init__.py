"""Networks and wrappers that MONAI lacks; MONAI's own networks (UNet, ...) are used directly from configs."""

from pipelines.networks.scaled import ScaledNetwork

__all__ = ["ScaledNetwork"]
