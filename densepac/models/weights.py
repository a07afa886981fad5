"""Shipped weights: ``weights/NAME.safetensors`` with a JSON model card ``weights/NAME.json``.

Loading never unpickles arbitrary objects: safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from densepac.engine.checkpoint import load_state_dict_safe
from densepac.errors import WeightsError
from densepac.io.files import atomic_write

WEIGHTS_PACKAGE = "densepac.weights"


@dataclass(frozen=True)
class WeightsCard:
    """The model card of a shipped weights file."""

    name: str
    arch: str
    sha256: str
    weights_path: Path
    kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = ""
    seed: int | None = None
    command: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    default: bool = False  # the model `densepac upsample` uses for its scale

    @classmethod
    def from_json(cls, path: Path) -> WeightsCard:
        try:
            meta = json.loads(path.read_text())
            return cls(
                name=path.stem,
                arch=meta["arch"],
                sha256=meta["sha256"],
                weights_path=path.with_suffix(".safetensors"),
                kwargs=meta.get("kwargs", {}),
                data=meta.get("data", ""),
                seed=meta.get("seed"),
                command=meta.get("command", ""),
                metrics=meta.get("metrics", {}),
                default=bool(meta.get("default", False)),
            )
        except (OSError, ValueError, KeyError) as e:
            raise WeightsError(f"model card {path} is unreadable ({e}); restore it from the repository") from None


def weights_dir() -> Path:
    """Folder of the shipped weights (package data of ``densepac.weights``)."""
    return Path(str(importlib.resources.files(WEIGHTS_PACKAGE)))


def list_weights() -> list[str]:
    """Names of the shipped weights."""
    return sorted(p.stem for p in weights_dir().glob("*.json"))


def shipped_card(name: str) -> WeightsCard | None:
    """The model card of the shipped weights ``name``, or None."""
    path = weights_dir() / f"{name}.json"
    return WeightsCard.from_json(path) if path.is_file() else None


def shipped_weights_of(arch: str) -> Path | None:
    """The shipped weights file whose card's architecture is ``arch`` (e.g. ``pac_fcn8s_vgg16+crf``), or None.

    The file is checked against its card's sha256 first.
    """
    for name in list_weights():
        card = shipped_card(name)
        if card.arch == arch:
            check_sha256(card.weights_path, card.sha256)
            return card.weights_path
    return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_dict_mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str:
    """How ``state`` fails to fit a model whose state dict is ``own`` ("" when it fits)."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    parts = []
    if shapes:
        parts.append(f"shape mismatch (file vs model): {'; '.join(shapes[:3])}")
    if missing:
        parts.append(f"{len(missing)} missing keys, e.g. {', '.join(missing[:3])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys, e.g. {', '.join(unexpected[:3])}")
    return "; ".join(parts)


def check_sha256(path: Path, expected: str) -> None:
    """Refuse a shipped weights file that is missing or does not match its card's sha256."""
    if not path.is_file():
        raise WeightsError(f"shipped weights {path} are missing; reinstall densepac")
    digest = sha256_file(path)
    if digest != expected:
        raise WeightsError(
            f"weights {path} fail their sha256 check ({digest[:12]}... != {expected[:12]}...); "
            "the file is corrupt, reinstall densepac"
        )


def load_weights_into(model: nn.Module, path: str | Path, expected_sha256: str | None = None) -> nn.Module:
    """Load ``path`` into ``model`` strictly; a mismatch names the keys and shapes at fault."""
    path = Path(path)
    if expected_sha256 is not None:
        check_sha256(path, expected_sha256)
    return load_checked(model, load_state_dict_safe(path), str(path))


def load_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Load the state dict ``state`` (read from ``source``) into ``model`` strictly (:func:`load_state_into`);
    a mismatch raises WeightsError naming the keys and shapes at fault."""
    own = model.state_dict()
    problem = state_dict_mismatch(own, state)
    if problem:
        name = getattr(model, "model_name", type(model).__name__)
        raise WeightsError(
            f"weights {source} do not fit model {name!r}: {problem}; pick the model these weights were trained for"
        )
    load_state_into(model, own, state)
    return model


def load_state_into(model: nn.Module, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    """``model.load_state_dict(state)``, strict, with the file's tensors taking the place of the model's.

    The tensors are converted to the model's dtypes (and devices, except from a model built on the
    meta device: ``own``, its state dict) and assigned, not copied: the model's own initialisation
    is released as each one is replaced, and memory-mapped file tensors are paged in when used,
    so the weights are held once. Parameters keep their ``requires_grad``.
    """
    model.load_state_dict({k: placed_like(v, own[k]) if k in own else v for k, v in state.items()}, assign=True)


def placed_like(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``source`` in ``target``'s dtype and on its device (left where it is when ``target`` is on the meta device)."""
    device = source.device if target.is_meta else target.device
    return source.detach().to(device=device, dtype=target.dtype)


def save_weights(model: nn.Module, name: str, arch: str, out_dir: str | Path, **card: Any) -> Path:
    """Write ``out_dir/NAME.safetensors`` and its model card ``NAME.json`` (sha256 filled in)."""
    from safetensors.torch import save

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.safetensors"
    # Serialised here and written through atomic_write (fsynced, the user's umask):
    # safetensors' own save_file creates its files 0600.
    blob = save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
    with atomic_write(path) as tmp:
        tmp.write_bytes(blob)
    meta = {"arch": arch, "sha256": sha256_file(path), **card}
    with atomic_write(out_dir / f"{name}.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path
