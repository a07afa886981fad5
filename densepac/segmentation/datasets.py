"""Semantic segmentation datasets: PASCAL VOC 2012 (optionally SBD-augmented) and plain folders.

Every dataset yields a dict:

- ``image``: float32 ``(3, H, W)`` RGB in [0, 1];
- ``label``: int64 ``(H, W)`` class ids, ``255`` = ignore (VOC's object borders);
- ``name``: str, the sample's id (file stem).

Pipeline per item: read image + label -> check the label values against ``num_classes``
(on the file's values, so an error names the file) -> optional joint ``transform(image,
label) -> (image, label)`` (e.g. :class:`densepac.segmentation.transforms.SegTransform`) -> tensors.
Missing files are found when the dataset is built, bad label values when an item is read
(:meth:`verify` reads them all up front).

PASCAL VOC 2012 layout (``root`` is ``VOCdevkit/VOC2012``)::

    JPEGImages/<id>.jpg                 images (any extension of io.IMAGE_EXTENSIONS is accepted,
                                        .jpg first, so synthetic PNG sets use the same folders)
    SegmentationClass/<id>.png          palette PNGs: pixel value = class id, 255 = border / ignore
    ImageSets/Segmentation/train.txt    one id per line (1464 ids), val.txt (1449), trainval.txt

SBD augmentation (``sbd=True``), the "train_aug" set of DeepLab and the PAC paper: the
10582 training ids of SBD (Hariharan et al. 2011) plus VOC train, minus every VOC val id,
with labels converted to VOC palette PNGs in ``SegmentationClassAug/<id>.png`` (which also
holds the val labels). Put the list in ``ImageSets/Segmentation/train_aug.txt``; DeepLab's
two-column lines (``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png``) are read too.
With ``sbd=True``, ``split="train"`` means ``train_aug``; a train_aug list that shares ids
with ``val.txt`` is refused, because evaluating on training images inflates every metric.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from densepac.check import check_num_classes
from densepac.data.folders import check_paired, index_folder, listing
from densepac.depth.datasets import SYNTHETIC_TEST_SEED_OFFSET
from densepac.errors import InputError
from densepac.io.images import IMAGE_EXTENSIONS, LABEL_EXTENSIONS, read_image, read_label

ImageMaskTransform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

IGNORE_INDEX = 255
VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
VOC_NUM_CLASSES = len(VOC_CLASSES)
# Preferred extension first when one stem has several image files (VOC ships .jpg).
_IMAGE_PREFERENCE = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def check_labels(
    label: np.ndarray, num_classes: int | None, source: str | os.PathLike[str], ignore_index: int = IGNORE_INDEX
) -> None:
    """Raise InputError when ``label`` holds ids outside ``[0, num_classes)`` other than ``ignore_index``.

    With ``num_classes=None`` only negative ids are refused.
    """
    valid = label >= 0
    if num_classes is not None:
        valid &= label < num_classes
    bad = np.unique(label[~valid & (label != ignore_index)])
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:6]) + (" ..." if bad.size > 6 else "")
        allowed = f"[0, {num_classes})" if num_classes is not None else ">= 0"
        raise InputError(
            f"{source}: label values {shown} are not class ids {allowed} nor the ignore value {ignore_index}; "
            f"fix the mask or pass the right num_classes"
        )


def seg_item(
    image: np.ndarray, label: np.ndarray, name: str, transform: ImageMaskTransform | None = None
) -> dict[str, Any]:
    """The dataset item of an image (H, W, 3) float [0, 1] or uint8 and its label (H, W), after ``transform``.

    Returns:
        ``{"image": float32 (3, H, W), "label": int64 (H, W), "name": name}``.
    """
    if transform is not None:
        image, label = transform(image, label)
    arr = np.asarray(image)
    arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32, copy=False)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))),
        "label": torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64)),
        "name": name,
    }


class _SegDataset(Dataset):
    """Shared item pipeline over parallel lists of names, image files and label files."""

    names: list[str]
    image_files: list[Path]
    label_files: list[Path]

    def __init__(self, transform: ImageMaskTransform | None, num_classes: int | None) -> None:
        if transform is not None and not callable(transform):
            raise InputError(f"transform={transform!r} is not callable; give e.g. SegTransform(...) or None")
        self.transform = transform
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        """Image float32 (H, W, 3) [0, 1], checked label int64 (H, W) and name of item ``index``."""
        image_file, label_file = self.image_files[index], self.label_files[index]
        image = read_image(image_file)
        label = read_label(label_file)
        if label.shape != image.shape[:2]:
            raise InputError(
                f"{label_file}: label is {label.shape[0]}x{label.shape[1]} but image {image_file.name} is "
                f"{image.shape[0]}x{image.shape[1]}; give both the same size"
            )
        check_labels(label, self.num_classes, label_file)
        return image, label, self.names[index]

    def verify(self) -> None:
        """Read every item once: raises the first unreadable file or out-of-range label."""
        for i in range(len(self)):
            self.load(i)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {len(self)}")
        image, label, name = self.load(index % len(self))
        return seg_item(image, label, name, self.transform)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} items, num_classes={self.num_classes})"


def _read_id_list(path: Path) -> list[str]:
    """Ids of a VOC list file: one per line, or DeepLab's ``/JPEGImages/<id>.jpg /Seg.../<id>.png``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the list file ({exc}); check it is a text file") from None
    ids: list[str] = []
    for line in text.splitlines():
        token = line.split()[0] if line.split() else ""
        if not token or token.startswith("#"):
            continue
        ids.append(Path(token).stem if "/" in token or "." in token else token)
    return ids


