"""Depth datasets read tiny files in the real on-disk layouts, the right way up."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from densepac.depth.datasets import FolderDepth, MiddleburyDepth, NYUv2Depth, SyntheticDepth, read_middlebury_calib
from densepac.depth.degrade import downsample_point
from densepac.depth.transforms import DepthTransform
from densepac.errors import InputError
from densepac.io.depth import write_depth
from densepac.io.images import write_image

H, W = 16, 24


def _frame(i: int) -> tuple[np.ndarray, np.ndarray]:
    """An asymmetric frame: rgb uint8 (H, W, 3) and depth (H, W) that encode (i, y, x)."""
    y, x = np.mgrid[0:H, 0:W]
    rgb = np.stack([y * 10 + i, x * 10, np.full_like(x, 200 - i)], axis=-1).astype(np.uint8)
    depth = (1.0 + 0.1 * i + 0.2 * y + 0.01 * x).astype(np.float32)
    return rgb, depth


def _check_item(item: dict, h: int, w: int, scale: int) -> None:
    assert item["rgb"].shape == (3, h, w) and item["rgb"].dtype == torch.float32
    assert item["depth"].shape == (1, h, w) and item["depth"].dtype == torch.float32
    assert item["depth_lr"].shape == (1, h // scale, w // scale)
    assert isinstance(item["name"], str)


# --------------------------------------------------------------------------- NYU


@pytest.fixture()
def nyu_mat(tmp_path: Path) -> Path:
    """A 5-frame nyu_depth_v2_labeled.mat look-alike, written the way MATLAB -v7.3 does.

    MATLAB holds ``images`` as H x W x 3 x N in column-major order; its HDF5 writer stores
    that memory as a C-order dataset with the dimensions reversed, (N, 3, W, H).
    """
    n = 5
    frames = [_frame(i) for i in range(n)]
    images_matlab = np.stack([f[0] for f in frames], axis=-1)  # (H, W, 3, N)
    depths_matlab = np.stack([f[1] for f in frames], axis=-1)  # (H, W, N)
    raw = depths_matlab.copy()
    raw[0, 0, :] = 0.0
    path = tmp_path / "nyu_depth_v2_labeled.mat"
    # MATLAB v7.3 files are HDF5 with a 512-byte user block holding the MATLAB header.
    with h5py.File(path, "w", userblock_size=512) as f:
        f["images"] = images_matlab.ravel(order="F").reshape(images_matlab.shape[::-1])
        f["depths"] = depths_matlab.ravel(order="F").reshape(depths_matlab.shape[::-1]).astype(np.float32)
        f["rawDepths"] = raw.ravel(order="F").reshape(raw.shape[::-1]).astype(np.float32)
        f["labels"] = np.zeros((n, W, H), dtype=np.uint16)
    assert h5py.File(path, "r")["images"].shape == (n, 3, W, H)
    return path


def test_nyu_orientation_and_values(nyu_mat):
    ds = NYUv2Depth(nyu_mat, split="all", scale=8)
    assert len(ds) == 5
    for i in (0, 3):
        item = ds[i]
        _check_item(item, H, W, 8)
        rgb, depth = _frame(i)
        np.testing.assert_allclose(item["rgb"].permute(1, 2, 0).numpy(), rgb / 255.0, atol=1e-6)
        np.testing.assert_allclose(item["depth"][0].numpy(), depth, rtol=1e-6)
        # Top-left is the smallest depth, bottom-right the largest: not flipped or transposed.
        d = item["depth"][0]
        assert d[0, 0] < d[0, -1] < d[-1, 0] < d[-1, -1]
        assert item["name"] == f"nyu_{i:04d}"
        np.testing.assert_array_equal(item["depth_lr"][0].numpy(), downsample_point(depth, 8))


def test_nyu_split_sizes(nyu_mat):
    train = NYUv2Depth(nyu_mat, split="train", num_train=3)
    test = NYUv2Depth(nyu_mat, split="test", num_train=3)
    assert (len(train), len(test)) == (3, 2)
    assert test[0]["name"] == "nyu_0003"
    assert [train[i]["name"] for i in range(3)] == ["nyu_0000", "nyu_0001", "nyu_0002"]
    with pytest.raises(IndexError):
        train[3]


def test_nyu_default_split_is_official(nyu_mat):
    # 1000 training frames do not exist in a 5-frame file: the error says so.
    with pytest.raises(InputError, match="num_train"):
        NYUv2Depth(nyu_mat, split="train")


def test_nyu_border_crop_and_raw(nyu_mat):
    ds = NYUv2Depth(nyu_mat, split="all", scale=4, crop=(1, 3, 2, 6), raw=True)
    item = ds[1]
    _check_item(item, 12, 16, 4)
    _, depth = _frame(1)
    np.testing.assert_allclose(item["depth"][0].numpy(), depth[1:13, 2:18], rtol=1e-6)
    full = NYUv2Depth(nyu_mat, split="all", scale=8, raw=True)[1]
    assert full["depth"][0, 0, 0] == 0.0  # rawDepths hole kept as missing


def test_nyu_pickles_without_handle_and_works_in_loader(nyu_mat):
    ds = NYUv2Depth(nyu_mat, split="all", scale=8)
    ds[0]  # opens the file in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[2]["depth"], ds[2]["depth"])
    batch = next(iter(DataLoader(ds, batch_size=5)))
    assert batch["depth"].shape == (5, 1, H, W)
    ds.close()


def test_nyu_errors(tmp_path, nyu_mat):
    with pytest.raises(InputError, match="no such file"):
        NYUv2Depth(tmp_path / "missing.mat")
    bogus = tmp_path / "old.mat"
    bogus.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(InputError, match="v7.3"):
        NYUv2Depth(bogus)
    with pytest.raises(InputError, match="split"):
        NYUv2Depth(nyu_mat, split="val", num_train=3)
    with pytest.raises(InputError, match="empty"):
        NYUv2Depth(nyu_mat, split="test", num_train=5)
    other = tmp_path / "other.mat"
    with h5py.File(other, "w") as f:
        f["images"] = np.zeros((2, 3, W, H), np.uint8)
    with pytest.raises(InputError, match="'depths'"):
        NYUv2Depth(other)


# --------------------------------------------------------------------------- Middlebury


def _write_pfm(path: Path, values: np.ndarray) -> None:
    """Little-endian PFM, rows bottom-to-top, exactly as Middlebury's SDK writes."""
    h, w = values.shape
    header = f"Pf\n{w} {h}\n-1\n".encode()
    path.write_bytes(header + np.ascontiguousarray(values[::-1], dtype="<f4").tobytes())


