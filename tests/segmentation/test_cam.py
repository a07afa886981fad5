"""Attention maps and class activation maps: hand-checkable ramps, real models, bad arguments."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from densepac.models import create_model
from densepac.segmentation.cam import attention_map, class_activation_maps, feature_layer
from densepac.segmentation.models.base import SegmentationModel

SEG_KW = {"num_classes": 3, "widths": [4, 4, 8, 8, 8], "fc_channels": 8}


class RampNet(SegmentationModel):
    """Features = positive multiples of the image's red channel (average-pooled by ``pool``); 1x1 head."""

    def __init__(self, pool: int = 1) -> None:
        super().__init__()
        self.num_classes = 2
        self.feat = nn.Conv2d(3, 4, 1)
        self.pool = nn.AvgPool2d(pool) if pool > 1 else nn.Identity()
        self.act = nn.ReLU()
        self.head = nn.Conv2d(4, 2, 1)
        with torch.no_grad():
            self.feat.weight.zero_()
            self.feat.bias.zero_()
            self.feat.weight[:, 0, 0, 0] = torch.tensor([1.0, 2.0, 0.5, 3.0])
            self.head.weight.copy_(torch.tensor([[1.0, 0.5, 2.0, 1.0], [-1.0, -0.5, -2.0, -1.0]])[..., None, None])
            self.head.bias.zero_()

    def forward(self, image):
        f = self.act(self.pool(self.feat(image)))
        return F.interpolate(self.head(f), size=image.shape[-2:], mode="bilinear", align_corners=False)


def ramp_image(h=16, w=24, n=2) -> torch.Tensor:
    x = torch.zeros(n, 3, h, w)
    x[:, 0] = torch.linspace(0, 1, w)  # red rises left to right; green and blue are noise the net ignores
    x[:, 1:] = torch.rand(n, 2, h, w)
    return x


def test_ramp_features_give_a_ramp_attention_map():
    image = ramp_image()
    net = RampNet().eval()
    assert feature_layer(net, image) == "act"  # deepest layer that is not the 2-class head
    att = attention_map(net, image)
    assert att.shape == (2, 16, 24) and att.dtype == torch.float32
    np.testing.assert_allclose(att.numpy(), np.broadcast_to(np.linspace(0, 1, 24), (2, 16, 24)), atol=1e-6)


def test_pooled_ramp_is_upsampled_pixel_aligned():
    """Red = x / 23 pooled in 2x2 blocks: block j holds (2j + 0.5) / 23, at HR x = 2j + 0.5. Bilinear
    upsampling (align_corners=False) gives x / 23 back for 1 <= x <= 22 and the nearest block beyond,
    so the normalized map is clip((x - 0.5) / 22, 0, 1)."""
    image = ramp_image(16, 24)
    att = attention_map(RampNet(pool=2).eval(), image)
    expected = np.clip((np.arange(24) - 0.5) / 22, 0, 1)
    np.testing.assert_allclose(att.numpy(), np.broadcast_to(expected, (2, 16, 24)), atol=1e-6)


def test_class_activation_map_of_a_linear_head_is_the_classic_cam():
    """Seg-Grad-CAM of a 1x1 head is ReLU(W_c . A): a ramp for class 0, nothing for class 1."""
    image = ramp_image()
    net = RampNet().eval()
    cams = class_activation_maps(net, image)
    assert cams.shape == (2, 2, 16, 24)
    np.testing.assert_allclose(cams[:, 0].numpy(), np.broadcast_to(np.linspace(0, 1, 24), (2, 16, 24)), atol=1e-6)
    assert cams[:, 1].abs().max() == 0  # negative evidence everywhere: an all-zero map
    assert class_activation_maps(net, image, classes=0).shape == (2, 1, 16, 24)
    assert all(p.grad is None for p in net.parameters())  # the model's gradients are untouched


def test_frozen_model_and_inference_mode_caller():
    net = RampNet().eval().requires_grad_(False)
    image = ramp_image(n=1)
    with torch.inference_mode():
        cams = class_activation_maps(net, image, classes=[0])
        att = attention_map(net, image)
    np.testing.assert_allclose(cams[0, 0].numpy(), att[0].numpy(), atol=1e-6)  # one positive channel mix


@pytest.mark.parametrize("name", ["fcn8s_vgg16", "pac_fcn8s_vgg16"])
def test_fcn_maps_have_the_image_size_and_unit_range(name):
    torch.manual_seed(0)
    model = create_model(name, **SEG_KW).eval()
    image = torch.rand(2, 3, 33, 40)  # FCN-8s pads this to 64x64 inside
    assert feature_layer(model, image) == "relu7"
    att = attention_map(model, image)
    cams = class_activation_maps(model, image, classes=[0, 2])
    assert att.shape == (2, 33, 40) and cams.shape == (2, 2, 33, 40)
    for m in (att, cams):
        assert torch.isfinite(m).all() and m.min() >= 0 and m.max() <= 1
    assert att.flatten(1).amax(1).eq(1).all()  # normalized per sample


def test_named_layer_is_cropped_from_the_padded_grid():
    """conv1_1 of FCN-8s runs on the image padded to 64x64: the map is its top-left 33x40, normalized."""
    torch.manual_seed(0)
    model = create_model("fcn8s_vgg16", **SEG_KW).eval()
    image = torch.rand(1, 3, 33, 40)
    seen = {}
    handle = model.features.conv1_1.register_forward_hook(lambda m, a, out: seen.setdefault("f", out))
    with torch.no_grad():
        model(image)
    handle.remove()
    mean = seen["f"].mean(1)[0, :33, :40]
    expected = (mean - mean.min()) / (mean.max() - mean.min())
    np.testing.assert_allclose(
        attention_map(model, image, layer="features.conv1_1")[0].numpy(), expected.numpy(), atol=1e-5
    )


def test_bad_arguments():
    net = RampNet().eval()
    image = ramp_image(n=1)
    with pytest.raises(ValueError, match="no layer named 'conv9'"):
        attention_map(net, image, layer="conv9")
    with pytest.raises(TypeError, match="torch.Tensor"):
        attention_map(net, image[0].permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        attention_map(net, image[:, :2])
    with pytest.raises(TypeError, match="float"):
        attention_map(net, (image * 255).to(torch.uint8))
    with pytest.raises(TypeError, match="depth model"):
        attention_map(create_model("bicubic"), image)
    with pytest.raises(ValueError, match="0 to 1"):
        class_activation_maps(net, image, classes=[2])
    with pytest.raises(TypeError, match="classes"):
        class_activation_maps(net, image, classes=[])


@pytest.mark.parametrize("name", ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"])
def test_default_layer_is_never_a_global_pooling_branch(name):
    """ASPP / LR-ASPP heads pool the whole image to 1x1; attention there would be a flat map."""
    from densepac.segmentation.cam import attention_map, feature_layer

    torch.manual_seed(0)
    model = create_model(name, num_classes=5).eval()
    image = torch.rand(1, 3, 96, 96)
    layer = feature_layer(model, image)
    heat = attention_map(model, image)
    assert "scale" not in layer and heat.std() > 0, layer
