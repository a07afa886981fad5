import pytest
import torch

from densepac.errors import InputError
from densepac.ops import SourceConsistency, sample_as_source, source_consistency, source_consistency_

SCALES = [1, 2, 3, 4, 5, 8]


def _random_pair(n, h, w, s, dtype, device, missing=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    hr = (torch.rand(n, 1, h * s, w * s, generator=g, dtype=dtype) * 9 + 0.5).to(device)
    lr = (torch.rand(n, 1, h, w, generator=g, dtype=dtype) * 9 + 0.5).to(device)
    holes = (torch.rand(n, 1, h, w, generator=g) < missing).to(device)
    lr[holes] = 0
    lr[holes & (torch.rand(n, 1, h, w, generator=g) < 0.5).to(device)] = float("nan")
    return hr, lr


def _ramp(h, w, dtype, device):
    """A smooth, slanted surface (metres)."""
    y = torch.arange(h, dtype=dtype, device=device)[:, None]
    x = torch.arange(w, dtype=dtype, device=device)[None, :]
    return (2 + 0.01 * y + 0.02 * x + 0.3 * torch.sin(x / 9) * torch.cos(y / 7)).view(1, 1, h, w)


def _largest_step(x):
    return max((x[..., 1:] - x[..., :-1]).abs().max().item(), (x[..., 1:, :] - x[..., :-1, :]).abs().max().item())


@pytest.mark.parametrize("sampling", ["area", "point"])
@pytest.mark.parametrize("scale", SCALES)
def test_reproduces_every_valid_source_pixel(sampling, scale, device, dtype):
    hr, lr = _random_pair(3, 5, 7, scale, dtype, device, seed=scale)
    out = source_consistency(hr, lr, sampling)
    assert out.shape == hr.shape and out.dtype == dtype and out.device == hr.device
    valid = torch.isfinite(lr) & (lr > 0)
    # A few rounding steps of depths up to 10 m.
    atol = 8 * 10 * torch.finfo(dtype).eps
    torch.testing.assert_close(sample_as_source(out, scale, sampling)[valid], lr[valid], rtol=0, atol=atol)


@pytest.mark.parametrize("sampling", ["area", "point"])
def test_samples_where_the_docs_say(sampling):
    """area: the block mean; point: pixel (s*i + s//2, s*j + s//2), as depth.degrade.downsample_point."""
    x = torch.arange(2 * 36 * 24, dtype=torch.float64).view(2, 1, 24, 36)
    got = sample_as_source(x, 4, sampling)
    want = x[..., 2::4, 2::4] if sampling == "point" else torch.nn.functional.avg_pool2d(x, 4)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("sampling", ["area", "point"])
@pytest.mark.parametrize("scale", [2, 3, 8])
def test_an_offset_is_spread_smoothly(sampling, scale, device):
    """A smooth map with its source 0.5 m off stays smooth: no step at block borders.

    Holes in the source must not dent the correction either. The usual per-block constant
    correction would jump by up to the offset between blocks; here the largest step
    between neighbours stays what the surface itself has.
    """
    h, w = 6, 9
    smooth = _ramp(h * scale, w * scale, torch.float64, device)
    lr = sample_as_source(smooth, scale, sampling) + 0.5
    lr[..., 2, 3] = 0
    lr[..., 4, 0] = float("nan")
    out = source_consistency(smooth, lr, sampling)
    assert _largest_step(out - smooth) < 1e-9
    assert _largest_step(out) <= _largest_step(smooth) + 1e-9

    # A different offset per source pixel is spread as a continuous field: its steps are
    # about 1/s of the offsets' differences (a per-block constant would step by all of it).
    offsets = torch.linspace(-0.5, 0.5, h * w, dtype=torch.float64, device=device).view(1, 1, h, w)
    out = source_consistency(smooth, sample_as_source(smooth, scale, sampling) + offsets, sampling)
    assert _largest_step(out - smooth) < 1.5 * _largest_step(offsets) / scale


@pytest.mark.parametrize("sampling", ["area", "point"])
def test_consistent_input_is_unchanged(sampling, device, dtype):
    hr, _ = _random_pair(2, 4, 6, 4, dtype, device)
    lr = sample_as_source(hr, 4, sampling).clone()
    lr[0, 0, 1, 2] = 0  # a missing pixel constrains nothing
    out = source_consistency(hr, lr, sampling)
    torch.testing.assert_close(out, hr, rtol=16 * torch.finfo(dtype).eps, atol=0)


def test_without_any_valid_source_pixel_nothing_changes():
    hr = torch.rand(1, 1, 8, 8) + 1
    assert torch.equal(source_consistency(hr, torch.zeros(1, 1, 2, 2), "area"), hr)


@pytest.mark.parametrize("sampling", ["area", "point"])
def test_gradcheck(sampling):
    hr, lr = _random_pair(1, 3, 2, 2, torch.float64, "cpu", missing=0.0)
    hr.requires_grad_()
    lr.requires_grad_()
    # A missing pixel stays missing under gradcheck's perturbations.
    missing = torch.zeros_like(lr, dtype=torch.bool)
    missing[0, 0, 1, 1] = True
    assert torch.autograd.gradcheck(
        lambda a, b: source_consistency(a, torch.where(missing, torch.zeros_like(b), b), sampling), (hr, lr)
    )


def test_module_equals_functional_and_non_contiguous_input():
    hr, lr = _random_pair(2, 5, 4, 3, torch.float32, "cpu")
    module = SourceConsistency("area")
    assert "area" in repr(module)
    torch.testing.assert_close(module(hr, lr), source_consistency(hr, lr, "area"))
    hr_t, lr_t = (v.transpose(-1, -2).contiguous().transpose(-1, -2) for v in (hr, lr))
    assert not hr_t.is_contiguous()
    torch.testing.assert_close(source_consistency(hr_t, lr_t, "point"), source_consistency(hr, lr, "point"))


def test_bad_inputs_raise_input_error():
    hr, lr = torch.rand(1, 1, 8, 12), torch.rand(1, 1, 2, 3)
    with pytest.raises(InputError, match="sampling"):
        source_consistency(hr, lr, "auto")
    with pytest.raises(InputError, match="sampling"):
        SourceConsistency("nearest")
    with pytest.raises(InputError, match=r"\(N, 1, H, W\)"):
        source_consistency(hr[0], lr, "area")
    with pytest.raises(InputError, match=r"\(N, 1, H, W\)"):
        source_consistency(hr.expand(1, 3, 8, 12), lr, "area")
    with pytest.raises(InputError, match="batch"):
        source_consistency(hr.expand(2, 1, 8, 12), lr, "area")
    with pytest.raises(InputError, match="multiple"):
        source_consistency(hr[..., :7, :], lr, "area")
    with pytest.raises(InputError, match="multiple"):
        source_consistency(hr[..., :6], lr, "point")  # 4x on one axis, 2x on the other
    with pytest.raises(InputError, match="torch.Tensor"):
        source_consistency(hr.numpy(), lr, "area")


@pytest.mark.parametrize("sampling", ["area", "point"])
@pytest.mark.parametrize("rows", [1, 3, 64])
def test_in_place_banded_form_matches_the_functional_one(sampling, rows, device, dtype):
    hr, lr = _random_pair(2, 7, 9, 4, dtype, device, seed=rows)
    want = source_consistency(hr.double(), lr.double(), sampling).to(dtype)
    target = hr.clone()
    out = source_consistency_(target, lr, sampling, rows=rows)
    assert out is target
    torch.testing.assert_close(out, want, rtol=0, atol=4 * 10 * torch.finfo(dtype).eps)
    with pytest.raises(InputError, match="rows"):
        source_consistency_(hr.clone(), lr, sampling, rows=0)