CALIB = (
    "cam0=[1000.5 0 12.5; 0 1000.5 8.5; 0 0 1]\ncam1=[1000.5 0 15.5; 0 1000.5 8.5; 0 0 1]\n"
    "doffs=3\nbaseline=200.0\nwidth=24\nheight=16\nndisp=64\n"
)


@pytest.fixture()
def middlebury(tmp_path: Path) -> Path:
    root = tmp_path / "middlebury"
    y, x = np.mgrid[0:H, 0:W]
    for k, name in enumerate(["Adirondack", "Motorcycle"]):
        scene = root / name
        scene.mkdir(parents=True)
        rgb, _ = _frame(k)
        write_image(scene / "im0.png", rgb)
        disp = (40.0 + 2.0 * x - 1.0 * y + k).astype(np.float32)  # larger (nearer) on the right
        disp[0, 0] = np.inf  # Middlebury marks unknown disparity as inf
        disp[H - 1, 0] = 0.0
        _write_pfm(scene / ("disp0.pfm" if k == 0 else "disp0GT.pfm"), disp)
        (scene / "calib.txt").write_text(CALIB)
    return root


def test_middlebury_depth_from_disparity(middlebury):
    calib = read_middlebury_calib(middlebury / "Adirondack" / "calib.txt")
    assert (calib.focal, calib.doffs, calib.baseline) == (1000.5, 3.0, 200.0)
    ds = MiddleburyDepth(middlebury, scale=8)
    assert len(ds) == 2 and ds[1]["name"] == "Motorcycle"
    item = ds[0]
    _check_item(item, H, W, 8)
    d = item["depth"][0].numpy()
    y, x = 5, 7
    expected = 200.0 * 1000.5 / ((40.0 + 2 * x - y) + 3.0) / 1000.0
    assert d[y, x] == pytest.approx(expected, rel=1e-5)
    assert d[0, 0] == 0.0 and d[H - 1, 0] == 0.0  # inf and 0 disparity are missing
    # Orientation: PFM rows are stored bottom-up; depth shrinks to the right, grows downward.
    assert d[1, 0] > d[1, -1] and d[-2, 3] > d[1, 3]
    np.testing.assert_allclose(item["rgb"].permute(1, 2, 0).numpy(), _frame(0)[0] / 255.0, atol=1e-6)


