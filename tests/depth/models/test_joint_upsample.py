"""Learned PAC joint upsampling: shapes, metres in/out, holes, gradients, tiling."""

import pytest
import torch

from densepac.depth.inference import tiled_upsample
from densepac.models import create_model, list_models

LEARNED = list_models("pac_jointupsample*")


def test_family_registered():
    for s in (4, 8, 16):
        for prefix in ("pac_jointupsample", "pac_jointupsample_lite", "pac_jointupsample_res", "pac_jointupsample_jbu"):
            assert f"{prefix}_x{s}" in LEARNED


@pytest.mark.parametrize("name", ["pac_jointupsample_x4", "pac_jointupsample_lite_x8", "pac_jointupsample_res_x4"])
def test_shape_metres_and_holes(name):
    torch.manual_seed(0)
    m = create_model(name).double().eval()
    s = m.scale
    lr = torch.rand(2, 1, 5, 7, dtype=torch.float64) * 2 + 1
    lr[0, 0, 1, 2] = 0
    lr[1, 0, 3, 3] = float("nan")
    rgb = torch.rand(2, 3, 5 * s, 7 * s, dtype=torch.float64)
    out = m(lr, rgb)
    assert out.shape == (2, 1, 5 * s, 7 * s) and torch.isfinite(out).all()
    # Normalized inside: metres in, metres out, for any depth range.
    torch.testing.assert_close(m(lr * 10, rgb), out * 10)
    torch.testing.assert_close(m(torch.where(lr > 0, lr + 5, lr), rgb), out + 5)  # holes stay holes


def test_gradients_reach_every_parameter():
    m = create_model("pac_jointupsample_res_x4")
    lr = torch.rand(1, 1, 4, 4) + 1
    m(lr, torch.rand(1, 3, 16, 16)).square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_wrong_scale_refused():
    m = create_model("pac_jointupsample_x8")
    with pytest.raises(ValueError, match="x4"):
        m(torch.rand(1, 1, 4, 4), torch.rand(1, 3, 16, 16))


@pytest.mark.parametrize(
    "name",
    [
        "bicubic",
        "guided_filter",
        "joint_bilateral",
        "pac_jointupsample_x4",
        "pac_jointupsample_res_x8",
        "pac_jointupsample_lite_x16",
        "pac_jointupsample_jbu_x4",
    ],
)
def test_tiled_equals_untiled(name):
    torch.manual_seed(1)
    m = create_model(name).double().eval()
    s = getattr(m, "scale", 4)
    h, w = (28, 35) if s < 16 else (20, 23)
    lr = torch.rand(1, 1, h, w, dtype=torch.float64) + 1
    lr[0, 0, 3:7, 20:23] = 0  # a hole that straddles tiles
    rgb = torch.rand(1, 3, h * s, w * s, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(tiled_upsample(m, lr, rgb, tile=9, margin=m.tile_margin), m(lr, rgb))


@pytest.mark.parametrize("scale", [4, 8])
def test_residual_variants_start_at_their_base(scale):
    torch.manual_seed(2)
    lr = torch.rand(2, 1, 6, 5, dtype=torch.float64) * 3 + 1
    lr[0, 0, 2, 2] = 0
    rgb = torch.rand(2, 3, 6 * scale, 5 * scale, dtype=torch.float64)
    with torch.no_grad():
        jbu = create_model(f"pac_jointupsample_jbu_x{scale}").double()(lr, rgb)
        torch.testing.assert_close(jbu, create_model("joint_bilateral").double()(lr, rgb))
        # Bicubic is linear, so the depth normalization cancels out (no holes here).
        res = create_model(f"pac_jointupsample_res_x{scale}").double()(lr[1:], rgb[1:])
        ref = torch.nn.functional.interpolate(lr[1:], scale_factor=scale, mode="bicubic", align_corners=False)
        torch.testing.assert_close(res, ref)


def test_unknown_base_refused():
    with pytest.raises(ValueError, match="base"):
        create_model("pac_jointupsample_x4", residual=True, base="nearest")
