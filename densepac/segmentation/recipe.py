"""Segmentation fine-tuning recipe: pretrained FCN -> (PAC hot-swap) -> (PAC-CRF) -> training.

One :class:`SegFinetuneConfig` describes a run; :func:`finetune_segmentation` trains it and
:func:`export_seg_weights` ships its best checkpoint with a model card. The staged schedule
of the PAC paper (Su et al., CVPR 2019) is two runs::

    stage1 = SegFinetuneConfig("fcn8s_vgg16", out="runs/crf", weights="vgg16.pth", hot_swap=True,
                               crf=True, stage="crf_only")
    finetune_segmentation(stage1)            # backbone frozen, only the PAC-CRF learns
    stage2 = dataclasses.replace(stage1, out="runs/joint", weights="runs/crf", stage="joint")
    finetune_segmentation(stage2)            # everything learns, the CRF at its own crf_lr

Pretrained weights are read by :mod:`densepac.segmentation.pretrained`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from densepac.check import check_choice, check_int, check_num_classes
from densepac.engine.checkpoint import META_FILE, MODEL_FILE, Checkpoint, checkpoint_of, load_checkpoint
from densepac.engine.config import TrainConfig, option
from densepac.engine.runs import RunReport, train_in_run_folder
from densepac.engine.tasks import SegmentationTask
from densepac.engine.trainer import FitResult, Trainer, evaluate
from densepac.errors import InputError
from densepac.models import create_model, get_entry, hot_swap, save_weights, swapped_layers
from densepac.ops.crf import CRFWrapped, PacCRF
from densepac.segmentation.datasets import make_seg_dataset
from densepac.segmentation.pretrained import load_exact, load_pretrained

__all__ = [
    "STAGES",
    "SegFinetuneConfig",
    "build_seg_architecture",
    "build_seg_model",
    "build_seg_trainer",
    "export_seg_weights",
    "finetune_run",
    "finetune_segmentation",
]


STAGES = ("joint", "crf_only")


@dataclass
class SegFinetuneConfig(TrainConfig):
    """Everything that defines a segmentation fine-tuning run (stored in every checkpoint).

    Beyond :class:`~densepac.engine.config.TrainConfig`: ``weights``: pretrained weights to
    start from (see :func:`~densepac.segmentation.pretrained.load_pretrained`) or None.
    ``hot_swap``: turn ``fcn8s_vgg16`` into the PAC paper's PAC-FCN (conv3_3/4_3/5_3 guided by
    conv2_2). ``crf``: append a trainable :class:`PacCRF` (``crf_kwargs`` are its arguments).
    ``stage``: "joint" trains everything (CRF parameters at ``crf_lr``), "crf_only" freezes
    all but the CRF. ``data``: see :func:`make_seg_dataset`; ``scene_size``: side of
    synthetic scenes, ``crop``: training crop side.
    """

    COMMAND: ClassVar[str] = "finetune"

    data: str = option("synthetic", "synthetic | voc:ROOT | voc_aug:ROOT | folder:ROOT")
    lr: float = option(1e-4, "Learning rate.")
    weights: str | None = option(
        None,
        "Start from: torchvision vgg16 / fcn_resnet50/101 state dict, or a densepac "
        "weights file, run or checkpoint folder.",
    )
    hot_swap: bool = option(
        False, "Swap convolutions for PAC layers that keep their weights (the model's recipe, or --swap/--guide)."
    )
    swap: str = option("", "Convolutions to hot-swap, comma-separated names (default: the model's recipe).")
    guide: str = option("", "Layer whose output guides the swapped convolutions (default: the recipe's).")
    crf: bool = option(False, "Append a trainable PAC-CRF.")
    stage: str = option(
        "joint", "crf_only: train the CRF with the backbone frozen (the paper's first stage).", choices=STAGES
    )
    num_classes: int = option(21, "Classes (21 for PASCAL VOC).")
    scene_size: int = option(160, "Side of synthetic scenes.")
    crf_lr: float = option(1e-3, "Learning rate of the CRF parameters.")
    crf_kwargs: dict[str, Any] = option({}, "PacCRF argument key=value (repeatable).", flag="crf-arg")

    def validate(self) -> None:
        """Raise InputError for settings that cannot make a run."""
        super().validate()
        if "+crf" in self.model:
            raise InputError(f"model {self.model!r}: give the base name and crf=True (--crf) instead of '+crf'")
        if get_entry(self.model).task != "segmentation":
            raise InputError(
                f"model {self.model!r} is not a segmentation model; see `densepac models --task segmentation`"
            )
        check_choice(self.stage, STAGES, "stage")
        if self.stage == "crf_only" and not self.crf:
            raise InputError("stage='crf_only' trains the PAC-CRF alone; also set crf=True (--crf)")
        check_num_classes(self.num_classes, minimum=2, maximum=255)
        for key in ("num_classes", "crf"):
            if key in self.model_kwargs:
                raise InputError(f"model_kwargs sets {key!r}; use the config field {key} (--{key.replace('_', '-')})")
        check_int(self.scene_size, "scene_size", minimum=16)
        if (self.swap or self.guide) and not self.hot_swap:
            raise InputError("swap/guide name what hot_swap swaps; also set hot_swap=True (--hot-swap)")
        if not self.crf_lr > 0:
            raise InputError(f"crf_lr={self.crf_lr!r}; give a positive learning rate for the CRF")

    def swap_recipe(self, model: nn.Module) -> tuple[list[str], str]:
        """(targets, guide) of the hot swap: the model's recipe, overridden by ``swap`` / ``guide``."""
        targets, guide = model.hot_swap_recipe()
        if self.swap:
            targets = [n.strip() for n in self.swap.split(",") if n.strip()]
        return targets, self.guide or guide

    def arch(self) -> str:
        """Registry name of the trained architecture (``pac_...`` once hot-swapped, ``+crf`` with a CRF)."""
        name = "pac_fcn8s_vgg16" if self.hot_swap and self.model == "fcn8s_vgg16" else self.model
        return name + ("+crf" if self.crf else "")

    def datasets(self) -> tuple[Dataset, Dataset]:
        """(train set with random crops / flips / color jitter, untouched val set)."""
        from densepac.segmentation.transforms import SegTransform

        common = dict(num_classes=self.num_classes, size=self.scene_size, seed=self.seed)
        train = make_seg_dataset(
            self.data,
            "train",
            num_scenes=self.train_size,
            transform=SegTransform(crop=(self.crop, self.crop)),
            **common,
        )
        val = make_seg_dataset(self.data, "val", num_scenes=self.val_size, **common)
        return train, val


