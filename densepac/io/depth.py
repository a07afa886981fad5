"""Depth files: reading, writing and tensor helpers.

Depth maps are float32 ``(H, W)`` in metres; ``0`` or a non-finite value means missing.
Readers return missing pixels as ``0``; writers store them as ``0``.

Units: float data (``.npy``/``.npz``/``.pfm``/float ``.tiff``/``.exr``) are metres. Integer
data (16-bit ``.png``, integer ``.tiff``, integer arrays in ``.npy``/``.npz``) hold
``depth_scale`` units per metre (1000 = millimetres) and are divided by it on reading.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import torch

from densepac.check import check_depth_array
from densepac.errors import InputError
from densepac.io.files import (
    UINT16_MAX,
    PathLike,
    atomic_write,
    corrupt_file_error,
    cv2_decode,
    cv2_encode,
    finite_or_zero,
    read_bytes,
    require_extension,
    write_bytes,
)

#: Largest depth accepted, in metres (100 km: far beyond LiDAR and stereo ranges).
MAX_DEPTH = 1e5
DEPTH_EXTENSIONS: tuple[str, ...] = (".npy", ".npz", ".pfm", ".png", ".tif", ".tiff", ".exr")


_FLOAT_DEPTH_HINT = "a float format (.npy, .npz, .pfm, .tiff)"


_EXR_ENV = "OPENCV_IO_ENABLE_OPENEXR"


def check_depth_scale(depth_scale: float, path: PathLike) -> float:
    """``depth_scale`` (units per metre of integer depth files) as a positive float; ``path`` names the input."""
    scale = float(depth_scale)
    if not math.isfinite(scale) or scale <= 0:
        raise InputError(
            f"{path}: depth_scale must be a positive number of units per metre, got "
            f"{depth_scale!r}; use e.g. --depth-scale 1000 for millimetres"
        )
    return scale


def _enable_exr(path: Path) -> None:
    """Opt OpenCV into OpenEXR for this process, because the user asked for an EXR file.

    OpenCV ships the codec disabled (the parser has had security bugs) and reads the
    switch lazily, at the first EXR call, so setting it here is effective. An explicit
    user choice in the environment is respected, never overridden.
    """
    value = os.environ.setdefault(_EXR_ENV, "1")
    if value.strip().lower() not in ("1", "true", "on", "yes"):
        raise InputError(
            f"{path}: OpenEXR is disabled in OpenCV ({_EXR_ENV}={value}); set {_EXR_ENV}=1 "
            f"or convert the depth to {_FLOAT_DEPTH_HINT}"
        )
    if not cv2.haveImageWriter("probe.exr"):
        raise InputError(
            f"{path}: this OpenCV build cannot read or write OpenEXR; convert the depth to {_FLOAT_DEPTH_HINT}"
        )


def _parse_pfm(path: Path, data: bytes) -> np.ndarray:
    """Decode a grayscale PFM file: header ``Pf``/width/height/scale, then float32 rows.

    A negative scale means little-endian samples; rows are stored bottom-to-top.
    Returns float32 ``(H, W)`` top row first.
    """
    header = data[:256]
    tokens: list[bytes] = []
    pos = 0
    for _ in range(4):
        while pos < len(header) and header[pos : pos + 1].isspace():
            pos += 1
        start = pos
        while pos < len(header) and not header[pos : pos + 1].isspace():
            pos += 1
        tokens.append(header[start:pos])
    if pos >= len(header) or not all(tokens):
        raise corrupt_file_error(path, "depth", "PFM (bad header)")
    magic = tokens[0]
    if magic == b"PF":
        raise InputError(
            f"{path}: 3-channel PFM (PF) is a color image, not depth; save depth as a single-channel Pf file or .npy"
        )
    if magic != b"Pf":
        raise corrupt_file_error(path, "depth", "PFM (missing 'Pf' magic)")
    try:
        width, height, scale = int(tokens[1]), int(tokens[2]), float(tokens[3])
    except ValueError as exc:
        raise corrupt_file_error(path, "depth", "PFM (bad header)") from exc
    if width <= 0 or height <= 0 or scale == 0 or not math.isfinite(scale):
        raise corrupt_file_error(path, "depth", "PFM (bad size or scale)")
    need = width * height * 4
    # Exactly one whitespace byte ends the header; tolerate Windows "\r\n" when the size
    # says so.
    if data[pos : pos + 2] == b"\r\n" and len(data) - pos - 2 == need:
        pos += 2
    else:
        pos += 1
    raster = data[pos : pos + need]
    if len(raster) < need:
        raise InputError(
            f"{path}: PFM file is truncated ({len(raster)} of {need} data bytes); re-export or re-download it"
        )
    dtype = np.dtype("<f4") if scale < 0 else np.dtype(">f4")
    rows = np.frombuffer(raster, dtype=dtype).reshape(height, width)
    return rows[::-1].astype(np.float32)


def _encode_pfm(depth: np.ndarray) -> bytes:
    """Little-endian grayscale PFM bytes for float32 ``(H, W)`` depth."""
    height, width = depth.shape
    header = f"Pf\n{width} {height}\n-1.0\n".encode("ascii")
    return header + np.ascontiguousarray(depth[::-1], dtype="<f4").tobytes()


def _squeeze_depth_array(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(
            f"{path}: depth array has shape {tuple(arr.shape)}; save a 2-D (H, W) array (or (1, H, W) / (H, W, 1))"
        )
    return arr


def _single_channel(arr: np.ndarray, path: Path) -> np.ndarray:
    """One channel of an image-format depth map; refuses real color images."""
    if arr.ndim == 2:
        return arr
    channels = arr[..., :3] if arr.shape[2] == 4 else arr
    if all(np.array_equal(channels[..., 0], channels[..., c]) for c in range(1, channels.shape[2])):
        # Gray depth saved with replicated channels (common for EXR/TIFF exporters).
        return channels[..., 0]
    raise InputError(
        f"{path}: depth image has {arr.shape[2]} different channels; save depth as a "
        "single-channel 16-bit PNG, float TIFF or .npy"
    )


def _to_metres(arr: np.ndarray, path: Path, depth_scale: float) -> np.ndarray:
    """float32 metres from an integer (units of 1/depth_scale m) or float (m) array."""
    if arr.dtype.kind == "f":
        return finite_or_zero(arr)
    if arr.dtype.kind in "ui":
        return (arr.astype(np.float64) / check_depth_scale(depth_scale, path)).astype(np.float32)
    raise InputError(
        f"{path}: depth array has dtype {arr.dtype}; save depth as float32 metres or as integers in depth_scale units"
    )


def _read_npz(path: Path, data: bytes) -> np.ndarray:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            keys = list(archive.files)
            if "depth" in keys:
                return archive["depth"]
            if len(keys) == 1:
                return archive[keys[0]]
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise corrupt_file_error(path, "depth", ".npz archive") from exc
    raise InputError(
        f"{path}: .npz holds arrays {keys or '(none)'} but no 'depth'; save the depth "
        "under the key 'depth' (np.savez(path, depth=...))"
    )


def read_depth(path: PathLike, depth_scale: float = 1000.0) -> np.ndarray:
    """Read a depth map; returns float32 ``(H, W)`` metres with missing pixels as ``0``.

    Formats: ``.npy``, ``.npz`` (key ``depth`` or its only array), ``.pfm`` (grayscale
    ``Pf``), 16-bit ``.png``, float or 16-bit ``.tif``/``.tiff``, ``.exr`` when this
    OpenCV build has OpenEXR (reading one sets ``OPENCV_IO_ENABLE_OPENEXR=1`` for the
    process unless the variable is already set). ``depth_scale`` is in units per metre and
    applies to integer data only.
    """
    p, suffix, data = read_bytes(path, DEPTH_EXTENSIONS, "depth")
    if suffix == ".npy":
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise corrupt_file_error(p, "depth", ".npy array (or it holds Python objects)") from exc
        return _to_metres(_squeeze_depth_array(np.asarray(arr), p), p, depth_scale)
    if suffix == ".npz":
        arr = _read_npz(p, data)
        return _to_metres(_squeeze_depth_array(np.asarray(arr), p), p, depth_scale)
    if suffix == ".pfm":
        return finite_or_zero(_parse_pfm(p, data))
    if suffix == ".exr":
        _enable_exr(p)
        arr = _single_channel(cv2_decode(p, data, "depth", "OpenEXR"), p)
        return _to_metres(arr, p, depth_scale)
    what = "PNG" if suffix == ".png" else "TIFF"
    arr = _single_channel(cv2_decode(p, data, "depth", what), p)
    if arr.dtype == np.uint8:
        raise InputError(
            f"{p}: 8-bit {what} has only 256 depth levels and is refused as depth; save "
            "depth as a 16-bit PNG (with --depth-scale) or as .npy"
        )
    return _to_metres(arr, p, depth_scale)


def validate_depth(depth: np.ndarray, name: str) -> np.ndarray:
    """Check a depth map and return it as float32 ``(H, W)`` metres, non-finite -> ``0``.

    ``name`` (a file name or argument name) is quoted in the error. Refuses arrays that are
    not 2-D, not real numbers, have no valid pixel, hold negative depths or depths beyond
    :data:`MAX_DEPTH` (a unit mistake: such values also overflow float32 arithmetic).
    """
    out = check_depth_array(depth, name)
    if np.any(out < 0):
        raise InputError(
            f"{name}: depth has negative values (min {float(out.min()):g}); depth must be "
            "metres >= 0, with 0 for missing pixels"
        )
    if not np.any(out > 0):
        raise InputError(f"{name}: every depth pixel is missing (0 or non-finite); check the file and --depth-scale")
    if out.max() > MAX_DEPTH:
        raise InputError(
            f"{name}: depth reaches {float(out.max()):.3g} m, beyond any sensor's range "
            f"({MAX_DEPTH:g} m); depth must be metres: check the file and --depth-scale"
        )
    return out


def _prepare_depth_for_writing(depth: np.ndarray, path: Path) -> np.ndarray:
    arr = np.asarray(depth)
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[2]):
        arr = _squeeze_depth_array(arr, path)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"cannot write {path}: depth must be 2-D (H, W), got shape {tuple(arr.shape)}")
    if arr.dtype.kind not in "uif":
        raise InputError(f"cannot write {path}: depth has dtype {arr.dtype}; give float32 metres")
    out = finite_or_zero(arr)
    if np.any(out < 0):
        raise InputError(
            f"cannot write {path}: depth has negative values (min {float(out.min()):g}); depth must be metres >= 0"
        )
    return out


def _to_uint16(metres: np.ndarray, scale: float, rows: int = 256) -> np.ndarray:
    """``round(metres * scale)`` as uint16, in bands of ``rows`` (float64 only a band at a time)."""
    out = np.empty(metres.shape, dtype=np.uint16)
    for i in range(0, metres.shape[0], rows):
        out[i : i + rows] = np.round(metres[i : i + rows].astype(np.float64) * scale)
    return out


def write_depth(path: PathLike, depth: np.ndarray, depth_scale: float = 1000.0, overwrite: bool = True) -> None:
    """Write float ``(H, W)`` metres to any of :data:`DEPTH_EXTENSIONS`, atomically.

    Missing (non-finite) pixels are written as ``0``. 16-bit PNG stores
    ``round(depth * depth_scale)``: depths below ``0.5 / depth_scale`` m become missing,
    and depths above ``65535 / depth_scale`` m raise InputError. Float formats store
    float32 metres and ignore ``depth_scale``.
    """
    p = Path(path)
    suffix = require_extension(p, DEPTH_EXTENSIONS, "depth")
    arr = _prepare_depth_for_writing(depth, p)
    if suffix == ".png":
        scale = check_depth_scale(depth_scale, p)
        if float(arr.max()) * scale >= UINT16_MAX + 0.5:
            raise InputError(
                f"cannot write {p}: depth {float(arr.max()):.3f} m exceeds the 16-bit PNG "
                f"range at depth_scale={scale:g} ({UINT16_MAX / scale:.3f} m); use a "
                f"smaller --depth-scale or {_FLOAT_DEPTH_HINT}"
            )
        payload = cv2_encode(p, ".png", _to_uint16(arr, scale))
    elif suffix == ".npy":
        with atomic_write(p, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)  # straight to the file: no second copy in memory
        return
    elif suffix == ".npz":
        buf = io.BytesIO()
        np.savez_compressed(buf, depth=arr)
        payload = buf.getvalue()
    elif suffix == ".pfm":
        payload = _encode_pfm(arr)
    elif suffix == ".exr":
        _enable_exr(p)
        payload = cv2_encode(p, ".exr", arr)
    else:  # .tif / .tiff
        payload = cv2_encode(p, suffix, arr)
    write_bytes(p, payload, overwrite)


def depth_to_tensor(depth: np.ndarray) -> torch.Tensor:
    """float32 ``(1, 1, H, W)`` tensor from an ``(H, W)`` depth map; non-finite -> 0."""
    arr = np.asarray(depth)
    if arr.ndim != 2:
        raise InputError(f"depth_to_tensor: expected an (H, W) depth map, got shape {tuple(arr.shape)}")
    return torch.from_numpy(finite_or_zero(arr))[None, None]


def tensor_to_depth(tensor: torch.Tensor) -> np.ndarray:
    """float32 ``(H, W)`` numpy depth from an ``(H, W)``/``(1, H, W)``/``(1, 1, H, W)`` tensor."""
    t = tensor.detach()
    while t.ndim > 2 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 2:
        raise InputError(f"tensor_to_depth: expected one depth map (1, 1, H, W), got shape {tuple(tensor.shape)}")
    return t.to(device="cpu", dtype=torch.float32).numpy().copy()
