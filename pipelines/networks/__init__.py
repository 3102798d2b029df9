"""Networks and wrappers that MONAI lacks; MONAI's own networks (UNet, ...) are used directly from configs."""

from pipelines.networks.baseline import StridedEncoderDecoder
from pipelines.networks.bounded import TanhOutput
from pipelines.networks.resnet_generator import ResnetGenerator
from pipelines.networks.scaled import ScaledNetwork, describe
from pipelines.networks.segnet import SegNet

__all__ = ["ResnetGenerator", "ScaledNetwork", "SegNet", "StridedEncoderDecoder", "TanhOutput", "describe"]
