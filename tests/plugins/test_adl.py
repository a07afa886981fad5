import pytest
import torch
import torch.nn.functional as F
from torch import nn

from densepac.plugins.adl import ADL, adl, adl_layers, insert_adl


def _features(dtype=torch.float64, device="cpu"):
    torch.manual_seed(0)
    x = torch.rand(3, 4, 8, 8, dtype=dtype, device=device)
    x[:, :, 2:4, 5:7] += 5.0  # the most activated region
    return x


def test_identity_in_eval(device, dtype):
    x = _features(dtype, device)
    m = ADL().eval()
    assert m(x) is x


def test_drop_mask_removes_exactly_the_region_above_threshold(device, dtype):
    x = _features(dtype, device)
    out = adl(x, drop_rate=1.0, threshold=0.9)
    att = x.mean(1, keepdim=True)
    dropped = att >= 0.9 * att.amax((2, 3), keepdim=True)
    assert dropped[:, :, 2:4, 5:7].all() and dropped.sum() == 3 * 4  # the bright block, nothing else
    assert (out * dropped).abs().sum() == 0
    torch.testing.assert_close(out * ~dropped, x * ~dropped)
    assert out.dtype == dtype and out.device == x.device


def test_importance_map_branch():
    x = _features()
    torch.testing.assert_close(adl(x, drop_rate=0.0), x * torch.sigmoid(x.mean(1, keepdim=True)))


def test_per_sample_choice_follows_drop_rate():
    x = _features().repeat(200, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    out = adl(x, drop_rate=0.75, generator=g)
    dropped_samples = (out[:, :, 2, 5] == 0).all(1).float().mean().item()
    assert 0.65 < dropped_samples < 0.85


def test_insert_adl_and_errors():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 4, 3, padding=1)))
    keys = list(model.state_dict())
    assert insert_adl(model, ["1", "2.0"]) == ["1", "2.0"]
    assert adl_layers(model) == ["1", "2.0"] and list(model.state_dict()) == keys
    x = torch.rand(2, 3, 8, 8)
    model.eval()
    plain = model[2](model[1](model[0](x)))
    assert torch.equal(model(x), plain)  # identity at eval
    model.train()
    torch.manual_seed(1)
    with_adl = model(x)
    torch.manual_seed(1)
    conv = model[2][0]  # called functionally below: calling the modules would fire their hooks
    first = adl(torch.relu(model[0](x)), training=True)
    second = adl(F.conv2d(first, conv.weight, conv.bias, padding=1), training=True)
    assert torch.equal(with_adl, second)  # both hooks, in order, with the same random choices
    with pytest.raises(ValueError, match="already has ADL"):
        insert_adl(model, ["1"])
    with pytest.raises(ValueError, match="no submodule"):
        insert_adl(model, ["nope"])
    with pytest.raises(ValueError, match="drop_rate"):
        ADL(drop_rate=1.5)
    with pytest.raises(ValueError, match="N, C, H, W"):
        adl(torch.rand(3, 8, 8))
