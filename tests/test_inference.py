import numpy as np
import pytest
import torch
from click.testing import CliRunner

from densepac import inference
from densepac.errors import InputError
from densepac.inference import (check_scale, default_depth_model, depth_memory_model, depth_tiles_for_budget,
                                segment_image, segmentation_memory_model, segmentation_tiles_for_budget,
                                tiled_segment, upsample_depth)
from densepac.models import create_model
from densepac.ops.crf import CRFWrapped, PacCRF
from densepac.tiling import plan_tiles


def test_check_scale():
    assert check_scale((30, 40), (240, 320), None) == 8
    assert check_scale((30, 40), (240, 320), 8) == 8
    with pytest.raises(InputError, match="240x320 is 8x the depth 30x40, not --scale 4"):
        check_scale((30, 40), (240, 320), 4)
    with pytest.raises(InputError, match="expected a guide of 240x320"):
        check_scale((30, 40), (241, 320), None)
    with pytest.raises(InputError, match="factors 2 to"):
        check_scale((30, 40), (30, 40), None)


def test_upsample_depth_tiling_matches_untiled():
    rng = np.random.default_rng(0)
    lr = (rng.random((20, 30)) + 1).astype(np.float32)
    rgb = rng.random((80, 120, 3)).astype(np.float32)
    m = create_model("joint_bilateral")
    np.testing.assert_allclose(upsample_depth(m, lr, rgb, tile=7), upsample_depth(m, lr, rgb, tile=0), atol=1e-5)


def test_default_model_is_a_depth_model():
    assert create_model(default_depth_model(8)).task == "depth"


def test_tile_with_no_valid_depth_is_filled_from_the_image():
    rng = np.random.default_rng(1)
    lr = (rng.random((24, 24)) + 1).astype(np.float32)
    lr[:12, :12] = 0  # the whole first tile (and its margin's inner part) is missing
    rgb = rng.random((96, 96, 3)).astype(np.float32)
    for name in ("bicubic", "pac_jointupsample_x4"):
        m = create_model(name)
        tiled = upsample_depth(m, lr, rgb, tile=8)
        assert np.isfinite(tiled).all()
        np.testing.assert_allclose(tiled, upsample_depth(m, lr, rgb, tile=0), atol=1e-4)
    assert (upsample_depth(create_model("bicubic"), lr, rgb, tile=8)[:48, :48] >= 1).all()  # filled, not zero


# --- bounded memory: budgets pick the tiles ---------------------------------------------------

SEG_KW = {"num_classes": 5, "widths": [8, 8, 16, 16, 16], "fc_channels": 16}


@pytest.fixture
def nothing_in_use(monkeypatch):
    """Plan as if the process held no memory, so budgets in tests do not depend on pytest's own."""
    monkeypatch.setattr(inference, "memory_in_use", lambda device: 0)


def _depth_pair(h=24, w=40, s=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((h, w)) + 1).astype(np.float32), rng.random((h * s, w * s, 3)).astype(np.float32)


def test_depth_budget_tiles_equal_untiled(nothing_in_use):
    lr, rgb = _depth_pair()
    m = create_model("joint_bilateral")
    d, g = torch.from_numpy(lr)[None, None], torch.from_numpy(rgb).permute(2, 0, 1)[None]
    memory = depth_memory_model(m, 4)
    whole = memory(24 * 40)
    assert depth_tiles_for_budget(m, d, g, whole) is None  # fits: untiled
    budget = memory(20 * 20) + 24 * 40 * 4 * (2 * 16 + 8)  # windows of 20 LR px: 8 kept + 2 x 6 margin
    tile = depth_tiles_for_budget(m, d, g, budget)
    assert tile == (8, 8) and len(plan_tiles((24, 40), tile, m.tile_margin)) == 15
    untiled = upsample_depth(m, lr, rgb, tile=0)
    np.testing.assert_allclose(upsample_depth(m, lr, rgb, max_memory=budget), untiled, atol=1e-5)
    np.testing.assert_array_equal(upsample_depth(m, lr, rgb, max_memory=whole), untiled)
    with pytest.raises(InputError, match="give a tile size or a memory budget, not both"):
        upsample_depth(m, lr, rgb, tile=8, max_memory=budget)


def test_depth_budget_too_small_names_the_minimum():
    lr, rgb = _depth_pair()
    with pytest.raises(InputError, match=r"budget of 1 MiB is too small for joint_bilateral on a 40x24 LR px \(x4\) "
                                         r"image: give at least \d+ MiB"):
        upsample_depth(create_model("joint_bilateral"), lr, rgb, max_memory="1MiB")


def test_depth_budget_in_a_real_process():
    lr, rgb = _depth_pair()
    m = create_model("joint_bilateral")
    np.testing.assert_array_equal(upsample_depth(m, lr, rgb, max_memory="64GiB"), upsample_depth(m, lr, rgb, tile=0))


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


@pytest.mark.parametrize("crf_kwargs", [None, {"num_steps": 2, "kernels": [(3, 1)], "dilation_reference": 64}],
                         ids=["fcn", "fcn+crf"])
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


def test_segment_image_budget(nothing_in_use):
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


def test_cli_max_memory(tmp_path):
    from densepac.cli import main
    from densepac.data.io import read_depth, read_label, write_image
    from densepac.models import save_weights

    lr, rgb = _depth_pair(8, 12, 4)
    np.save(tmp_path / "d.npy", lr)
    write_image(tmp_path / "g.png", rgb)
    run = lambda *a: CliRunner().invoke(main, [str(v) for v in a])  # noqa: E731
    up = ["upsample", tmp_path / "d.npy", tmp_path / "g.png", "--model", "joint_bilateral", "--device", "cpu"]
    assert run(*up, "-o", tmp_path / "a.npy").exit_code == 0
    r = run(*up, "-o", tmp_path / "b.npy", "--max-memory", "64GiB")
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(read_depth(tmp_path / "b.npy"), read_depth(tmp_path / "a.npy"))
    for bad, message in [("lots", "not a memory size"), ("2XB", "unknown unit"), ("0", "not a positive")]:
        r = run(*up, "-o", tmp_path / "c.npy", "--max-memory", bad)
        assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = run(*up, "-o", tmp_path / "c.npy", "--max-memory", "1MiB")
    assert r.exit_code == 2 and "too small for joint_bilateral" in r.output and "give at least" in r.output
    r = run(*up, "-o", tmp_path / "c.npy", "--max-memory", "1GiB", "--tile", "8")
    assert r.exit_code == 2 and "both given" in r.output
    assert not (tmp_path / "c.npy").exists()

    torch.manual_seed(0)
    kw = {"num_classes": 3, "widths": [4, 4, 8, 8, 8], "fc_channels": 8}
    weights = save_weights(create_model("fcn8s_vgg16", **kw), "tiny_fcn", "fcn8s_vgg16", tmp_path, kwargs=kw)
    seg = ["segment", tmp_path / "g.png", "--weights", weights, "--device", "cpu"]
    assert run(*seg, "-o", tmp_path / "s1").exit_code == 0
    r = run(*seg, "-o", tmp_path / "s2", "--max-memory", "64GiB", "--crf")
    assert r.exit_code == 0, r.output
    assert read_label(tmp_path / "s2" / "g.png").shape == (32, 48)
    r = run(*seg, "-o", tmp_path / "s3", "--max-memory", "1MiB")
    assert r.exit_code == 2 and "too small for fcn8s_vgg16" in r.output, r.output
    assert not (tmp_path / "s3" / "g.png").exists()
