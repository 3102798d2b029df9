"""Networks and wrappers that MONAI lacks; MONAI's own networks (UNet, ...) are used directly from configs."""

from pipelines.networks.baseline import StridedEncoderDecoder
from pipelines.networks.bounded import TanhOutput
from pipelines.networks.conditional_gan import ConditionalDiscriminator, ConditionalGenerator
from pipelines.networks.cvae import ConditionalVAE
from pipelines.networks.diffaugment import DiffAugment
from pipelines.networks.ensemble import ProbabilityEnsemble
from pipelines.networks.mask_conditioned import MaskConditionedGenerator
from pipelines.networks.resnet_generator import ResnetGenerator
from pipelines.networks.scaled import ScaledNetwork, describe
from pipelines.networks.segnet import SegNet

__all__ = ["ConditionalDiscriminator", "ConditionalGenerator", "ConditionalVAE", "DiffAugment", "MaskConditionedGenerator", "ProbabilityEnsemble", "ResnetGenerator", "ScaledNetwork", "SegNet", "StridedEncoderDecoder", "TanhOutput", "describe"]