class VOCSegmentation(_SegDataset):
    """PASCAL VOC 2012 segmentation, optionally with the SBD train_aug set (see the module doc).

    Args:
        root: the ``VOC2012`` folder (holding ``JPEGImages``, ``SegmentationClass``, ``ImageSets``).
        split: ``"train"``, ``"val"``, the name of any list in ``image_set_dir`` (``"trainval"``,
            ``"train_aug"``; ``.txt`` optional) or a path to a list file.
        image_set_dir: folder of the list files, relative to ``root``.
        sbd: read labels from ``SegmentationClassAug`` and map ``"train"`` to ``"train_aug"``.
        transform: joint ``(image, label) -> (image, label)`` augmentation.
        num_classes: labels must lie in ``[0, num_classes)`` or be 255 (21 for VOC).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        image_set_dir: str = "ImageSets/Segmentation",
        sbd: bool = False,
        transform: ImageMaskTransform | None = None,
        num_classes: int = VOC_NUM_CLASSES,
    ) -> None:
        super().__init__(transform, check_num_classes(num_classes, maximum=255, allow_none=False))
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.root}: no such dataset folder; pass the VOC2012 folder (VOCdevkit/VOC2012)")
        self.sbd = bool(sbd)
        list_file = self._list_file(str(split), self.root / image_set_dir)
        self.split, self.list_file = list_file.stem, list_file
        ids = _read_id_list(list_file)
        if not ids:
            raise InputError(f"{list_file}: the split lists no ids; put one image id per line")
        if self.sbd and list_file.stem == "train_aug":
            self._check_no_val_overlap(ids, list_file)
        label_dir = self.root / ("SegmentationClassAug" if self.sbd else "SegmentationClass")
        images = index_folder(self.root / "JPEGImages", _IMAGE_PREFERENCE, "image (JPEGImages)", prefer=True)
        labels = index_folder(label_dir, LABEL_EXTENSIONS, f"label ({label_dir.name})", prefer=True)
        no_image = [i for i in ids if i not in images]
        no_label = [i for i in ids if i not in labels]
        if no_image or no_label:
            parts = []
            if no_image:
                parts.append(f"{len(no_image)} without JPEGImages/<id>.jpg: {listing(no_image)}")
            if no_label:
                parts.append(f"{len(no_label)} without {label_dir.name}/<id>.png: {listing(no_label)}")
            raise InputError(f"{list_file}: {'; '.join(parts)}; add the files or remove the ids from the list")
        self.names = ids
        self.image_files = [images[i] for i in ids]
        self.label_files = [labels[i] for i in ids]

    def _list_file(self, split: str, folder: Path) -> Path:
        as_path = Path(split)
        if as_path.suffix == ".txt" and as_path.is_file():
            return as_path
        name = as_path.stem if as_path.suffix == ".txt" else split
        if self.sbd and name == "train":
            name = "train_aug"
        path = folder / f"{name}.txt"
        if path.is_file():
            return path
        found = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
        hint = f"available: {', '.join(found)}" if found else f"{folder} holds no .txt lists"
        extra = " (sbd=True needs train_aug.txt, see the VOCSegmentation docs)" if name == "train_aug" else ""
        raise InputError(f"{path}: no such split list{extra}; {hint}")

    def _check_no_val_overlap(self, ids: list[str], list_file: Path) -> None:
        val_file = list_file.parent / "val.txt"
        if not val_file.is_file():
            return
        shared = sorted(set(ids) & set(_read_id_list(val_file)))
        if shared:
            raise InputError(
                f"{list_file}: {len(shared)} ids are also in val.txt ({listing(shared)}); "
                "remove the VOC val images from the train_aug list"
            )


class FolderSegmentation(_SegDataset):
    """Image / mask pairs from ``root/images/<stem>.{jpg,png,...}`` and ``root/masks/<stem>.png``.

    Masks are index PNGs (palette or grayscale; pixel value = class id, 255 = ignore) or
    ``.npy`` int arrays. Every stem needs both files.

    Args:
        root: dataset folder.
        transform: joint ``(image, label) -> (image, label)`` augmentation.
        num_classes: when given, labels must lie in ``[0, num_classes)`` or be 255.
        images, masks: names of the two sub-folders.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: ImageMaskTransform | None = None,
        num_classes: int | None = None,
        images: str = "images",
        masks: str = "masks",
    ) -> None:
        super().__init__(transform, check_num_classes(num_classes, maximum=255, allow_none=True))
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.root}: no such dataset folder; expected root/{images}/ and root/{masks}/")
        image_files = index_folder(self.root / images, _IMAGE_PREFERENCE, f"'{images}'", prefer=True)
        mask_files = index_folder(self.root / masks, LABEL_EXTENSIONS, f"'{masks}'", prefer=True)
        check_paired(self.root, image_files, mask_files, "images without a mask", "masks without an image")
        if not image_files:
            raise InputError(
                f"{self.root}: no image/mask pairs in {images}/ and {masks}/; "
                f"add <stem>.png files ({', '.join(IMAGE_EXTENSIONS)} for images)"
            )
        self.names = sorted(image_files)
        self.image_files = [image_files[s] for s in self.names]
        self.label_files = [mask_files[s] for s in self.names]


