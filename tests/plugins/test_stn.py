"""Spatial transformer: functional warps, identity init, exact affine inverse, TPS inverse bound, wrapper."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from kornia.geometry.transform import get_tps_transform, warp_image_tps, warp_points_tps

from densepac.errors import InputError
from densepac.plugins.stn import (
    KINDS,
    SpatialTransformer,
    STNSegmentation,
    affine_grid_sample,
    attention_theta,
    invert_affine,
    tps_control_points,
    tps_grid,
    tps_grid_sample,
    tps_inverse_grid,
    wrap_stn,
)
from densepac.segmentation.models.base import SegmentationModel


class TinySeg(SegmentationModel):
    """A 3x3 conv segmentation model: cheap, and not pointwise, so warps do not commute with it."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = torch.nn.Conv2d(3, num_classes, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        self.check_image(image)
        return self.conv(self.normalize(image))


def _tol(dtype: torch.dtype) -> dict:
    return {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-10, "rtol": 1e-10}


def _ramp(n: int, h: int, w: int, **kw) -> torch.Tensor:
    """(n, 2, h, w): channel 0 is the normalized x of each pixel centre, channel 1 y + 2 x.

    Bilinear interpolation reproduces linear functions exactly, so resampling this image
    has no interpolation error wherever the samples stay inside.
    """
    grid = F.affine_grid(torch.eye(2, 3, **kw).expand(n, 2, 3), [n, 1, h, w], align_corners=False)
    x, y = grid[..., 0], grid[..., 1]
    return torch.stack([x, y + 2 * x], dim=1)


def _interior(t: torch.Tensor, m: int) -> torch.Tensor:
    return t[..., m:-m, m:-m]


def _wrapper(kind: str, **kw) -> tuple[STNSegmentation, TinySeg]:
    torch.manual_seed(0)
    base = TinySeg()
    return wrap_stn(base, kind, **kw), base


# ----------------------------------------------------------------------------- identity


@pytest.mark.parametrize("kind", KINDS)
def test_identity_init_returns_base_output(kind, device, dtype):
    model, base = _wrapper(kind)
    model = model.to(device, dtype)
    image = torch.rand(2, 3, 32, 24, device=device, dtype=dtype)
    logits, transform = model.forward_with_transform(image)
    assert logits.shape == (2, 4, 32, 24) and logits.dtype == dtype
    torch.testing.assert_close(logits, base(image), **_tol(dtype))
    torch.testing.assert_close(model(image), logits)
    expected = {"affine": (2, 2, 3), "attention": (2, 2, 3), "tps": (2, 16, 2)}[kind]
    assert transform.shape == expected


@pytest.mark.parametrize("kind", KINDS)
def test_stn_identity_warp_and_state_dict(kind):
    model, _ = _wrapper(kind, hidden=8)
    keys = list(model.state_dict())
    assert all(k.startswith(("model.", "stn.")) for k in keys)
    assert {"model.conv.weight", "stn.head.weight", "stn.head.bias"} <= set(keys)
    torch.testing.assert_close(model.stn.head.bias, model.stn.identity_params())
    x = torch.rand(1, 3, 16, 16)
    warped, _ = model.stn(x)
    torch.testing.assert_close(warped, x, atol=1e-6, rtol=0)
    clone = STNSegmentation(TinySeg(), kind, hidden=8)
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone(x), model(x))


# ----------------------------------------------------------------------------- affine


def test_invert_affine_composes_to_identity(dtype):
    g = torch.Generator().manual_seed(0)
    theta = (torch.eye(2, 3) + 0.3 * torch.randn(5, 2, 3, generator=g)).to(dtype)
    inv = invert_affine(theta)
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=dtype).expand(5, 1, 3)
    full, full_inv = torch.cat([theta, bottom], 1), torch.cat([inv, bottom], 1)
    eye = torch.eye(3, dtype=dtype).expand(5, 3, 3)
    torch.testing.assert_close(full @ full_inv, eye, **_tol(dtype))
    torch.testing.assert_close(full_inv @ full, eye, **_tol(dtype))
    torch.testing.assert_close(full_inv, torch.linalg.inv(full), **_tol(dtype))
    torch.testing.assert_close(invert_affine(inv), theta, **_tol(dtype))


