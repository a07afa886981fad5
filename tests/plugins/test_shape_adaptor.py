"""Shape Adaptor: the module, the size rules, the ResNet converter and its registry encoders."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import densepac.plugins.shape_adaptor  # noqa: F401  (registers the encoders)
from densepac.errors import InputError
from densepac.models.registry import create_model, list_models
from densepac.plugins.shape_adaptor import (
    FixedShapeAdaptor,
    ShapeAdaptor,
    ShapeAdaptorBlock,
    adaptor_output_sizes,
    alpha_parameters,
    convert_resnet,
    initial_alpha,
    number_of_adaptors,
    shape_adaptor_param_groups,
    shape_penalty,
)
from densepac.segmentation.models.encoders import build_encoder


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None)


def _randomise_alphas(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in alpha_parameters(model):
            p.copy_(torch.randn((), generator=g))


# --------------------------------------------------------------------------- module


def test_output_sizes_local_rule_floors_each_adaptor():
    # 65 -> floor(32.5)=32 -> floor(24.0)=24 -> floor(14.4)=14 ; 47 -> 23 -> floor(17.25)=17 -> floor(10.2)=10
    assert adaptor_output_sizes((65, 47), [0.5, 0.75, 0.6], "local") == [(32, 23), (24, 17), (14, 10)]
    assert adaptor_output_sizes(5, [0.1, 0.5], "local") == [(1, 1), (1, 1)]  # never below 1


def test_output_sizes_global_rule_rounds_the_product():
    # 65 * 0.5 = 32.5 -> 33, * 0.375 = 24.375 -> 24, * 0.225 = 14.625 -> 15
    # 47 * 0.5 = 23.5 -> 24, * 0.375 = 17.625 -> 18, * 0.225 = 10.575 -> 11
    assert adaptor_output_sizes((65, 47), [0.5, 0.75, 0.6], "global") == [(33, 24), (24, 18), (15, 11)]
    # A scale near 1 keeps the size under the global rule, drops a pixel under the local one.
    assert adaptor_output_sizes(64, [0.999], "global") == [(64, 64)]
    assert adaptor_output_sizes(64, [0.999], "local") == [(63, 63)]


def test_scale_at_init_matches_formula():
    adaptor = ShapeAdaptor(r1=0.25, r2=0.75, init_alpha=0.3)
    assert adaptor.alpha.item() == pytest.approx(0.3)
    assert adaptor.scale().item() == pytest.approx((0.75 - 0.25) * 0.3 + 0.25)
    assert adaptor.output_size((40, 21)) == (math.floor(40 * 0.4), math.floor(21 * 0.4))


@pytest.mark.parametrize("residual", [False, True])
def test_forward_mixes_resized_branches(device, dtype, residual):
    adaptor = ShapeAdaptor(init_alpha=0.2, residual=residual).to(device, dtype)
    low = torch.randn(2, 3, 8, 6, device=device, dtype=dtype)
    high = torch.randn(2, 3, 15, 11, device=device, dtype=dtype)
    out = adaptor(low, high, (10, 7))
    resize = lambda t: F.interpolate(t, size=(10, 7), mode="bilinear", align_corners=False)
    expected = 0.8 * resize(low) + 0.2 * resize(high)
    assert out.shape == (2, 3, 10, 7) and out.dtype == dtype
    torch.testing.assert_close(out, 2 * expected if residual else expected)


def test_alpha_gets_gradient_and_gradcheck():
    adaptor = ShapeAdaptor(init_alpha=0.4).double()
    low = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    high = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    adaptor(low, high, (4, 5)).square().sum().backward()
    assert adaptor.logit.grad is not None and adaptor.logit.grad.abs() > 0

    logit = adaptor.logit.detach().clone().requires_grad_(True)

    def fn(low, high, logit):
        return torch.func.functional_call(adaptor, {"logit": logit}, (low, high, (4, 5)))

    assert torch.autograd.gradcheck(fn, (low, high, logit))


def test_frozen_adaptor_matches_and_has_no_parameter():
    adaptor = ShapeAdaptor(init_alpha=0.7, residual=True)
    fixed = adaptor.freeze()
    assert isinstance(fixed, FixedShapeAdaptor) and not list(fixed.parameters())
    assert fixed.scale_value() == adaptor.scale_value()
    low, high = torch.randn(1, 2, 5, 5), torch.randn(1, 2, 9, 9)
    torch.testing.assert_close(fixed(low, high, (7, 7)), adaptor(low, high, (7, 7)), rtol=0, atol=0)


@pytest.mark.parametrize("r1, r2", [(0.5, 0.5), (0.75, 0.5), (0.0, 1.0), (0.5, 1.5), (-0.1, 0.5)])
def test_bad_ratios_raise(r1, r2):
    with pytest.raises(InputError, match="r1"):
        ShapeAdaptor(r1, r2)


def test_bad_arguments_raise():
    with pytest.raises(InputError, match="init_alpha"):
        ShapeAdaptor(init_alpha=1.0)
    with pytest.raises(InputError, match="size_rule"):
        adaptor_output_sizes(32, [0.5], "nearest")
    with pytest.raises(InputError, match="smaller than min_output_size"):
        number_of_adaptors(4, 8)
    with pytest.raises(InputError, match="budget"):
        shape_penalty(torch.tensor([0.5]), 0.0)


def test_number_of_adaptors_and_initial_alpha():
    assert number_of_adaptors(224, 2) == round(math.log2(112)) == 7
    assert number_of_adaptors(64, 2) == 5
    assert number_of_adaptors(64, 2, r1=0.25) == round(math.log(32) / math.log(4))
    alpha = initial_alpha(224, 7, 7)
    assert 224 * ((1 - 0.5) * alpha + 0.5) ** 7 == pytest.approx(7)
    assert initial_alpha(64, 2, 5) == pytest.approx(0.05)  # s = 0.5 would need alpha = 0: clamped


def test_penalty_zero_within_budget_positive_beyond():
    scales = torch.tensor([0.5, 0.5, 0.5], requires_grad=True)  # product 1/8
    assert shape_penalty(scales, 1 / 4).item() == 0.0
    assert shape_penalty(scales, 1 / 8).item() == pytest.approx(0.0, abs=1e-6)
    penalty = shape_penalty(scales, 1 / 16)
    assert penalty.item() == pytest.approx(math.log(2), rel=1e-5)
    penalty.backward()
    assert (scales.grad > 0).all()  # descent lowers the scales


# --------------------------------------------------------------------------- converter


def test_converter_places_derived_number_of_adaptors(resnet18):
    encoder = convert_resnet(resnet18, input_size=64, min_output_size=2)
    n = number_of_adaptors(64, 2)
    assert len(encoder.adaptors()) == len(alpha_parameters(encoder)) == n == 5
    # 8 candidates (stem + 7 of 8 blocks, not the last), spread as floor(i * 8 / 5).
    assert encoder.positions == ["stem", "layer1.0", "layer2.0", "layer2.1", "layer3.1"]
    assert isinstance(encoder.layers[1][0], ShapeAdaptorBlock) and isinstance(encoder.layers[2][1], ShapeAdaptorBlock)
    # Fixed downsampling is gone: only the adaptors' r1 shortcuts keep stride 2.
    strided = [n for n, m in encoder.named_modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)]
    assert all(".shortcut." in name for name in strided) and len(strided) == n - 1
    assert resnet18.conv1.stride == (2, 2)  # the source network is left as it was
    # Two explicit counts, as a user would give them.
    assert len(convert_resnet(resnet18, input_size=224).adaptors()) == 7
    assert convert_resnet(resnet18, num_adaptors=2).positions == ["stem", "layer2.1"]


@pytest.mark.parametrize("size", [(64, 64), (65, 47)])
def test_converted_encoder_forward_backward(resnet18, size):
    encoder = convert_resnet(resnet18, input_size=64)
    x = torch.rand(1, 3, *size)
    features = encoder(x)
    assert len(features) == 6 and features[0] is x
    assert [f.shape[1] for f in features] == encoder.out_channels == [3, 64, 64, 128, 256, 512]
    sizes = encoder.output_sizes(size)
    assert tuple(features[1].shape[-2:]) == sizes[0]  # the stem adaptor
    assert tuple(features[-1].shape[-2:]) == sizes[-1]
    sides = [f.shape[-2] for f in features]
    assert sides == sorted(sides, reverse=True)
    sum(f.mean() for f in features[1:]).backward()
    assert all(p.grad is not None and p.grad.abs() > 0 for p in alpha_parameters(encoder))


def test_global_rule_encoder_sizes(resnet18):
    encoder = convert_resnet(resnet18, input_size=16, size_rule="global", depth=3)  # 3 adaptors, 4 positions
    _randomise_alphas(encoder)
    scales = encoder.scale_values()
    features = encoder(torch.rand(1, 3, 33, 31))
    product = scales[0]
    assert tuple(features[1].shape[-2:]) == (math.floor(33 * product + 0.5), math.floor(31 * product + 0.5))
    assert tuple(features[-1].shape[-2:]) == adaptor_output_sizes((33, 31), scales, "global")[-1]
    assert len(features) == 4 and encoder.out_channels == [3, 64, 64, 128]


def test_smp_resnet_encoder_converts():
    import segmentation_models_pytorch as smp

    encoder = convert_resnet(smp.encoders.get_encoder("resnet18", weights=None, depth=4), input_size=32)
    features = encoder(torch.rand(1, 3, 33, 40))
    assert [f.shape[1] for f in features] == encoder.out_channels == [3, 64, 64, 128, 256]


def test_param_groups_separate_alphas(resnet18):
    encoder = convert_resnet(resnet18, input_size=64)
    groups = shape_adaptor_param_groups(encoder, lr=0.01, alpha_lr=0.1, weight_decay=5e-4)
    by_name = {g["name"]: g for g in groups}
    alpha_ids = {id(p) for p in alpha_parameters(encoder)}
    assert {id(p) for p in by_name["alphas"]["params"]} == alpha_ids
    assert not alpha_ids & {id(p) for p in by_name["weights"]["params"]}
    assert len(by_name["weights"]["params"]) + len(alpha_ids) == len(list(encoder.parameters()))
    assert by_name["alphas"]["lr"] == 0.1 and by_name["alphas"]["weight_decay"] == 0.0
    torch.optim.SGD(groups, lr=0.01)  # accepted by an optimizer as is


def test_encoder_memory_penalty(resnet18):
    encoder = convert_resnet(resnet18, input_size=64)
    product = math.prod(encoder.scale_values())
    assert encoder.memory_penalty(product * 1.01).item() == 0.0
    penalty = encoder.memory_penalty(product / 2)
    assert penalty.item() > 0
    penalty.backward()
    assert all(p.grad > 0 for p in alpha_parameters(encoder))


def test_export_fixed_matches_adaptive(resnet18):
    encoder = convert_resnet(resnet18, input_size=64)
    _randomise_alphas(encoder)
    encoder.eval()
    fixed = encoder.export_fixed()
    assert not alpha_parameters(fixed) and all(isinstance(a, FixedShapeAdaptor) for a in fixed.adaptors())
    assert fixed.learned_shapes((65, 47)) == encoder.learned_shapes((65, 47))
    x = torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        for a, b in zip(encoder(x), fixed(x)):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert alpha_parameters(encoder)  # the adaptive encoder is unchanged


def test_learned_shapes_report(resnet18):
    encoder = convert_resnet(resnet18, input_size=64)
    shapes = encoder.learned_shapes()
    assert [s.position for s in shapes] == encoder.positions
    assert [s.output_size for s in shapes] == encoder.output_sizes(64)
    assert all(s.scale == pytest.approx(0.5 * s.alpha + 0.5) for s in shapes)
    assert "stem: alpha=" in str(shapes[0])


def test_float64(resnet18):
    encoder = convert_resnet(resnet18, input_size=32).double()
    features = encoder(torch.rand(1, 3, 33, 31, dtype=torch.float64))
    assert all(f.dtype == torch.float64 for f in features)


# --------------------------------------------------------------------------- registry


def test_registry_encoders():
    assert {"shape_adaptor_resnet18", "shape_adaptor_resnet34", "shape_adaptor_resnet50"} <= set(
        list_models(task="encoder")
    )
    encoder = create_model("shape_adaptor_resnet18")
    assert encoder.task == "encoder" and len(encoder.adaptors()) == 7  # input_size 224, min output 2
    assert len(encoder.eval()(torch.rand(1, 3, 33, 32))) == 6  # eval: the last maps are 1x1 at this size
    bottleneck = build_encoder("shape_adaptor_resnet50", in_channels=1, depth=3, input_size=32)
    assert bottleneck.out_channels == [1, 64, 256, 512]
    features = bottleneck(torch.rand(1, 1, 32, 29))
    assert [f.shape[1] for f in features] == [1, 64, 256, 512]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"r1": 0.6, "r2": 0.5}, "r1"),
        ({"r1": 0.5, "r2": 1.2}, r"\(0, 1\]"),
        ({"size_rule": "nearest"}, "size_rule"),
        ({"input_size": 2, "min_output_size": 4}, "smaller than min_output_size"),
        ({"input_size": 4096}, "raise min_output_size"),
        ({"depth": 6}, "depth"),
        ({"num_adaptors": -1}, "num_adaptors"),
        ({"bogus": 1}, "unexpected keyword"),
    ],
)
def test_registry_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        create_model("shape_adaptor_resnet18", **kwargs)


def test_converter_refuses_non_resnet():
    with pytest.raises(InputError, match="torchvision ResNet"):
        convert_resnet(nn.Conv2d(3, 3, 1))