SEG_DATA_KINDS = ("synthetic", "voc", "voc_aug", "folder")


def _parse_seg_spec(spec: str) -> tuple[str, str | None]:
    """``"kind:arg"`` -> (kind, arg); refuses unknown kinds and missing paths."""
    kind, _, arg = str(spec).partition(":")
    if kind not in SEG_DATA_KINDS:
        forms = ", ".join(k if k == "synthetic" else f"{k}:PATH" for k in SEG_DATA_KINDS)
        raise InputError(f"unknown segmentation data source {spec!r}; use one of {forms}")
    if kind == "synthetic":
        if arg and not arg.isdigit():
            raise InputError(f"data source {spec!r}: the synthetic seed must be an integer, e.g. synthetic:7")
        return kind, arg or None
    if not arg:
        raise InputError(f"data source {kind!r} needs a path: --data {kind}:PATH")
    if not Path(arg).exists():
        raise InputError(f"{arg} does not exist; check the --data {kind}:PATH argument")
    return kind, arg


def make_seg_dataset(
    spec: str,
    split: str,
    *,
    num_classes: int = 21,
    size: int | tuple[int, int] | None = None,
    num_scenes: int = 100,
    seed: int = 0,
    transform: Any = None,
) -> Dataset:
    """A segmentation dataset for ``split`` ("train", "val" or "test") named by ``spec``.

    ``synthetic`` | ``synthetic:SEED``: ``num_scenes`` scenes of ``size`` (default 128x128);
    "val"/"test" draw from a seed stream no training run uses. ``voc:ROOT`` (the VOC2012
    folder; "test" reads val, VOC's test labels are not public), ``voc_aug:ROOT`` (SBD
    train_aug for "train"), ``folder:ROOT`` (``ROOT/<split>/`` if it exists, else ``ROOT``).
    Labels must lie in ``[0, num_classes)`` or be 255.
    """
    from densepac.segmentation.datasets import FolderSegmentation, VOCSegmentation
    from densepac.segmentation.synthetic import SyntheticSegmentation

    if split not in ("train", "val", "test"):
        raise InputError(f"split {split!r} is unknown; use train, val or test")
    kind, arg = _parse_seg_spec(spec)
    if kind == "synthetic":
        base = int(arg) if arg else seed
        if split != "train":
            base += SYNTHETIC_TEST_SEED_OFFSET
        side = size if size is not None else 128
        hw = (side, side) if isinstance(side, int) else tuple(side)
        return SyntheticSegmentation(num_scenes, seed=base, size=hw, num_classes=num_classes, transform=transform)
    root = Path(arg)  # type: ignore[arg-type]
    if kind in ("voc", "voc_aug"):
        return VOCSegmentation(
            root,
            split="train" if split == "train" else "val",
            sbd=kind == "voc_aug",
            transform=transform,
            num_classes=num_classes,
        )
    folder = root / split if (root / split).is_dir() else root
    return FolderSegmentation(folder, transform=transform, num_classes=num_classes)
