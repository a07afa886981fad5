"""DLA-Up segmentation (IDAUp / DLAUp / DLAUpSeg) and its PAC variant."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from densepac.errors import InputError
from densepac.models.blocks import bilinear_upsampler
from densepac.models.registry import create_model, list_models
from densepac.ops import PacConvTranspose2d
from densepac.segmentation.models import dla_up as dla_up_module  # noqa: F401  (registers dla_up / pac_dla_up)
from densepac.segmentation.models.dla_up import DLAUp, DLAUpSeg, IDAUp, ImageGuide, to_pac_dla_up

K = 3


class TinyEncoder(nn.Module):
    """A 5-stage encoder (smp protocol) whose stages do not halve exactly.

    ``ratio=None``: unpadded stride-2 convs, ``n -> (n - 1) // 2`` (upsampling then needs one
    extra row/column: the output_padding path). ``ratio=r``: each stage resizes to
    ``floor(n * r)`` (far from x2: the resize path).
    """

    def __init__(self, ratio: float | None = None, widths: tuple[int, ...] = (4, 6, 8, 8, 8)) -> None:
        super().__init__()
        self.ratio = ratio
        self.out_channels = (3, *widths)
        stride, pad = (2, 0) if ratio is None else (1, 1)
        self.stages = nn.ModuleList(
            nn.Conv2d(c, w, 3, stride=stride, padding=pad) for c, w in zip(self.out_channels[:-1], widths)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [x]
        for stage in self.stages:
            x = torch.relu(stage(x))
            if self.ratio is not None:
                x = F.interpolate(x, size=[int(s * self.ratio) for s in x.shape[-2:]], mode="bilinear")
            feats.append(x)
        return feats


def _tiny(ratio: float | None = None, seed: int = 0, **kwargs) -> DLAUpSeg:
    torch.manual_seed(seed)
    model = DLAUpSeg(TinyEncoder(ratio), num_classes=K, **kwargs)
    # Non-trivial BN statistics, so eval mode is not the identity on every node.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.running_mean, -0.1, 0.1)
            nn.init.uniform_(m.running_var, 0.5, 1.5)
    return model.eval()


@functools.cache
def _named(encoder_name: str) -> DLAUpSeg:
    """One model per smp encoder for the whole file (building timm encoders takes seconds)."""
    torch.manual_seed(0)
    return DLAUpSeg(encoder_name, num_classes=K).eval()


# --------------------------------------------------------------------------- building blocks


@pytest.mark.parametrize("factor", [2, 4])
def test_bilinear_upsampler_equals_interpolate_in_interior(factor):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    up = bilinear_upsampler(3, factor).double()
    assert up.groups == 3 and tuple(up.weight.shape) == (3, 1, 2 * factor, 2 * factor)
    y = up(x)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert y.shape == ref.shape
    b = factor // 2  # the transposed conv sees zeros beyond the border within f/2 pixels
    torch.testing.assert_close(y[..., b:-b, b:-b], ref[..., b:-b, b:-b])


def test_idaup_upsampler_is_bilinear_and_depthwise():
    ida = IDAUp(4, (4, 6), (1, 2)).double()
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    y = ida.ups[1](x)
    ref = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(y[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1])


def test_dlaup_structure_follows_the_paper():
    dec = DLAUp([32, 64, 128, 256, 512])
    # One IDAUp per level from deep to shallow: 1 + 2 + 3 + 4 aggregation nodes, all upsampling x2.
    assert [len(ida.nodes) for ida in dec.idas] == [1, 2, 3, 4]
    assert [ida.out_channels for ida in dec.idas] == [256, 128, 64, 32]
    assert all(ida.up_factors == (1,) + (2,) * len(ida.nodes) for ida in dec.idas)
    assert isinstance(dec.idas[0].nodes[0][0], nn.Conv2d) and dec.idas[0].nodes[0][0].kernel_size == (3, 3)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("encoder_name", ["tu-dla34", "resnet18"])
@pytest.mark.parametrize("size", [(50, 70), (33, 65)])
def test_output_size_equals_input(encoder_name, size):
    model = _named(encoder_name)
    with torch.no_grad():
        out = model(torch.rand(1, 3, *size))
    assert out.shape == (1, K, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "ratio, output_stride, pac", [(None, 2, True), (0.6, 2, True), (None, 4, False), (0.6, 16, False)]
)
def test_encoders_that_do_not_halve(ratio, output_stride, pac):
    model = _tiny(ratio, output_stride=output_stride)
    if pac:
        to_pac_dla_up(model)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 50, 37))
    assert out.shape == (2, K, 50, 37)
    assert torch.isfinite(out).all()


def test_dtype_and_device(dtype, device):
    model = to_pac_dla_up(_tiny()).to(device=device, dtype=dtype)
    out = model(torch.rand(1, 3, 40, 33, device=device, dtype=dtype))
    assert out.dtype == dtype and out.device.type == device.type and out.shape == (1, K, 40, 33)


# --------------------------------------------------------------------------- gradients


def test_backward_reaches_encoder_and_decoder():
    model = _named("resnet18")
    model.zero_grad()
    model(torch.rand(1, 3, 40, 40)).square().mean().backward()
    for part in (model.encoder, model.decoder, model.head):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0
    model.zero_grad()


def test_pac_layers_and_guides_get_gradient():
    model = to_pac_dla_up(_tiny()).train()
    model(torch.rand(2, 3, 48, 40)).square().mean().backward()
    pacs = [m for m in model.modules() if isinstance(m, PacConvTranspose2d)]
    guides = [m for m in model.modules() if isinstance(m, ImageGuide)]
    assert len(pacs) == len(guides) == 10
    for layer in pacs + [g.proj for g in guides]:
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- PAC variant


def test_pac_at_init_is_close_to_plain_with_same_weights():
    plain = _tiny().double()
    pac = to_pac_dla_up(copy.deepcopy(plain))
    # Conversion keeps the plain keys: only the guides are new.
    missing, unexpected = pac.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(".guides." in k for k in missing)
    x = torch.rand(2, 3, 50, 37, dtype=torch.float64)
    with torch.no_grad():
        ref, out = plain(x), pac(x)
        assert (out - ref).abs().max() < 1e-2 * ref.abs().max()
        assert not torch.equal(out, ref)  # the guide is live
        # A constant guide (zero projection) makes every kernel 1: PAC equals its torch twin.
        for g in (m for m in pac.modules() if isinstance(m, ImageGuide)):
            g.proj.weight.zero_()
        torch.testing.assert_close(pac(x), ref)


def test_pac_idaup_needs_the_image():
    ida = IDAUp(4, (4, 4), (1, 2)).use_pac()
    with pytest.raises(ValueError, match="image"):
        ida([torch.rand(1, 4, 8, 8), torch.rand(1, 4, 4, 4)])


# --------------------------------------------------------------------------- registry and errors


def test_create_model():
    assert {"dla_up", "pac_dla_up"} <= set(list_models(task="segmentation"))
    plain = create_model("dla_up", encoder_name=TinyEncoder(), num_classes=4, output_stride=4)
    pac = create_model("pac_dla_up", encoder_name=TinyEncoder(), num_classes=4, guide_channels=5, guide_scale=0.1)
    assert isinstance(plain, DLAUpSeg) and plain.task == "segmentation" and plain.output_stride == 4
    assert not any(ida.is_pac for ida in plain.decoder.idas) and all(ida.is_pac for ida in pac.decoder.idas)
    assert pac.decoder.idas[0].guides[1].proj.out_channels == 5
    assert pac.eval()(torch.rand(1, 3, 40, 50)).shape == (1, 4, 40, 50)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("dla_up", {"output_stride": 3}),
        ("dla_up", {"output_stride": 32}),
        ("dla_up", {"num_classes": 0}),
        ("dla_up", {"node_kernel": 2}),
        ("dla_up", {"encoder_name": "not_an_encoder"}),
        ("pac_dla_up", {"guide_scale": 0.0}),
        ("pac_dla_up", {"guide_channels": 0}),
        ("pac_dla_up", {"kernel_type": "boxcar"}),
    ],
)
def test_bad_arguments_raise_input_error(name, kwargs):
    kwargs = {"encoder_name": TinyEncoder(), **kwargs}
    with pytest.raises(InputError):
        create_model(name, **kwargs)
