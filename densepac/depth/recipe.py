"""Training recipes: build model, data and trainer from one config; export shipped weights.

The CLI (``densepac train``) and ``scripts/train_depth.sh`` both go through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from densepac.check import check_choice
from densepac.depth.datasets import make_depth_dataset
from densepac.depth.degrade import PROTOCOLS
from densepac.depth.evaluate import compare_depth_models
from densepac.engine.checkpoint import load_checkpoint, read_pretrained
from densepac.engine.config import TrainConfig, option
from densepac.engine.runs import RunReport, train_in_run_folder
from densepac.engine.tasks import DepthTask
from densepac.engine.trainer import FitResult, Trainer
from densepac.errors import InputError
from densepac.models import create_model, get_entry, save_weights
from densepac.models.weights import load_checked

BASELINES = ("bicubic", "guided_filter", "joint_bilateral")


LOSSES = ("l1", "l2", "charbonnier")


@dataclass
class DepthTrainConfig(TrainConfig):
    """Everything that defines a depth training run (stored in every checkpoint).

    Beyond :class:`~densepac.engine.config.TrainConfig`: how the low-resolution input is
    simulated (``protocol``, ``noise``, ``holes``, see :func:`densepac.depth.degrade.simulate_lr`),
    the training ``loss`` on valid pixels (``l2`` optimises RMSE) and ``weights`` to start
    from (fine-tuning) instead of a fresh initialisation.
    """

    data: str = option("synthetic", "synthetic | folder:PATH | nyu:FILE.mat | middlebury:PATH")
    protocol: str = option("point", "How low-resolution depth is simulated.", choices=PROTOCOLS)
    noise: float = option(0.0, "Depth noise sigma (m at 1 m, grows as z^2).")
    holes: float = option(0.0, "Fraction of LR pixels made missing.")
    loss: str = option("l1", "Training loss on valid pixels; l2 optimises RMSE.", choices=LOSSES)
    scene_kwargs: dict[str, Any] = option(
        {},
        "Synthetic scene option key=value (repeatable): a field of densepac.depth.synthetic.SceneOptions.",
        flag="scene",
    )
    weights: str | None = option(
        None, "Start from these weights of the same model: a densepac weights file, run or checkpoint folder."
    )

    def validate(self) -> None:
        """Raise InputError for settings that cannot make a run."""
        super().validate()
        check_choice(self.protocol, PROTOCOLS, "protocol")
        check_choice(self.loss, LOSSES, "loss")
        if not (self.noise >= 0 and 0 <= self.holes < 1):
            raise InputError(f"noise={self.noise!r} must be >= 0 and holes={self.holes!r} in [0, 1)")

    def build_architecture(self) -> torch.nn.Module:
        """The freshly initialised model of this run (seeded: the initialisation is part of the run)."""
        self.validate()
        if get_entry(self.model).task != "depth":
            raise InputError(f"model {self.model!r} is not a depth model; see `densepac models --task depth`")
        torch.manual_seed(self.seed)  # the initialisation is part of the run
        model = create_model(self.model, **self.model_kwargs)
        if not any(p.requires_grad for p in model.parameters()):
            raise InputError(f"model {self.model!r} has nothing to train; pick a learned depth model")
        return model

    def build_model(self) -> torch.nn.Module:
        """The model this run starts from: :meth:`build_architecture`, then ``weights`` when given."""
        model = self.build_architecture()
        return model if self.weights is None else load_checked(model, *read_pretrained(self.weights))

    def datasets(self, scale: int):
        from densepac.depth.transforms import DepthTransform

        if self.crop % scale:
            raise InputError(f"--crop {self.crop} is not a multiple of the scale {scale}")
        common = dict(
            protocol=self.protocol,
            noise=self.noise,
            holes=self.holes,
            seed=self.seed,
            scene_options=self.scene_kwargs or None,
        )
        train = make_depth_dataset(
            self.data,
            "train",
            scale,
            num_scenes=self.train_size,
            transform=DepthTransform(crop=(self.crop, self.crop), multiple_of=scale),
            **common,
        )
        val = make_depth_dataset(self.data, "val", scale, num_scenes=self.val_size, **common)
        return train, val


def build_depth_trainer(cfg: DepthTrainConfig, progress: bool | None = None) -> Trainer:
    """The :class:`Trainer` of ``cfg``: model, synthetic/real data, ``cfg.loss`` on valid pixels."""
    model = cfg.build_model()
    train, val = cfg.datasets(model.scale)
    return Trainer(model, DepthTask(loss=cfg.loss), train, val, progress=progress, **cfg.trainer_kwargs())


def train_depth(cfg: DepthTrainConfig, resume: bool = False, progress: bool | None = None) -> FitResult:
    """Train (or resume) a depth model; checkpoints and ``log.jsonl`` go to ``cfg.out``."""
    return build_depth_trainer(cfg, progress).fit(resume=resume)


def export_depth_weights(
    cfg: DepthTrainConfig, out_dir: str | Path, name: str | None = None, default: bool = False, device: str = "cpu"
) -> Path:
    """Write the best checkpoint of ``cfg.out`` as ``out_dir/NAME.safetensors`` + model card.

    The card records the architecture arguments, data, seed, the reproducing command and
    the validation metrics of the model and of the classical baselines on the same scenes.
    """
    model = cfg.build_architecture()
    ckpt = load_checkpoint(Path(cfg.out) / "checkpoints", which="best")
    model.load_state_dict(ckpt.model)
    _, val = cfg.datasets(model.scale)
    models = {b: create_model(b) for b in BASELINES} | {cfg.model: model}
    rows = compare_depth_models(models, val, device=device, progress=False)
    name = name or cfg.model
    kwargs = {"scale": model.scale, **cfg.model_kwargs}
    return save_weights(
        model.cpu(),
        name,
        cfg.model,
        out_dir,
        kwargs=kwargs,
        default=default,
        seed=cfg.seed,
        command=cfg.command(out_dir),
        data=f"{cfg.data} ({cfg.train_size} scenes/epoch, {cfg.crop}px crops, "
        f"{cfg.protocol} sampling, noise {cfg.noise}, holes {cfg.holes}); validated on "
        f"{cfg.val_size} held-out scenes" + (f"; started from {cfg.weights}" if cfg.weights else ""),
        steps=ckpt.step,
        metrics={r["model"]: {k: round(v, 5) for k, v in r.items() if k != "model"} for r in rows},
    )


def train_depth_run(
    cfg: DepthTrainConfig,
    resume: bool = False,
    export_dir: str | Path | None = None,
    export_name: str | None = None,
    default: bool = False,
    progress: bool | None = None,
) -> RunReport:
    """What ``densepac train`` does: :func:`train_depth` in the run folder ``cfg.out``, then export.

    A run stopped early (SIGINT/SIGTERM) still exports its best validated checkpoint so far.
    """
    return train_in_run_folder(
        cfg.out,
        export_dir,
        lambda: train_depth(cfg, resume=resume, progress=progress),
        lambda result: export_depth_weights(cfg, export_dir, export_name, default, cfg.device),
    )
