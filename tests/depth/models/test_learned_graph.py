"""Graph least squares with learned edge features (``learned_graph_x*``)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from densepac.depth.degrade import simulate_lr
from densepac.depth.inference import upsample_depth
from densepac.depth.synthetic import make_rgbd_scene
from densepac.models import create_model
from densepac.ops import graph_refine
from densepac.ops.fill import fill_holes, valid_mask


def _pair(sampling: str, seed: int = 0, scale: int = 4):
    scene = make_rgbd_scene(seed, 48, 64)
    lr = simulate_lr(scene["depth"], scale, sampling)
    lr[1, 2] = 0
    d = torch.from_numpy(lr)[None, None]
    g = torch.from_numpy(scene["rgb"]).permute(2, 0, 1)[None]
    return d, g, torch.from_numpy(scene["depth"])[None, None]


@pytest.mark.parametrize("sampling", ["point", "area"])
def test_with_zero_learned_features_it_is_the_training_free_refinement(sampling):
    torch.manual_seed(0)
    m = create_model("learned_graph_x4").eval()
    torch.nn.init.zeros_(m.features.head.weight)
    d, g, _ = _pair(sampling)
    start = F.interpolate(fill_holes(d, valid_mask(d)), size=g.shape[-2:], mode="bicubic", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(m(d, g, sampling=sampling), graph_refine(start, d, g, sampling))


def test_gradients_reach_every_parameter_through_the_solve():
    torch.manual_seed(0)
    m = create_model("learned_graph_x4").train()
    d, g, gt = _pair("area")
    loss = (m(d, g, sampling="area") - gt).pow(2).mean()
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_auto_sampling_is_decided_per_sample():
    torch.manual_seed(0)
    m = create_model("learned_graph_x4").eval()
    (dp, gp, _), (da, ga, _) = _pair("point", 1), _pair("area", 1)
    with torch.no_grad():
        both = m(torch.cat([dp, da]), torch.cat([gp, ga]))
        # Convolutions round differently in a batch of two; the solves agree to CG precision.
        torch.testing.assert_close(both[:1], m(dp, gp, sampling="point"), atol=2e-3, rtol=0)
        torch.testing.assert_close(both[1:], m(da, ga, sampling="area"), atol=2e-3, rtol=0)
        assert not torch.allclose(m(da, ga, sampling="point"), both[1:], atol=2e-3, rtol=0)


def test_inference_passes_the_sampling_and_does_not_refine_twice():
    torch.manual_seed(0)
    m = create_model("learned_graph_x4")
    scene = make_rgbd_scene(2, 64, 96)
    lr = simulate_lr(scene["depth"], 4, "area")
    a = upsample_depth(m, lr, scene["rgb"], tile=0, sampling="area", refine=True)
    b = upsample_depth(m, lr, scene["rgb"], tile=0, sampling="area", refine=False, consistency=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(simulate_lr(a, 4, "area")[lr > 0], lr[lr > 0], rtol=1e-5)
