import torch

from densepac.ops.fill import fill_holes, valid_mask


def test_valid_pixels_unchanged_and_holes_filled_within_range():
    torch.manual_seed(0)
    d = torch.rand(2, 1, 17, 23, dtype=torch.float64) + 1
    d[d < 1.3] = 0
    d[0, 0, :5, :5] = float("nan")
    out = fill_holes(d)
    v = valid_mask(d)
    assert torch.equal(out[v], d[v])
    assert torch.isfinite(out).all() and (out >= 1).all() and (out <= 2).all()


def test_single_sample_fills_everything_and_empty_stays_zero():
    d = torch.zeros(2, 1, 8, 8)
    d[0, 0, 3, 4] = 5.0
    out = fill_holes(d)
    torch.testing.assert_close(out[0], torch.full((1, 8, 8), 5.0))
    assert torch.equal(out[1], torch.zeros(1, 8, 8))


def test_gradcheck():
    d = torch.rand(1, 1, 5, 6, dtype=torch.float64) + 1
    d[0, 0, 2, 3] = 0
    d.requires_grad_()
    valid = valid_mask(d.detach())
    assert torch.autograd.gradcheck(lambda x: fill_holes(x, valid), (d,))


def _reference_fill(d: torch.Tensor) -> torch.Tensor:
    """Push-pull written out: per level, each 2^k block's mean valid depth and valid fraction by a loop."""
    import math

    import torch.nn.functional as F

    h, w = d.shape[-2:]
    valid = valid_mask(d)
    filled = None
    for k in reversed(range(math.ceil(math.log2(max(h, w))) + 1)):
        s = 2**k
        rows, cols = range(0, h, s), range(0, w, s)
        mean = torch.zeros(d.shape[0], 1, len(rows), len(cols), dtype=d.dtype)
        frac = torch.zeros_like(mean)
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                block, ok = d[..., r : r + s, c : c + s], valid[..., r : r + s, c : c + s]
                n = ok.sum((-2, -1)).to(d.dtype)
                mean[..., i, j] = torch.where(n > 0, torch.where(ok, block, 0).sum((-2, -1)) / n.clamp_min(1), 0)
                frac[..., i, j] = n / ok[0, 0].numel()
        if filled is None:
            filled = mean
        else:
            up = F.interpolate(filled, size=mean.shape[-2:], mode="bilinear", align_corners=False)
            filled = frac * mean + (1 - frac) * up
    return filled


def test_matches_the_pyramid_written_out():
    g = torch.Generator().manual_seed(1)
    for h, w in [(13, 21), (16, 16), (1, 9), (5, 1)]:
        d = torch.rand(2, 1, h, w, generator=g, dtype=torch.float64) * 3 + 1
        d[torch.rand(d.shape, generator=g) < 0.6] = 0
        torch.testing.assert_close(fill_holes(d), _reference_fill(d))


def test_traces_once_for_every_size():
    """Exported with a symbolic size, one graph fills maps of other sizes as the eager op does."""
    from torch.export import Dim

    class Fill(torch.nn.Module):
        def forward(self, d):
            return fill_holes(d)

    g = torch.Generator().manual_seed(2)
    sample = torch.rand(2, 1, 12, 20, generator=g) + 1
    sample[sample < 1.5] = 0
    dims = {"d": {0: Dim("batch", max=64), 2: Dim("h", min=2, max=4096), 3: Dim("w", min=2, max=4096)}}
    graph = torch.export.export(Fill(), (sample,), dynamic_shapes=dims, strict=False).module()
    for shape in [(1, 1, 7, 300), (3, 1, 64, 5), (2, 1, 2, 2)]:
        d = torch.rand(shape, generator=g) + 1
        d[d < 1.4] = 0
        torch.testing.assert_close(graph(d), fill_holes(d))
