"""Segmentation fine-tuning recipes: pretrained FCN -> (PAC hot-swap) -> (PAC-CRF) -> training.

One :class:`SegFinetuneConfig` describes a run; :func:`finetune_segmentation` trains it and
:func:`export_seg_weights` ships its best checkpoint with a model card. The staged schedule
of the PAC paper (Su et al., CVPR 2019) is two runs::

    stage1 = SegFinetuneConfig("fcn8s_vgg16", out="runs/crf", weights="vgg16.pth", hot_swap=True,
                               crf=True, stage="crf_only")
    finetune_segmentation(stage1)            # backbone frozen, only the PAC-CRF learns
    stage2 = dataclasses.replace(stage1, out="runs/joint", weights="runs/crf", stage="joint")
    finetune_segmentation(stage2)            # everything learns, the CRF at its own crf_lr

Pretrained weights (:func:`load_pretrained`) are recognised by their keys: a torchvision
``vgg16`` state dict (ImageNet backbone of FCN-8s), a torchvision ``fcn_resnet50/101`` or
ImageNet ``resnet50/101`` state dict (for the ``fcn_resnet*`` adapters), or anything densepac
wrote: a run folder, a checkpoint root or folder, a ``.safetensors`` / ``.pt`` weights file,
of a plain, hot-swapped or CRF-wrapped model.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn
from torch.utils.data import Dataset

from densepac.data.sources import SYNTHETIC_TEST_SEED_OFFSET
from densepac.engine.checkpoint import MODEL_FILE, load_checkpoint, load_state_dict_safe, resolve_checkpoint
from densepac.engine.tasks import SegmentationTask
from densepac.engine.trainer import FitResult, Trainer, evaluate
from densepac.errors import InputError, WeightsError
from densepac.models import create_model, get_entry, save_weights, swapped_layers
from densepac.models.adapters import TorchvisionFCN
from densepac.models.fcn import FCN8s, load_vgg16_backbone, to_pac_fcn8s
from densepac.models.weights import state_dict_mismatch
from densepac.ops.crf import CRFWrapped, PacCRF

__all__ = [
    "SEG_DATA_KINDS",
    "STAGES",
    "SegFinetuneConfig",
    "build_seg_architecture",
    "build_seg_model",
    "build_seg_trainer",
    "detect_weights_format",
    "export_seg_weights",
    "finetune_segmentation",
    "load_pretrained",
    "make_seg_dataset",
    "read_pretrained",
]

SEG_DATA_KINDS = ("synthetic", "voc", "voc_aug", "folder")
STAGES = ("joint", "crf_only")
#: torchvision ``vgg16().features`` indices of the 13 convolutions.
_VGG16_CONV_INDICES = frozenset((0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28))
#: Bottleneck blocks in ``layer3`` of torchvision's ResNet-50 / ResNet-101.
_RESNET_LAYER3_BLOCKS = {6: 50, 23: 101}


# ----------------------------------------------------------------------------- data


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


def make_seg_dataset(spec: str, split: str, *, num_classes: int = 21, size: int | tuple[int, int] | None = None,
                     num_scenes: int = 100, seed: int = 0, transform: Any = None) -> Dataset:
    """A segmentation dataset for ``split`` ("train", "val" or "test") named by ``spec``.

    ``synthetic`` | ``synthetic:SEED``: ``num_scenes`` scenes of ``size`` (default 128x128);
    "val"/"test" draw from a seed stream no training run uses. ``voc:ROOT`` (the VOC2012
    folder; "test" reads val, VOC's test labels are not public), ``voc_aug:ROOT`` (SBD
    train_aug for "train"), ``folder:ROOT`` (``ROOT/<split>/`` if it exists, else ``ROOT``).
    Labels must lie in ``[0, num_classes)`` or be 255.
    """
    from densepac.data.seg_datasets import FolderSegmentation, VOCSegmentation
    from densepac.data.synthetic_seg import SyntheticSegmentation

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
        return VOCSegmentation(root, split="train" if split == "train" else "val", sbd=kind == "voc_aug",
                               transform=transform, num_classes=num_classes)
    folder = root / split if (root / split).is_dir() else root
    return FolderSegmentation(folder, transform=transform, num_classes=num_classes)


# ----------------------------------------------------------------------------- config


@dataclass
class SegFinetuneConfig:
    """Everything that defines a segmentation fine-tuning run (stored in every checkpoint).

    ``model``: registry segmentation model. ``weights``: pretrained weights to start from
    (see :func:`load_pretrained`) or None. ``hot_swap``: turn ``fcn8s_vgg16`` into the PAC
    paper's PAC-FCN (conv3_3/4_3/5_3 guided by conv2_2). ``crf``: append a trainable
    :class:`PacCRF` (``crf_kwargs`` are its arguments). ``stage``: "joint" trains everything
    (CRF parameters at ``crf_lr``), "crf_only" freezes all but the CRF. ``data``: see
    :func:`make_seg_dataset`; ``scene_size``: side of synthetic scenes, ``crop``: training
    crop side.
    """

    model: str
    out: str
    weights: str | None = None
    hot_swap: bool = False
    crf: bool = False
    stage: str = "joint"
    data: str = "synthetic"
    num_classes: int = 21
    crop: int = 128
    scene_size: int = 160
    train_size: int = 2000
    val_size: int = 50
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-4
    crf_lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    scheduler: str = "cosine"
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    amp: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    crf_kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise InputError for settings that cannot make a run."""
        if "+crf" in self.model:
            raise InputError(f"model {self.model!r}: give the base name and crf=True (--crf) instead of '+crf'")
        if get_entry(self.model).task != "segmentation":
            raise InputError(f"model {self.model!r} is not a segmentation model; "
                             "see `densepac models --task segmentation`")
        if self.stage not in STAGES:
            raise InputError(f"stage={self.stage!r} is unknown; use one of {', '.join(STAGES)}")
        if self.stage == "crf_only" and not self.crf:
            raise InputError("stage='crf_only' trains the PAC-CRF alone; also set crf=True (--crf)")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) \
                or not 2 <= self.num_classes <= 255:
            raise InputError(f"num_classes={self.num_classes!r}; give an integer in [2, 255] (21 for PASCAL VOC)")
        for key in ("num_classes", "crf"):
            if key in self.model_kwargs:
                raise InputError(f"model_kwargs sets {key!r}; use the config field {key} (--{key.replace('_', '-')})")
        for name in ("crop", "scene_size"):
            if getattr(self, name) < 16:
                raise InputError(f"{name}={getattr(self, name)}; use at least 16 pixels")
        for name in ("train_size", "val_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}={getattr(self, name)}; use at least 1 scene")
        if not self.crf_lr > 0:
            raise InputError(f"crf_lr={self.crf_lr!r}; give a positive learning rate for the CRF")

    def arch(self) -> str:
        """Registry name of the trained architecture (``pac_...`` once hot-swapped, ``+crf`` with a CRF)."""
        name = "pac_fcn8s_vgg16" if self.hot_swap and self.model == "fcn8s_vgg16" else self.model
        return name + ("+crf" if self.crf else "")

    def command(self, export: str | Path | None = None) -> str:
        """The `densepac finetune` command line that reproduces this run."""
        flags = {"model": self.model, "data": self.data, "num-classes": self.num_classes, "stage": self.stage,
                 "crop": self.crop, "scene-size": self.scene_size, "train-size": self.train_size,
                 "val-size": self.val_size, "epochs": self.epochs, "batch-size": self.batch_size, "lr": self.lr,
                 "crf-lr": self.crf_lr, "weight-decay": self.weight_decay, "optimizer": self.optimizer,
                 "scheduler": self.scheduler, "seed": self.seed, "workers": self.workers, "device": self.device,
                 "out": self.out}
        parts = ["densepac", "finetune"] + [f"--{k} {shlex.quote(str(v))}" for k, v in flags.items()]
        parts += [f"--weights {shlex.quote(str(self.weights))}"] if self.weights is not None else []
        parts += ["--hot-swap"] if self.hot_swap else []
        parts += ["--crf"] if self.crf else []
        parts += ["--amp"] if self.amp else []
        parts += [f"--arg {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in self.model_kwargs.items()]
        parts += [f"--crf-arg {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in self.crf_kwargs.items()]
        parts += [f"--export {shlex.quote(str(export))}"] if export is not None else []
        return " ".join(parts)

    def datasets(self) -> tuple[Dataset, Dataset]:
        """(train set with random crops / flips / colour jitter, untouched val set)."""
        from densepac.data.transforms import SegTransform

        common = dict(num_classes=self.num_classes, size=self.scene_size, seed=self.seed)
        train = make_seg_dataset(self.data, "train", num_scenes=self.train_size,
                                 transform=SegTransform(crop=(self.crop, self.crop)), **common)
        val = make_seg_dataset(self.data, "val", num_scenes=self.val_size, **common)
        return train, val


# ----------------------------------------------------------------------------- pretrained weights


def read_pretrained(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, where it came from) of a weights file or a densepac run / checkpoint folder.

    A folder may be a run (holding ``checkpoints/``), a checkpoint root or one checkpoint;
    from a root the ``best`` checkpoint is taken, else the ``last``.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"weights {p} do not exist; give a weights file or a densepac run/checkpoint folder")
    if not p.is_dir():
        return load_state_dict_safe(p), str(p)
    root = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    folder = resolve_checkpoint(root, "best") or resolve_checkpoint(root, "last")
    if folder is None:
        raise InputError(f"{p} holds no densepac checkpoint; give a run folder, a checkpoint folder or a weights file")
    return load_state_dict_safe(folder / MODEL_FILE), str(folder)


def detect_weights_format(state: Mapping[str, torch.Tensor]) -> str:
    """Which kind of state dict ``state`` is, from its keys.

    Returns:
        ``"vgg16"`` (torchvision VGG: ``features.<i>.*``), ``"torchvision_fcn"``
        (``backbone.*`` + ``classifier.4.*``), ``"resnet"`` (torchvision ImageNet ResNet:
        ``conv1``, ``layer4``, ``fc``) or ``"densepac"`` (anything else: a densepac model).
    """
    keys = [k[len("module."):] if k.startswith("module.") else k for k in state]
    if any(re.fullmatch(r"features\.\d+\.weight", k) for k in keys):
        return "vgg16"
    if any(k.startswith("backbone.") for k in keys) and "classifier.4.weight" in keys:
        return "torchvision_fcn"
    if "conv1.weight" in keys and "fc.weight" in keys and any(k.startswith("layer4.") for k in keys):
        return "resnet"
    return "densepac"


def _base(model: nn.Module) -> nn.Module:
    return model.model if isinstance(model, CRFWrapped) else model


def _name(model: nn.Module) -> str:
    return str(getattr(model, "model_name", type(model).__name__))


def _class_mismatch(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], k: int) -> int | None:
    """The class count of ``state`` when every shape mismatch is a class axis (``k`` in the model), else None."""
    found: set[int] = set()
    for key, target in own.items():
        source = state.get(key)
        if source is None or source.shape == target.shape:
            continue
        if source.dim() != target.dim():
            return None
        axes = [i for i in range(target.dim()) if source.shape[i] != target.shape[i]]
        if any(target.shape[i] != k for i in axes):
            return None
        found.update(int(source.shape[i]) for i in axes)
    return found.pop() if len(found) == 1 else None


