from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet

from pipelines.errors import InputError
from pipelines.networks import ProbabilityEnsemble, ScaledNetwork
from pipelines.networks.ensemble import ensemble_weights, fit_to_weights, member_count


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


def test_member_count_reads_the_ensemble_from_its_keys() -> None:
    ensemble = ProbabilityEnsemble([_unet(0), _unet(1), _unet(2)])
    assert member_count(ensemble.state_dict().keys()) == 3
    assert member_count(_unet(0).state_dict().keys()) == 0
    assert member_count(["members.0.w", "model.w"]) == 0  # not every key is a member's: not an ensemble


def test_fit_to_weights_builds_the_ensemble_the_weights_hold(tmp_path) -> None:
    torch.save({"model": ProbabilityEnsemble([_unet(0), _unet(1)]).state_dict()}, tmp_path / "ens.pt")
    torch.save(_unet(0).state_dict(), tmp_path / "one.pt")
    fitted = fit_to_weights(_unet(5), tmp_path / "ens.pt")
    assert isinstance(fitted, ProbabilityEnsemble) and len(fitted.members) == 2
    assert fitted.members[0] is not fitted.members[1]  # copies, each loads its own weights
    fitted.load_state_dict(torch.load(tmp_path / "ens.pt", weights_only=True)["model"], strict=True)
    single = _unet(5)
    assert fit_to_weights(single, tmp_path / "one.pt") is single
    assert fit_to_weights(single, tmp_path / "missing.pt") is single
    assert fit_to_weights(fitted, tmp_path / "ens.pt") is fitted  # already an ensemble