def build_seg_architecture(cfg: SegFinetuneConfig) -> nn.Module:
    """The untrained network of ``cfg``: registry model, hot-swapped if asked, CRF-wrapped if asked."""
    cfg.validate()
    torch.manual_seed(cfg.seed)  # the initialisation is part of the run
    model = create_model(cfg.model, num_classes=cfg.num_classes, **cfg.model_kwargs)
    if cfg.hot_swap and not swapped_layers(model):
        targets, guide = cfg.swap_recipe(model)
        hot_swap(model, targets, guide)
    model.model_name = cfg.arch().removesuffix("+crf")
    if cfg.crf:
        try:
            crf = PacCRF(cfg.num_classes, **cfg.crf_kwargs)
        except (TypeError, ValueError) as e:
            raise InputError(f"crf_kwargs {cfg.crf_kwargs!r} are invalid ({e}); see densepac.ops.PacCRF") from None
        model = CRFWrapped(model, crf)
        model.model_name = cfg.arch()
    return model


def build_seg_model(cfg: SegFinetuneConfig) -> nn.Module:
    """:func:`build_seg_architecture` + ``cfg.weights`` loaded + the backbone frozen for ``crf_only``."""
    model = build_seg_architecture(cfg)
    if cfg.weights is not None:
        load_pretrained(model, cfg.weights, new_classes=True)  # --num-classes may differ from the checkpoint's
    if cfg.stage == "crf_only" and isinstance(model, CRFWrapped):  # validate() ensured crf=True
        model.freeze_backbone()
    return model


def _task(cfg: SegFinetuneConfig) -> SegmentationTask:
    return SegmentationTask(cfg.num_classes)


def build_seg_trainer(cfg: SegFinetuneConfig, progress: bool | None = None) -> Trainer:
    """The :class:`Trainer` of ``cfg``: cross-entropy, mIoU picks the best checkpoint, CRF at ``crf_lr``."""
    model = build_seg_model(cfg)
    train, val = cfg.datasets()
    groups = None
    if isinstance(model, CRFWrapped):
        groups = [{"params": list(model.crf.parameters()), "lr": cfg.crf_lr, "weight_decay": 0.0}]
    return Trainer(model, _task(cfg), train, val, param_groups=groups, progress=progress, **cfg.trainer_kwargs())


def finetune_segmentation(cfg: SegFinetuneConfig, resume: bool = False, progress: bool | None = None) -> FitResult:
    """Fine-tune (or resume) a segmentation model; checkpoints and ``log.jsonl`` go to ``cfg.out``."""
    return build_seg_trainer(cfg, progress).fit(resume=resume)


def _rounded(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: round(float(v), 5) for k, v in metrics.items() if isinstance(v, float)}


def best_seg_model(cfg: SegFinetuneConfig) -> nn.Module:
    """The model of the run in ``cfg.out`` with its best checkpoint (by validation mIoU) loaded."""
    return _best_of_run(cfg)[0]


def _best_of_run(cfg: SegFinetuneConfig) -> tuple[nn.Module, Checkpoint]:
    model = build_seg_architecture(cfg)
    ckpt = load_checkpoint(Path(cfg.out) / "checkpoints", which="best")
    load_exact(model, ckpt.model, str(ckpt.path), "checkpoint")
    return model, ckpt


