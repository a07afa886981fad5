"""FCN-8s (VGG16), its PAC hot-swapped variant, and the torchvision / smp adapters."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from densepac.errors import InputError, WeightsError
from densepac.models.blocks import bilinear_kernel, crop_to, pad_to_multiple
from densepac.models.hotswap import GuidedConv2d, swapped_layers
from densepac.models.registry import create_model, list_models
from densepac.segmentation.models.fcn import (
    PAC_TARGETS,
    VGG16_LAYERS,
    FCN8s,
    load_vgg16_backbone,
    to_pac_fcn8s,
)

SMALL = {"widths": (4, 8, 8, 16, 16), "fc_channels": 32}


def _small_fcn(num_classes: int = 5, seed: int = 0) -> FCN8s:
    """A thin FCN8s with non-zero score layers, so skips and upsampling show in the logits."""
    torch.manual_seed(seed)
    model = FCN8s(num_classes, **SMALL)
    for score in (model.score_fr, model.score_pool4, model.score_pool3):
        torch.nn.init.normal_(score.weight, std=0.5)
        torch.nn.init.normal_(score.bias, std=0.1)
    return model.eval()


def _fake_vgg_state(widths=SMALL["widths"], fc: int = SMALL["fc_channels"], seed: int = 1) -> dict:
    """A torchvision-vgg16-shaped state dict for the given widths (random values)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    in_ch, convs = 3, [i for i, n in VGG16_LAYERS if n.startswith("conv")]
    stage_of = [int(n[4]) - 1 for _, n in VGG16_LAYERS if n.startswith("conv")]
    for index, stage in zip(convs, stage_of):
        out = widths[stage]
        sd[f"features.{index}.weight"] = torch.randn(out, in_ch, 3, 3, generator=g) * 0.2
        sd[f"features.{index}.bias"] = torch.randn(out, generator=g) * 0.1
        in_ch = out
    sd["classifier.0.weight"] = torch.randn(fc, widths[-1] * 49, generator=g) * 0.05
    sd["classifier.0.bias"] = torch.randn(fc, generator=g) * 0.1
    sd["classifier.3.weight"] = torch.randn(fc, fc, generator=g) * 0.1
    sd["classifier.3.bias"] = torch.randn(fc, generator=g) * 0.1
    return sd


# --------------------------------------------------------------------------- FCN8s


@pytest.mark.parametrize("size", [(33, 47), (64, 64), (7, 5), (32, 96)])
def test_fcn8s_output_size_equals_input(size):
    model = _small_fcn()
    image = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(image)
    assert logits.shape == (2, 5, *size)
    assert torch.isfinite(logits).all()


def test_fcn8s_zero_scores_at_init_and_gradients_reach_backbone():
    torch.manual_seed(0)
    model = FCN8s(3, **SMALL, dropout=0.0)
    image = torch.rand(1, 3, 40, 36)
    logits = model(image)
    # Paper initialisation: score layers are zero, so the first prediction is constant.
    assert torch.count_nonzero(logits) == 0
    target = torch.randint(0, 3, (1, 40, 36))
    F.cross_entropy(logits, target).backward()
    assert model.score_fr.weight.grad.abs().sum() > 0
    assert model.score_pool3.weight.grad.abs().sum() > 0


def test_fcn8s_predict_and_bad_inputs():
    model = _small_fcn(4)
    labels = model.predict(torch.rand(1, 3, 21, 19))
    assert labels.shape == (1, 21, 19) and labels.dtype == torch.int64
    assert model.training is False
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(InputError, match="num_classes"):
        FCN8s(num_classes=0)
    with pytest.raises(InputError, match="widths"):
        FCN8s(widths=(64, 128))
    with pytest.raises(InputError, match="dropout"):
        FCN8s(dropout=1.5, **SMALL)


def test_layer_names_follow_vgg():
    model = FCN8s(2, **SMALL)
    names = [n for n, _ in model.features.named_children()]
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert names[-4:] == ["relu5_2", "conv5_3", "relu5_3", "pool5"]
    assert dict(VGG16_LAYERS)[28] == "conv5_3" and dict(VGG16_LAYERS)[16] == "pool3"
    assert len(VGG16_LAYERS) == 31


def test_bilinear_kernel_values():
    w = bilinear_kernel(2, 4)
    tent = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(w[0, 0], torch.outer(tent, tent))
    assert torch.count_nonzero(w[0, 1]) == 0 and torch.count_nonzero(w[1, 0]) == 0


