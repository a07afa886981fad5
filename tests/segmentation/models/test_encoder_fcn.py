"""FCN-8s-style head over any encoder (``fcn8s``): registry Shape Adaptor encoders and smp names."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import densepac.plugins.shape_adaptor
import densepac.segmentation.models.encoder_fcn  # noqa: F401  (registers fcn8s)
from densepac.errors import InputError
from densepac.models.registry import create_model, list_models
from densepac.plugins.shape_adaptor import alpha_parameters, shape_adaptor_param_groups
from densepac.segmentation.models.encoder_fcn import EncoderFCN8s

SA_SMALL = {"encoder_name": "shape_adaptor_resnet18", "encoder_kwargs": {"input_size": 32}}


def _random_scores(model: EncoderFCN8s, seed: int = 0) -> EncoderFCN8s:
    torch.manual_seed(seed)
    for score in (model.score_fr, model.score_pool4, model.score_pool3):
        torch.nn.init.normal_(score.weight, std=0.5)
        torch.nn.init.normal_(score.bias, std=0.1)
    return model


def test_registered():
    assert "fcn8s" in list_models(task="segmentation")


@pytest.mark.parametrize("name", ["shape_adaptor_resnet18", "resnet18"])
def test_registry_odd_size_and_constant_logits_at_init(name):
    model = create_model("fcn8s", encoder_name=name, num_classes=4).eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 45, 37))
    assert logits.shape == (1, 4, 45, 37)
    assert torch.count_nonzero(logits) == 0  # zero-initialised score layers: a constant prediction


def test_default_is_resnet18_voc():
    model = create_model("fcn8s")
    assert model.num_classes == 21 and model.encoder_name == "resnet18" and model.pad_multiple == 32


def test_fusion_deep_to_shallow_at_skip_sizes():
    model = _random_scores(EncoderFCN8s(num_classes=3, **SA_SMALL)).eval()
    assert model.pad_multiple == 1  # any size: the adaptors' shapes are not disturbed by padding
    image = torch.rand(1, 3, 35, 29)
    with torch.no_grad():
        logits = model(image)
        pool3, pool4, top = model.encoder(model.normalize(image))[-3:]
        up = lambda t, ref: F.interpolate(t, size=ref.shape[-2:], mode="bilinear", align_corners=False)
        y = up(model.score_fr(top), pool4) + model.score_pool4(pool4)
        y = up(y, pool3) + model.score_pool3(pool3)
        expected = F.interpolate(y, size=(35, 29), mode="bilinear", align_corners=False)
    torch.testing.assert_close(logits, expected)
    assert logits.std() > 0


def test_backward_reaches_encoder_and_alphas():
    model = _random_scores(EncoderFCN8s(num_classes=3, **SA_SMALL))
    model(torch.rand(2, 3, 33, 31)).logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in alpha_parameters(model))
    assert model.encoder.conv1.weight.grad.abs().sum() > 0
    groups = {g["name"]: g for g in shape_adaptor_param_groups(model, lr=0.01, alpha_lr=0.1)}
    assert len(groups["alphas"]["params"]) == len(model.encoder.adaptors())


def test_smp_encoder_padded_and_cropped():
    model = _random_scores(EncoderFCN8s("resnet18", num_classes=2)).eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 33, 40))
    assert logits.shape == (1, 2, 33, 40) and logits.std() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"encoder_depth": 2}, "encoder_depth"),
        ({"encoder_name": "not_an_encoder"}, "unknown encoder"),
        ({"encoder_name": "shape_adaptor_resnet18", "encoder_kwargs": {"r1": 1.0}}, "r1"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        create_model("fcn8s", **kwargs)


def test_bad_image_shape():
    model = EncoderFCN8s(num_classes=2, **SA_SMALL)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.rand(1, 1, 32, 32))
