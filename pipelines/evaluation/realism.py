"""How realistic are generated cardiac MR slices and myocardium masks? The three measures of issue #5.

- :func:`segmentation_features` + :func:`pipelines.evaluation.generative.frechet_distance`: a Fréchet distance on
  the deepest feature map of the project's segmentation U-Net (``lv_segmentation_unet``'s shipped weights), average
  pooled. ImageNet's Inception, the usual FID network, cannot be downloaded here, and it never saw a cardiac MR: a
  network trained to find the myocardium in exactly these 64x64 short-axis crops is the in-domain choice. Its
  figures compare runs of this project with each other, not with published FIDs.
- :func:`classifier_two_sample_test` (C2ST, Lopez-Paz & Oquab 2017): a small MONAI ``Classifier`` is trained
  (Ignite, MONAI ``SupervisedTrainer``) to tell real from generated images on one half of a balanced set and scored
  on the other half. Accuracy 0.5: indistinguishable; 1.0: every generated image is recognised.
- :func:`mask_plausibility`: the segmentation model's Dice between a generated mask and its own prediction on the
  generated image, Dice = 2|A ∩ B| / (|A| + |B|): does the mask sit where the image shows a myocardium?

Images are ``[N, 1, H, W]`` on the segmentation bundle's intensity scale (each volume's 0.5th-99.5th percentiles
mapped to 0..1, :func:`real_slices`), masks ``[N, 1, H, W]`` in {0, 1} (generated masks are thresholded at 0.5).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice
from torch import nn

__all__ = [
    "classifier_two_sample_test", "mask_plausibility", "pair_image_features", "real_slices", "segmentation_features",
    "realism_report", "synthetic_slices",
]

logger = logging.getLogger(__name__)

BATCH = 256  # images per forward pass: bounds memory, not the result


def real_slices(
    data: str | Path, split: str | int = "seed", subsets: Sequence[str] = ("train",), max_cases: int | None = None,
    bundle: str = "lv_segmentation_unet",
) -> dict[str, Any]:
    """Every slice of the real patients of ``subsets``, with the segmentation ``bundle``'s own intensity transform.

    Returns:
        ``{"image": [N, 1, H, W] float, "label": [N, 1, H, W] {0, 1}, "case_id": [N], "category": [N]}``.
    """
    from monai.bundle import ConfigParser
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    from pipelines import api
    from pipelines.data import split_items

    bundle_dir = api.resolve_bundle(bundle)
    parser = ConfigParser()
    parser.read_config(api.config_files(bundle_dir, ["train.json"]))
    load = Compose([LoadImaged(["image", "label"], image_only=True), EnsureChannelFirstd(["image", "label"]),
                    parser.get_parsed_content("intensity")])
    images, labels, case_ids, categories = [], [], [], []
    for subset in subsets:
        for item in split_items(data, split, subset, max_cases):
            volume = load(item)
            images.append(torch.as_tensor(volume["image"]).permute(3, 0, 1, 2))  # [C, H, W, S] -> [S, C, H, W]
            labels.append(torch.as_tensor(volume["label"]).permute(3, 0, 1, 2))
            case_ids += [item["case_id"]] * images[-1].shape[0]
            categories += [int(item.get("category", -1))] * images[-1].shape[0]
    return {"image": torch.cat(images).float(), "label": (torch.cat(labels) > 0.5).float(), "case_id": case_ids,
            "category": torch.tensor(categories)}


def synthetic_slices(datalist: str | Path) -> dict[str, torch.Tensor]:
    """The pairs of a synthetic datalist (``pipelines synthesize mr_synthesis_gan``), already on the 0..1 scale:
    ``{"image": [N, 1, H, W], "label": [N, 1, H, W]}``, one slice per pair."""
    import nibabel as nib

    from pipelines.data import load_synthetic

    items = load_synthetic(datalist)

    def read(path: str, k: int) -> torch.Tensor:
        return torch.as_tensor(np.asarray(nib.load(path).dataobj, dtype=np.float32)[..., k])[None]

    return {"image": torch.stack([read(i["image"], i["slice"]) for i in items]),
            "label": torch.stack([read(i["label"], i["slice"]) for i in items])}


@torch.no_grad()
def segmentation_features(network: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Average-pooled deepest feature map of ``network`` for ``images``: ``[N, C]``.

    The deepest map is the output of the convolution with the smallest spatial grid (ties: the most channels, then
    the last in forward order), found on the first batch by forward hooks; for the U-Net it is the bottleneck.
    Convolution outputs, not the normalised activations after them: instance norm removes every channel's spatial
    mean, which is exactly what average pooling keeps.
    """
    network = network.eval()
    seen: list[tuple[str, torch.Tensor]] = []
    leaves = [(name, m) for name, m in network.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: seen.append((name, out))) for name, m in leaves]
    chosen: str | None = None
    features = []
    try:
        device = next(network.parameters()).device
        for batch in torch.split(images.float(), BATCH):
            seen.clear()
            network(batch.to(device))
            maps = [(name, out) for name, out in seen if isinstance(out, torch.Tensor) and out.ndim == 4]
            if chosen is None:
                order = {name: k for k, (name, _) in enumerate(maps)}
                chosen = min(maps, key=lambda m: (m[1].shape[2] * m[1].shape[3], -m[1].shape[1], -order[m[0]]))[0]
                logger.debug("feature map: %s", chosen)
            features.append(torch.as_tensor(dict(maps)[chosen]).mean(dim=(2, 3)).cpu())
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat(features)


