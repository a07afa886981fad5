"""Depth datasets named by a short spec, as the CLI and the scripts take them.

``synthetic`` | ``synthetic:SEED`` | ``folder:PATH`` | ``nyu:PATH.mat`` | ``middlebury:PATH``
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from densepac.errors import InputError

DATA_KINDS = ("synthetic", "folder", "nyu", "middlebury")
# Held-out synthetic scenes come from another seed stream than any training run uses.
SYNTHETIC_TEST_SEED_OFFSET = 1_000_003


def parse_data_spec(spec: str) -> tuple[str, str | None]:
    """``"kind:arg"`` -> (kind, arg); refuses unknown kinds and missing paths."""
    kind, _, arg = spec.partition(":")
    if kind not in DATA_KINDS:
        raise InputError(f"unknown data source {spec!r}; use one of {', '.join(k + ':PATH' if k != 'synthetic' else k for k in DATA_KINDS)}")
    if kind != "synthetic":
        if not arg:
            raise InputError(f"data source {kind!r} needs a path: --data {kind}:PATH")
        if not Path(arg).exists():
            raise InputError(f"{arg} does not exist; check the --data {kind}:PATH argument")
    return kind, arg or None


def make_depth_dataset(spec: str, split: str, scale: int, *, protocol: str = "point", size: tuple[int, int] | None = None,
                       num_scenes: int = 100, noise: float = 0.0, holes: float = 0.0, seed: int = 0,
                       transform: Any = None, crop: int = 0, scene_options: dict[str, Any] | None = None) -> Dataset:
    """A depth dataset for ``split`` ("train", "val" or "test").

    Synthetic: ``num_scenes`` scenes of ``size`` (default 240x320); "val" and "test" use two
    seed streams never used for training, and not each other (checkpoints are picked on
    val, tables measured on test). Folder: ``PATH/<split>/`` if it exists, else ``PATH``.
    NYU: the standard split (val = test). Middlebury: every scene (for evaluation).
    ``scene_options``: keyword options of ``make_rgbd_scene`` (synthetic only).
    """
    from densepac.data.depth_datasets import FolderDepth, MiddleburyDepth, NYUv2Depth, SyntheticDepth

    if split not in ("train", "val", "test"):
        raise InputError(f"split {split!r} is unknown; use train, val or test")
    kind, arg = parse_data_spec(spec)
    common = dict(scale=scale, protocol=protocol, noise=noise, holes=holes, transform=transform)
    if kind == "synthetic":
        base = int(arg) if arg else seed
        if split != "train":
            base += SYNTHETIC_TEST_SEED_OFFSET * (2 if split == "test" else 1)
        return SyntheticDepth(num_scenes, seed=base, size=size or (240, 320), scene_options=scene_options, **common)
    if scene_options:
        raise InputError(f"scene_options apply to synthetic data only, not {kind!r}")
    if kind == "folder":
        root = Path(arg)
        return FolderDepth(root / split if (root / split).is_dir() else root, seed=seed, **common)
    if kind == "nyu":
        return NYUv2Depth(arg, split="train" if split == "train" else "test", crop=crop, seed=seed, **common)
    return MiddleburyDepth(arg, seed=seed, **common)
