"""densepac.tiling: memory sizes, tile plans, stitching, live-byte counting and budget planning."""

import logging
import re

import numpy as np
import pytest
import torch

from densepac.errors import InputError
from densepac.tiling import (
    LiveTensorBytes,
    MemoryModel,
    Tile,
    budget_bytes,
    measure_memory,
    parse_memory,
    plan_tiles,
    run_tiles,
    tiles_for_budget,
    warn_if_over,
)

MiB, KiB = 2**20, 2**10


@pytest.mark.parametrize(
    "text, nbytes",
    [
        ("2GiB", 2 * 2**30),
        ("1500MB", 1500 * 10**6),
        ("1.5G", 3 * 2**29),
        ("800", 800 * MiB),
        ("512 mib", 512 * MiB),
        ("64KiB", 64 * KiB),
        ("4096b", 4096),
        (" 1 TB ", 10**12),
    ],
)
def test_parse_memory(text, nbytes):
    assert parse_memory(text) == nbytes


@pytest.mark.parametrize("text", ["abc", "", "-1GiB", "0", "2 GiBs", "1.5.2G", 800, "1e400G", "GiB"])
def test_parse_memory_refuses(text):
    with pytest.raises(ValueError, match="memory size|unknown unit"):
        parse_memory(text)


def test_budget_bytes():
    assert budget_bytes(12345) == 12345 and budget_bytes("1KiB") == 1024
    for bad in (0, -5, True, 1.5e9):
        with pytest.raises(ValueError):
            budget_bytes(bad)


def _coverage(size, tiles, scale=1):
    counts = np.zeros((size[0] * scale, size[1] * scale), int)
    for t in tiles:
        counts[t.kept(scale)] += 1
    return counts


def test_plan_tiles_by_hand():
    tiles = plan_tiles((10, 7), 4, margin=1)
    assert [(t.y0, t.x0) for t in tiles] == [(0, 0), (0, 4), (4, 0), (4, 4), (8, 0), (8, 4)]
    assert tiles[0] == Tile(0, 4, 0, 4, 0, 5, 0, 5)
    assert tiles[3] == Tile(4, 8, 4, 7, 3, 9, 3, 7)
    assert tiles[-1] == Tile(8, 10, 4, 7, 7, 10, 3, 7)
    assert (_coverage((10, 7), tiles) == 1).all()  # every pixel kept exactly once
    t = tiles[3]
    assert t.window(2) == (slice(6, 18), slice(6, 14)) and t.crop(2) == (slice(2, 10), slice(2, 8))
    assert t.window_pixels == 6 * 4


def test_plan_tiles_aligned():
    # tile 40 -> 32 and margin 10 -> 32 on a 32 px grid; a tile spanning an axis stays whole.
    tiles = plan_tiles((100, 70), (40, 200), margin=10, align=32)
    assert [(t.y0, t.y1, t.wy0, t.wy1) for t in tiles] == [
        (0, 32, 0, 64),
        (32, 64, 0, 96),
        (64, 96, 32, 100),
        (96, 100, 64, 100),
    ]
    assert all((t.x0, t.x1, t.wx0, t.wx1) == (0, 70, 0, 70) for t in tiles)
    assert all(t.wy0 % 32 == 0 for t in tiles)
    assert (_coverage((100, 70), tiles) == 1).all()
    for size, tile, margin, align in [((1, 1), 5, 3, 1), ((33, 65), 7, 2, 4), ((64, 64), 64, 8, 32)]:
        assert (_coverage(size, plan_tiles(size, tile, margin, align), scale=3) == 1).all()


def test_plan_tiles_refuses_bad_arguments():
    with pytest.raises(InputError, match="must be positive"):
        plan_tiles((10, 10), 0)
    with pytest.raises(InputError, match="non-negative"):
        plan_tiles((10, 10), 4, margin=-1)


def test_run_tiles_stitches_a_local_op_exactly():
    x = torch.rand(2, 3, 37, 29)

    def blur_up(t):  # 3x3 box blur (reach 1) then x2 nearest upsampling
        y = torch.nn.functional.avg_pool2d(x[(..., *t.window())], 3, 1, 1, count_include_pad=False)
        return y.repeat_interleave(2, -2).repeat_interleave(2, -1)

    whole = blur_up(Tile(0, 37, 0, 29, 0, 37, 0, 29))
    torch.testing.assert_close(run_tiles(blur_up, (37, 29), 8, margin=1, scale=2), whole, rtol=0, atol=1e-6)
    assert not torch.allclose(run_tiles(blur_up, (37, 29), 8, margin=0, scale=2), whole)  # no context: seams


