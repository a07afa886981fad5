"""Segmentation inference on numpy arrays: tiling, whole-image CRF dilation, memory budgets."""

import numpy as np
import pytest
import torch

from densepac.errors import InputError
from densepac.models import create_model
from densepac.ops.crf import CRFWrapped, PacCRF
from densepac.segmentation.inference import (
    AFTER_BYTES_PER_PIXEL,
    segment_image,
    segmentation_memory_model,
    segmentation_tiles_for_budget,
    tiled_segment,
)
from densepac.tiling import plan_tiles

SEG_KW = {"num_classes": 5, "widths": [8, 8, 16, 16, 16], "fc_channels": 16}


def _random_fcn(crf_kwargs=None):
    torch.manual_seed(0)
    m = create_model("fcn8s_vgg16", crf=crf_kwargs is not None, crf_kwargs=crf_kwargs, **SEG_KW).eval()
    fcn = m.model if crf_kwargs is not None else m
    for score in (fcn.score_fr, fcn.score_pool4, fcn.score_pool3):  # score layers start at zero
        torch.nn.init.normal_(score.weight, std=0.5)
        torch.nn.init.normal_(score.bias, std=0.1)
    return m


def _smooth_image(h, w, seed=0):
    torch.manual_seed(seed)
    return torch.nn.functional.interpolate(torch.rand(1, 3, h // 16, w // 16), size=(h, w), mode="bilinear")


@pytest.mark.parametrize(
    "crf_kwargs", [None, {"num_steps": 2, "kernels": [(3, 1)], "dilation_reference": 64}], ids=["fcn", "fcn+crf"]
)
def test_segmentation_tiles_close_to_untiled(crf_kwargs):
    # FCN receptive fields exceed any margin: tiled logits are close, not equal. A margin of
    # 32 px (not the default 96) keeps the windows of this small image smaller than the image.
    m, x = _random_fcn(crf_kwargs), _smooth_image(160, 192)
    with torch.inference_mode():
        ref = m(x)
        out = tiled_segment(m, x, 64, margin=32)
    assert len(plan_tiles((160, 192), 64)) == 9
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.99
    assert (out - ref).abs().mean() <= 0.03 * ref.abs().mean()
    assert (out - ref).abs().max() <= 0.1 * ref.abs().max()
    with torch.inference_mode():
        torch.testing.assert_close(tiled_segment(m, x, 512), ref, rtol=0, atol=0)  # one tile: the model itself


class _Pointwise(torch.nn.Module):
    """A 1x1 segmentation 'network': without any context, tiles can be exact."""

    task = "segmentation"

    def __init__(self, classes=4):
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(3, classes, 1)

    def forward(self, image):
        return self.conv(image) * 4


def test_tiled_crf_uses_the_whole_image_dilation():
    # Dilation 7 on the whole image, 4 on a 64 px window; reach 2 steps x 7 x 1 = 14 < margin 16.
    crf = PacCRF(4, num_steps=2, kernels=((3, 2),), dilation_reference=32)
    m = CRFWrapped(_Pointwise(), crf).eval()
    x = _smooth_image(128, 96)
    assert crf.dilations((128, 96)) == [7] and crf.dilations((64, 64)) == [4]
    with torch.inference_mode():
        ref = m(x)
        out = tiled_segment(m, x, 32, margin=16)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert crf.kernels == [(3, 2)] and crf.dilation_reference == 32  # restored


def test_segment_image_budget(nothing_in_use, monkeypatch):
    from densepac.segmentation import inference

    # The tile geometry alone; what follows the labels is reserved in the test below.
    monkeypatch.setattr(inference, "AFTER_BYTES_PER_PIXEL", 0)
    m = _Pointwise().eval()  # no context needed: tiled labels are exact
    image = _smooth_image(256, 480)[0].permute(1, 2, 0).numpy()
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    memory = segmentation_memory_model(m)
    ref = segment_image(m, image)
    assert segmentation_tiles_for_budget(m, x, memory(256 * 480)) is None
    np.testing.assert_array_equal(segment_image(m, image, max_memory=memory(256 * 480)), ref)
    # Windows of 288 x 288 px fit; as 256 rows span the image, a window takes them all and
    # 288 * 288 // 256 = 324 columns: 324 - 2 x 96 margin -> 128 kept, 4 tiles of 120 -> 128.
    budget = memory(288 * 288) + 256 * 480 * 8
    tile = segmentation_tiles_for_budget(m, x, budget)
    assert tile == (256, 128) and len(plan_tiles((256, 480), tile)) == 4
    np.testing.assert_array_equal(segment_image(m, image, max_memory=budget), ref)
    with pytest.raises(InputError, match=r"too small for _Pointwise on a 480x256 px image: give at least"):
        segment_image(m, image, max_memory=memory(200 * 200))


def test_the_budget_keeps_room_for_the_overlay_and_files_after_the_labels(nothing_in_use, monkeypatch):
    from densepac.segmentation import inference

    monkeypatch.setattr(inference, "AFTER_BYTES_PER_PIXEL", 8 * AFTER_BYTES_PER_PIXEL)  # above the tiny model's need
    m = _Pointwise().eval()
    x = _smooth_image(256, 480)
    after = 256 * 480 * 8 * AFTER_BYTES_PER_PIXEL
    assert segmentation_memory_model(m)(256 * 480) < after  # the model alone would fit whole
    assert segmentation_tiles_for_budget(m, x, after) is None
    with pytest.raises(InputError, match="give at least"):
        segmentation_tiles_for_budget(m, x, after - 1)


def test_a_crf_model_under_a_budget_runs_in_two_stages_with_the_untiled_labels(nothing_in_use, monkeypatch):
    from densepac.segmentation import inference
    from densepac.segmentation.inference import crf_memory_model, crf_reach

    crf = PacCRF(4, num_steps=2, kernels=((3, 2),), dilation_reference=32)
    m = CRFWrapped(_Pointwise(), crf).eval()
    x = _smooth_image(128, 96)
    image = x[0].permute(1, 2, 0).numpy()
    assert crf_reach(m, (128, 96)) == 14  # 2 steps x radius 1 x dilation 7
    monkeypatch.setattr(inference, "CREEP_LIMIT", 0)  # a tiny image: the 64 MiB of creep kept free would dwarf it
    calls = []
    real = inference.run_tiles
    monkeypatch.setattr(inference, "run_tiles", lambda *a, **k: calls.append(k["desc"]) or real(*a, **k))
    with torch.inference_mode():
        ref = m(x).argmax(1)[0].numpy()
    # The logits, labels and overlay, and what the network's plan keeps free for the CRF stage:
    # twice its smallest tile (32 kept + 2 x 14 context); less than the whole CRF needs.
    budget = 128 * 96 * (4 * 4 + 8 + AFTER_BYTES_PER_PIXEL) + 2 * crf_memory_model(crf)(60 * 60)
    assert budget < crf_memory_model(crf)(128 * 96)
    np.testing.assert_array_equal(segment_image(m, image, max_memory=budget), ref)
    assert calls == ["crf tiles"]  # the pointwise network fits whole; the CRF is tiled
    assert crf.kernels == [(3, 2)] and crf.dilation_reference == 32