def pair_image_features(network: nn.Module, pairs: torch.Tensor) -> torch.Tensor:
    """:func:`segmentation_features` of the image channel of ``[N, 2, H, W]`` (image, mask) pairs."""
    return segmentation_features(network, pairs[:, :1])


@torch.no_grad()
def mask_plausibility(network: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> dict[str, Any]:
    """Dice between each mask and the segmentation of its image by ``network`` (argmax over its channels).

    A pair where both the mask and the prediction are empty scores 1 (they agree); the mean is over pairs.
    """
    network = network.eval()
    device = next(network.parameters()).device
    predictions = torch.cat([network(batch.to(device)).argmax(dim=1, keepdim=True).cpu()
                             for batch in torch.split(images.float(), BATCH)])
    dice = compute_dice(predictions.float(), (masks.cpu() > 0.5).float(), include_background=True, ignore_empty=False)
    per_pair = dice.reshape(-1).numpy()
    return {"mean_dice": float(per_pair.mean()), "median_dice": float(np.median(per_pair)), "pairs": len(per_pair)}


def classifier_two_sample_test(
    real: torch.Tensor, fake: torch.Tensor, epochs: int = 15, seed: int = 0, batch_size: int = 32
) -> dict[str, Any]:
    """Held-out accuracy of a small CNN trained to tell ``real`` from ``fake`` images (0.5: indistinguishable).

    n = min(len(real), len(fake)) images of each kind are drawn (seeded), split in halves; the classifier (MONAI
    ``Classifier``, 4 strided convolution levels, BCE on one logit, Adam 1e-3) trains on one half for ``epochs`` and
    is scored on the other.
    """
    from monai.engines import SupervisedTrainer
    from monai.networks.nets import Classifier

    generator = torch.Generator().manual_seed(seed)
    n = min(len(real), len(fake))
    if n < 4:
        raise ValueError(f"a two-sample test needs at least 4 images of each kind, got {len(real)} and {len(fake)}")
    pick_real = torch.randperm(len(real), generator=generator)[:n]
    pick_fake = torch.randperm(len(fake), generator=generator)[:n]
    images = torch.cat([real[pick_real], fake[pick_fake]]).float()
    targets = torch.cat([torch.ones(n), torch.zeros(n)])[:, None]
    order = torch.randperm(2 * n, generator=generator)
    train, test = order[: n], order[n:]

    with torch.random.fork_rng():  # seeded weights, leaving the caller's random stream as it was
        torch.manual_seed(seed)
        network = Classifier(in_shape=tuple(images.shape[1:]), classes=1, channels=(8, 16, 32, 64),
                             strides=(2, 2, 2, 2))
        data = [{"image": images[k], "label": targets[k]} for k in train.tolist()]
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True,
                                             generator=torch.Generator().manual_seed(seed))
        trainer = SupervisedTrainer(
            device=torch.device("cpu"), max_epochs=epochs, train_data_loader=loader, network=network,
            optimizer=torch.optim.Adam(network.parameters(), 1e-3), loss_function=nn.BCEWithLogitsLoss(),
        )
        trainer.run()
    network.eval()
    with torch.no_grad():
        logits = torch.cat([network(batch) for batch in torch.split(images[test], BATCH)])
    accuracy = float(((logits > 0).float() == targets[test]).float().mean())
    return {"accuracy": accuracy, "n_train": len(train), "n_test": len(test), "epochs": epochs}


def realism_report(
    data: str | Path, split: str | int, synthetic: str | Path, n_labelled: int | None = None, c2st_epochs: int = 15,
    segmentation_checkpoint: str | Path | None = None,
) -> dict[str, float]:
    """The three measures for the pairs of a synthetic datalist, against the test patients of ``split``.

    Returns ``frechet_distance`` (synthetic vs test images), ``frechet_distance_real`` (the floor: the first
    ``n_labelled`` training patients' images vs the test images), ``c2st_accuracy`` (test images vs synthetic ones),
    ``mask_plausibility`` (mean Dice) and ``synthetic_pairs``; the features and segmentations are those of the
    ``lv_segmentation_unet`` network (shipped weights unless ``segmentation_checkpoint``).
    """
    from pipelines import api
    from pipelines.evaluation.generative import frechet_distance

    unet = api.load_network("lv_segmentation_unet", segmentation_checkpoint)
    test = real_slices(data, split, ("test",))
    labelled = real_slices(data, split, ("train",), max_cases=n_labelled)
    pairs = synthetic_slices(synthetic)
    test_features = segmentation_features(unet, test["image"])
    return {
        "frechet_distance": frechet_distance(test_features, segmentation_features(unet, pairs["image"])),
        "frechet_distance_real": frechet_distance(test_features, segmentation_features(unet, labelled["image"])),
        "c2st_accuracy": classifier_two_sample_test(test["image"], pairs["image"], epochs=c2st_epochs)["accuracy"],
        "mask_plausibility": mask_plausibility(unet, pairs["image"], pairs["label"])["mean_dice"],
        "synthetic_pairs": len(pairs["image"]),
    }
