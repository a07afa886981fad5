"""Depth and segmentation metrics against small cases computed by hand."""

import math

import pytest
import torch

from densepac.engine.metrics import (
    ConfusionMatrix,
    DepthMetrics,
    SegmentationMetrics,
    boundary_band,
    depth_metrics,
    valid_depth_mask,
)
from densepac.errors import InputError

NAN = float("nan")


def test_depth_metrics_hand_case_skips_missing_pixels():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[1.0, 0.0], [2.0, NAN]])  # only (0,0) and (1,0) count
    m = depth_metrics(pred, target)
    assert m["num_pixels"] == 2 and m["num_images"] == 1
    assert m["rmse"] == pytest.approx(math.sqrt(0.5))
    assert m["mae"] == pytest.approx(0.5)
    assert m["absrel"] == pytest.approx(0.25)  # (0/1 + 1/2) / 2
    assert m["delta1"] == pytest.approx(0.5)  # ratio 1.5 fails 1.25, passes 1.5625
    assert m["delta2"] == pytest.approx(1.0)
    assert m["delta3"] == pytest.approx(1.0)


def test_depth_shapes_are_interchangeable():
    pred = torch.rand(2, 1, 4, 5) + 0.5
    target = torch.rand(2, 1, 4, 5) + 0.5
    a = depth_metrics(pred, target)
    b = depth_metrics(pred[:, 0], target[:, 0])
    assert a == b


def test_pooled_rmse_differs_from_mean_per_image_rmse():
    # Image A: one valid pixel off by 3 m; image B: eight valid pixels, all exact.
    target = torch.ones(2, 1, 3, 3)
    target[0] = 0.0
    target[0, 0, 0, 0] = 1.0
    target[1, 0, 2, 2] = 0.0
    pred = target.clone()
    pred[0, 0, 0, 0] = 4.0
    m = depth_metrics(pred, target)
    assert m["num_pixels"] == 9
    assert m["rmse"] == pytest.approx(math.sqrt(9 / 9))
    assert m["rmse_per_image"] == pytest.approx((3.0 + 0.0) / 2)


def test_accumulator_is_independent_of_batching():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(4, 1, 6, 6, generator=g) * 5
    target = torch.rand(4, 1, 6, 6, generator=g) * 5
    target[target < 1] = 0  # some missing pixels
    whole = DepthMetrics(crop=1)
    whole.update(pred, target)
    split = DepthMetrics(crop=1)
    split.update(pred[:1], target[:1])
    split.update(pred[1:], target[1:])
    a, b = whole.compute(), split.compute()
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-12)
    split.all_reduce()  # a single process: no change
    assert split.compute() == b
    split.reset()
    assert split.compute()["num_pixels"] == 0


def test_crop_and_depth_range():
    target = torch.ones(5, 5)
    mask = valid_depth_mask(target, crop=1)
    assert mask.sum() == 9 and not mask[0].any() and not mask[:, -1].any()
    mask = valid_depth_mask(target, crop=(1, 0, 2, 0))  # top, bottom, left, right
    assert mask.sum() == 4 * 3
    target = torch.tensor([[0.5, 2.0, 20.0]])
    pred = torch.tensor([[0.5, 3.0, 9.0]])
    m = depth_metrics(pred, target, min_depth=1.0, max_depth=10.0)
    assert m["num_pixels"] == 1 and m["mae"] == pytest.approx(1.0)
    with pytest.raises(InputError, match="crop"):
        valid_depth_mask(target, crop=2)
    with pytest.raises(InputError, match="crop"):
        DepthMetrics(crop=(1, 2))


def test_nonpositive_prediction_never_passes_delta():
    target = torch.tensor([[1.0, 1.0, 1.0]])
    pred = torch.tensor([[1.0, 0.0, -1.0]])
    m = depth_metrics(pred, target)
    assert m["delta3"] == pytest.approx(1 / 3)


