"""Depth, image and label files: reading, writing, atomic replacement, tensor helpers.

Conventions (DESIGN.md):

- depth maps are float32 ``(H, W)`` in metres; ``0`` or a non-finite value means missing.
  Readers return missing pixels as ``0``; writers store them as ``0``.
- images are float32 ``(H, W, 3)`` RGB in ``[0, 1]``.
- segmentation labels are int64 ``(H, W)``; ``255`` means ignore.

Depth units: float data (``.npy``/``.npz``/``.pfm``/float ``.tiff``/``.exr``) are metres.
Integer data (16-bit ``.png``, integer ``.tiff``, integer arrays in ``.npy``/``.npz``) hold
``depth_scale`` units per metre (1000 = millimetres) and are divided by it on reading.

Every writer goes through :func:`atomic_write`, so an interrupted or failed write never
leaves a partial file at the target path. Bad files raise
:class:`densepac.errors.InputError` with a one-line message naming the file and the fix.
OpenCV may also log its own decoder warnings to stderr; applications that want a quiet
stderr (the CLI) should lower ``cv2.utils.logging`` at start-up, a library must not.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import secrets
import zipfile
import zlib
from pathlib import Path
from typing import Iterator, Sequence, Union

import cv2
import numpy as np
import torch
from PIL import Image

from densepac.errors import InputError

PathLike = Union[str, "os.PathLike[str]"]

DEPTH_EXTENSIONS: tuple[str, ...] = (".npy", ".npz", ".pfm", ".png", ".tif", ".tiff", ".exr")
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
LABEL_EXTENSIONS: tuple[str, ...] = (".png", ".npy")

_UINT16_MAX = 65535
_FLOAT_DEPTH_HINT = "a float format (.npy, .npz, .pfm, .tiff)"
# Pillow raises several unrelated types for undecodable input depending on the plugin.
_PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
_EXR_ENV = "OPENCV_IO_ENABLE_OPENEXR"


# --------------------------------------------------------------------------- atomic write


def _check_target(path: Path, overwrite: bool) -> None:
    """Raise InputError when ``path`` cannot be (re)written."""
    parent = path.parent
    if not parent.is_dir():
        raise InputError(
            f"cannot write {path}: directory {parent} does not exist; create it first "
            "or choose another output path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(
            f"cannot write {path}: directory {parent} is not writable; fix its "
            "permissions or choose another output path"
        )
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a directory; give a file name instead")
    if path.exists() and not overwrite:
        raise InputError(
            f"{path} already exists; choose another output path or allow overwriting "
            "(overwrite=True, --overwrite)"
        )


def check_output(
    path: PathLike,
    extensions: Sequence[str] | None = None,
    kind: str = "output",
    overwrite: bool = True,
) -> Path:
    """Raise InputError now if ``path`` could not be written later; return it as a Path.

    Checks, in this order: ``path`` is not a directory, its extension is one of
    ``extensions`` (when given), its directory exists and is writable, and it does not exist
    unless ``overwrite``. Commands call this for every output before any slow work, so a
    bad output path fails at once and never after another output has been written.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"cannot write {p}: it is a directory; give a file name instead")
    if extensions is not None:
        _require_extension(p, extensions, kind)
    _check_target(p, overwrite)
    return p


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry so a completed rename survives a crash (POSIX only)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        # Some filesystems (network mounts) refuse fsync on directories; the data is
        # already safe in the file, so this is best effort.
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` when the block succeeds.

    The temporary name is ``.<stem>.tmp<random><suffix>`` in the same directory, so writers
    that pick a format from the extension still work and the final ``os.replace`` stays on
    one filesystem (atomic). The file is fsynced before the rename. On any exception the
    temporary file is removed and the target is left untouched.

    Raises InputError when the parent directory is missing or not writable, when ``path``
    is a directory, or when ``path`` exists and ``overwrite`` is False.
    """
    target = Path(path)
    _check_target(target, overwrite)
    # Created with O_EXCL and mode 0o666 so the final file gets the user's umask, unlike
    # tempfile.mkstemp's private 0o600.
    while True:
        tmp = target.with_name(f".{target.stem}.tmp{secrets.token_hex(4)}{target.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise InputError(
                f"cannot write {target}: {exc.strerror}; check the directory's "
                "permissions and free space"
            ) from exc
        os.close(fd)
        break
    try:
        yield tmp
        # Reopened read-write because Windows refuses fsync on read-only handles.
        with open(tmp, "r+b") as handle:
            os.fsync(handle.fileno())
        if not overwrite and target.exists():
            # Something created the target while we were writing.
            raise InputError(
                f"{target} appeared while it was being written; choose another output "
                "path or allow overwriting (overwrite=True, --overwrite)"
            )
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)


def _write_bytes(path: Path, payload: bytes, overwrite: bool) -> None:
    with atomic_write(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(payload)


# --------------------------------------------------------------------------- helpers


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _require_extension(path: Path, extensions: Sequence[str], kind: str) -> str:
    suffix = _suffix(path)
    if suffix not in extensions:
        raise InputError(
            f"{path}: unsupported {kind} file extension '{suffix or '(none)'}'; "
            f"use one of {', '.join(extensions)}"
        )
    return suffix


def _read_bytes(path: PathLike, extensions: Sequence[str], kind: str) -> tuple[Path, str, bytes]:
    """Check that ``path`` is an existing, non-empty file with a known extension; read it."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such {kind} file; check the path")
    if p.is_dir():
        raise InputError(
            f"{p} is a directory, not a {kind} file; give the path of one "
            f"{'/'.join(extensions)} file"
        )
    suffix = _require_extension(p, extensions, kind)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(
            f"{p}: cannot read the {kind} file ({exc.strerror}); check its permissions"
        ) from exc
    if not data:
        raise InputError(f"{p}: the {kind} file is empty; re-export or re-download it")
    return p, suffix, data


def _corrupt(path: Path, kind: str, what: str) -> InputError:
    return InputError(
        f"{path}: cannot decode the {kind} file as {what} (truncated or corrupt); "
        "re-export or re-download it"
    )


def _cv2_decode(path: Path, data: bytes, kind: str, what: str) -> np.ndarray:
    try:
        arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise _corrupt(path, kind, what) from exc
    if arr is None or arr.size == 0:
        raise _corrupt(path, kind, what)
    return arr


def _cv2_encode(path: Path, suffix: str, arr: np.ndarray, params: Sequence[int] = ()) -> bytes:
    try:
        ok, buf = cv2.imencode(suffix, arr, list(params))
    except cv2.error as exc:
        raise InputError(
            f"cannot encode {path} as {suffix} ({arr.dtype}, shape {arr.shape}); "
            "choose another file format"
        ) from exc
    if not ok:
        raise InputError(f"cannot encode {path} as {suffix}; choose another file format")
    return buf.tobytes()


def _check_depth_scale(depth_scale: float, path: Path) -> float:
    scale = float(depth_scale)
    if not math.isfinite(scale) or scale <= 0:
        raise InputError(
            f"{path}: depth_scale must be a positive number of units per metre, got "
            f"{depth_scale!r}; use e.g. --depth-scale 1000 for millimetres"
        )
    return scale


def _finite_or_zero(arr: np.ndarray) -> np.ndarray:
    """float32 copy of ``arr`` with non-finite values replaced by 0 (missing)."""
    out = np.array(arr, dtype=np.float32, copy=True)
    out[~np.isfinite(out)] = 0.0
    return out


# --------------------------------------------------------------------------- OpenEXR


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
            f"{path}: this OpenCV build cannot read or write OpenEXR; convert the depth "
            f"to {_FLOAT_DEPTH_HINT}"
        )


# --------------------------------------------------------------------------- PFM


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
        raise _corrupt(path, "depth", "PFM (bad header)")
    magic = tokens[0]
    if magic == b"PF":
        raise InputError(
            f"{path}: 3-channel PFM (PF) is a colour image, not depth; save depth as a "
            "single-channel Pf file or .npy"
        )
    if magic != b"Pf":
        raise _corrupt(path, "depth", "PFM (missing 'Pf' magic)")
    try:
        width, height, scale = int(tokens[1]), int(tokens[2]), float(tokens[3])
    except ValueError as exc:
        raise _corrupt(path, "depth", "PFM (bad header)") from exc
    if width <= 0 or height <= 0 or scale == 0 or not math.isfinite(scale):
        raise _corrupt(path, "depth", "PFM (bad size or scale)")
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
            f"{path}: PFM file is truncated ({len(raster)} of {need} data bytes); "
            "re-export or re-download it"
        )
    dtype = np.dtype("<f4") if scale < 0 else np.dtype(">f4")
    rows = np.frombuffer(raster, dtype=dtype).reshape(height, width)
    return rows[::-1].astype(np.float32)


def _encode_pfm(depth: np.ndarray) -> bytes:
    """Little-endian grayscale PFM bytes for float32 ``(H, W)`` depth."""
    height, width = depth.shape
    header = f"Pf\n{width} {height}\n-1.0\n".encode("ascii")
    return header + np.ascontiguousarray(depth[::-1], dtype="<f4").tobytes()


# --------------------------------------------------------------------------- depth


def _squeeze_depth_array(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(
            f"{path}: depth array has shape {tuple(arr.shape)}; save a 2-D (H, W) array "
            "(or (1, H, W) / (H, W, 1))"
        )
    return arr


def _single_channel(arr: np.ndarray, path: Path) -> np.ndarray:
    """One channel of an image-format depth map; refuses real colour images."""
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
        return _finite_or_zero(arr)
    if arr.dtype.kind in "ui":
        return (arr.astype(np.float64) / _check_depth_scale(depth_scale, path)).astype(np.float32)
    raise InputError(
        f"{path}: depth array has dtype {arr.dtype}; save depth as float32 metres or as "
        "integers in depth_scale units"
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
        raise _corrupt(path, "depth", ".npz archive") from exc
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
    p, suffix, data = _read_bytes(path, DEPTH_EXTENSIONS, "depth")
    if suffix == ".npy":
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise _corrupt(p, "depth", ".npy array (or it holds Python objects)") from exc
        return _to_metres(_squeeze_depth_array(np.asarray(arr), p), p, depth_scale)
    if suffix == ".npz":
        arr = _read_npz(p, data)
        return _to_metres(_squeeze_depth_array(np.asarray(arr), p), p, depth_scale)
    if suffix == ".pfm":
        return _finite_or_zero(_parse_pfm(p, data))
    if suffix == ".exr":
        _enable_exr(p)
        arr = _single_channel(_cv2_decode(p, data, "depth", "OpenEXR"), p)
        return _to_metres(arr, p, depth_scale)
    what = "PNG" if suffix == ".png" else "TIFF"
    arr = _single_channel(_cv2_decode(p, data, "depth", what), p)
    if arr.dtype == np.uint8:
        raise InputError(
            f"{p}: 8-bit {what} has only 256 depth levels and is refused as depth; save "
            "depth as a 16-bit PNG (with --depth-scale) or as .npy"
        )
    return _to_metres(arr, p, depth_scale)


def validate_depth(depth: np.ndarray, name: str) -> np.ndarray:
    """Check a depth map and return it as float32 ``(H, W)`` metres, non-finite -> ``0``.

    ``name`` (a file name or argument name) is quoted in the error. Refuses arrays that are
    not 2-D, not real numbers, have no valid pixel, or hold negative depths.
    """
    arr = np.asarray(depth)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(
            f"{name}: depth must be a 2-D (H, W) array, got shape {tuple(arr.shape)}; "
            "squeeze batch/channel axes first"
        )
    if arr.dtype.kind not in "uif":
        raise InputError(f"{name}: depth has dtype {arr.dtype}; give float32 metres")
    out = _finite_or_zero(arr)
    if np.any(out < 0):
        raise InputError(
            f"{name}: depth has negative values (min {float(out.min()):g}); depth must be "
            "metres >= 0, with 0 for missing pixels"
        )
    if not np.any(out > 0):
        raise InputError(
            f"{name}: every depth pixel is missing (0 or non-finite); check the file and "
            "--depth-scale"
        )
    return out


def _prepare_depth_for_writing(depth: np.ndarray, path: Path) -> np.ndarray:
    arr = np.asarray(depth)
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[2]):
        arr = _squeeze_depth_array(arr, path)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(
            f"cannot write {path}: depth must be 2-D (H, W), got shape {tuple(arr.shape)}"
        )
    if arr.dtype.kind not in "uif":
        raise InputError(f"cannot write {path}: depth has dtype {arr.dtype}; give float32 metres")
    out = _finite_or_zero(arr)
    if np.any(out < 0):
        raise InputError(
            f"cannot write {path}: depth has negative values (min {float(out.min()):g}); "
            "depth must be metres >= 0"
        )
    return out


def write_depth(
    path: PathLike, depth: np.ndarray, depth_scale: float = 1000.0, overwrite: bool = True
) -> None:
    """Write float ``(H, W)`` metres to any of :data:`DEPTH_EXTENSIONS`, atomically.

    Missing (non-finite) pixels are written as ``0``. 16-bit PNG stores
    ``round(depth * depth_scale)``: depths below ``0.5 / depth_scale`` m become missing,
    and depths above ``65535 / depth_scale`` m raise InputError. Float formats store
    float32 metres and ignore ``depth_scale``.
    """
    p = Path(path)
    suffix = _require_extension(p, DEPTH_EXTENSIONS, "depth")
    arr = _prepare_depth_for_writing(depth, p)
    if suffix == ".png":
        scale = _check_depth_scale(depth_scale, p)
        scaled = np.round(arr.astype(np.float64) * scale)
        top = float(scaled.max())
        if top > _UINT16_MAX:
            raise InputError(
                f"cannot write {p}: depth {float(arr.max()):.3f} m exceeds the 16-bit PNG "
                f"range at depth_scale={scale:g} ({_UINT16_MAX / scale:.3f} m); use a "
                f"smaller --depth-scale or {_FLOAT_DEPTH_HINT}"
            )
        payload = _cv2_encode(p, ".png", scaled.astype(np.uint16))
    elif suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        payload = buf.getvalue()
    elif suffix == ".npz":
        buf = io.BytesIO()
        np.savez_compressed(buf, depth=arr)
        payload = buf.getvalue()
    elif suffix == ".pfm":
        payload = _encode_pfm(arr)
    elif suffix == ".exr":
        _enable_exr(p)
        payload = _cv2_encode(p, ".exr", arr)
    else:  # .tif / .tiff
        payload = _cv2_encode(p, suffix, arr)
    _write_bytes(p, payload, overwrite)


# --------------------------------------------------------------------------- images


def _decode_jpeg(path: Path, data: bytes) -> np.ndarray:
    # Pillow, not OpenCV: older libjpeg builds inside OpenCV return a silently
    # grey-filled image for a truncated JPEG, Pillow raises.
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB")
            return np.array(im)
    except _PIL_ERRORS as exc:
        raise _corrupt(path, "image", "JPEG") from exc


def _image_to_unit_rgb(arr: np.ndarray, path: Path, bgr: bool) -> np.ndarray:
    """float32 ``(H, W, 3)`` RGB in [0, 1] from a decoded 2-D/3-D array."""
    if arr.ndim == 3 and arr.shape[2] in (1, 2):
        arr = arr[..., 0]  # gray, or gray + alpha: alpha dropped
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., :3]  # alpha dropped: guides are opaque
        if bgr:
            arr = arr[..., ::-1]
    else:
        raise InputError(f"{path}: image has shape {tuple(arr.shape)}; save an RGB or gray image")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / float(_UINT16_MAX)
    if arr.dtype.kind == "f":
        return np.clip(_finite_or_zero(arr), 0.0, 1.0)
    raise InputError(
        f"{path}: image has unsupported sample type {arr.dtype}; save it as 8- or 16-bit"
    )


def read_image(path: PathLike) -> np.ndarray:
    """Read an image as float32 ``(H, W, 3)`` RGB in ``[0, 1]``.

    8-bit data are divided by 255, 16-bit by 65535, float TIFFs clipped to [0, 1].
    Grayscale is replicated to three channels; an alpha channel is dropped. EXIF
    orientation is ignored: a guide must stay pixel-aligned with its depth map.
    """
    p, suffix, data = _read_bytes(path, IMAGE_EXTENSIONS, "image")
    if suffix in (".jpg", ".jpeg"):
        return _image_to_unit_rgb(_decode_jpeg(p, data), p, bgr=False)
    what = {".png": "PNG", ".bmp": "BMP"}.get(suffix, "TIFF")
    return _image_to_unit_rgb(_cv2_decode(p, data, "image", what), p, bgr=True)


def write_image(path: PathLike, image: np.ndarray, overwrite: bool = True) -> None:
    """Write an RGB ``(H, W, 3)`` or gray ``(H, W)`` image atomically.

    ``image`` is uint8, float in [0, 1] (clipped; NaN -> 0; stored as 8-bit) or, for
    ``.png``/``.tif``/``.tiff``, uint16. JPEG is written at quality 95.
    """
    p = Path(path)
    suffix = _require_extension(p, IMAGE_EXTENSIONS, "image")
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)) or arr.size == 0:
        raise InputError(
            f"cannot write {p}: image must be (H, W, 3) RGB or (H, W) gray, got shape "
            f"{tuple(arr.shape)}"
        )
    if arr.dtype.kind in "fb":
        arr = np.round(np.clip(_finite_or_zero(arr), 0.0, 1.0) * 255.0).astype(np.uint8)
    elif arr.dtype == np.uint16:
        if suffix not in (".png", ".tif", ".tiff"):
            raise InputError(
                f"cannot write {p}: {suffix} cannot hold 16-bit samples; use .png or .tiff"
            )
    elif arr.dtype != np.uint8:
        raise InputError(
            f"cannot write {p}: image dtype {arr.dtype} is not uint8, uint16 or float in [0, 1]"
        )
    if arr.ndim == 3:
        arr = np.ascontiguousarray(arr[..., ::-1])  # OpenCV encodes BGR
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix in (".jpg", ".jpeg") else []
    _write_bytes(p, _cv2_encode(p, suffix, arr, params), overwrite)


# --------------------------------------------------------------------------- labels


def read_label(path: PathLike) -> np.ndarray:
    """Read a segmentation label map as int64 ``(H, W)`` (``255`` = ignore).

    Indexed ('P' mode) PNGs give their palette indices, not colours; 8/16-bit grayscale
    PNGs give their values; ``.npy`` holds an integer 2-D array. Colour (RGB) label
    images are refused because their colour-to-class mapping is unknown.
    """
    p, suffix, data = _read_bytes(path, LABEL_EXTENSIONS, "label")
    if suffix == ".npy":
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise _corrupt(p, "label", ".npy array") from exc
        arr = np.asarray(arr)
        if arr.ndim != 2 or arr.dtype.kind not in "ui":
            raise InputError(
                f"{p}: labels must be a 2-D integer array, got {arr.dtype} {tuple(arr.shape)}; "
                "save class ids as int (H, W)"
            )
        return arr.astype(np.int64)
    arr: np.ndarray | None = None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            mode = im.mode
            if mode in ("P", "PA", "LA"):
                # Index (or gray) band only, so the palette never turns ids into colours.
                arr = np.array(im.getchannel(0))
            elif mode in ("L", "1", "I", "I;16", "I;16B", "I;16L"):
                arr = np.array(im)
    except _PIL_ERRORS as exc:
        raise _corrupt(p, "label", "PNG") from exc
    if arr is None:
        raise InputError(
            f"{p}: label image is {mode}, a colour image; save class ids as an indexed "
            "(palette) or grayscale PNG"
        )
    return arr.astype(np.int64)


def write_label(
    path: PathLike,
    labels: np.ndarray,
    palette: np.ndarray | None = None,
    overwrite: bool = True,
) -> None:
    """Write int ``(H, W)`` class ids atomically.

    ``.png``: an indexed PNG (ids 0..255) with ``palette`` (``(n <= 256, 3)`` uint8;
    default the PASCAL VOC palette), so the file opens in colour yet reads back as ids.
    ``.npy``: the int64 array, for ids above 255.
    """
    p = Path(path)
    suffix = _require_extension(p, LABEL_EXTENSIONS, "label")
    arr = np.asarray(labels)
    if arr.ndim != 2 or arr.size == 0 or arr.dtype.kind not in "uib":
        raise InputError(
            f"cannot write {p}: labels must be a 2-D integer array, got {arr.dtype} "
            f"{tuple(arr.shape)}"
        )
    if suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, arr.astype(np.int64), allow_pickle=False)
        _write_bytes(p, buf.getvalue(), overwrite)
        return
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or high > 255:
        raise InputError(
            f"cannot write {p}: label ids {low}..{high} do not fit an indexed PNG (0..255); "
            "save them as .npy"
        )
    if palette is None:
        # Imported here: visualize builds on this module, not the other way round.
        from densepac.data.visualize import voc_palette

        palette = voc_palette(256)
    pal = np.asarray(palette)
    if pal.ndim != 2 or pal.shape[1] != 3 or not 0 < pal.shape[0] <= 256:
        raise InputError(
            f"cannot write {p}: palette must have shape (n <= 256, 3), got {tuple(pal.shape)}"
        )
    height, width = arr.shape
    im = Image.frombytes("P", (width, height), np.ascontiguousarray(arr, dtype=np.uint8).tobytes())
    im.putpalette(np.clip(pal, 0, 255).astype(np.uint8).tobytes(), rawmode="RGB")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    _write_bytes(p, buf.getvalue(), overwrite)


# --------------------------------------------------------------------------- tensors


def depth_to_tensor(depth: np.ndarray) -> torch.Tensor:
    """float32 ``(1, 1, H, W)`` tensor from an ``(H, W)`` depth map; non-finite -> 0."""
    arr = np.asarray(depth)
    if arr.ndim != 2:
        raise InputError(
            f"depth_to_tensor: expected an (H, W) depth map, got shape {tuple(arr.shape)}"
        )
    return torch.from_numpy(_finite_or_zero(arr))[None, None]


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """float32 ``(1, 3, H, W)`` tensor in [0, 1] from an ``(H, W, 3)`` float or uint8 image."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(
            f"image_to_tensor: expected an (H, W, 3) image, got shape {tuple(arr.shape)}"
        )
    scaled = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))[None]


def tensor_to_depth(tensor: torch.Tensor) -> np.ndarray:
    """float32 ``(H, W)`` numpy depth from an ``(H, W)``/``(1, H, W)``/``(1, 1, H, W)`` tensor."""
    t = tensor.detach()
    while t.ndim > 2 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 2:
        raise InputError(
            f"tensor_to_depth: expected one depth map (1, 1, H, W), got shape {tuple(tensor.shape)}"
        )
    return t.to(device="cpu", dtype=torch.float32).numpy().copy()


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """float32 ``(H, W, 3)`` numpy image from a ``(3, H, W)`` or ``(1, 3, H, W)`` tensor."""
    t = tensor.detach()
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[0] != 3:
        raise InputError(
            f"tensor_to_image: expected one RGB image (1, 3, H, W), got shape {tuple(tensor.shape)}"
        )
    return t.to(device="cpu", dtype=torch.float32).permute(1, 2, 0).numpy().copy()
