"""Tests for densepac.io: depth/image/label files, atomic writes, tensor helpers."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import densepac.io as dio
from densepac.errors import InputError

FLOAT_FORMATS = (".npy", ".npz", ".pfm", ".tif", ".tiff")


def _exr_supported() -> bool:
    return cv2.haveImageWriter("probe.exr")


@pytest.fixture
def depth() -> np.ndarray:
    """float32 (32, 40) metres in [0.5, 6] with one zero and two non-finite pixels."""
    rng = np.random.default_rng(0)
    d = rng.uniform(0.5, 6.0, size=(32, 40)).astype(np.float32)
    d[0, 0] = 0.0
    d[3, 5] = np.nan
    d[7, 9] = np.inf
    return d


def _expected(depth: np.ndarray) -> np.ndarray:
    out = depth.copy()
    out[~np.isfinite(out)] = 0.0
    return out


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------ depth round trips


@pytest.mark.parametrize("ext", FLOAT_FORMATS)
def test_float_depth_round_trip_is_exact(tmp_path: Path, depth: np.ndarray, ext: str) -> None:
    path = tmp_path / f"d{ext}"
    dio.write_depth(path, depth)
    back = dio.read_depth(path)
    assert back.dtype == np.float32 and back.shape == depth.shape
    np.testing.assert_array_equal(back, _expected(depth))
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("scale", [1000.0, 256.0, 5000.0])
def test_png_depth_round_trip_quantised_by_scale(tmp_path: Path, depth: np.ndarray, scale: float) -> None:
    d = depth  # at most 6 m: fits 16 bits for every scale here
    path = tmp_path / "d.png"
    dio.write_depth(path, d, depth_scale=scale)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.ndim == 2
    np.testing.assert_array_equal(raw, np.round(_expected(d).astype(np.float64) * scale))
    back = dio.read_depth(path, depth_scale=scale)
    assert back.dtype == np.float32
    assert back[0, 0] == 0 and back[3, 5] == 0 and back[7, 9] == 0
    np.testing.assert_allclose(back, _expected(d), atol=0.5 / scale + 1e-6)


def test_exr_round_trip_or_clear_error(tmp_path: Path, depth: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    # Reading EXR opts the process in; setenv makes pytest undo that afterwards.
    monkeypatch.setenv("OPENCV_IO_ENABLE_OPENEXR", "1")
    path = tmp_path / "d.exr"
    if not _exr_supported():
        with pytest.raises(InputError, match="OpenEXR"):
            dio.write_depth(path, depth)
        assert not path.exists()
        return
    dio.write_depth(path, depth)
    np.testing.assert_array_equal(dio.read_depth(path), _expected(depth))


def test_uint16_tiff_read_like_png(tmp_path: Path) -> None:
    raw = np.array([[0, 1500], [65535, 1]], dtype=np.uint16)
    path = tmp_path / "d.tif"
    assert cv2.imwrite(str(path), raw)
    np.testing.assert_allclose(dio.read_depth(path, depth_scale=1000.0), raw / 1000.0, rtol=1e-6)


def test_integer_npy_uses_depth_scale(tmp_path: Path) -> None:
    path = tmp_path / "mm.npy"
    np.save(path, np.array([[0, 2500]], dtype=np.uint16))
    np.testing.assert_allclose(dio.read_depth(path, depth_scale=1000.0), [[0.0, 2.5]])


@pytest.mark.parametrize("shape", [(1, 8, 8), (8, 8, 1)])
def test_npy_singleton_axis_squeezed(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = tmp_path / "d.npy"
    np.save(path, np.ones(shape, np.float32))
    assert dio.read_depth(path).shape == (8, 8)


@pytest.mark.parametrize("shape", [(2, 8, 8), (8,), (2, 2, 8, 8), (0, 4)])
def test_npy_wrong_shape_refused(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = tmp_path / "d.npy"
    np.save(path, np.ones(shape, np.float32))
    with pytest.raises(InputError, match=r"d\.npy.*shape"):
        dio.read_depth(path)


def test_npy_object_array_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.npy"
    np.save(path, np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"d\.npy"):
        dio.read_depth(path)


def test_npz_keys(tmp_path: Path) -> None:
    one = tmp_path / "one.npz"
    np.savez(one, whatever=np.full((4, 4), 2.0, np.float32))
    assert dio.read_depth(one)[0, 0] == 2.0
    named = tmp_path / "named.npz"
    np.savez(named, rgb=np.zeros((4, 4, 3)), depth=np.full((4, 4), 3.0))
    assert dio.read_depth(named)[0, 0] == 3.0
    many = tmp_path / "many.npz"
    np.savez(many, a=np.zeros((4, 4)), b=np.zeros((4, 4)))
    with pytest.raises(InputError, match=r"many\.npz.*'depth'"):
        dio.read_depth(many)


# ------------------------------------------------------------------ PFM


def _pfm_bytes(rows_top_first: np.ndarray, little: bool, magic: bytes = b"Pf") -> bytes:
    h, w = rows_top_first.shape
    scale = b"-1.0" if little else b"1.0"
    fmt = "<" if little else ">"
    bottom_first = rows_top_first[::-1].ravel()
    return magic + b"\n%d %d\n" % (w, h) + scale + b"\n" + struct.pack(f"{fmt}{h * w}f", *bottom_first)


@pytest.mark.parametrize("little", [True, False])
def test_pfm_hand_made_endianness_and_row_order(tmp_path: Path, little: bool) -> None:
    top_first = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    path = tmp_path / "hand.pfm"
    path.write_bytes(_pfm_bytes(top_first, little))
    np.testing.assert_array_equal(dio.read_depth(path), top_first)


def test_pfm_written_file_layout(tmp_path: Path) -> None:
    d = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    path = tmp_path / "w.pfm"
    dio.write_depth(path, d)
    data = path.read_bytes()
    assert data.startswith(b"Pf\n2 2\n-")
    # Little-endian, bottom row first.
    assert data[-16:] == struct.pack("<4f", 3.0, 4.0, 1.0, 2.0)
    # An independent reader agrees.
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), d)


def test_pfm_color_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.pfm"
    path.write_bytes(b"PF\n1 1\n-1.0\n" + struct.pack("<3f", 1, 2, 3))
    with pytest.raises(InputError, match=r"c\.pfm.*3-channel"):
        dio.read_depth(path)


@pytest.mark.parametrize(
    "payload",
    [
        b"P5\n2 2\n255\n" + bytes(4),  # not a PFM
        b"Pf\n2 x\n-1.0\n" + bytes(16),  # bad size
        b"Pf\n2 2\n0\n" + bytes(16),  # zero scale
        b"Pf\n2 2\n-1.0\n" + bytes(10),  # truncated raster
        b"Pf\n2",  # truncated header
    ],
)
def test_pfm_bad_files_refused(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "bad.pfm"
    path.write_bytes(payload)
    with pytest.raises(InputError, match=r"bad\.pfm"):
        dio.read_depth(path)


# ------------------------------------------------------------------ depth refusals


def test_8bit_png_refused_as_depth(tmp_path: Path) -> None:
    path = tmp_path / "d8.png"
    assert cv2.imwrite(str(path), np.full((8, 8), 7, np.uint8))
    with pytest.raises(InputError, match=r"d8\.png.*16-bit.*\.npy"):
        dio.read_depth(path)


def test_color_png_refused_as_depth(tmp_path: Path) -> None:
    path = tmp_path / "rgb16.png"
    img = np.zeros((8, 8, 3), np.uint16)
    img[..., 2] = 1000
    assert cv2.imwrite(str(path), img)
    with pytest.raises(InputError, match="channels"):
        dio.read_depth(path)


@pytest.mark.parametrize("ext", [".npy", ".npz", ".pfm", ".png", ".tiff"])
def test_empty_truncated_and_garbage_depth_refused(tmp_path: Path, depth: np.ndarray, ext: str) -> None:
    good = tmp_path / f"good{ext}"
    dio.write_depth(good, depth)
    data = good.read_bytes()
    cases = {"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"\x00not a depth file" * 4}
    for name, payload in cases.items():
        path = tmp_path / f"{name}{ext}"
        path.write_bytes(payload)
        with pytest.raises(InputError) as info:
            dio.read_depth(path)
        message = str(info.value)
        assert f"{name}{ext}" in message and "\n" not in message


def test_unknown_extension_missing_file_and_directory(tmp_path: Path) -> None:
    odd = tmp_path / "d.jpg"
    odd.write_bytes(b"x")
    with pytest.raises(InputError, match=r"d\.jpg.*\.npy"):
        dio.read_depth(odd)
    with pytest.raises(InputError, match="no such"):
        dio.read_depth(tmp_path / "absent.npy")
    folder = tmp_path / "folder.png"
    folder.mkdir()
    with pytest.raises(InputError, match="directory"):
        dio.read_depth(folder)
    with pytest.raises(InputError, match="extension"):
        dio.write_depth(tmp_path / "d.txt", np.ones((4, 4)))


def test_bad_depth_scale_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="depth_scale"):
        dio.write_depth(tmp_path / "d.png", np.ones((4, 4)), depth_scale=0)


def test_16bit_overflow_refused_and_nothing_written(tmp_path: Path) -> None:
    path = tmp_path / "far.png"
    with pytest.raises(InputError, match=r"far\.png.*--depth-scale.*float"):
        dio.write_depth(path, np.full((4, 4), 70.0, np.float32), depth_scale=1000.0)
    assert list(tmp_path.iterdir()) == []
    dio.write_depth(path, np.full((4, 4), 70.0, np.float32), depth_scale=100.0)
    np.testing.assert_allclose(dio.read_depth(path, depth_scale=100.0), 70.0)


def test_write_depth_refuses_negative_and_bad_shape(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="negative"):
        dio.write_depth(tmp_path / "n.npy", -np.ones((4, 4)))
    with pytest.raises(InputError, match="2-D"):
        dio.write_depth(tmp_path / "n.npy", np.ones((2, 4, 4)))


def test_validate_depth() -> None:
    d = np.array([[1.0, np.nan], [np.inf, 2.0]], dtype=np.float64)
    out = dio.validate_depth(d, "in.npy")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1.0, 0.0], [0.0, 2.0]])
    with pytest.raises(InputError, match=r"in\.npy.*2-D"):
        dio.validate_depth(np.ones((1, 4, 4)), "in.npy")
    with pytest.raises(InputError, match=r"in\.npy.*missing"):
        dio.validate_depth(np.full((4, 4), np.nan), "in.npy")
    with pytest.raises(InputError, match=r"in\.npy.*negative"):
        dio.validate_depth(np.array([[1.0, -0.5]]), "in.npy")


# ------------------------------------------------------------------ images


def test_pure_red_png_keeps_channel_order(tmp_path: Path) -> None:
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    path = tmp_path / "red.png"
    dio.write_image(path, red)
    # OpenCV reads BGR: red must be in its last channel.
    assert cv2.imread(str(path))[0, 0].tolist() == [0, 0, 255]
    back = dio.read_image(path)
    assert back.dtype == np.float32 and back.shape == (16, 16, 3)
    np.testing.assert_array_equal(back[0, 0], [1.0, 0.0, 0.0])


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".bmp", ".tif"])
def test_pure_red_other_formats(tmp_path: Path, ext: str) -> None:
    red = np.zeros((16, 16, 3), np.float32)
    red[..., 0] = 1.0
    path = tmp_path / f"red{ext}"
    dio.write_image(path, red)
    back = dio.read_image(path)
    np.testing.assert_allclose(back[8, 8], [1.0, 0.0, 0.0], atol=0.02)


def test_gray_rgba_and_16bit_images(tmp_path: Path) -> None:
    gray = tmp_path / "gray.png"
    assert cv2.imwrite(str(gray), np.full((8, 8), 51, np.uint8))
    g = dio.read_image(gray)
    assert g.shape == (8, 8, 3)
    np.testing.assert_allclose(g, 0.2, atol=1e-6)

    rgba = tmp_path / "rgba.png"
    bgra = np.zeros((8, 8, 4), np.uint8)
    bgra[..., 0] = 255  # blue
    bgra[..., 3] = 10  # nearly transparent: alpha is dropped, color kept
    assert cv2.imwrite(str(rgba), bgra)
    np.testing.assert_array_equal(dio.read_image(rgba)[0, 0], [0.0, 0.0, 1.0])

    deep = tmp_path / "deep.png"
    bgr16 = np.zeros((8, 8, 3), np.uint16)
    bgr16[..., 1] = 65535
    bgr16[..., 2] = 32768
    assert cv2.imwrite(str(deep), bgr16)
    np.testing.assert_allclose(dio.read_image(deep)[0, 0], [32768 / 65535, 1.0, 0.0], rtol=1e-6)


def test_write_image_uint16_gray_and_float_clipping(tmp_path: Path) -> None:
    path = tmp_path / "g16.png"
    dio.write_image(path, np.full((4, 4), 65535, np.uint16))
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    with pytest.raises(InputError, match="16-bit"):
        dio.write_image(tmp_path / "g16.jpg", np.zeros((4, 4), np.uint16))
    clipped = tmp_path / "clip.png"
    dio.write_image(clipped, np.array([[[-1.0, 0.5, 2.0]]], np.float32))
    np.testing.assert_allclose(dio.read_image(clipped)[0, 0], [0.0, 128 / 255, 1.0])
    with pytest.raises(InputError, match="shape"):
        dio.write_image(tmp_path / "four.png", np.zeros((4, 4, 4), np.uint8))


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_corrupt_images_refused(tmp_path: Path, ext: str) -> None:
    good = tmp_path / f"good{ext}"
    dio.write_image(good, np.random.default_rng(1).random((32, 32, 3)))
    data = good.read_bytes()
    for name, payload in {"empty": b"", "trunc": data[: len(data) // 2], "junk": b"junk" * 10}.items():
        path = tmp_path / f"{name}{ext}"
        path.write_bytes(payload)
        with pytest.raises(InputError, match=rf"{name}\{ext}"):
            dio.read_image(path)


def test_image_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "x.gif"
    path.write_bytes(b"GIF89a")
    with pytest.raises(InputError, match=r"x\.gif.*\.png"):
        dio.read_image(path)


# ------------------------------------------------------------------ labels


def test_label_palette_round_trip(tmp_path: Path) -> None:
    labels = np.array([[0, 1, 2], [15, 20, 255]], dtype=np.int64)
    path = tmp_path / "lab.png"
    dio.write_label(path, labels)
    with Image.open(path) as im:
        assert im.mode == "P"
        palette = np.array(im.getpalette()[: 3 * 3]).reshape(3, 3)
    np.testing.assert_array_equal(palette, [[0, 0, 0], [128, 0, 0], [0, 128, 0]])
    back = dio.read_label(path)
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, labels)


def test_label_custom_palette_and_gray_pngs(tmp_path: Path) -> None:
    labels = np.array([[0, 1], [1, 0]])
    custom = tmp_path / "custom.png"
    dio.write_label(custom, labels, palette=np.array([[9, 9, 9], [200, 100, 50]], np.uint8))
    np.testing.assert_array_equal(dio.read_label(custom), labels)

    gray8 = tmp_path / "gray8.png"
    Image.fromarray(np.array([[3, 255]], np.uint8)).save(gray8)
    np.testing.assert_array_equal(dio.read_label(gray8), [[3, 255]])

    gray16 = tmp_path / "gray16.png"
    assert cv2.imwrite(str(gray16), np.array([[300, 7]], np.uint16))
    np.testing.assert_array_equal(dio.read_label(gray16), [[300, 7]])


def test_label_refusals_and_npy(tmp_path: Path) -> None:
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(rgb)
    with pytest.raises(InputError, match=r"rgb\.png.*indexed"):
        dio.read_label(rgb)
    big = np.array([[0, 300]])
    with pytest.raises(InputError, match=r"\.npy"):
        dio.write_label(tmp_path / "big.png", big)
    dio.write_label(tmp_path / "big.npy", big)
    np.testing.assert_array_equal(dio.read_label(tmp_path / "big.npy"), big)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(InputError, match=r"junk\.png"):
        dio.read_label(junk)


# ------------------------------------------------------------------ atomic_write


def test_atomic_write_keeps_suffix_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with dio.atomic_write(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name.startswith(".out.tmp")
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new"
    assert _leftovers(tmp_path) == []


def test_atomic_write_cleans_up_on_exception(tmp_path: Path) -> None:
    target = tmp_path / "out.npy"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), dio.atomic_write(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"]


def test_atomic_write_refusals(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"), dio.atomic_write(tmp_path / "nope" / "out.png"):
        pass
    existing = tmp_path / "exists.npy"
    existing.write_bytes(b"keep")
    with pytest.raises(InputError, match=r"exists\.npy.*already exists"), dio.atomic_write(existing, overwrite=False):
        pass
    with pytest.raises(InputError, match="already exists"):
        dio.write_depth(existing, np.ones((4, 4)), overwrite=False)
    assert existing.read_bytes() == b"keep"
    with pytest.raises(InputError, match="directory"), dio.atomic_write(tmp_path):
        pass
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_atomic_write_refuses_read_only_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(InputError, match="not writable"):
            dio.write_depth(locked / "d.npy", np.ones((4, 4)))
    finally:
        locked.chmod(0o700)


def test_atomic_write_refuses_unwritable_directory_as_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Runs even as root, where real permission bits are not enforced.
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(InputError, match="not writable"):
        dio.write_image(tmp_path / "x.png", np.zeros((4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_exr_respects_explicit_opt_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCV_IO_ENABLE_OPENEXR", "0")
    with pytest.raises(InputError, match="OPENCV_IO_ENABLE_OPENEXR=1"):
        dio.write_depth(tmp_path / "d.exr", np.ones((4, 4)))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_write_result_follows_umask(tmp_path: Path) -> None:
    target = tmp_path / "perm.npy"
    dio.write_depth(target, np.ones((4, 4)))
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


# ------------------------------------------------------------------ tensors


def test_tensor_helpers_round_trip() -> None:
    d = np.array([[1.0, np.nan], [0.5, 2.0]], dtype=np.float64)
    t = dio.depth_to_tensor(d)
    assert t.shape == (1, 1, 2, 2) and t.dtype == torch.float32
    back = dio.tensor_to_depth(t)
    assert back.dtype == np.float32 and back.shape == (2, 2)
    np.testing.assert_array_equal(back, [[1.0, 0.0], [0.5, 2.0]])

    img = np.zeros((2, 3, 3), np.uint8)
    img[..., 0] = 255
    ti = dio.image_to_tensor(img)
    assert ti.shape == (1, 3, 2, 3) and ti.dtype == torch.float32
    assert float(ti[0, 0].min()) == 1.0 and float(ti[0, 1:].max()) == 0.0
    np.testing.assert_array_equal(dio.tensor_to_image(ti), img / 255.0)

    with pytest.raises(InputError):
        dio.tensor_to_depth(torch.zeros(2, 1, 4, 4))
    with pytest.raises(InputError):
        dio.depth_to_tensor(np.zeros((1, 4, 4)))


def test_png_depth_is_rounded_in_bands_like_a_whole_image_rounding(depth):
    from densepac.io.depth import _to_uint16

    finite = np.where(np.isfinite(depth), depth, 0).astype(np.float32)
    finite[1, 1] = 2.0005  # a half millimetre: rounds to even (2000)
    want = np.round(finite.astype(np.float64) * 1000).astype(np.uint16)
    for rows in (1, 5, 32, 1000):
        np.testing.assert_array_equal(_to_uint16(finite, 1000.0, rows=rows), want)
