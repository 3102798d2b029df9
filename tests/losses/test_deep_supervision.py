"""Deep supervision over heads stacked along dim 1, against MONAI's weights computed by hand."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import DynUNet

from pipelines.losses import StackedDeepSupervisionLoss
from pipelines.networks import ScaledNetwork


def _dice_ce() -> DiceCELoss:
    return DiceCELoss(to_onehot_y=True, softmax=True, batch=True)


def test_stacked_heads_are_weighted_one_half_one_quarter() -> None:
    torch.manual_seed(0)
    target = torch.randint(0, 2, (2, 1, 8, 8)).float()
    heads = [torch.randn(2, 2, 8, 8) for _ in range(3)]
    loss = StackedDeepSupervisionLoss(_dice_ce())(torch.stack(heads, dim=1), target)
    single = _dice_ce()
    expected = single(heads[0], target) + 0.5 * single(heads[1], target) + 0.25 * single(heads[2], target)
    torch.testing.assert_close(loss, expected)


def test_a_plain_prediction_gets_the_plain_loss() -> None:
    torch.manual_seed(1)
    target = torch.randint(0, 2, (2, 1, 8, 8)).float()
    pred = torch.randn(2, 2, 8, 8)
    torch.testing.assert_close(StackedDeepSupervisionLoss(_dice_ce())(pred, target), _dice_ce()(pred, target))


@pytest.mark.parametrize("scale", [2, 0.5])
def test_dynunet_heads_train_through_a_scaled_network(scale: float) -> None:
    torch.manual_seed(2)
    net = DynUNet(spatial_dims=2, in_channels=1, out_channels=2, kernel_size=[3, 3, 3, 3], strides=[1, 2, 2, 2],
                  upsample_kernel_size=[2, 2, 2], filters=[4, 8, 8, 8], norm_name="instance",
                  deep_supervision=True, deep_supr_num=2)
    model = ScaledNetwork(net, scale=scale)
    x, target = torch.randn(2, 1, 32, 32), torch.randint(0, 2, (2, 1, 32, 32)).float()
    model.train()
    stacked = model(x)
    assert stacked.shape == (2, 3, 2, 32, 32)  # the final output and two coarser heads, on the input grid
    StackedDeepSupervisionLoss(_dice_ce())(stacked, target).backward()
    head_grads = [p.grad for p in net.deep_supervision_heads.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in head_grads)  # the coarse heads are supervised
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 2, 32, 32)  # evaluation sees the final output alone