@pytest.mark.parametrize("layer,factor", [("upscore2", 2), ("upscore_pool4", 2), ("upscore8", 8)])
def test_upsampling_starts_as_bilinear_interpolation(layer, factor):
    model = FCN8s(3, **SMALL)
    up = getattr(model, layer)
    h, w = 6, 5
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    maps = torch.stack([torch.full((h, w), 2.5), 0.7 * xx - 1.3 * yy + 4.0, 3.0 * yy])[None]
    with torch.no_grad():
        out = up(maps)
    expected = F.interpolate(maps, scale_factor=factor, mode="bilinear", align_corners=False)
    assert out.shape == expected.shape == (1, 3, h * factor, w * factor)
    # Interior: exact bilinear interpolation (constant and linear maps alike); the outer
    # factor/2 pixels see the transposed convolution's zero border instead of a clamp.
    m = factor // 2
    torch.testing.assert_close(out[..., m:-m, m:-m], expected[..., m:-m, m:-m], atol=1e-5, rtol=1e-5)
    # Channels stay separate.
    assert torch.allclose(out[0, 0, m:-m, m:-m], torch.full_like(out[0, 0, m:-m, m:-m], 2.5))


def test_frozen_upsampling_option():
    model = FCN8s(3, **SMALL, learn_upsampling=False)
    assert not model.upscore8.weight.requires_grad and model.fc6.weight.requires_grad


def test_pad_to_multiple():
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).view(1, 2, 3, 5)
    y, size = pad_to_multiple(x, 4)
    assert size == (3, 5) and y.shape == (1, 2, 4, 8)
    torch.testing.assert_close(y[..., :3, :5], x)
    torch.testing.assert_close(y[..., 3, :5], x[..., 2, :])  # replicated last row
    same, _ = pad_to_multiple(torch.zeros(1, 1, 8, 8), 4)
    assert same.shape == (1, 1, 8, 8)
    back = crop_to(y, size)
    assert back.shape == x.shape and back.data_ptr() == y.data_ptr()  # a view, no copy
    torch.testing.assert_close(back, x)


# --------------------------------------------------------------------------- VGG16 converter


@pytest.fixture(scope="module")
def vgg_and_fcn():
    """torchvision's VGG16 and a full-width FCN8s (big: built once for this module)."""
    from torchvision.models import vgg16

    torch.manual_seed(0)
    vgg = vgg16(weights=None).eval()
    fcn = FCN8s(num_classes=21).eval()
    return vgg, fcn


