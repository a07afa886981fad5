"""VOC 2012 (+ SBD) and folder segmentation readers on tiny trees built on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from densepac.errors import InputError
from densepac.io.images import write_image, write_label
from densepac.segmentation.datasets import FolderSegmentation, VOCSegmentation, check_labels
from densepac.segmentation.transforms import SegTransform

H, W = 20, 28


def _scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.random((H, W, 3)).astype(np.float32)
    label = np.zeros((H, W), dtype=np.int64)
    label[4:14, 6:20] = 1 + seed % 20
    label[4, 6:20] = 255  # VOC-style border
    return image, label


def _voc(
    root: Path, ids: dict[str, list[str]], label_dir: str = "SegmentationClass", ext: str = ".jpg"
) -> dict[str, np.ndarray]:
    """Write a VOC2012-like tree; returns the labels written, by id."""
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / label_dir).mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    labels = {}
    every = sorted({i for group in ids.values() for i in group})
    for n, i in enumerate(every):
        image, label = _scene(n)
        write_image(root / "JPEGImages" / f"{i}{ext}", image)
        write_label(root / label_dir / f"{i}.png", label)
        labels[i] = label
    for split, group in ids.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i in group))
    return labels


@pytest.fixture()
def voc(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    ids = {
        "train": ["2007_000032", "2007_000039"],
        "val": ["2007_000063"],
        "trainval": ["2007_000032", "2007_000039", "2007_000063"],
    }
    root = tmp_path / "VOC2012"
    return root, _voc(root, ids)


def test_voc_items(voc):
    root, labels = voc
    train = VOCSegmentation(root, "train")
    assert len(train) == 2 and train.names == ["2007_000032", "2007_000039"]
    item = train[1]
    assert set(item) == {"image", "label", "name"}
    assert item["image"].shape == (3, H, W) and item["image"].dtype == torch.float32
    assert float(item["image"].min()) >= 0.0 and float(item["image"].max()) <= 1.0
    assert item["label"].dtype == torch.int64 and item["name"] == "2007_000039"
    np.testing.assert_array_equal(item["label"].numpy(), labels["2007_000039"])  # palette indices, 255 kept
    assert train[-1]["name"] == "2007_000039"
    with pytest.raises(IndexError):
        train[2]
    assert len(VOCSegmentation(root, "val")) == 1
    assert len(VOCSegmentation(root, "trainval")) == 3
    assert len(VOCSegmentation(root, "trainval.txt")) == 3
    custom = root / "mine.txt"
    custom.write_text("2007_000063\n\n# a comment\n")
    assert VOCSegmentation(root, str(custom)).names == ["2007_000063"]


def test_voc_batches_with_a_transform(voc):
    root, _ = voc
    ds = VOCSegmentation(root, "trainval", transform=SegTransform(crop=(16, 16), seed=0, color_jitter=False))
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 16, 16) and batch["label"].shape == (3, 16, 16)
    assert set(torch.unique(batch["label"]).tolist()) <= {0, 1, 2, 3, 255}
    assert batch["name"] == ["2007_000032", "2007_000039", "2007_000063"]


def test_voc_png_images_in_jpegimages(tmp_path):
    root = tmp_path / "voc"
    labels = _voc(root, {"train": ["a", "b"]}, ext=".png")
    item = VOCSegmentation(root, "train", num_classes=5)[0]
    np.testing.assert_array_equal(item["label"].numpy(), labels["a"])
    expected = np.round(_scene(0)[0] * 255) / 255
    np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_voc_missing_files_are_listed(voc):
    root, _ = voc
    (root / "JPEGImages" / "2007_000039.jpg").unlink()
    (root / "SegmentationClass" / "2007_000063.png").unlink()
    with pytest.raises(InputError, match=r"1 without JPEGImages/<id>\.jpg: 2007_000039"):
        VOCSegmentation(root, "train")
    with pytest.raises(InputError, match=r"without SegmentationClass/<id>\.png: 2007_000063") as err:
        VOCSegmentation(root, "trainval")
    assert "\n" not in str(err.value)


def test_voc_bad_splits(voc):
    root, _ = voc
    (root / "ImageSets" / "Segmentation" / "empty.txt").write_text("\n  \n")
    with pytest.raises(InputError, match="lists no ids"):
        VOCSegmentation(root, "empty")
    with pytest.raises(InputError, match=r"no such split list; available: empty, train, trainval, val"):
        VOCSegmentation(root, "test")
    with pytest.raises(InputError, match="no such dataset folder"):
        VOCSegmentation(root / "nope")
    with pytest.raises(InputError, match="num_classes"):
        VOCSegmentation(root, num_classes=0)


def test_voc_label_out_of_range_names_the_file(voc):
    root, _ = voc
    bad = np.zeros((H, W), dtype=np.int64)
    bad[0, 0], bad[1, 1] = 21, 40
    write_label(root / "SegmentationClass" / "2007_000039.png", bad)
    ds = VOCSegmentation(root, "train")
    ds[0]  # the good file reads
    with pytest.raises(InputError, match=r"2007_000039\.png: label values 21, 40 are not class ids \[0, 21\)"):
        ds[1]
    with pytest.raises(InputError, match="2007_000039.png"):
        ds.verify()
    VOCSegmentation(root, "train", num_classes=41).verify()


def test_voc_image_label_size_mismatch(voc):
    root, _ = voc
    write_label(root / "SegmentationClass" / "2007_000032.png", np.zeros((H, W + 1), dtype=np.int64))
    with pytest.raises(InputError, match=r"2007_000032\.png: label is 20x29 but image 2007_000032\.jpg is 20x28"):
        VOCSegmentation(root, "train")[0]


def test_voc_sbd_train_aug(tmp_path):
    root = tmp_path / "VOC2012"
    labels = _voc(root, {"val": ["v1"], "train": ["t1"]})
    _voc(root, {"val": ["v1"], "train": ["t1"]}, label_dir="SegmentationClassAug")
    # SBD-only ids: images in JPEGImages, labels only in SegmentationClassAug.
    for i, stem in enumerate(["s1", "s2"]):
        image, label = _scene(10 + i)
        write_image(root / "JPEGImages" / f"{stem}.jpg", image)
        write_label(root / "SegmentationClassAug" / f"{stem}.png", label)
    lists = root / "ImageSets" / "Segmentation"
    # DeepLab's two-column format.
    (lists / "train_aug.txt").write_text(
        "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ["t1", "s1", "s2"])
    )
    aug = VOCSegmentation(root, "train", sbd=True)
    assert aug.split == "train_aug" and aug.names == ["t1", "s1", "s2"]
    assert aug.label_files[1].parent.name == "SegmentationClassAug"
    np.testing.assert_array_equal(aug[0]["label"].numpy(), labels["t1"])
    with pytest.raises(InputError, match="without SegmentationClass/<id>.png: s1, s2"):
        VOCSegmentation(root, "train_aug")  # the plain VOC labels lack the SBD ids
    assert len(VOCSegmentation(root, "val", sbd=True)) == 1
    (lists / "train_aug.txt").write_text("t1\ns1\nv1\n")
    with pytest.raises(InputError, match=r"1 ids are also in val\.txt \(v1\)"):
        VOCSegmentation(root, "train", sbd=True)
    (lists / "train_aug.txt").unlink()
    with pytest.raises(InputError, match="sbd=True needs train_aug.txt"):
        VOCSegmentation(root, "train", sbd=True)


def _folder(root: Path, stems: list[str], num: int = 0) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for n, stem in enumerate(stems):
        image, label = _scene(num + n)
        write_image(root / "images" / f"{stem}.png", image)
        write_label(root / "masks" / f"{stem}.png", label)


def test_folder_segmentation(tmp_path):
    _folder(tmp_path, ["b", "a", "c"])
    ds = FolderSegmentation(tmp_path)
    assert ds.names == ["a", "b", "c"] and len(ds) == 3
    item = ds[0]
    assert item["image"].shape == (3, H, W) and item["label"].shape == (H, W)
    np.testing.assert_array_equal(item["label"].numpy(), _scene(1)[1])  # "a" was written second
    np.save(tmp_path / "masks" / "d.npy", np.full((H, W), 3, dtype=np.int64))
    write_image(tmp_path / "images" / "d.jpg", _scene(0)[0])
    assert FolderSegmentation(tmp_path, num_classes=4)[3]["label"].unique().tolist() == [3]
    with pytest.raises(InputError, match="label values 3 are not class ids"):
        FolderSegmentation(tmp_path, num_classes=3)[3]


def test_folder_segmentation_errors(tmp_path):
    with pytest.raises(InputError, match="no such dataset folder"):
        FolderSegmentation(tmp_path / "missing")
    (tmp_path / "images").mkdir()
    with pytest.raises(InputError, match="missing 'masks' folder"):
        FolderSegmentation(tmp_path)
    (tmp_path / "masks").mkdir()
    with pytest.raises(InputError, match="no image/mask pairs"):
        FolderSegmentation(tmp_path)
    _folder(tmp_path, ["a", "b"])
    (tmp_path / "masks" / "b.png").unlink()
    write_label(tmp_path / "masks" / "z.png", np.zeros((4, 4), dtype=np.int64))
    with pytest.raises(InputError, match=r"images without a mask: b; masks without an image: z"):
        FolderSegmentation(tmp_path)
    with pytest.raises(InputError, match="transform"):
        FolderSegmentation(tmp_path, transform="flip")


def test_check_labels():
    check_labels(np.array([[0, 1, 255]]), 2, "x.png")
    check_labels(np.array([[0, 77, 255]]), None, "x.png")
    with pytest.raises(InputError, match=r"x\.png: label values -1 "):
        check_labels(np.array([[0, -1]]), None, "x.png")