def test_pixel_exact_affine_warp_is_undone(device, dtype):
    # A 90 degree rotation plus a shift of (2, -3) pixels maps pixel centres onto pixel
    # centres (align_corners=False), so bilinear sampling is exact: any image comes back.
    n, h = 2, 32
    theta = torch.tensor([[0.0, -1.0, 2 * 2 / h], [1.0, 0.0, -2 * 3 / h]], device=device, dtype=dtype)
    theta = theta.expand(n, 2, 3)
    image = torch.rand(n, 3, h, h, device=device, dtype=dtype)
    warped = affine_grid_sample(image, theta)
    assert not torch.allclose(warped, image)
    back = affine_grid_sample(warped, invert_affine(theta))
    torch.testing.assert_close(_interior(back, 4), _interior(image, 4), **_tol(dtype))


def test_general_affine_warp_is_undone_on_linear_image(device, dtype):
    # Rotation + anisotropic scale + shear + shift: no pixel lands on a pixel centre, but a
    # linear image is interpolated exactly, so the interior comes back to float tolerance.
    a = 0.3
    theta = torch.tensor(
        [[0.8 * math.cos(a), -0.9 * math.sin(a) + 0.1, 0.05], [0.8 * math.sin(a), 0.9 * math.cos(a), -0.04]],
        device=device,
        dtype=dtype,
    )[None]
    image = _ramp(1, 32, 32, device=device, dtype=dtype)
    warped = affine_grid_sample(image, theta)
    # The warped view samples the image at theta @ p: check one hand-computable point (the centre).
    centre = warped[0, :, 15:17, 15:17].mean((-2, -1))
    torch.testing.assert_close(
        centre, torch.stack([theta[0, 0, 2], theta[0, 1, 2] + 2 * theta[0, 0, 2]]), **_tol(dtype)
    )
    back = affine_grid_sample(warped, invert_affine(theta))
    torch.testing.assert_close(_interior(back, 6), _interior(image, 6), **_tol(dtype))