def _check_classes(model: nn.Module, state: Mapping[str, torch.Tensor], source: str,
                   own: Mapping[str, torch.Tensor] | None = None) -> None:
    k = getattr(model, "num_classes", None)
    if not isinstance(k, int):
        return
    n = _class_mismatch(own if own is not None else model.state_dict(), state, k)
    if n is not None:
        raise InputError(f"{source} predicts {n} classes but the model has {k}; "
                         f"set num_classes={n} or start from weights without the class layers")


def _load_exact(model: nn.Module, state: Mapping[str, torch.Tensor], source: str, kind: str) -> None:
    """Strict ``load_state_dict`` whose failure names the class counts, or the keys and shapes at fault."""
    own = model.state_dict()
    _check_classes(model, state, source, own)
    problem = state_dict_mismatch(own, state)
    if problem:
        raise WeightsError(f"{kind} weights {source} do not fit model {_name(model)!r}: {problem}; "
                           "pick the model these weights were trained for")
    model.load_state_dict(state)


def _load_vgg16(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    base = _base(model)
    if not isinstance(base, FCN8s):
        raise WeightsError(f"{source} holds torchvision VGG16 weights, which fit fcn8s_vgg16 / pac_fcn8s_vgg16, "
                           f"not {_name(base)!r}; pick an FCN-8s model or other weights")
    keys = {k[len("module."):] if k.startswith("module.") else k for k in state}
    if any(k.startswith("features.") and k.endswith(("running_mean", "running_var")) for k in keys):
        raise WeightsError(f"{source} holds a batch-norm VGG (vgg16_bn); give plain torchvision vgg16 weights")
    convs = {int(m.group(1)) for k in keys if (m := re.fullmatch(r"features\.(\d+)\.weight", k))}
    if convs != _VGG16_CONV_INDICES:
        raise WeightsError(f"{source} holds a VGG with {len(convs)} convolutions, not VGG16's 13; "
                           "give torchvision vgg16 weights")
    load_vgg16_backbone(base, state, load_fc="classifier.0.weight" in keys)


def _resnet_depth(state: Mapping[str, torch.Tensor], prefix: str) -> int | None:
    blocks = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"layer3\.(\d+)\.", k))}
    return _RESNET_LAYER3_BLOCKS.get(max(blocks) + 1) if blocks else None


