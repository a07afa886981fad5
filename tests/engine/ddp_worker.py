"""Run by test_ddp.py under ``torchrun --nproc_per_node 2``; not a test module itself.

Each rank, in one launch:

1. trains 3 of 4 steps into a shared folder and stops (``max_steps``), then a fresh model
   resumes from that checkpoint to the end;
2. trains the same run uninterrupted into a folder of its own (``out/c/rank{R}``), while
   the training set records which samples this rank loaded;
3. trains on an odd number of samples (``ODD_SIZE``) into a shared folder (``out/odd``),
   recording the training and validation samples this rank loaded;

then writes ``rank{R}.json`` (samples seen, metrics, and every file-system write this
process made under ``out``, caught by an audit hook) and ``rank{R}_{resumed,straight}
.safetensors`` into the record folder.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import Dataset

from densepac.engine import distributed as du
from densepac.engine.tasks import DepthTask
from densepac.engine.trainer import Trainer

SIZE = 16
TRAIN_SIZE = 12
VAL_SIZE = 5  # odd on purpose: the ranks get 3 and 2 validation samples
ODD_SIZE = 11  # DistributedSampler pads it to 12: one sample is seen twice per epoch


class RecordingDepthSet(Dataset):
    """Tiny synthetic RGB-D set that remembers which indices were loaded."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand(n, 3, SIZE // 4, SIZE // 4, generator=g)
        self.rgb = F.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        self.depth = 1.0 + 3.0 * self.rgb.mean(dim=1, keepdim=True)
        self.seen: list[int] = []

    def __len__(self) -> int:
        return len(self.rgb)

    def __getitem__(self, i: int) -> dict:
        self.seen.append(int(i))
        rgb = (self.rgb[i] + 0.02 * torch.randn(3, SIZE, SIZE)).clamp(0, 1)
        depth = self.depth[i]
        return {"rgb": rgb, "depth": depth, "depth_lr": F.avg_pool2d(depth, 4), "name": f"s{i}"}


class Net(nn.Module):
    task = "depth"

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, depth_lr: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(depth_lr, size=guide.shape[-2:], mode="bilinear", align_corners=False)
        return up + self.body(torch.cat([up, guide], dim=1))


def build_model(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net()


def build_trainer(model: nn.Module, train: Dataset, out_dir: Path, batch_size: int) -> Trainer:
    return Trainer(
        model,
        DepthTask(),
        train,
        RecordingDepthSet(VAL_SIZE, seed=1),
        out_dir=out_dir,
        epochs=2,
        batch_size=batch_size,
        lr=1e-2,
        seed=0,
        checkpoint_every=1,
        log_every=1,
    )


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_WRITE_EVENTS = {
    "os.mkdir": 1,
    "os.rename": 2,
    "os.remove": 1,
    "os.rmdir": 1,
    "shutil.rmtree": 1,
    "os.truncate": 1,
    "os.link": 2,
    "os.symlink": 2,
    "shutil.copyfile": 2,
    "shutil.move": 2,
}


def record_writes(root: Path) -> list[list[str]]:
    """Every write-like file-system event of this process under ``root``, as it happens.

    Uses ``sys.addaudithook``: opens for writing (``open``/``os.open``), mkdir, rename and
    replace, removals, links. Paths are recorded relative to ``root``.
    """
    root_str = os.path.abspath(root) + os.sep
    seen: list[list[str]] = []

    def under_root(path) -> str | None:
        if isinstance(path, int):
            return None
        full = os.path.abspath(os.fsdecode(path))
        return full[len(root_str) :] if (full + os.sep).startswith(root_str) else None

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & _WRITE_FLAGS)
            paths = [path] if writes else []
        elif event in _WRITE_EVENTS:
            paths = list(args[: _WRITE_EVENTS[event]])
        else:
            return
        for path in paths:
            rel = under_root(path)
            if rel is not None:
                seen.append([event, rel])

    sys.addaudithook(hook)
    return seen


def main(out_root: Path, record_dir: Path) -> None:
    rank = int(os.environ["RANK"])
    writes = record_writes(out_root)

    first = build_trainer(build_model(), RecordingDepthSet(TRAIN_SIZE), out_root / "ab", 3)
    stopped = first.fit(max_steps=3)
    resumed_model = build_model(seed=99)
    second = build_trainer(resumed_model, RecordingDepthSet(TRAIN_SIZE), out_root / "ab", 3)
    resumed = second.fit(resume=True)

    straight_model = build_model()
    train = RecordingDepthSet(TRAIN_SIZE)
    straight = build_trainer(straight_model, train, out_root / "c" / f"rank{rank}", 3).fit()

    odd_train, odd_val = RecordingDepthSet(ODD_SIZE), RecordingDepthSet(VAL_SIZE, seed=1)
    Trainer(
        build_model(),
        DepthTask(),
        odd_train,
        odd_val,
        out_dir=out_root / "odd",
        epochs=2,
        batch_size=2,
        lr=1e-2,
        seed=0,
        log_every=1,
    ).fit()

    record_dir.mkdir(parents=True, exist_ok=True)
    (record_dir / f"rank{rank}.json").write_text(
        json.dumps(
            {
                "world_size": du.world_size(),
                "seen": train.seen,
                "stopped_step": stopped.step,
                "resumed_step": resumed.step,
                "metrics": straight.metrics,
                "resumed_metrics": resumed.metrics,
                "odd_seen": odd_train.seen,
                "odd_val_seen": odd_val.seen,
                "writes": list(writes),
            }
        )
    )
    save_file(dict(resumed_model.state_dict()), record_dir / f"rank{rank}_resumed.safetensors")
    save_file(dict(straight_model.state_dict()), record_dir / f"rank{rank}_straight.safetensors")
    du.cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
