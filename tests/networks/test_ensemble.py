from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet

from pipelines.errors import InputError
from pipelines.networks import ProbabilityEnsemble, ScaledNetwork
from pipelines.networks.ensemble import ensemble_weights


def _unet(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,)).eval()


def test_softmax_of_the_output_is_the_mean_of_the_members_probabilities() -> None:
    members = [_unet(0), _unet(1), _unet(2)]
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        expected = torch.stack([torch.softmax(m(x), dim=1) for m in members]).mean(dim=0)
        out = ProbabilityEnsemble(members)(x)
    assert out.shape == (2, 2, 16, 16)
    torch.testing.assert_close(torch.softmax(out, dim=1), expected)


def test_one_member_gives_that_members_probabilities_and_no_member_is_refused() -> None:
    member = _unet(0)
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(torch.softmax(ProbabilityEnsemble([member])(x), 1), torch.softmax(member(x), 1))
    with pytest.raises(ValueError, match="at least one member"):
        ProbabilityEnsemble([])


def test_ensemble_weights_load_strictly_in_member_order(tmp_path) -> None:
    nets = [ScaledNetwork(_unet(s), scale=2) for s in (0, 1)]
    torch.save({"model": nets[0].state_dict()}, tmp_path / "a.pt")  # a bundle's model.pt
    torch.save(nets[1].state_dict(), tmp_path / "b.pt")  # a bare state dict
    ensemble = ProbabilityEnsemble([ScaledNetwork(_unet(9), scale=2) for _ in nets])
    ensemble.load_state_dict(ensemble_weights([tmp_path / "a.pt", tmp_path / "b.pt"]), strict=True)
    for loaded, original in zip(ensemble.members, nets):
        for key, value in original.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value)


def test_ensemble_weights_refuse_a_file_that_is_not_a_state_dict(tmp_path) -> None:
    torch.save({"model": {"epoch": 3}}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="bad.pt"):
        ensemble_weights([tmp_path / "bad.pt"])
