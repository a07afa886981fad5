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