def test_middlebury_as_disparity_and_downscale(middlebury):
    ds = MiddleburyDepth(middlebury / "Adirondack", scale=4, as_disparity=True)
    assert len(ds) == 1
    disp = ds[0]["depth"][0].numpy()
    assert disp[5, 7] == pytest.approx(40.0 + 14 - 5)
    half = MiddleburyDepth(middlebury / "Adirondack", scale=4, as_disparity=True, downscale=2)[0]
    _check_item(half, H // 2, W // 2, 4)
    # Point sample at offset 1 of each 2x2 block, disparity halved.
    assert half["depth"][0, 2, 3].item() == pytest.approx((40.0 + 2 * 7 - 5) / 2)
    metric = MiddleburyDepth(middlebury / "Adirondack", scale=4, downscale=2)[0]
    assert metric["depth"][0, 2, 3].item() == pytest.approx(200.0 * 1000.5 / (49.0 + 3.0) / 1000.0, rel=1e-5)


def test_middlebury_errors(tmp_path, middlebury):
    (middlebury / "Adirondack" / "calib.txt").unlink()
    with pytest.raises(InputError, match="Adirondack"):
        MiddleburyDepth(middlebury)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no scene"):
        MiddleburyDepth(empty)
    bad = tmp_path / "calib.txt"
    bad.write_text("doffs=1\n")
    with pytest.raises(InputError, match="cam0"):
        read_middlebury_calib(bad)


# --------------------------------------------------------------------------- folders


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "folder"
    for sub in ("rgb", "depth"):
        (root / sub).mkdir(parents=True)
    for i, stem in enumerate(["b", "a"]):
        rgb, depth = _frame(i)
        write_image(root / "rgb" / f"{stem}.png", rgb)
        write_depth(root / "depth" / f"{stem}.png", depth)  # 16-bit mm
    return root


def test_folder_reads_pairs(folder):
    ds = FolderDepth(folder, scale=8)
    assert len(ds) == 2
    item = ds[0]
    assert item["name"] == "a"
    _check_item(item, H, W, 8)
    _, depth = _frame(1)
    np.testing.assert_allclose(item["depth"][0].numpy(), depth, atol=6e-4)  # mm quantisation
    assert item["depth"][0, 0, 0] < item["depth"][0, -1, -1]


def test_folder_npy_depth_and_jpg(tmp_path):
    root = tmp_path / "f"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb, depth = _frame(2)
    write_image(root / "rgb" / "x.jpg", rgb)
    np.save(root / "depth" / "x.npy", depth)
    item = FolderDepth(root, scale=4)[0]
    np.testing.assert_array_equal(item["depth"][0].numpy(), depth)


def test_folder_unmatched_stems_listed(folder):
    write_image(folder / "rgb" / "lonely.png", _frame(0)[0])
    write_depth(folder / "depth" / "orphan.npy", _frame(0)[1])
    with pytest.raises(InputError, match=r"rgb without depth: lonely.*depth without rgb: orphan"):
        FolderDepth(folder)


def test_folder_missing_subfolder(tmp_path):
    with pytest.raises(InputError, match="'rgb' folder"):
        FolderDepth(tmp_path)


def test_folder_given_lr_used_instead_of_simulation(folder):
    (folder / "depth_lr").mkdir()
    for stem in ("a", "b"):
        write_depth(folder / "depth_lr" / f"{stem}.npy", np.full((H // 8, W // 8), 3.25, np.float32))
    item = FolderDepth(folder, scale=8)[0]
    assert torch.all(item["depth_lr"] == 3.25)
    simulated = FolderDepth(folder, scale=8, given_lr=False)[0]
    assert not torch.all(simulated["depth_lr"] == 3.25)


def _rewrite_folder(folder: Path, depth: np.ndarray) -> None:
    (folder / "depth_lr").mkdir()
    for stem in ("a", "b"):
        write_image(folder / "rgb" / f"{stem}.png", np.zeros(depth.shape + (3,), np.uint8))
        (folder / "depth" / f"{stem}.png").unlink()
        write_depth(folder / "depth" / f"{stem}.npy", depth)
        write_depth(folder / "depth_lr" / f"{stem}.npy", downsample_point(depth, 8))


def test_folder_given_lr_follows_aligned_crop(folder):
    y, x = np.mgrid[0:32, 0:48]
    _rewrite_folder(folder, (1.0 + y * 0.1 + x * 0.003).astype(np.float32))
    t = DepthTransform(crop=(16, 24), hflip=False, multiple_of=8, crop_step=8, seed=0)
    ds = FolderDepth(folder, scale=8, transform=t)
    for _ in range(4):
        item = ds[0]
        hr = item["depth"][0].numpy()
        assert hr.shape == (16, 24)
        # Same sampling phase after the crop: the given LR is still HR[s//2::s].
        np.testing.assert_array_equal(item["depth_lr"][0].numpy(), downsample_point(hr, 8))


def test_folder_given_lr_follows_flips(folder):
    # Block-constant depth: a flip moves whole 8x8 cells, so LR and HR stay consistent.
    rng = np.random.default_rng(0)
    cells = rng.uniform(1.0, 5.0, size=(4, 6)).astype(np.float32)
    _rewrite_folder(folder, np.kron(cells, np.ones((8, 8), np.float32)))
    t = DepthTransform(hflip=True, vflip=True, multiple_of=8, crop_step=8, seed=0)
    ds = FolderDepth(folder, scale=8, transform=t)
    seen = set()
    for _ in range(8):
        item = ds[0]
        lr = item["depth_lr"][0].numpy()
        np.testing.assert_array_equal(lr, downsample_point(item["depth"][0].numpy(), 8))
        seen.add(float(lr[0, 0]))
    assert len(seen) > 1  # flips did happen


def test_folder_given_lr_errors(folder):
    (folder / "depth_lr").mkdir()
    write_depth(folder / "depth_lr" / "a.npy", np.ones((3, 3), np.float32))
    with pytest.raises(InputError, match="no low-resolution map for b"):
        FolderDepth(folder, scale=8)
    write_depth(folder / "depth_lr" / "b.npy", np.ones((3, 3), np.float32))
    with pytest.raises(InputError, match="not 1/8"):
        FolderDepth(folder, scale=8)[0]
    with pytest.raises(InputError, match="crop_step"):
        FolderDepth(folder, scale=8, transform=DepthTransform(crop=(8, 16), multiple_of=8))
    with pytest.raises(InputError, match="misalign"):
        FolderDepth(folder, scale=8, transform=DepthTransform(rotate=10))


# --------------------------------------------------------------------------- synthetic


def test_synthetic_deterministic_items():
    ds = SyntheticDepth(3, seed=4, size=(32, 48), scale=8, noise=0.002, holes=0.05)
    again = SyntheticDepth(3, seed=4, size=(32, 48), scale=8, noise=0.002, holes=0.05)
    a, b = ds[1], again[1]
    _check_item(a, 32, 48, 8)
    for key in ("rgb", "depth", "depth_lr"):
        assert torch.equal(a[key], b[key])
    assert a["name"] == "synthetic_4_000001"
    assert not torch.equal(ds[0]["depth"], ds[1]["depth"])
    assert not torch.equal(SyntheticDepth(3, seed=5, size=(32, 48))[1]["depth"], a["depth"])


def test_synthetic_matches_point_protocol():
    item = SyntheticDepth(1, size=(32, 32), scale=4)[0]
    np.testing.assert_array_equal(item["depth_lr"][0].numpy(), downsample_point(item["depth"][0].numpy(), 4))
    bic = SyntheticDepth(1, size=(32, 32), scale=4, protocol="bicubic")[0]
    assert torch.equal(bic["depth"], item["depth"]) and not torch.equal(bic["depth_lr"], item["depth_lr"])


def test_synthetic_transform_applied_before_simulation():
    t = DepthTransform(crop=(24, 32), multiple_of=8, seed=0)
    item = SyntheticDepth(2, size=(32, 48), scale=8, transform=t)[0]
    _check_item(item, 24, 32, 8)
    np.testing.assert_array_equal(item["depth_lr"][0].numpy(), downsample_point(item["depth"][0].numpy(), 8))


def test_synthetic_in_dataloader():
    batch = next(iter(DataLoader(SyntheticDepth(4, size=(32, 32), scale=8), batch_size=4)))
    assert batch["rgb"].shape == (4, 3, 32, 32) and len(batch["name"]) == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(size=(30, 32)), "divisible"),
        (dict(num_scenes=0), "num_scenes"),
        (dict(protocol="nearest"), "protocol"),
        (dict(scale=3.5), "scale"),
        (dict(scene_options={"nonsense": 1}), "unknown option"),
        (dict(transform="flip"), "callable"),
    ],
)
def test_synthetic_errors(kwargs, match):
    args = dict(num_scenes=2, size=(32, 32), scale=8)
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        SyntheticDepth(**args)


def test_default_synthetic_size_fits_any_scale():
    """`densepac eval --scale 3` needs no size option: the default scene size is cropped to the scale."""
    from densepac.depth.datasets import make_depth_dataset

    item = make_depth_dataset("synthetic", "test", 3, num_scenes=1)[0]
    assert tuple(item["depth"].shape[-2:]) == (240, 318) and tuple(item["depth_lr"].shape[-2:]) == (80, 106)