def _load_torchvision(model: nn.Module, state: Mapping[str, torch.Tensor], source: str, fmt: str) -> None:
    base = _base(model)
    title = "torchvision FCN-ResNet" if fmt == "torchvision_fcn" else "torchvision ImageNet ResNet"
    if not isinstance(base, TorchvisionFCN):
        raise WeightsError(f"{source} holds {title} weights, which fit fcn_resnet50 / fcn_resnet101, "
                           f"not {_name(base)!r}; pick an fcn_resnet model or other weights")
    prefix = "backbone." if fmt == "torchvision_fcn" else ""
    depth = _resnet_depth(state, prefix)
    if depth is not None and depth != base.depth:
        raise WeightsError(f"{source} holds ResNet-{depth} weights but the model is fcn_resnet{base.depth}; "
                           f"use model fcn_resnet{depth}")
    if fmt == "resnet":  # ImageNet classifier: backbone only, the FCN heads keep their initialisation
        backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
        _load_exact(base.net.backbone, backbone, source, title)
        return
    n = int(state["classifier.4.weight"].shape[0])
    if n != base.num_classes:
        raise InputError(f"{source} predicts {n} classes but the model has {base.num_classes}; "
                         f"set num_classes={n} or start from ImageNet ResNet weights")
    has_aux = any(k.startswith("aux_classifier.") for k in state)
    if base.aux_loss and not has_aux:
        raise WeightsError(f"{source} has no auxiliary head but the model was built with aux_loss=True; "
                           "build it with aux_loss=False")
    # COCO/VOC checkpoints carry the auxiliary head; a model without one ignores it.
    kept = {k: v for k, v in state.items() if base.aux_loss or not k.startswith("aux_classifier.")}
    _load_exact(base.net, kept, source, title)