def export_seg_weights(
    cfg: SegFinetuneConfig, out_dir: str | Path, name: str | None = None, default: bool = False, device: str = "cpu"
) -> Path:
    """Write the best checkpoint of ``cfg.out`` as ``out_dir/NAME.safetensors`` + model card.

    ``NAME`` defaults to the architecture with ``+`` as ``_`` (``pac_fcn8s_vgg16_crf``), prefixed
    with ``pac_`` when the run hot-swapped a model that has no ``pac_`` registry name.

    The card holds the architecture (``cfg.arch()``) and its arguments, the data, seed, the
    reproducing command and the validation metrics (mIoU, boundary mIoU, pixel accuracy) of
    the fine-tuned model and, when the run started from ``cfg.weights``, of that start.
    """
    model, ckpt = _best_of_run(cfg)
    _, val = cfg.datasets()
    task = _task(cfg)
    metrics = {cfg.arch(): _rounded(evaluate(model.to(device), task, val, device=device, seed=cfg.seed))}
    if cfg.weights is not None and Path(cfg.weights).exists():
        start = build_seg_model(dataclasses.replace(cfg, stage="joint")).to(device)
        metrics["start"] = _rounded(evaluate(start, task, val, device=device, seed=cfg.seed))
    card: dict[str, Any] = dict(
        kwargs=architecture_kwargs(cfg),
        default=default,
        seed=cfg.seed,
        command=cfg.command(out_dir),
        steps=ckpt.step,
        metrics=metrics,
        data=f"{cfg.data} ({cfg.train_size} scenes/epoch, {cfg.crop}px crops, {cfg.num_classes} classes); "
        f"validated on {cfg.val_size} held-out scenes",
        start=str(cfg.weights) if cfg.weights is not None else None,
        stage=cfg.stage,
    )
    if name is None:  # pac_... for every hot-swapped model, not only those with a registry name
        name = cfg.arch().replace("+", "_")
        name = f"pac_{name}" if cfg.hot_swap and not name.startswith("pac_") else name
    return save_weights(model.cpu(), name, cfg.arch(), out_dir, **card)


def architecture_kwargs(cfg: SegFinetuneConfig) -> dict[str, Any]:
    """The :func:`~densepac.models.create_model` arguments that rebuild ``cfg.arch()`` as ``cfg`` trains it."""
    kwargs: dict[str, Any] = {"num_classes": cfg.num_classes, **cfg.model_kwargs}
    if cfg.crf and cfg.crf_kwargs:
        kwargs["crf_kwargs"] = dict(cfg.crf_kwargs)
    if cfg.hot_swap and cfg.arch().removesuffix("+crf") == cfg.model:  # no registry name for this swap
        with torch.device("meta"), torch.random.fork_rng(devices=[]):  # it seeds the run's initialisation
            plain = build_seg_architecture(dataclasses.replace(cfg, hot_swap=False, crf=False))
        targets, guide = cfg.swap_recipe(plain)
        kwargs["hot_swap"] = {"targets": targets, "guide": guide}
    return kwargs


def model_of_run(path: str | Path) -> tuple[str, dict[str, Any]] | None:
    """(registry name, ``create_model`` arguments) of the model a ``densepac finetune`` run holds, or None.

    ``path``: the run folder, its ``checkpoints/`` folder (the best checkpoint, else the last),
    one checkpoint folder, or the ``model.safetensors`` inside one. Lets ``densepac segment
    --weights runs/NAME`` rebuild the hot-swapped / CRF-wrapped model the run trained.
    """
    path = Path(path)
    if path.is_file():
        folder = path.parent if path.name == MODEL_FILE else None
    else:
        folder = checkpoint_of(path)
    if folder is None or not (folder / META_FILE).is_file():
        return None
    try:
        config = json.loads((folder / META_FILE).read_text()).get("config") or {}
    except (OSError, ValueError, AttributeError):
        return None
    names = {f.name for f in dataclasses.fields(SegFinetuneConfig)}
    if not {"model", "hot_swap", "crf", "num_classes"} <= set(config):  # not a segmentation run
        return None
    cfg = SegFinetuneConfig(**{k: v for k, v in config.items() if k in names and k != "weights"})
    return cfg.arch(), architecture_kwargs(cfg)


def finetune_run(
    cfg: SegFinetuneConfig, resume: bool = False, export_dir: str | Path | None = None, progress: bool | None = None
) -> RunReport:
    """What ``densepac finetune`` does: :func:`finetune_segmentation` in the run folder ``cfg.out``, then export."""
    return train_in_run_folder(
        cfg.out,
        export_dir,
        lambda: finetune_segmentation(cfg, resume=resume, progress=progress),
        lambda result: export_seg_weights(cfg, export_dir, device=cfg.device),
    )