def test_live_tensor_bytes_counts_allocations_until_they_die():
    x = torch.ones(1024)  # made outside the mode: not counted
    with LiveTensorBytes() as mode:
        a = x * 2  # 4 KiB
        b = a + 1  # 8 KiB live
        del a
        c = b.view(32, 32)  # a view allocates nothing
        d = c * 3  # 8 KiB live again
    assert mode.peak == 8 * KiB and mode.current == 8 * KiB
    del b, c, d
    assert mode.current == 0


def test_measure_memory_fits_live_bytes():
    # x * 2 + 1: two (h, w) float32 temporaries at the peak -> 8 bytes per pixel, none fixed.
    mm = measure_memory(lambda h, w: (torch.rand(h, w),), lambda x: x * 2 + 1, [(8, 8), (16, 32)], factor=1)
    assert mm == MemoryModel(0.0, 8.0)
    mm = measure_memory(lambda h, w: (torch.rand(h, w),), lambda x: x * 2 + 1, [(8, 8), (16, 32)], fixed=100)
    assert mm == MemoryModel(100.0, 16.0) and mm(10) == 260
    assert mm.max_pixels(260) == 10 and mm.max_pixels(99) == 0
    with pytest.raises(ValueError, match="two window sizes"):
        measure_memory(lambda h, w: (), lambda: None, [(8, 8), (8, 8)])


MEMORY = MemoryModel(fixed=MiB, per_pixel=KiB)  # 1 MiB + 1 KiB per pixel


def test_tiles_for_budget_by_hand():
    size = (1000, 1000)  # whole image: 1 MiB + 1e6 KiB = 977.6 MiB
    assert tiles_for_budget(size, 1100 * MiB, 100 * MiB, 8 * MiB, MEMORY, margin=16, align=32) is None
    # 300 - 100 in use - 8 output = 192 MiB: windows of (192 - 1) * 1024 = 195584 px, a side of 442;
    # margin 16 -> 32 on the grid leaves 442 - 64 = 378 -> 352 kept; 3 tiles of 334 -> 352 per axis.
    assert tiles_for_budget(size, 300 * MiB, 100 * MiB, 8 * MiB, MEMORY, margin=16, align=32) == (352, 352)
    # A wide strip: the window spans the 100 rows and takes 195584 // 100 = 1955 columns, so
    # 1955 - 64 -> 1888 kept; 3 tiles of 1667 -> 1696.
    assert tiles_for_budget((100, 5000), 300 * MiB, 100 * MiB, 8 * MiB, MEMORY, margin=16, align=32) == (100, 1696)
    # Every window of the plan fits the budget.
    plan = plan_tiles(size, (352, 352), 16, 32)
    assert max(MEMORY(t.window_pixels) for t in plan) + 108 * MiB <= 300 * MiB
    assert len(plan) == 9 and (_coverage(size, plan) == 1).all()


def test_tiles_for_budget_too_small_says_the_minimum():
    # Smallest tile: 32 kept + 2 * 32 margin = 96 px square -> 1 MiB + 9216 KiB = 10 MiB;
    # 118 MiB in all, plus 2 % spare for run-to-run noise -> 121 MiB.
    with pytest.raises(
        InputError,
        match=r"budget of 110 MiB is too small for tiny on a 1000x1000 px image: "
        r"give at least 121 MiB \(100 MiB in use, 8 MiB for the output, "
        r"10 MiB for the smallest tile\)",
    ):
        tiles_for_budget(
            (1000, 1000), 110 * MiB, 100 * MiB, 8 * MiB, MEMORY, margin=16, align=32, min_tile=32, what="tiny"
        )
    assert tiles_for_budget((1000, 1000), 118 * MiB, 100 * MiB, 8 * MiB, MEMORY, margin=16, align=32, min_tile=32) == (
        32,
        32,
    )


def test_warn_if_over_names_the_peak_so_far(caplog):
    with caplog.at_level(logging.WARNING, logger="densepac.tiling"):
        warn_if_over(2**50)
        assert not caplog.records
        warn_if_over(MiB)  # this process already holds more than 1 MiB
    assert "memory budget 1 MiB: this process already peaked at" in caplog.text


