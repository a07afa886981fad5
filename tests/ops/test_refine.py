import pytest
import torch
import torch.nn.functional as F

from densepac.errors import InputError
from densepac.ops import GraphRefine, graph_refine, guide_features, sample_as_source

EXACT = {"tol": 1e-13, "max_iter": 5000}


def _tiny_case(n, hh, ww, s, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = (torch.rand(n, 1, hh, ww, generator=g, dtype=dtype) * 3 + 1).to(device)
    lr = (torch.rand(n, 1, hh // s, ww // s, generator=g, dtype=dtype) * 3 + 1).to(device)
    guide = torch.rand(n, 3, hh, ww, generator=g, dtype=dtype).to(device)
    lr[0, 0, 0, 1] = 0
    lr[-1, 0, -1, 0] = float("nan")
    return x0, lr, guide


def _dense_solution(x0, lr, guide, sampling, lam, mu, depth_weight, delta, weight_floor=0.0):
    """Build the normal equations of the documented energy as one matrix, in metres, and solve.

    All three terms are invariant to an affine change of depth units, so the solution in
    metres is the op's solution, which it computes in normalised units.
    """
    n, _, hh, ww = x0.shape
    h, w = lr.shape[-2:]
    s = hh // h
    f = guide_features(lr, guide, depth_weight)
    idx = torch.arange(hh * ww).view(hh, ww)
    sampler = torch.zeros(h * w, hh * ww, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            if sampling == "area":
                sampler[i * w + j, idx[i * s : (i + 1) * s, j * s : (j + 1) * s].flatten()] = 1 / s**2
            else:
                sampler[i * w + j, idx[s * i + s // 2, s * j + s // 2]] = 1
    out = []
    for b in range(n):
        valid = torch.isfinite(lr[b, 0]) & (lr[b, 0] > 0)
        c = valid.flatten().double()
        y = torch.where(valid, lr[b, 0], 0).flatten()
        a = s * s * sampler.T @ torch.diag(c) @ sampler + delta * torch.eye(hh * ww, dtype=torch.float64)
        rhs = s * s * sampler.T @ (c * y) + delta * x0[b, 0].flatten()
        for dy, dx in ((0, 1), (1, 0)):
            for py in range(hh - dy):
                for px in range(ww - dx):
                    i, k = idx[py, px], idx[py + dy, px + dx]
                    dist = ((f[b, :, py, px] - f[b, :, py + dy, px + dx]) ** 2).sum() / mu**2
                    wgt = lam * (weight_floor + (1 - weight_floor) * torch.exp(-dist))
                    a[i, i] += wgt
                    a[k, k] += wgt
                    a[i, k] -= wgt
                    a[k, i] -= wgt
        out.append(torch.linalg.solve(a, rhs).view(1, hh, ww))
    return torch.stack(out)


@pytest.mark.parametrize("sampling", ["area", "point"])
@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("weight_floor", [0.0, 0.2])
def test_matches_a_dense_direct_solve(sampling, scale, weight_floor):
    x0, lr, guide = _tiny_case(2, 8, 12, scale)
    params = {"lam": 0.7, "mu": 0.5, "depth_weight": 0.8, "delta": 1e-2, "weight_floor": weight_floor}
    out = graph_refine(x0, lr, guide, sampling, **params, **EXACT, clamp=False)
    torch.testing.assert_close(out, _dense_solution(x0, lr, guide, sampling, **params), rtol=0, atol=1e-6)


def test_deterministic_and_independent_of_batch_mates():
    x0, lr, guide = _tiny_case(3, 32, 48, 4, dtype=torch.float32)
    first = graph_refine(x0, lr, guide, "area")
    assert torch.equal(first, graph_refine(x0, lr, guide, "area"))
    alone = graph_refine(x0[1:2], lr[1:2], guide[1:2], "area")
    torch.testing.assert_close(first[1:2], alone)


def test_units_do_not_matter():
    """Millimetres in, millimetres out: the same result as in metres."""
    x0, lr, guide = _tiny_case(1, 32, 48, 8)
    metres = graph_refine(x0, lr, guide, "point", **EXACT)
    torch.testing.assert_close(graph_refine(1000 * x0, 1000 * lr, guide, "point", **EXACT), 1000 * metres)


def _blocks_scene(dtype, device):
    """Piecewise-constant depth whose every depth edge is a colour edge (and vice versa)."""
    hh, ww = 96, 128
    y = torch.arange(hh, device=device)[:, None]
    x = torch.arange(ww, device=device)[None, :]
    label = (x >= 45).long() + 2 * ((y - 30) ** 2 + (x - 90) ** 2 < 22**2).long() + 4 * ((y >= 61) & (x < 37)).long()
    depth = torch.tensor([3.0, 5.5, 9.0, 1.5, 2.2], dtype=dtype, device=device)[label]
    colours = torch.tensor(
        [[0.2, 0.3, 0.8], [0.8, 0.7, 0.1], [0.1, 0.8, 0.2], [0.9, 0.2, 0.6], [0.5, 0.5, 0.5]],
        dtype=dtype,
        device=device,
    )
    guide = colours[label].permute(2, 0, 1)
    return depth.view(1, 1, hh, ww), guide[None]


@pytest.mark.parametrize("sampling", ["area", "point"])
@pytest.mark.parametrize("scale", [4, 8])
def test_sharpens_a_bicubic_start_where_colour_edges_are_depth_edges(sampling, scale, device, dtype):
    depth, guide = _blocks_scene(dtype, device)
    lr = sample_as_source(depth, scale, sampling)
    start = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
    out = graph_refine(start, lr, guide, sampling)
    assert out.shape == depth.shape and out.dtype == dtype and out.device == depth.device

    def rmse(x):
        return (x - depth).pow(2).mean().sqrt().item()

    assert rmse(out) < 0.5 * rmse(start)


@pytest.mark.parametrize("sampling", ["area", "point"])
def test_gradcheck(sampling):
    x0, lr, guide = _tiny_case(1, 4, 6, 2, seed=3)
    missing = ~(torch.isfinite(lr) & (lr > 0))
    lr = torch.where(missing, torch.ones_like(lr), lr)
    params = {"lam": 0.7, "mu": 0.8, "depth_weight": 0.5, "delta": 0.05, **EXACT}

    def f(a, b, g):
        # Missing pixels stay missing under gradcheck's perturbations.
        return graph_refine(a, torch.where(missing, torch.zeros_like(b), b), g, sampling, **params)

    inputs = tuple(t.clone().requires_grad_() for t in (x0, lr, guide))
    assert torch.autograd.gradcheck(f, inputs, atol=1e-6)


def test_module_equals_functional_and_iterations():
    x0, lr, guide = _tiny_case(2, 16, 24, 4, dtype=torch.float32)
    module = GraphRefine("point", lam=2.0, mu=0.2)
    assert "lam=2.0" in repr(module)
    out, iterations = graph_refine(x0, lr, guide, "point", lam=2.0, mu=0.2, return_iterations=True)
    torch.testing.assert_close(module(x0, lr, guide), out)
    assert iterations.shape == (2,) and (iterations >= 1).all() and (iterations <= 2000).all()
    _, iterations = graph_refine(x0, lr, guide, "point", max_iter=3, return_iterations=True)
    assert (iterations == 3).all()


def test_non_contiguous_input():
    x0, lr, guide = _tiny_case(1, 16, 24, 4)
    t = [v.transpose(-1, -2).contiguous().transpose(-1, -2) for v in (x0, lr, guide)]
    assert not t[0].is_contiguous()
    torch.testing.assert_close(graph_refine(*t, "area", **EXACT), graph_refine(x0, lr, guide, "area", **EXACT))


def test_bad_inputs_raise_input_error():
    x0, lr, guide = _tiny_case(1, 16, 24, 4, dtype=torch.float32)
    with pytest.raises(InputError, match="sampling"):
        graph_refine(x0, lr, guide, "bicubic")
    with pytest.raises(InputError, match="sampling"):
        GraphRefine("auto")
    with pytest.raises(InputError, match="multiple"):
        graph_refine(x0[..., :15, :], lr, guide[..., :15, :], "area")
    with pytest.raises(InputError, match="guide"):
        graph_refine(x0, lr, guide[..., :8], "area")
    with pytest.raises(InputError, match="guide"):
        graph_refine(x0, lr, guide[0], "area")
    with pytest.raises(InputError, match=r"\(N, 1, H, W\)"):
        graph_refine(x0.expand(1, 2, 16, 24), lr, guide, "area")
    for bad in (
        {"lam": 0.0},
        {"mu": -1.0},
        {"delta": 0.0},
        {"tol": 0.0},
        {"depth_weight": -1.0},
        {"max_iter": 0},
        {"max_iter": 2.5},
        {"lam": float("nan")},
    ):
        with pytest.raises(InputError, match=next(iter(bad))):
            graph_refine(x0, lr, guide, "area", **bad)


def test_a_pixel_cut_off_by_the_guide_stays_within_its_neighbours_depths():
    """Area constraints let an isolated pixel absorb a block's residual; floor and clamp keep it sane."""
    lr = torch.full((1, 1, 4, 4), 2.0, dtype=torch.float64)
    lr[..., 1, 1] = 2.5
    guide = torch.full((1, 3, 16, 16), 0.5, dtype=torch.float64)
    guide[..., 5, 5] = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).view(3)  # one odd-coloured pixel
    x0 = torch.full((1, 1, 16, 16), 2.0, dtype=torch.float64)
    only_guide = {"depth_weight": 0.0, **EXACT}  # edges from the guide alone: the block is one with its neighbours
    loose = graph_refine(x0, lr, guide, "area", weight_floor=0.0, clamp=False, **only_guide)
    safe = graph_refine(x0, lr, guide, "area", **only_guide)
    assert loose[0, 0, 5, 5] > 3.0  # the cut-off pixel runs away to carry its block's mean
    assert safe.min() >= 2.0 - 1e-9 and safe.max() <= 2.5 + 1e-9
    assert safe[0, 0, 5, 5] < loose[0, 0, 5, 5]


def test_clamp_to_source_range_hand_case():
    from densepac.ops.refine import clamp_to_source_range

    lr = torch.tensor([[[[1.0, 0.0, 3.0]]]])
    valid = lr > 0
    hr = torch.tensor([[[[0.5, 5.0, 2.0, 9.0, 4.0, 0.0]]]]).repeat(1, 1, 2, 1)
    out = clamp_to_source_range(hr, lr, valid, 2)
    # Source neighbourhoods (radius 1): pixel 0 -> {1}, pixel 1 -> {1, 3}, pixel 2 -> {3}.
    torch.testing.assert_close(out, torch.tensor([[[[1.0, 1.0, 2.0, 3.0, 3.0, 3.0]]]]).repeat(1, 1, 2, 1))
