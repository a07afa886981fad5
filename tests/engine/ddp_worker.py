"""Run by test_ddp.py under ``torchrun --nproc_per_node 2``; not a test module itself.

Each rank, in one launch:

1. trains 3 of 4 steps into a shared folder and stops (``max_steps``), then a fresh model
   resumes from that checkpoint to the end;
2. trains the same run uninterrupted into a folder of its own (``out/c/rank{R}``), while
   the training set records which samples this rank loaded;

then writes ``rank{R}.json`` (samples seen, metrics) and ``rank{R}_{resumed,straight}
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
        self.body = nn.Sequential(
            nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1)
        )

    def forward(self, depth_lr: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(depth_lr, size=guide.shape[-2:], mode="bilinear", align_corners=False)
        return up + self.body(torch.cat([up, guide], dim=1))


def build_model(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net()


def build_trainer(model: nn.Module, train: Dataset, out_dir: Path, batch_size: int) -> Trainer:
    return Trainer(
        model, DepthTask(), train, RecordingDepthSet(VAL_SIZE, seed=1), out_dir=out_dir,
        epochs=2, batch_size=batch_size, lr=1e-2, seed=0, checkpoint_every=1, log_every=1,
    )


def main(out_root: Path, record_dir: Path) -> None:
    rank = int(os.environ["RANK"])

    first = build_trainer(build_model(), RecordingDepthSet(TRAIN_SIZE), out_root / "ab", 3)
    stopped = first.fit(max_steps=3)
    resumed_model = build_model(seed=99)
    second = build_trainer(resumed_model, RecordingDepthSet(TRAIN_SIZE), out_root / "ab", 3)
    resumed = second.fit(resume=True)

    straight_model = build_model()
    train = RecordingDepthSet(TRAIN_SIZE)
    straight = build_trainer(straight_model, train, out_root / "c" / f"rank{rank}", 3).fit()

    record_dir.mkdir(parents=True, exist_ok=True)
    (record_dir / f"rank{rank}.json").write_text(json.dumps({
        "world_size": du.world_size(),
        "seen": train.seen,
        "stopped_step": stopped.step,
        "resumed_step": resumed.step,
        "metrics": straight.metrics,
        "resumed_metrics": resumed.metrics,
    }))
    save_file(dict(resumed_model.state_dict()), record_dir / f"rank{rank}_resumed.safetensors")
    save_file(dict(straight_model.state_dict()), record_dir / f"rank{rank}_straight.safetensors")
    du.cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