def test_vgg16_converter_loads_torchvision_state_dict_exactly(vgg_and_fcn):
    vgg, fcn = vgg_and_fcn
    sd = vgg.state_dict()
    written = load_vgg16_backbone(fcn, sd)
    assert len(written) == 13 * 2 + 4
    assert torch.equal(fcn.features.conv1_1.weight, sd["features.0.weight"])
    assert torch.equal(fcn.features.conv3_3.bias, sd["features.14.bias"])
    assert torch.equal(fcn.features.conv5_3.weight, sd["features.28.weight"])
    assert torch.equal(fcn.fc6.weight, sd["classifier.0.weight"].view(4096, 512, 7, 7))
    assert torch.equal(fcn.fc7.weight.flatten(1), sd["classifier.3.weight"])
    assert torch.equal(fcn.fc7.bias, sd["classifier.3.bias"])
    # Same function: our named backbone equals torchvision's features, and fc6 (7x7 conv)
    # at the centre of a 7x7 map equals the first fully connected layer.
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(fcn.features(x), vgg.features(x))
        pool5 = torch.randn(1, 512, 7, 7, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(
            fcn.fc6(pool5)[0, :, 3, 3], vgg.classifier[0](pool5.flatten(1))[0], atol=1e-4, rtol=1e-4
        )


def test_vgg16_converter_errors(vgg_and_fcn):
    vgg, _ = vgg_and_fcn
    small = FCN8s(3, **SMALL)
    before = small.features.conv1_1.weight.clone()
    with pytest.raises(WeightsError, match="default widths"):
        load_vgg16_backbone(small, vgg.state_dict())
    assert torch.equal(small.features.conv1_1.weight, before)  # nothing half-written
    partial = {k: v for k, v in _fake_vgg_state().items() if not k.startswith("classifier")}
    with pytest.raises(WeightsError, match="classifier.0.weight"):
        load_vgg16_backbone(small, partial)
    assert len(load_vgg16_backbone(small, partial, load_fc=False)) == 26
    with pytest.raises(InputError, match="FCN8s"):
        load_vgg16_backbone(torch.nn.Conv2d(1, 1, 1), partial)


def test_converter_accepts_module_prefix_and_fills_pac_layers():
    sd = {f"module.{k}": v for k, v in _fake_vgg_state().items()}
    pac = to_pac_fcn8s(FCN8s(3, **SMALL))
    load_vgg16_backbone(pac, sd)
    assert torch.equal(pac.features.conv4_3.pac.weight, sd["module.features.21.weight"])
    assert torch.equal(pac.features.conv4_2.weight, sd["module.features.19.weight"])


# --------------------------------------------------------------------------- PAC FCN-8s


def test_pac_fcn8s_matches_fcn8s_right_after_swap():
    fcn = _small_fcn(5)
    load_vgg16_backbone(fcn, _fake_vgg_state())
    pac = to_pac_fcn8s(copy.deepcopy(fcn)).eval()
    assert swapped_layers(pac) == list(PAC_TARGETS)
    image = torch.rand(2, 3, 37, 45, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref, out = fcn(image), pac(image)
    assert ref.abs().max() > 0.1  # a non-trivial prediction
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_pac_fcn8s_registry_factory_and_training_step():
    torch.manual_seed(7)
    fcn = FCN8s(4, **SMALL)
    torch.manual_seed(7)
    pac = create_model("pac_fcn8s_vgg16", num_classes=4, **SMALL)
    assert isinstance(pac, FCN8s) and pac.task == "segmentation"
    assert all(isinstance(pac.get_submodule(n), GuidedConv2d) for n in PAC_TARGETS)
    assert "features.conv3_3.pac.weight" in pac.state_dict()
    # Built from the same seed: identical weights, only the swapped keys gain ".pac".
    renamed = {k.replace(".pac.", "."): v for k, v in pac.state_dict().items()}
    assert renamed.keys() == fcn.state_dict().keys()
    assert all(torch.equal(renamed[k], v) for k, v in fcn.state_dict().items())
    pac.train()
    logits = pac(torch.rand(1, 3, 33, 35))
    F.cross_entropy(logits, torch.randint(0, 4, (1, 33, 35))).backward()
    assert pac.features.conv5_3.pac.weight.grad is not None


# --------------------------------------------------------------------------- registry and adapters


def test_registered_segmentation_models():
    names = set(list_models(task="segmentation"))
    assert {
        "fcn8s_vgg16",
        "pac_fcn8s_vgg16",
        "fcn_resnet50",
        "fcn_resnet101",
        "smp_unet",
        "smp_fpn",
        "smp_deeplabv3plus",
        "smp",
    } <= names
    model = create_model("fcn8s_vgg16", num_classes=3, **SMALL)
    assert isinstance(model, FCN8s) and model.num_classes == 3


@pytest.mark.parametrize("name", ["smp_unet", "smp_fpn", "smp_deeplabv3plus"])
def test_smp_adapters_take_any_size(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).eval()
    assert model.task == "segmentation" and model.encoder_name == "resnet18"
    with torch.no_grad():
        assert model(torch.rand(1, 3, 33, 47)).shape == (1, 3, 33, 47)
        # A size the network takes as is: no padding, the adapter only normalizes.
        x = torch.rand(1, 3, 32, 64)
        torch.testing.assert_close(model(x), model.net(model.normalize(x)))


def test_smp_generic_arch_and_errors():
    model = create_model("smp", arch="linknet", num_classes=2).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 19, 21)).shape == (1, 2, 19, 21)
    with pytest.raises(InputError, match="encoder_weights"):
        create_model("smp_unet", encoder_weights="imagenet")
    with pytest.raises(InputError, match="unknown arch"):
        create_model("smp", arch="nope")
    with pytest.raises(InputError, match="encoder_name"):
        create_model("smp_fpn", encoder_name="no_such_encoder")
    with pytest.raises(InputError, match="num_classes"):
        create_model("smp_unet", classes=3)


@pytest.mark.parametrize("name", ["fcn_resnet50", "fcn_resnet101"])
def test_torchvision_fcn_adapters(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, aux_loss=True).eval()
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        out = model.forward_aux(x)
        logits = model(x)
    assert set(out) == {"out", "aux"} and out["aux"].shape == (1, 4, 17, 23)
    assert logits.shape == (1, 4, 17, 23)
    torch.testing.assert_close(logits, out["out"])
    with pytest.raises(InputError, match="num_classes"):
        create_model(name, num_classes=0)