def _align_pac_keys(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor],
                    source: str) -> dict[str, torch.Tensor]:
    """Rename plain-conv keys to the ``.pac.`` keys of a hot-swapped model; refuse the reverse."""
    out = dict(state)
    for key in own:
        if ".pac." in key and key not in out:
            plain = key.replace(".pac.", ".")
            if plain in out:
                out[key] = out.pop(plain)
    stray = [k for k in out if ".pac." in k and k not in own and k.replace(".pac.", ".") in own]
    if stray:
        raise WeightsError(f"{source} comes from a hot-swapped PAC model (e.g. {stray[0]}); "
                           "set hot_swap=True (--hot-swap) or use pac_fcn8s_vgg16")
    return out


def _load_densepac(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    has_crf = any(k.startswith("crf.") for k in state)
    if isinstance(model, CRFWrapped) and not has_crf:
        _load_densepac(model.model, state, source)  # weights of the base model; the CRF keeps its init
        return
    if has_crf and not isinstance(model, CRFWrapped):
        raise WeightsError(f"{source} holds a model with a PAC-CRF (crf.* keys); set crf=True (--crf)")
    _load_exact(model, _align_pac_keys(state, model.state_dict(), source), source, "densepac")


def load_pretrained(model: nn.Module, path: str | Path) -> str:
    """Load pretrained weights into ``model`` (in place), recognising their format by the keys.

    - torchvision ``vgg16`` state dict -> the FCN-8s backbone and fc6/fc7
      (:func:`~densepac.models.fcn.load_vgg16_backbone`); the score layers keep their init.
    - torchvision ``fcn_resnet50/101`` state dict -> a ``fcn_resnet*`` adapter (its auxiliary
      head is dropped when the model has none); ImageNet ``resnet50/101`` -> its backbone.
    - densepac weights (file, run, checkpoint root or folder) of the same architecture;
      plain-FCN weights also load into a hot-swapped model (the PAC layers take the conv
      weights), base-model weights into a CRF-wrapped one (the CRF keeps its init).

    ``model`` may be wrapped in :class:`CRFWrapped`. Returns the detected format.

    Raises:
        InputError: the path does not exist, or the weights predict another number of classes.
        WeightsError: the weights belong to another architecture (the message names it).
    """
    state, source = read_pretrained(path)
    fmt = detect_weights_format(state)
    if fmt == "vgg16":
        _load_vgg16(model, state, source)
    elif fmt in ("torchvision_fcn", "resnet"):
        _load_torchvision(model, state, source, fmt)
    else:
        _load_densepac(model, state, source)
    return fmt


# ----------------------------------------------------------------------------- model / training


def build_seg_architecture(cfg: SegFinetuneConfig) -> nn.Module:
    """The untrained network of ``cfg``: registry model, hot-swapped if asked, CRF-wrapped if asked."""
    cfg.validate()
    torch.manual_seed(cfg.seed)  # the initialisation is part of the run
    model = create_model(cfg.model, num_classes=cfg.num_classes, **cfg.model_kwargs)
    if cfg.hot_swap and not swapped_layers(model):
        if not isinstance(model, FCN8s):
            raise InputError(f"hot_swap has a recipe for FCN-8s only, not {cfg.model!r}; use fcn8s_vgg16, or "
                             "densepac.models.hot_swap(model, targets, guide) with your own layer names")
        to_pac_fcn8s(model)
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
        load_pretrained(model, cfg.weights)
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
    return Trainer(model, _task(cfg), train, val, out_dir=cfg.out, epochs=cfg.epochs, batch_size=cfg.batch_size,
                   lr=cfg.lr, weight_decay=cfg.weight_decay, optimizer=cfg.optimizer, scheduler=cfg.scheduler,
                   param_groups=groups, num_workers=cfg.workers, seed=cfg.seed, device=cfg.device, amp=cfg.amp,
                   config=dataclasses.asdict(cfg), progress=progress)


def finetune_segmentation(cfg: SegFinetuneConfig, resume: bool = False, progress: bool | None = None) -> FitResult:
    """Fine-tune (or resume) a segmentation model; checkpoints and ``log.jsonl`` go to ``cfg.out``."""
    return build_seg_trainer(cfg, progress).fit(resume=resume)


def _rounded(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: round(float(v), 5) for k, v in metrics.items() if isinstance(v, float)}


def export_seg_weights(cfg: SegFinetuneConfig, out_dir: str | Path, name: str | None = None,
                       default: bool = False, device: str = "cpu") -> Path:
    """Write the best checkpoint of ``cfg.out`` as ``out_dir/NAME.safetensors`` + model card.

    The card holds the architecture (``cfg.arch()``) and its arguments, the data, seed, the
    reproducing command and the validation metrics (mIoU, boundary mIoU, pixel accuracy) of
    the fine-tuned model and, when the run started from ``cfg.weights``, of that start.
    """
    model = build_seg_architecture(cfg)
    ckpt = load_checkpoint(Path(cfg.out) / "checkpoints", which="best")
    _load_exact(model, ckpt.model, str(ckpt.path), "checkpoint")
    _, val = cfg.datasets()
    task = _task(cfg)
    metrics = {cfg.arch(): _rounded(evaluate(model.to(device), task, val, device=device, seed=cfg.seed))}
    if cfg.weights is not None and Path(cfg.weights).exists():
        start = build_seg_model(dataclasses.replace(cfg, stage="joint")).to(device)
        metrics["start"] = _rounded(evaluate(start, task, val, device=device, seed=cfg.seed))
    card: dict[str, Any] = dict(
        kwargs={"num_classes": cfg.num_classes, **cfg.model_kwargs}, default=default, seed=cfg.seed,
        command=cfg.command(out_dir), steps=ckpt.step, metrics=metrics,
        data=f"{cfg.data} ({cfg.train_size} scenes/epoch, {cfg.crop}px crops, {cfg.num_classes} classes); "
             f"validated on {cfg.val_size} held-out scenes",
        start=str(cfg.weights) if cfg.weights is not None else None, stage=cfg.stage)
    if cfg.crf_kwargs:
        card["kwargs"]["crf_kwargs"] = dict(cfg.crf_kwargs)  # so create_model rebuilds the same CRF
    return save_weights(model.cpu(), name or cfg.arch().replace("+", "_"), cfg.arch(), out_dir, **card)
