"""Datasets for guided depth upsampling: NYU Depth v2, Middlebury, folders, synthetic.

Every dataset yields a dict of tensors:

- ``rgb``: float32 ``(3, H, W)`` in [0, 1], the guide;
- ``depth``: float32 ``(1, H, W)`` metres, the target (0 = missing, never a target);
- ``depth_lr``: float32 ``(1, H / s, W / s)`` metres, the low-resolution input, simulated
  from ``depth`` with :func:`densepac.depth.degrade.simulate_lr` (or read from disk by
  :class:`FolderDepth`);
- ``name``: str, a stable identifier of the sample.

Pipeline per item: load -> optional joint ``transform(rgb, depth)`` (e.g.
:class:`densepac.depth.transforms.DepthTransform`) -> centre crop to a multiple of the
scale -> simulate the LR map. The degradation (noise, holes) of item ``i`` is
deterministic from ``(seed, i)``; random transforms add their own randomness.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from densepac.check import check_scale
from densepac.data.folders import check_paired, index_folder, listing
from densepac.depth.degrade import PROTOCOLS, simulate_lr
from densepac.errors import InputError
from densepac.io.depth import DEPTH_EXTENSIONS, read_depth, validate_depth
from densepac.io.images import IMAGE_EXTENSIONS, read_image

JointTransform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

#: Official NYU Depth v2 split of the 1449 labelled frames: [0, 1000) train, [1000, N) test.
NYU_NUM_TRAIN = 1000


@dataclass
class _Sample:
    """One loaded sample before augmentation. rgb float32 (H, W, 3) [0, 1]; depth (H, W) m."""

    rgb: np.ndarray
    depth: np.ndarray
    name: str
    depth_lr: np.ndarray | None = None


def _centre_crop_to_multiple(rgb: np.ndarray, depth: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = depth.shape
    dh, dw = h % scale, w % scale
    if h < scale or w < scale:
        raise InputError(
            f"image of {h}x{w} pixels is smaller than the scale {scale}; use larger images or a smaller scale"
        )
    if dh == 0 and dw == 0:
        return rgb, depth
    top, left = dh // 2, dw // 2
    return rgb[top : top + h - dh, left : left + w - dw], depth[top : top + h - dh, left : left + w - dw]


def _to_tensor_image(rgb: np.ndarray) -> torch.Tensor:
    arr = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _to_tensor_depth(depth: np.ndarray) -> torch.Tensor:
    d = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(d))[None]


class _DepthDataset(Dataset):
    """Shared item pipeline; subclasses implement ``__len__`` and ``_load``."""

    def __init__(
        self,
        scale: int,
        protocol: str,
        noise: float,
        holes: float,
        transform: JointTransform | None,
        seed: int,
    ) -> None:
        self.scale = check_scale(scale)
        if protocol not in PROTOCOLS:
            raise InputError(f"protocol={protocol!r} is unknown; use one of {', '.join(PROTOCOLS)}")
        if not noise >= 0 or not holes >= 0:
            raise InputError(f"noise={noise} and holes={holes} must be >= 0")
        if not holes < 1:
            raise InputError(f"holes={holes} is the fraction of LR pixels made missing; give a value in [0, 1)")
        if transform is not None and not callable(transform):
            raise InputError(f"transform={transform!r} is not callable; give e.g. DepthTransform(...) or None")
        self.protocol = protocol
        self.noise = float(noise)
        self.holes = float(holes)
        self.transform = transform
        self.seed = int(seed)

    def __len__(self) -> int:
        raise NotImplementedError

    def _load(self, index: int) -> _Sample:
        raise NotImplementedError

    def _check_given_lr_transform(self) -> None:
        """Refuse transforms that would misalign a low-resolution map read from disk."""
        # Imported here: albumentations is slow to import and only needed with transforms.
        from densepac.depth.transforms import DepthTransform

        t = self.transform
        if t is None:
            return
        if not isinstance(t, DepthTransform):
            raise InputError(
                "given low-resolution maps can only be augmented by a DepthTransform (which "
                "moves them along); pass given_lr=False to simulate them, or transform=None"
            )
        if t.resamples:
            raise InputError(
                "DepthTransform with rotate/scale_range would misalign the given low-resolution "
                "maps; use crops and flips only, or given_lr=False"
            )
        s = self.scale
        if t.crop is not None and (t.crop_step % s or t.crop[0] % s or t.crop[1] % s):
            raise InputError(
                f"DepthTransform crop {t.crop} with crop_step={t.crop_step} would misalign the given "
                f"low-resolution maps; use a crop divisible by {self.scale} and crop_step={self.scale}"
            )

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {len(self)}")
        index = index % len(self)
        sample = self._load(index)
        rgb, depth, lr = sample.rgb, sample.depth, sample.depth_lr
        s = self.scale
        if lr is not None:
            if self.transform is not None:
                # Move the given LR map with the same geometry: blow it up to HR blocks,
                # transform with nearest, then take each block's point sample back.
                up = np.repeat(np.repeat(lr, s, axis=0), s, axis=1)
                rgb, depth, extra = self.transform.apply(rgb, depth, {"lr": up})  # type: ignore[attr-defined]
                lr = np.ascontiguousarray(extra["lr"][s // 2 :: s, s // 2 :: s])
        else:
            if self.transform is not None:
                rgb, depth = self.transform(rgb, depth)
            rgb, depth = _centre_crop_to_multiple(rgb, depth, s)
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, index, 1]))
            lr = simulate_lr(depth, s, self.protocol, noise=self.noise, holes=self.holes, rng=rng, rgb=rgb)
        return {
            "rgb": _to_tensor_image(rgb),
            "depth": _to_tensor_depth(depth),
            "depth_lr": _to_tensor_depth(lr),
            "name": sample.name,
        }


# --------------------------------------------------------------------------- NYU Depth v2


def _border(crop: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(crop, (int, np.integer)) and not isinstance(crop, bool):
        values = (int(crop),) * 4
    else:
        try:
            values = tuple(int(v) for v in crop)  # type: ignore[union-attr]
        except (TypeError, ValueError) as exc:
            raise InputError(f"crop={crop!r}; give an int or (top, bottom, left, right) pixels") from exc
    if len(values) != 4 or min(values) < 0:
        raise InputError(f"crop={crop!r}; give an int >= 0 or (top, bottom, left, right) pixels >= 0")
    return values  # type: ignore[return-value]


class NYUv2Depth(_DepthDataset):
    """NYU Depth v2 labelled set, read lazily from the official ``nyu_depth_v2_labeled.mat``.

    The file is MATLAB v7.3, i.e. HDF5. MATLAB stores column-major, so h5py sees every
    array with its axes reversed: ``images`` (MATLAB 480x640x3xN) reads as ``(N, 3, W, H)``
    uint8 and ``depths`` (480x640xN) as ``(N, W, H)`` float metres. Frame ``i`` is
    ``images[i].transpose(2, 1, 0)`` -> ``(H, W, 3)`` and ``depths[i].T`` -> ``(H, W)``.

    Split: ``"train"`` = frames ``[0, num_train)``, ``"test"`` = ``[num_train, N)`` (the
    standard 1000 / 449 split for the 1449-frame file), ``"all"`` = every frame.

    Args:
        mat_path: path to the .mat file.
        split: ``"train"``, ``"test"`` or ``"all"``.
        scale, protocol, noise, holes, seed: LR simulation (see the module doc).
        crop: border to remove, int or ``(top, bottom, left, right)`` pixels, before the
            transform (e.g. 8 drops the frame of the projected Kinect depth, giving
            464x624, divisible by 8 and 16). Any remainder modulo ``scale`` is then
            centre-cropped.
        raw: use ``rawDepths`` (with the sensor's holes) instead of the in-painted
            ``depths`` as the target.
        num_train: size of the train split.
        transform: joint transform, see the module doc.

    The HDF5 file is opened on first access in each process (DataLoader workers included)
    and never loaded whole into memory.
    """

    def __init__(
        self,
        mat_path: str | os.PathLike[str],
        split: str = "train",
        scale: int = 8,
        protocol: str = "point",
        crop: int | Sequence[int] = 0,
        noise: float = 0.0,
        holes: float = 0.0,
        transform: JointTransform | None = None,
        seed: int = 0,
        raw: bool = False,
        num_train: int = NYU_NUM_TRAIN,
    ) -> None:
        super().__init__(scale, protocol, noise, holes, transform, seed)
        import h5py

        self.path = Path(mat_path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such file; download nyu_depth_v2_labeled.mat (see datasets/README.md)")
        if not h5py.is_hdf5(self.path):
            raise InputError(
                f"{self.path}: not a MATLAB v7.3 (HDF5) file; use the official nyu_depth_v2_labeled.mat "
                "or re-save it in MATLAB with save(..., '-v7.3')"
            )
        self.depth_key = "rawDepths" if raw else "depths"
        self.border = _border(crop)
        with h5py.File(self.path, "r") as f:
            for key in ("images", self.depth_key):
                if key not in f:
                    raise InputError(f"{self.path}: no '{key}' dataset; is this nyu_depth_v2_labeled.mat?")
            images, depths = f["images"], f[self.depth_key]
            expected = (images.shape[0],) + images.shape[2:]
            if images.ndim != 4 or images.shape[1] != 3 or depths.shape != expected:
                raise InputError(
                    f"{self.path}: 'images' {images.shape} and '{self.depth_key}' {depths.shape} do not have "
                    "the (N, 3, W, H) / (N, W, H) layout of nyu_depth_v2_labeled.mat"
                )
            total = int(images.shape[0])
            self.frame_size = (int(images.shape[3]), int(images.shape[2]))  # (H, W)
        top, bottom, left, right = self.border
        if top + bottom >= self.frame_size[0] or left + right >= self.frame_size[1]:
            raise InputError(
                f"crop={crop!r} removes the whole {self.frame_size[0]}x{self.frame_size[1]} frame; use a smaller border"
            )
        ranges = {"train": range(0, num_train), "test": range(num_train, total), "all": range(0, total)}
        if split not in ranges:
            raise InputError(f"split={split!r} is unknown; use 'train', 'test' or 'all'")
        if split != "all" and not 0 <= num_train <= total:
            raise InputError(
                f"num_train={num_train} must be between 0 and the {total} frames of {self.path}; "
                "pass num_train for a reduced file or use split='all'"
            )
        self.split = split
        self.indices = ranges[split]
        if len(self.indices) == 0:
            raise InputError(
                f"{self.path}: split '{split}' is empty ({total} frames, num_train={num_train}); "
                "check the file or num_train"
            )
        self._h5: Any = None
        self._h5_pid: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def _file(self) -> Any:
        # HDF5 handles must not cross fork(): each process opens its own.
        if self._h5 is None or self._h5_pid != os.getpid():
            import h5py

            self._h5 = h5py.File(self.path, "r")
            self._h5_pid = os.getpid()
        return self._h5

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"] = None
        state["_h5_pid"] = None
        return state

    def close(self) -> None:
        """Close the HDF5 handle of this process (reopened on the next access)."""
        if self._h5 is not None and self._h5_pid == os.getpid():
            self._h5.close()
        self._h5 = None
        self._h5_pid = None

    def _load(self, index: int) -> _Sample:
        frame = self.indices[index]
        f = self._file()
        rgb = np.asarray(f["images"][frame]).transpose(2, 1, 0)
        depth = np.asarray(f[self.depth_key][frame], dtype=np.float32).T
        top, bottom, left, right = self.border
        h, w = depth.shape
        rgb = np.ascontiguousarray(rgb[top : h - bottom, left : w - right]).astype(np.float32) / 255.0
        depth = np.ascontiguousarray(depth[top : h - bottom, left : w - right])
        return _Sample(rgb, depth, f"nyu_{frame:04d}")


# --------------------------------------------------------------------------- Middlebury


@dataclass(frozen=True)
class MiddleburyCalib:
    """Stereo calibration of one Middlebury scene: focal length (px), doffs (px), baseline (mm)."""

    focal: float
    doffs: float
    baseline: float

    def disparity_to_depth(self, disparity: np.ndarray) -> np.ndarray:
        """Depth in metres from disparity in pixels (full resolution); missing where disp <= 0."""
        disp = np.asarray(disparity, dtype=np.float64)
        valid = np.isfinite(disp) & (disp > 0)
        depth = np.zeros(disp.shape, dtype=np.float32)
        depth[valid] = self.baseline * self.focal / (disp[valid] + self.doffs) / 1000.0
        return depth


def read_middlebury_calib(path: str | os.PathLike[str]) -> MiddleburyCalib:
    """Parse ``calib.txt`` (``cam0=[f 0 cx; 0 f cy; 0 0 1]``, ``doffs=``, ``baseline=`` in mm)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InputError(f"{p}: cannot read the calibration file; check the scene folder") from exc
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            fields[key.strip()] = value.strip()
    missing = [k for k in ("cam0", "doffs", "baseline") if k not in fields]
    if missing:
        raise InputError(f"{p}: missing {', '.join(missing)}; expected a Middlebury 2014/2021 calib.txt")
    try:
        numbers = [float(v) for v in re.findall(r"[-+0-9.eE]+", fields["cam0"])]
        focal = numbers[0]
        doffs, baseline = float(fields["doffs"]), float(fields["baseline"])
    except (ValueError, IndexError) as exc:
        raise InputError(f"{p}: cannot parse cam0/doffs/baseline; expected 'cam0=[f 0 cx; 0 f cy; 0 0 1]'") from exc
    if not (focal > 0 and baseline > 0 and math.isfinite(doffs)):
        raise InputError(f"{p}: focal {focal} and baseline {baseline} must be positive")
    return MiddleburyCalib(focal=focal, doffs=doffs, baseline=baseline)


_MIDDLEBURY_DISPARITIES = ("disp0.pfm", "disp0GT.pfm")


class MiddleburyDepth(_DepthDataset):
    """Middlebury 2014 / 2021 stereo scenes used as RGB-D pairs.

    Layout: ``root/<scene>/im0.png``, ``root/<scene>/disp0.pfm`` (or ``disp0GT.pfm``) and
    ``root/<scene>/calib.txt``; ``root`` may also be one scene folder itself. Depth (m) is
    ``baseline * f / (disp + doffs) / 1000``; infinite or zero disparity is missing.

    Args:
        root: dataset folder.
        scale, protocol, noise, holes, seed, transform: see the module doc.
        as_disparity: keep disparity (pixels, at the output resolution) in ``depth`` and
            ``depth_lr`` instead of metres.
        downscale: integer reduction of the (large, ~3000x2000) images before anything
            else: RGB by area averaging, disparity/depth by point sampling (disparity
            divided by ``downscale``).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        scale: int = 8,
        protocol: str = "point",
        noise: float = 0.0,
        holes: float = 0.0,
        transform: JointTransform | None = None,
        seed: int = 0,
        as_disparity: bool = False,
        downscale: int = 1,
    ) -> None:
        super().__init__(scale, protocol, noise, holes, transform, seed)
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.root}: no such folder; give the Middlebury root (see datasets/README.md)")
        self.downscale = check_scale(downscale)
        self.as_disparity = bool(as_disparity)
        if (self.root / "im0.png").is_file():
            candidates = [self.root]
        else:
            candidates = sorted(p for p in self.root.iterdir() if p.is_dir())
        self.scenes: list[Path] = []
        broken: list[str] = []
        for scene in candidates:
            if not (scene / "im0.png").is_file():
                continue
            has_disp = any((scene / n).is_file() for n in _MIDDLEBURY_DISPARITIES)
            if (scene / "calib.txt").is_file() and has_disp:
                self.scenes.append(scene)
            else:
                broken.append(scene.name)
        if broken:
            raise InputError(
                f"{self.root}: scene(s) {listing(broken)} have im0.png but no calib.txt or "
                "disp0.pfm/disp0GT.pfm; complete or remove them"
            )
        if not self.scenes:
            raise InputError(f"{self.root}: no scene folders with im0.png, disp0.pfm and calib.txt found")

    def __len__(self) -> int:
        return len(self.scenes)

    def _load(self, index: int) -> _Sample:
        scene = self.scenes[index]
        disp_file = next(scene / n for n in _MIDDLEBURY_DISPARITIES if (scene / n).is_file())
        rgb = read_image(scene / "im0.png")
        disp = read_depth(disp_file)  # PFM: float pixels, inf -> 0 (missing)
        if disp.shape != rgb.shape[:2]:
            raise InputError(f"{disp_file}: {disp.shape} does not match im0.png {rgb.shape[:2]}; re-download the scene")
        calib = read_middlebury_calib(scene / "calib.txt")
        values = disp if self.as_disparity else calib.disparity_to_depth(disp)
        k = self.downscale
        if k > 1:
            h, w = (values.shape[0] // k) * k, (values.shape[1] // k) * k
            rgb = cv2.resize(rgb[:h, :w], (w // k, h // k), interpolation=cv2.INTER_AREA)
            values = values[k // 2 : h : k, k // 2 : w : k]
            if self.as_disparity:
                values = values / k
        return _Sample(rgb.astype(np.float32), np.ascontiguousarray(values, dtype=np.float32), scene.name)


# --------------------------------------------------------------------------- folders


class FolderDepth(_DepthDataset):
    """RGB-D pairs from a folder: ``root/rgb/<stem>.{png,jpg}`` + ``root/depth/<stem>.<ext>``.

    Depth may be any format of :func:`densepac.io.depth.read_depth` (16-bit PNG in
    ``1 / depth_scale`` m units). With ``root/depth_lr/<stem>.<ext>`` present (and
    ``given_lr`` not False) those maps, exactly ``1 / scale`` of the HR size, are used
    as inputs instead of simulated ones; a transform must then be a crop/flip
    :class:`~densepac.depth.transforms.DepthTransform` with ``crop_step=scale``.

    Args:
        root: dataset folder.
        scale, protocol, noise, holes, seed, transform: see the module doc.
        depth_scale: units per metre of integer depth files.
        given_lr: True (require ``depth_lr/``), False (always simulate), None (use it
            when present).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        scale: int = 8,
        protocol: str = "point",
        noise: float = 0.0,
        holes: float = 0.0,
        transform: JointTransform | None = None,
        seed: int = 0,
        depth_scale: float = 1000.0,
        given_lr: bool | None = None,
    ) -> None:
        super().__init__(scale, protocol, noise, holes, transform, seed)
        self.root = Path(root)
        self.depth_scale = float(depth_scale)
        for sub in ("rgb", "depth"):
            if not (self.root / sub).is_dir():
                raise InputError(
                    f"{self.root}: missing the '{sub}' folder; expected root/rgb/<stem>.png and root/depth/<stem>.png"
                )
        rgb = index_folder(self.root / "rgb", IMAGE_EXTENSIONS, "rgb")
        depth = index_folder(self.root / "depth", DEPTH_EXTENSIONS, "depth")
        check_paired(self.root, rgb, depth, "rgb without depth", "depth without rgb")
        if not rgb:
            raise InputError(f"{self.root}: no rgb/depth pairs found in rgb/ and depth/")
        self.stems = sorted(rgb)
        self.rgb_files, self.depth_files = rgb, depth
        lr_dir = self.root / "depth_lr"
        use_lr = lr_dir.is_dir() if given_lr is None else bool(given_lr)
        self.lr_files: dict[str, Path] | None = None
        if use_lr:
            if not lr_dir.is_dir():
                raise InputError(
                    f"{self.root}: given_lr=True but there is no depth_lr/ folder; add it or pass given_lr=None"
                )
            lr = index_folder(lr_dir, DEPTH_EXTENSIONS, "depth_lr")
            missing = sorted(set(self.stems) - set(lr))
            if missing:
                raise InputError(
                    f"{lr_dir}: no low-resolution map for {listing(missing)}; add them or pass given_lr=False"
                )
            self.lr_files = lr
            self._check_given_lr_transform()

    def __len__(self) -> int:
        return len(self.stems)

    def _load(self, index: int) -> _Sample:
        stem = self.stems[index]
        rgb = read_image(self.rgb_files[stem])
        # No valid pixel, or negative values: a wrong --depth-scale or a broken export, not a target.
        depth = validate_depth(
            read_depth(self.depth_files[stem], depth_scale=self.depth_scale), str(self.depth_files[stem])
        )
        if depth.shape != rgb.shape[:2]:
            raise InputError(
                f"{self.depth_files[stem]}: depth is {depth.shape[0]}x{depth.shape[1]} but its rgb is "
                f"{rgb.shape[0]}x{rgb.shape[1]}; give aligned pairs of the same size"
            )
        lr = None
        if self.lr_files is not None:
            lr = validate_depth(read_depth(self.lr_files[stem], depth_scale=self.depth_scale), str(self.lr_files[stem]))
            s = self.scale
            if (lr.shape[0] * s, lr.shape[1] * s) != depth.shape:
                raise InputError(
                    f"{self.lr_files[stem]}: {lr.shape[0]}x{lr.shape[1]} is not 1/{s} of the depth "
                    f"{depth.shape[0]}x{depth.shape[1]}; check scale or crop the HR files to a "
                    f"multiple of {s}"
                )
        return _Sample(rgb, depth, stem, lr)