def test_attention_params_to_matrix():
    params = torch.tensor([[0.5, 0.1, -0.2], [1.0, 0.0, 0.0]])
    expected = torch.tensor([[[0.5, 0.0, 0.1], [0.0, 0.5, -0.2]], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    torch.testing.assert_close(attention_theta(params), expected, atol=0, rtol=0)
    # s = 0.5 centred: the view is the middle half of the image, zoomed x2.
    image = _ramp(1, 16, 16)
    view = affine_grid_sample(image, attention_theta(torch.tensor([[0.5, 0.0, 0.0]])))
    torch.testing.assert_close(view, 0.5 * image)


def test_module_matches_functional_and_non_contiguous():
    stn = SpatialTransformer(kind="affine", hidden=8)
    theta = torch.eye(2, 3)[None] + 0.1 * torch.randn(1, 2, 3)
    x = torch.rand(1, 16, 16, 3).permute(0, 3, 1, 2)
    assert not x.is_contiguous()
    torch.testing.assert_close(stn.warp(x, theta), affine_grid_sample(x, theta))
    torch.testing.assert_close(stn.warp(x, theta), affine_grid_sample(x.contiguous(), theta))
    torch.testing.assert_close(stn.unwarp(x, theta), affine_grid_sample(x, invert_affine(theta)))


# ----------------------------------------------------------------------------- TPS


def _tps_ctrl(amp: float, grid_size: int = 4, n: int = 1, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    ctrl_out = tps_control_points(grid_size, dtype=dtype)
    ctrl_in = ctrl_out + amp * (2 * torch.rand(n, grid_size**2, 2, generator=g, dtype=dtype) - 1)
    return ctrl_out, ctrl_in


def test_tps_zero_offsets_is_identity(dtype):
    ctrl = tps_control_points(4, dtype=dtype)[None]
    eye = F.affine_grid(torch.eye(2, 3, dtype=dtype)[None], [1, 1, 12, 10], align_corners=False)
    torch.testing.assert_close(tps_grid(ctrl[0], ctrl, (12, 10)), eye, **_tol(dtype))
    torch.testing.assert_close(tps_inverse_grid(ctrl[0], ctrl, (12, 10)), eye, **_tol(dtype))
    x = torch.rand(1, 3, 12, 10, dtype=dtype)
    torch.testing.assert_close(tps_grid_sample(x, ctrl[0], ctrl), x, **_tol(dtype))


def test_tps_matches_kornia_warp_image_tps():
    ctrl_out, ctrl_in = _tps_ctrl(0.1, n=2, dtype=torch.float32)
    x = torch.rand(2, 3, 20, 24)
    kernel_w, affine_w = get_tps_transform(ctrl_out.expand(2, -1, -1), ctrl_in)
    expected = warp_image_tps(x, ctrl_in, kernel_w, affine_w)
    torch.testing.assert_close(tps_grid_sample(x, ctrl_out, ctrl_in), expected)


# Measured on this seed (G = 4, 32 px, pixels within 80 % of the half-width), in pixels:
# amp 0.05: swapped fit 0.076, 3 steps 1.3e-4; amp 0.1: swapped 1.24, 3 steps 0.033.
@pytest.mark.parametrize("amp, fit_px, refined_px", [(0.05, 0.1, 1e-3), (0.1, 1.5, 0.05)])
def test_tps_inverse_error_bound(amp, fit_px, refined_px):
    size = (32, 32)
    ctrl_out, ctrl_in = _tps_ctrl(amp)
    kernel_w, affine_w = get_tps_transform(ctrl_out.expand(1, -1, -1), ctrl_in)
    q = F.affine_grid(torch.eye(2, 3, dtype=torch.float64)[None], [1, 1, *size], align_corners=False)
    inside = (q.abs() < 0.8).all(-1)

    def error_px(steps: int) -> float:
        """max |T(R(q)) - q| over interior pixels, in pixels; T in closed form (kornia)."""
        inv = tps_inverse_grid(ctrl_out, ctrl_in, size, steps=steps).reshape(1, -1, 2)
        t_of_inv = warp_points_tps(inv, ctrl_in, kernel_w, affine_w).view_as(q)
        return float((t_of_inv - q).norm(dim=-1)[inside].max() * size[1] / 2)

    assert error_px(0) < fit_px
    assert error_px(3) < refined_px
    assert error_px(3) < error_px(1) < error_px(0)


def test_tps_warp_then_unwarp_recovers_interior(dtype):
    # The image is the pixel's own normalized (x, y), so after warp + unwarp the error of
    # each pixel is how far it moved. Stated bound: control points moved by up to 0.1 of the
    # half-width (1.6 px at 32 px); interior pixels (4 px margin) end up within 0.03 px with
    # the default 3 inverse steps (measured 0.017 px; the swapped fit alone: 0.36 px).
    ctrl_in = _tps_ctrl(0.1)[1].to(dtype)
    image = F.affine_grid(torch.eye(2, 3, dtype=dtype)[None], [1, 1, 32, 32], align_corners=False)
    image = image.permute(0, 3, 1, 2)

    def moved_px(stn: SpatialTransformer) -> torch.Tensor:
        warped = stn.warp(image, ctrl_in)
        assert (_interior(warped - image, 4).norm(dim=1) * 16).max() > 1  # the warp does something
        back = stn.unwarp(warped, ctrl_in)
        return (_interior(back - image, 4).norm(dim=1) * 16).max()

    assert moved_px(SpatialTransformer(kind="tps", hidden=8).to(dtype)) < 0.03
    assert moved_px(SpatialTransformer(kind="tps", hidden=8, invert_steps=0).to(dtype)) > 0.1


# ----------------------------------------------------------------------------- fill


def _zoomed(kind_scale: float, **kw) -> tuple[STNSegmentation, torch.Tensor]:
    model, _ = _wrapper("attention", hidden=8, **kw)
    with torch.no_grad():
        model.stn.head.bias.copy_(torch.tensor([kind_scale, 0.0, 0.0]))
    return model, torch.rand(1, 3, 32, 32)


def test_uncovered_pixels_get_zero_logits_by_default():
    # s = 0.5: the view covers the central 16x16 input pixels only.
    model, image = _zoomed(0.5)
    logits, transform = model.forward_with_transform(image)
    assert model.fill == "zeros"
    assert logits[..., :7, :].abs().max() == 0 and logits[..., -7:, :].abs().max() == 0
    assert logits[..., 10:22, 10:22].abs().min() > 0
    coverage = model.stn.coverage(transform, (32, 32))
    assert coverage.shape == (1, 1, 32, 32)
    assert coverage[..., 9:23, 9:23].min() == 1 and coverage[..., :7, :].max() == 0


def test_border_fill_copies_nearest_view_logits():
    model, image = _zoomed(0.5, fill="border")
    logits = model(image)
    view = affine_grid_sample(image, attention_theta(torch.tensor([[0.5, 0.0, 0.0]])), padding_mode="border")
    view_logits = model.model(view)
    torch.testing.assert_close(logits[..., 0, 0], view_logits[..., 0, 0])
    torch.testing.assert_close(logits[..., -1, -1], view_logits[..., -1, -1])


def test_image_border_padding_when_view_leaves_image():
    # s = 2: the view reaches past the image; its corners replicate the image corners.
    model, image = _zoomed(2.0)
    view, _ = model.stn(image)  # the module's own default padding is zeros
    assert view[..., 0, 0].abs().max() == 0
    transform = model.stn.predict_transform(model.normalize(image))
    view = model.stn.warp(image, transform, padding_mode=model.image_padding)
    torch.testing.assert_close(view[..., 0, 0], image[..., 0, 0])
    # Every input pixel is covered: no fill at all.
    assert model.stn.coverage(transform, (32, 32)).min() > 0.999


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_reaches_localisation_net(kind):
    model, _ = _wrapper(kind, hidden=8)
    image = torch.rand(2, 3, 32, 32)
    target = torch.randint(0, 4, (2, 32, 32))
    F.cross_entropy(model(image), target).backward()
    head = model.stn.head
    # Zero-initialised weight still gets gradient (features x dL/dparams); so does the bias.
    assert head.weight.grad.abs().sum() > 0 and head.bias.grad.abs().sum() > 0
    assert model.model.conv.weight.grad.abs().sum() > 0
    # Once the last layer is not zero, gradient reaches the first convolution too.
    model.zero_grad()
    with torch.no_grad():
        head.weight.normal_(std=0.01)
    F.cross_entropy(model(image), target).backward()
    assert model.stn.features[0].weight.grad.abs().sum() > 0


def test_gradcheck_affine_warp():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    # Off the identity, so no sample sits on a bilinear kink (a pixel centre).
    theta = torch.eye(2, 3, dtype=torch.float64) + 0.1 * torch.randn(1, 2, 3, generator=g, dtype=torch.float64)
    theta.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, t: affine_grid_sample(x, t), (x, theta))
    assert torch.autograd.gradcheck(invert_affine, (theta,))
    assert torch.autograd.gradcheck(
        lambda p: attention_theta(p), (torch.rand(2, 3, dtype=torch.float64, requires_grad=True),)
    )


def test_gradcheck_tps_warp():
    ctrl_out, ctrl_in = _tps_ctrl(0.1, grid_size=2, seed=1)
    ctrl_in.requires_grad_(True)
    x = torch.rand(1, 1, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, c: tps_grid_sample(x, ctrl_out, c), (x, ctrl_in))
    assert torch.autograd.gradcheck(lambda c: tps_inverse_grid(ctrl_out, c, (4, 3), steps=2), (ctrl_in,))


# ----------------------------------------------------------------------------- errors


def test_bad_kind_and_model_raise_input_error():
    with pytest.raises(InputError, match="unknown STN kind 'perspective'; use one of affine"):
        wrap_stn(TinySeg(), "perspective")
    with pytest.raises(InputError, match="unknown STN kind"):
        SpatialTransformer(kind="homography")
    with pytest.raises(InputError, match="segmentation models only"):
        wrap_stn(torch.nn.Conv2d(3, 3, 1), "affine")
    with pytest.raises(InputError, match="unknown STN option 'grid'"):
        wrap_stn(TinySeg(), "tps", grid=3)
    with pytest.raises(InputError, match="grid_size"):
        wrap_stn(TinySeg(), "tps", grid_size=1)
    with pytest.raises(InputError, match="fill"):
        wrap_stn(TinySeg(), "affine", fill="nearest")
    with pytest.raises(InputError) as info:
        wrap_stn(TinySeg(), "perspective")
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"\(N, 2, 3\)"):
        invert_affine(torch.eye(3)[None])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        wrap_stn(TinySeg(), "affine")(torch.rand(1, 1, 16, 16))


# ----------------------------------------------------------------------------- registry model


def test_wraps_a_registry_model():
    from densepac.models import create_model

    torch.manual_seed(0)
    base = create_model("fcn8s_vgg16", num_classes=3, widths=(4, 8, 8, 16, 16), fc_channels=16).eval()
    with torch.no_grad():
        for score in (base.score_fr, base.score_pool4, base.score_pool3):
            score.weight.normal_(std=0.5)
    model = wrap_stn(base, "attention", hidden=8).eval()
    assert model.num_classes == 3 and model.task == "segmentation"
    image = torch.rand(1, 3, 32, 32)
    expected = base(image)
    assert expected.abs().max() > 0
    torch.testing.assert_close(model(image), expected, atol=1e-5, rtol=1e-5)
    assert model.predict(image).shape == (1, 32, 32)
