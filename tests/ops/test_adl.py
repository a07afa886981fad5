import pytest
import torch
from torch import nn

from densepac.ops.adl import ADL, adl, insert_adl


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
    assert insert_adl(model, ["1", "2.0"]) == ["1", "2.0"]
    assert isinstance(model[1][1], ADL) and isinstance(model[2][0][1], ADL)
    x = torch.rand(2, 3, 8, 8)
    model.eval()
    assert model(x).shape == (2, 4, 8, 8)
    with pytest.raises(ValueError, match="no submodule"):
        insert_adl(model, ["nope"])
    with pytest.raises(ValueError, match="drop_rate"):
        ADL(drop_rate=1.5)
    with pytest.raises(ValueError, match="N, C, H, W"):
        adl(torch.rand(3, 8, 8))