def test_a_window_that_needs_more_than_estimated_plans_smaller_tiles(monkeypatch):
    from densepac import tiling

    size, args = (1000, 1000), (300 * MiB, 100 * MiB, 8 * MiB)
    planned = tiles_for_budget(size, *args, MEMORY, margin=16, align=32)
    assert planned == (352, 352)  # as in the test above
    windows = []

    def check(h, w):
        windows.append((h, w))
        return lambda: None

    # Windows really add twice the estimate: the line through two windows is twice the model;
    # its per-pixel part gets 30 % more for tiles in a row, its fixed part the 64 MiB the
    # stitching loop lets freed memory creep before returning it.
    def measured(excess):
        return lambda run, device="cpu": (run(), excess(windows[-1][0] * windows[-1][1]))[1]

    monkeypatch.setattr(tiling, "peak_added_by", measured(lambda pixels: 2 * MEMORY(pixels)))
    smaller = tiles_for_budget(size, *args, MEMORY, margin=16, align=32, check=check)
    # The planned window is 352 kept + 2 x 32 margin = 416 px; half its area is checked, then a quarter of that.
    assert windows == [(294, 294), (147, 147)]
    scaled = MemoryModel(2 * MEMORY.fixed + 64 * MiB, 2.6 * MEMORY.per_pixel)
    assert smaller == tiles_for_budget(size, *args, scaled, margin=16, align=32)
    assert smaller[0] < planned[0] and scaled((smaller[0] + 64) ** 2) + 108 * MiB <= 300 * MiB
    # An excess that comes once per call (a layer's weights reordered) stays in the fixed part,
    # not spread over the per-pixel part, where it would shrink large tiles too much.
    windows.clear()
    monkeypatch.setattr(tiling, "peak_added_by", measured(lambda pixels: MEMORY(pixels) + 40 * MiB))
    wide = (600 * MiB, *args[1:])
    once = tiles_for_budget(size, *wide, MEMORY, margin=16, align=32, check=check)
    assert len(windows) == 2
    fixed = MemoryModel(MEMORY.fixed + 40 * MiB + 64 * MiB, 1.3 * MEMORY.per_pixel)
    assert once == tiles_for_budget(size, *wide, fixed, margin=16, align=32)
    # A measured per-pixel part below the estimate's stands (times 1.3), not below the live
    # tensor bytes (the estimate over its factor 2): larger tiles than the estimate alone allows.
    for part, kept in [(0.5, 0.65), (0.2, 0.5)]:
        windows.clear()
        excess = 150 * MiB  # once per call

        def added(pixels, part=part, excess=excess):
            return MEMORY.fixed + excess + part * MEMORY.per_pixel * pixels

        monkeypatch.setattr(tiling, "peak_added_by", measured(added))
        lowered = tiles_for_budget(size, *wide, MEMORY, margin=16, align=32, check=check)
        model = MemoryModel(MEMORY.fixed + excess + 64 * MiB, kept * MEMORY.per_pixel)
        assert lowered == tiles_for_budget(size, *wide, model, margin=16, align=32)
        assert (
            lowered[0]
            > tiles_for_budget(size, *wide, MemoryModel(model.fixed, MEMORY.per_pixel), margin=16, align=32)[0]
        )
    # A window that adds less than estimated keeps the plan; so does a platform that cannot measure.
    monkeypatch.setattr(tiling, "peak_added_by", lambda run, device="cpu": MiB)
    assert tiles_for_budget(size, *args, MEMORY, margin=16, align=32, check=check) == planned
    monkeypatch.setattr(tiling, "peak_added_by", lambda run, device="cpu": None)
    assert tiles_for_budget(size, *args, MEMORY, margin=16, align=32, check=check) == planned


def test_peak_added_by_sees_a_large_temporary_allocation():
    from densepac.tiling import peak_added_by

    added = peak_added_by(lambda: torch.ones(64 * MiB // 4).sum())
    if added is None:
        pytest.skip("this platform does not report the peak resident set")
    assert 48 * MiB <= added <= 160 * MiB


def test_a_too_small_budget_is_checked_on_the_smallest_window_so_its_suggestion_works(monkeypatch):
    from densepac import tiling

    windows = []

    def check(h, w):
        windows.append((h, w))
        return lambda: None

    # The smallest window (32 kept + 2 x 32 margin = 96 px) is checked at half its area (then a
    # quarter of that), and windows really add 3x their estimate.
    monkeypatch.setattr(tiling, "peak_added_by", lambda run, device="cpu": 3 * MEMORY(windows[-1][0] * windows[-1][1]))
    kwargs = {"margin": 16, "align": 32, "min_tile": 32, "what": "tiny", "check": check}
    with pytest.raises(InputError, match=r"give at least (\d+) MiB") as e:
        tiles_for_budget((1000, 1000), 110 * MiB, 100 * MiB, 8 * MiB, MEMORY, **kwargs)
    assert windows == [(68, 68), (34, 34)]
    suggested = int(re.search(r"give at least (\d+) MiB", str(e.value)).group(1)) * MiB
    # 3x, 30 % spare per pixel, the creep
    assert suggested >= 108 * MiB + 3 * MEMORY.fixed + 3.9 * MEMORY.per_pixel * 96 * 96 + 64 * MiB
    tile = tiles_for_budget((1000, 1000), suggested, 100 * MiB, 8 * MiB, MEMORY, **kwargs)  # no error
    assert tile is not None and min(tile) >= 32
