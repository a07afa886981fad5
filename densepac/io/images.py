"""RGB images and label maps: reading, writing and tensor helpers.

Images are float32 ``(H, W, 3)`` RGB in ``[0, 1]`` (gray, RGBA, 16-bit files are converted);
segmentation labels are int64 ``(H, W)`` with ``255`` = ignore, written as VOC-palette PNGs.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from densepac.errors import InputError
from densepac.io.files import (
    UINT16_MAX,
    PathLike,
    corrupt_file_error,
    cv2_decode,
    cv2_encode,
    finite_or_zero,
    read_bytes,
    require_extension,
    write_bytes,
)

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


LABEL_EXTENSIONS: tuple[str, ...] = (".png", ".npy")


# Pillow raises several unrelated types for undecodable input depending on the plugin.
_PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


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
        raise corrupt_file_error(path, "image", "JPEG") from exc


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
    if arr.dtype in (np.uint8, np.uint16):
        # Divided in place: a second float copy would be the peak of reading a large guide.
        unit = arr.astype(np.float32)
        return np.divide(unit, 255.0 if arr.dtype == np.uint8 else float(UINT16_MAX), out=unit)
    if arr.dtype.kind == "f":
        return np.clip(finite_or_zero(arr), 0.0, 1.0)
    raise InputError(f"{path}: image has unsupported sample type {arr.dtype}; save it as 8- or 16-bit")


def voc_palette(n: int = 256) -> np.ndarray:
    """uint8 ``(n, 3)`` PASCAL VOC palette.

    Class id bits are dealt round-robin to R, G, B and placed from the most significant
    bit down, so ids 1, 2, 4 are dark red, green, blue and 255 is (224, 224, 192).
    """
    if n < 1 or n > 1 << 24:
        raise InputError(f"voc_palette: n must be in 1..{1 << 24}, got {n}")
    ids = np.arange(n, dtype=np.int64)
    palette = np.zeros((n, 3), dtype=np.int64)
    for level in range(8):
        shift = 7 - level
        for channel in range(3):
            bit = (ids >> (3 * level + channel)) & 1
            palette[:, channel] |= bit << shift
    return palette.astype(np.uint8)


def read_image(path: PathLike) -> np.ndarray:
    """Read an image as float32 ``(H, W, 3)`` RGB in ``[0, 1]``.

    8-bit data are divided by 255, 16-bit by 65535, float TIFFs clipped to [0, 1].
    Grayscale is replicated to three channels; an alpha channel is dropped. EXIF
    orientation is ignored: a guide must stay pixel-aligned with its depth map.
    """
    p, suffix, data = read_bytes(path, IMAGE_EXTENSIONS, "image")
    if suffix in (".jpg", ".jpeg"):
        return _image_to_unit_rgb(_decode_jpeg(p, data), p, bgr=False)
    what = {".png": "PNG", ".bmp": "BMP"}.get(suffix, "TIFF")
    return _image_to_unit_rgb(cv2_decode(p, data, "image", what), p, bgr=True)


def write_image(path: PathLike, image: np.ndarray, overwrite: bool = True) -> None:
    """Write an RGB ``(H, W, 3)`` or gray ``(H, W)`` image atomically.

    ``image`` is uint8, float in [0, 1] (clipped; NaN -> 0; stored as 8-bit) or, for
    ``.png``/``.tif``/``.tiff``, uint16. JPEG is written at quality 95.
    """
    p = Path(path)
    suffix = require_extension(p, IMAGE_EXTENSIONS, "image")
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)) or arr.size == 0:
        raise InputError(f"cannot write {p}: image must be (H, W, 3) RGB or (H, W) gray, got shape {tuple(arr.shape)}")
    if arr.dtype.kind in "fb":
        arr = np.round(np.clip(finite_or_zero(arr), 0.0, 1.0) * 255.0).astype(np.uint8)
    elif arr.dtype == np.uint16:
        if suffix not in (".png", ".tif", ".tiff"):
            raise InputError(f"cannot write {p}: {suffix} cannot hold 16-bit samples; use .png or .tiff")
    elif arr.dtype != np.uint8:
        raise InputError(f"cannot write {p}: image dtype {arr.dtype} is not uint8, uint16 or float in [0, 1]")
    if arr.ndim == 3:
        arr = np.ascontiguousarray(arr[..., ::-1])  # OpenCV encodes BGR
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix in (".jpg", ".jpeg") else []
    write_bytes(p, cv2_encode(p, suffix, arr, params), overwrite)


def read_label(path: PathLike) -> np.ndarray:
    """Read a segmentation label map as int64 ``(H, W)`` (``255`` = ignore).

    Indexed ('P' mode) PNGs give their palette indices, not colors; 8/16-bit grayscale
    PNGs give their values; ``.npy`` holds an integer 2-D array. Color (RGB) label
    images are refused because their color-to-class mapping is unknown.
    """
    p, suffix, data = read_bytes(path, LABEL_EXTENSIONS, "label")
    if suffix == ".npy":
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise corrupt_file_error(p, "label", ".npy array") from exc
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
                # Index (or gray) band only, so the palette never turns ids into colors.
                arr = np.array(im.getchannel(0))
            elif mode in ("L", "1", "I", "I;16", "I;16B", "I;16L"):
                arr = np.array(im)
    except _PIL_ERRORS as exc:
        raise corrupt_file_error(p, "label", "PNG") from exc
    if arr is None:
        raise InputError(
            f"{p}: label image is {mode}, a color image; save class ids as an indexed (palette) or grayscale PNG"
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
    default the PASCAL VOC palette), so the file opens in color yet reads back as ids.
    ``.npy``: the int64 array, for ids above 255.
    """
    p = Path(path)
    suffix = require_extension(p, LABEL_EXTENSIONS, "label")
    arr = np.asarray(labels)
    if arr.ndim != 2 or arr.size == 0 or arr.dtype.kind not in "uib":
        raise InputError(f"cannot write {p}: labels must be a 2-D integer array, got {arr.dtype} {tuple(arr.shape)}")
    if suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, arr.astype(np.int64), allow_pickle=False)
        write_bytes(p, buf.getvalue(), overwrite)
        return
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or high > 255:
        raise InputError(
            f"cannot write {p}: label ids {low}..{high} do not fit an indexed PNG (0..255); save them as .npy"
        )
    if palette is None:
        palette = voc_palette(256)
    pal = np.asarray(palette)
    if pal.ndim != 2 or pal.shape[1] != 3 or not 0 < pal.shape[0] <= 256:
        raise InputError(f"cannot write {p}: palette must have shape (n <= 256, 3), got {tuple(pal.shape)}")
    height, width = arr.shape
    im = Image.frombytes("P", (width, height), np.ascontiguousarray(arr, dtype=np.uint8).tobytes())
    im.putpalette(np.clip(pal, 0, 255).astype(np.uint8).tobytes(), rawmode="RGB")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    write_bytes(p, buf.getvalue(), overwrite)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """float32 ``(1, 3, H, W)`` tensor in [0, 1] from an ``(H, W, 3)`` float or uint8 image."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"image_to_tensor: expected an (H, W, 3) image, got shape {tuple(arr.shape)}")
    scaled = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))[None]


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """float32 ``(H, W, 3)`` numpy image from a ``(3, H, W)`` or ``(1, 3, H, W)`` tensor."""
    t = tensor.detach()
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[0] != 3:
        raise InputError(f"tensor_to_image: expected one RGB image (1, 3, H, W), got shape {tuple(tensor.shape)}")
    return t.to(device="cpu", dtype=torch.float32).permute(1, 2, 0).numpy().copy()