# --------------------------------------------------------------------------- synthetic


class SyntheticDepth(_DepthDataset):
    """Procedural scenes from :func:`densepac.depth.synthetic.make_rgbd_scene`, made on the fly.

    Item ``i`` is deterministic from ``(seed, i)`` (scene and degradation).

    Args:
        num_scenes: dataset length.
        seed: base seed.
        size: ``(H, W)``, divisible by ``scale``.
        scale, protocol, noise, holes, transform: see the module doc.
        scene_options: keyword options of ``make_rgbd_scene``.
    """

    def __init__(
        self,
        num_scenes: int,
        seed: int = 0,
        size: tuple[int, int] = (240, 320),
        scale: int = 8,
        protocol: str = "point",
        noise: float = 0.0,
        holes: float = 0.0,
        transform: JointTransform | None = None,
        scene_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(scale, protocol, noise, holes, transform, seed)
        if isinstance(num_scenes, bool) or int(num_scenes) < 1:
            raise InputError(f"num_scenes={num_scenes!r} must be a positive integer")
        h, w = (int(v) for v in size)
        if h % self.scale or w % self.scale:
            raise InputError(
                f"size {h}x{w} is not divisible by scale {self.scale}; use e.g. "
                f"{max(self.scale, h - h % self.scale)}x{max(self.scale, w - w % self.scale)}"
            )
        self.num_scenes = int(num_scenes)
        self.size = (h, w)
        self.scene_options = dict(scene_options or {})
        from densepac.depth.synthetic import make_rgbd_scene

        # Fail on bad options now rather than inside a worker.
        make_rgbd_scene(0, 8, 8, **self.scene_options)

    def __len__(self) -> int:
        return self.num_scenes

    def _load(self, index: int) -> _Sample:
        from densepac.data.procedural import scene_seed
        from densepac.depth.synthetic import make_rgbd_scene

        scene = make_rgbd_scene(scene_seed(self.seed, index), *self.size, **self.scene_options)
        return _Sample(scene["rgb"], scene["depth"], f"synthetic_{self.seed}_{index:06d}")


DATA_KINDS = ("synthetic", "folder", "nyu", "middlebury")


# Held-out synthetic scenes come from another seed stream than any training run uses.
SYNTHETIC_TEST_SEED_OFFSET = 1_000_003


def parse_data_spec(spec: str) -> tuple[str, str | None]:
    """``"kind:arg"`` -> (kind, arg); refuses unknown kinds and missing paths."""
    kind, _, arg = spec.partition(":")
    if kind not in DATA_KINDS:
        raise InputError(
            f"unknown data source {spec!r}; use one of "
            f"{', '.join(k + ':PATH' if k != 'synthetic' else k for k in DATA_KINDS)}"
        )
    if kind != "synthetic":
        if not arg:
            raise InputError(f"data source {kind!r} needs a path: --data {kind}:PATH")
        if not Path(arg).exists():
            raise InputError(f"{arg} does not exist; check the --data {kind}:PATH argument")
    return kind, arg or None


def make_depth_dataset(
    spec: str,
    split: str,
    scale: int,
    *,
    protocol: str = "point",
    size: tuple[int, int] | None = None,
    num_scenes: int = 100,
    noise: float = 0.0,
    holes: float = 0.0,
    seed: int = 0,
    transform: Any = None,
    crop: int = 0,
    scene_options: dict[str, Any] | None = None,
) -> Dataset:
    """A depth dataset for ``split`` ("train", "val" or "test").

    Synthetic: ``num_scenes`` scenes of ``size`` (default 240x320); "val" and "test" use two
    seed streams never used for training, and not each other (checkpoints are picked on
    val, tables measured on test). Folder: ``PATH/<split>/`` if it exists, else ``PATH``.
    NYU: the standard split (val = test). Middlebury: every scene (for evaluation).
    ``scene_options``: keyword options of ``make_rgbd_scene`` (synthetic only).
    """
    from densepac.depth.datasets import FolderDepth, MiddleburyDepth, NYUv2Depth, SyntheticDepth

    if split not in ("train", "val", "test"):
        raise InputError(f"split {split!r} is unknown; use train, val or test")
    kind, arg = parse_data_spec(spec)
    common = dict(scale=scale, protocol=protocol, noise=noise, holes=holes, transform=transform)
    if kind == "synthetic":
        base = int(arg) if arg else seed
        if split != "train":
            base += SYNTHETIC_TEST_SEED_OFFSET * (2 if split == "test" else 1)
        if size is None:  # the default scene size, cropped to what the scale divides
            size = (240 - 240 % scale, 320 - 320 % scale) if isinstance(scale, int) and scale > 0 else (240, 320)
        return SyntheticDepth(num_scenes, seed=base, size=size, scene_options=scene_options, **common)
    if scene_options:
        raise InputError(f"scene_options apply to synthetic data only, not {kind!r}")
    if kind == "folder":
        root = Path(arg)
        return FolderDepth(root / split if (root / split).is_dir() else root, seed=seed, **common)
    if kind == "nyu":
        return NYUv2Depth(arg, split="train" if split == "train" else "test", crop=crop, seed=seed, **common)
    return MiddleburyDepth(arg, seed=seed, **common)