def test_no_valid_pixel_gives_nan_and_bad_shapes_raise():
    m = depth_metrics(torch.ones(3, 3), torch.zeros(3, 3))
    assert m["num_pixels"] == 0 and math.isnan(m["rmse"]) and math.isnan(m["rmse_per_image"])
    with pytest.raises(InputError, match="shape"):
        depth_metrics(torch.ones(3, 3), torch.ones(3, 4))
    with pytest.raises(InputError, match="shape"):
        depth_metrics(torch.ones(1, 2, 3, 3), torch.ones(1, 2, 3, 3))


def _hand_case():
    target = torch.tensor([0, 0, 1, 1, 2, 255])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    return pred, target


def test_confusion_matrix_hand_case():
    pred, target = _hand_case()
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    m = cm.compute()
    assert m["iou"] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert m["miou"] == pytest.approx(1 / 3)
    assert m["pixel_acc"] == pytest.approx(3 / 5)
    assert m["mean_class_acc"] == pytest.approx((1 / 2 + 1 + 0) / 3)


def test_absent_class_is_left_out_of_the_mean():
    pred, target = _hand_case()
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    m = cm.compute()
    assert math.isnan(m["iou"][3])
    assert m["miou"] == pytest.approx(1 / 3)


def test_confusion_matrix_accepts_logits_and_masks():
    pred, target = _hand_case()
    logits = torch.nn.functional.one_hot(pred, 3).T.float().unsqueeze(0)  # (1, K, 6)
    cm = ConfusionMatrix(3)
    cm.update(logits, target.unsqueeze(0))
    assert cm.matrix.sum() == 5
    masked = ConfusionMatrix(3)
    masked.update(pred, target, mask=torch.tensor([1, 1, 0, 0, 0, 0], dtype=torch.bool))
    assert masked.matrix.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 0]]


def test_confusion_matrix_rejects_bad_labels():
    cm = ConfusionMatrix(3)
    with pytest.raises(InputError, match="outside"):
        cm.update(torch.tensor([0, 1]), torch.tensor([0, 7]))
    with pytest.raises(InputError, match="channels"):
        cm.update(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(InputError, match="shape"):
        cm.update(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))


def test_boundary_band_one_row():
    label = torch.tensor([[0, 0, 0, 1, 1, 1]])
    assert boundary_band(label, 1).tolist() == [[False, False, True, True, False, False]]
    assert boundary_band(label, 2).tolist() == [[False, True, True, True, True, False]]
    assert not boundary_band(torch.zeros(4, 4, dtype=torch.long), 1).any()  # border: no edge
    with pytest.raises(InputError, match="width"):
        boundary_band(label, 0)


def test_boundary_band_matches_brute_force_chebyshev():
    g = torch.Generator().manual_seed(0)
    label = torch.randint(0, 3, (2, 7, 9), generator=g)
    label[0, :3] = 255
    width = 2
    band = boundary_band(label, width)
    n, h, w = label.shape
    for b in range(n):
        for y in range(h):
            for x in range(w):
                win = label[b, max(0, y - width) : y + width + 1, max(0, x - width) : x + width + 1]
                assert bool(band[b, y, x]) == bool((win != label[b, y, x]).any())


def test_boundary_miou_counts_only_the_band():
    target = torch.tensor([[[0, 0, 0, 0, 1, 1, 1, 1]]])
    pred = torch.tensor([[[1, 0, 0, 1, 1, 1, 1, 0]]])  # errors at 0 and 7 are off-band
    m = SegmentationMetrics(2, boundary_width=1)
    m.update(pred, target)
    out = m.compute()
    # band = pixels 3 and 4: gt (0, 1) vs pred (1, 1)
    assert out["boundary_miou"] == pytest.approx((0 / 2 + 1 / 2) / 2)
    assert out["miou"] == pytest.approx((2 / 5 + 3 / 6) / 2)
    assert "boundary_miou" not in SegmentationMetrics(2, boundary_width=None).compute()
