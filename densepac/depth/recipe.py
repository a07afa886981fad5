"""Training recipes: build model, data and trainer from one config; export shipped weights.

The CLI (``densepac train``) and ``scripts/train_depth.sh`` both go through here.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from densepac.depth.datasets import make_depth_dataset
from densepac.depth.evaluate import compare_depth_models
from densepac.engine.checkpoint import load_checkpoint
from densepac.engine.tasks import DepthTask
from densepac.engine.trainer import FitResult, Trainer
from densepac.errors import InputError
from densepac.models import create_model, get_entry, save_weights

BASELINES = ("bicubic", "guided_filter", "joint_bilateral")


@dataclass
class DepthTrainConfig:
    """Everything that defines a depth training run (stored in every checkpoint)."""

    model: str
    out: str
    data: str = "synthetic"
    protocol: str = "point"
    train_size: int = 2000
    val_size: int = 50
    crop: int = 128
    noise: float = 0.0
    holes: float = 0.0
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    scheduler: str = "cosine"
    loss: str = "l1"
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    amp: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def command(self, export: str | Path | None = None) -> str:
        """The `densepac train` command line that reproduces this run."""
        flags = {"model": self.model, "data": self.data, "protocol": self.protocol, "train-size": self.train_size,
                 "val-size": self.val_size, "crop": self.crop, "noise": self.noise, "holes": self.holes,
                 "epochs": self.epochs, "batch-size": self.batch_size, "lr": self.lr,
                 "weight-decay": self.weight_decay, "loss": self.loss, "seed": self.seed, "workers": self.workers,
                 "device": self.device, "out": self.out}
        parts = ["densepac", "train"] + [f"--{k} {shlex.quote(str(v))}" for k, v in flags.items()]
        parts += [f"--arg {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in self.model_kwargs.items()]
        parts += ["--amp"] if self.amp else []
        parts += [f"--export {shlex.quote(str(export))}"] if export is not None else []
        return " ".join(parts)

    def build_model(self) -> torch.nn.Module:
        if get_entry(self.model).task != "depth":
            raise InputError(f"model {self.model!r} is not a depth model; see `densepac models --task depth`")
        torch.manual_seed(self.seed)  # the initialisation is part of the run
        model = create_model(self.model, **self.model_kwargs)
        if not any(p.requires_grad for p in model.parameters()):
            raise InputError(f"model {self.model!r} has nothing to train; pick a learned depth model")
        return model

    def datasets(self, scale: int):
        from densepac.depth.transforms import DepthTransform

        if self.crop % scale:
            raise InputError(f"--crop {self.crop} is not a multiple of the scale {scale}")
        common = dict(protocol=self.protocol, noise=self.noise, holes=self.holes, seed=self.seed)
        train = make_depth_dataset(self.data, "train", scale, num_scenes=self.train_size,
                                   transform=DepthTransform(crop=(self.crop, self.crop), multiple_of=scale), **common)
        val = make_depth_dataset(self.data, "val", scale, num_scenes=self.val_size, **common)
        return train, val


def build_depth_trainer(cfg: DepthTrainConfig, progress: bool | None = None) -> Trainer:
    """The :class:`Trainer` of ``cfg``: model, synthetic/real data, L1 on valid pixels."""
    model = cfg.build_model()
    train, val = cfg.datasets(model.scale)
    return Trainer(model, DepthTask(loss=cfg.loss), train, val, out_dir=cfg.out, epochs=cfg.epochs,
                   batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, optimizer=cfg.optimizer,
                   scheduler=cfg.scheduler, num_workers=cfg.workers, seed=cfg.seed, device=cfg.device, amp=cfg.amp,
                   config=dataclasses.asdict(cfg), progress=progress)


def train_depth(cfg: DepthTrainConfig, resume: bool = False, progress: bool | None = None) -> FitResult:
    """Train (or resume) a depth model; checkpoints and ``log.jsonl`` go to ``cfg.out``."""
    return build_depth_trainer(cfg, progress).fit(resume=resume)


def export_depth_weights(cfg: DepthTrainConfig, out_dir: str | Path, name: str | None = None,
                         default: bool = False, device: str = "cpu") -> Path:
    """Write the best checkpoint of ``cfg.out`` as ``out_dir/NAME.safetensors`` + model card.

    The card records the architecture arguments, data, seed, the reproducing command and
    the validation metrics of the model and of the classical baselines on the same scenes.
    """
    model = cfg.build_model()
    ckpt = load_checkpoint(Path(cfg.out) / "checkpoints", which="best")
    model.load_state_dict(ckpt.model)
    _, val = cfg.datasets(model.scale)
    models = {b: create_model(b) for b in BASELINES} | {cfg.model: model}
    rows = compare_depth_models(models, val, device=device, progress=False)
    name = name or cfg.model
    kwargs = {"scale": model.scale, **cfg.model_kwargs}
    return save_weights(model.cpu(), name, cfg.model, out_dir, kwargs=kwargs, default=default, seed=cfg.seed,
                        command=cfg.command(out_dir), data=f"{cfg.data} ({cfg.train_size} scenes/epoch, {cfg.crop}px crops, "
                        f"{cfg.protocol} sampling, noise {cfg.noise}, holes {cfg.holes}); validated on "
                        f"{cfg.val_size} held-out scenes", steps=ckpt.step,
                        metrics={r["model"]: {k: round(v, 5) for k, v in r.items() if k != "model"} for r in rows})
