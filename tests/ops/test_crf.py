"""PAC-CRF: shapes, identities, Potts denoising on a toy scene, gradcheck, errors, CRF wrapper."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck
from torch.func import functional_call

from densepac.ops.crf import CRFWrapped, PacCRF, crf_guide_features, pac_crf, pac_crf_message, scaled_dilation
from densepac.ops.pac import pac_conv2d


def _two_regions(h: int = 16, w: int = 16):
    """Left/right regions of different color, a 1-px stripe of the right color and label
    inside the left region, and a few isolated flipped labels in the unary."""
    labels = torch.zeros(h, w, dtype=torch.long)
    labels[:, w // 2 :] = 1
    labels[:, 4] = 1
    guide = labels.float().expand(1, 3, h, w).clone()
    noisy = labels.clone()
    for y, x in [(2, 2), (10, 1), (5, 12), (13, 14), (8, 10)]:
        noisy[y, x] = 1 - noisy[y, x]
    unary = 2.0 * F.one_hot(noisy, 2).permute(2, 0, 1)[None].float()
    return unary, guide, labels, noisy


def test_output_shape_and_finite(device, dtype):
    torch.manual_seed(0)
    crf = PacCRF(4, num_steps=2, kernels=((3, 1), (5, 2)), guide_features="rgbxy").to(device, dtype)
    unary = torch.randn(2, 4, 12, 10, device=device, dtype=dtype)
    guide = torch.rand(2, 3, 12, 10, device=device, dtype=dtype)
    out = crf(unary, guide)
    assert out.shape == unary.shape and out.dtype == dtype and torch.isfinite(out).all()


def test_guide_is_resized_to_the_logits():
    torch.manual_seed(0)
    crf = PacCRF(3, num_steps=2)
    unary, guide = torch.randn(1, 3, 8, 8), torch.rand(1, 3, 32, 32)
    small = F.interpolate(guide, size=(8, 8), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(crf(unary, guide), crf(unary, small))


def test_zero_steps_or_zero_compatibility_is_identity():
    torch.manual_seed(0)
    unary, guide = torch.randn(2, 3, 9, 9), torch.rand(2, 3, 9, 9)
    assert torch.equal(PacCRF(3, num_steps=0)(unary, guide), unary)
    crf = PacCRF(3, num_steps=3, kernels=((3, 1), (5, 1)))
    with torch.no_grad():
        crf.compat.zero_()
    assert torch.equal(crf(unary, guide), unary)


def test_potts_cleans_isolated_noise_and_respects_guide_edges():
    unary, guide, labels, noisy = _two_regions()
    crf = PacCRF(2, num_steps=5, potts_weight=4.0)
    assert (noisy != labels).sum() == 5
    with torch.no_grad():
        assert torch.equal(crf(unary, guide).argmax(1)[0], labels)
        # Without the edge, the same smoothing erases the thin stripe: the guide is what stops bleeding.
        flat = crf(unary, torch.zeros_like(guide)).argmax(1)[0]
    assert (flat[:, 4] == 0).all()


def test_normalized_variant_also_denoises():
    unary, guide, labels, _ = _two_regions()
    crf = PacCRF(2, potts_weight=4.0, normalize=True, spatial_init="uniform")
    with torch.no_grad():
        assert torch.equal(crf(unary, guide).argmax(1)[0], labels)


def test_message_excludes_the_centre_and_matches_pac():
    torch.manual_seed(0)
    q, f = torch.rand(1, 3, 7, 7, dtype=torch.float64), torch.rand(1, 2, 7, 7, dtype=torch.float64)
    w = torch.rand(3, 3, dtype=torch.float64)
    masked = w.clone()
    masked[1, 1] = 0
    ref = pac_conv2d(q, f, masked.expand(3, 1, 3, 3), None, 1, 2, 2, groups=3)
    torch.testing.assert_close(pac_crf_message(q, f, w, dilation=2), ref)
    # A lone spike messages its neighbours only, never itself.
    spike = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    spike[0, 0, 2, 2] = 1
    m = pac_crf_message(spike, torch.zeros(1, 1, 5, 5, dtype=torch.float64), torch.ones(3, 3, dtype=torch.float64))
    assert m[0, 0, 2, 2] == 0 and m[0, 0, 1:4, 1:4].sum() == 8


def test_module_equals_functional():
    torch.manual_seed(0)
    crf = PacCRF(3, num_steps=2, kernels=((3, 1), (5, 1)), guide_features="rgbxy")
    unary, guide = torch.randn(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    feats = [
        crf_guide_features(guide, crf.log_guide_scale[k].exp(), crf.log_pos_scale[k].exp(), float(ks // 2))
        for k, (ks, _) in enumerate(crf.kernels)
    ]
    ref = pac_crf(unary, feats, list(crf.spatial), list(crf.compat), [1, 1], num_steps=2)
    torch.testing.assert_close(crf(unary, guide), ref)


def test_non_contiguous_input():
    torch.manual_seed(0)
    crf = PacCRF(3, num_steps=2)
    unary, guide = torch.randn(1, 8, 8, 3).permute(0, 3, 1, 2), torch.rand(1, 8, 8, 3).permute(0, 3, 1, 2)
    torch.testing.assert_close(crf(unary, guide), crf(unary.contiguous(), guide.contiguous()))


def test_gradcheck_inputs_and_parameters():
    torch.manual_seed(0)
    crf = PacCRF(2, num_steps=2, kernels=((3, 1),), guide_features="rgbxy", guide_scale=2.0).double()
    with torch.no_grad():
        crf.spatial[0].add_(0.1 * torch.randn(3, 3, dtype=torch.float64))  # break the symmetry of the init
    names = [n for n, _ in crf.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in crf.parameters()]
    unary = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    guide = torch.rand(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)

    def fn(u, g, *ps):
        return functional_call(crf, dict(zip(names, ps)), (u, g))

    assert gradcheck(fn, (unary, guide, *params), nondet_tol=1e-12)


def test_dilation_scales_with_image_size():
    assert scaled_dilation(4, 512) == 4
    assert scaled_dilation(4, (256, 256)) == 2
    assert scaled_dilation(1, 64) == 1
    assert scaled_dilation(2, (1024, 1024)) == 4
    crf = PacCRF(2, kernels=((5, 8),), dilation_reference=512)
    assert crf.dilations((64, 64)) == [1] and crf.dilations((512, 512)) == [8]
    with pytest.raises(ValueError, match="dilation"):
        scaled_dilation(0, 64)


def test_bad_shapes_and_arguments_raise():
    crf = PacCRF(3)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        crf(torch.randn(1, 4, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="4-D|\\(N, 3, H, W\\)"):
        crf(torch.randn(3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="batch"):
        crf(torch.randn(2, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        crf(torch.randn(1, 3, 8, 8), torch.rand(3, 8, 8))
    with pytest.raises(TypeError):
        crf(torch.zeros(1, 3, 8, 8, dtype=torch.long), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="odd"):
        PacCRF(3, kernels=((4, 1),))
    with pytest.raises(ValueError, match="guide_features"):
        PacCRF(3, guide_features="xy")
    with pytest.raises(ValueError, match="kernel_type"):
        PacCRF(3, kernel_type="box")


def test_trains_end_to_end():
    torch.manual_seed(0)
    crf = PacCRF(2, num_steps=2, kernels=((3, 1), (3, 2)), guide_features="rgbxy")
    unary, guide, labels, _ = _two_regions()
    guide = 0.2 * guide + 0.05 * torch.rand_like(guide)  # soft edges: kernel values away from 0 and 1
    loss = F.cross_entropy(crf(unary, guide), labels[None])
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in crf.parameters())
    assert crf.compat.grad.abs().sum() > 0 and crf.log_guide_scale.grad.abs().sum() > 0


class _TinySeg(nn.Module):
    num_classes = 3

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Conv2d(4, 3, 1)
        )

    def forward(self, image):
        return self.body(image)


def test_crf_wrapped_forward_and_staged_freezing():
    torch.manual_seed(0)
    model = CRFWrapped(_TinySeg(), PacCRF(3, num_steps=2))
    assert model.task == "segmentation" and model.num_classes == 3
    image = torch.rand(2, 3, 10, 10)
    assert model(image).shape == (2, 3, 10, 10)
    assert model.predict(image).shape == (2, 10, 10) and model.training

    model.freeze_backbone()
    model.train()
    assert not model.model.training and not model.model.body[1].training and model.crf.training
    assert all(not p.requires_grad for p in model.model.parameters())
    stats = model.model.body[1].running_mean.clone()
    out = model(image)
    torch.testing.assert_close(model.model(image), model.model(image))  # eval: dropout off
    assert torch.equal(model.model.body[1].running_mean, stats)
    out.sum().backward()
    assert model.crf.compat.grad is not None and model.model.body[0].weight.grad is None
    frozen = copy.deepcopy(model)
    frozen.train()
    assert not frozen.model.training

    model.freeze_backbone(False)
    model.train()
    assert model.model.training and all(p.requires_grad for p in model.model.parameters())


def test_crf_wrapped_rejects_mismatches():
    with pytest.raises(ValueError, match="classes"):
        CRFWrapped(_TinySeg(), PacCRF(5))
    with pytest.raises(TypeError):
        CRFWrapped(_TinySeg(), nn.Identity())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        CRFWrapped(_TinySeg(), PacCRF(3))(torch.rand(1, 1, 8, 8))
