"""Crash-safe training checkpoints and safe loading of weight files.

A checkpoint is one folder under a root::

    root/
      step-00000120/
        model.safetensors   model weights
        state.pt            optimiser, scheduler, grad scaler, RNG states, counters;
                            tensors and primitives only (``torch.load(weights_only=True)``)
        meta.json           step, epoch, config, metrics (plain JSON)
      last.json             {"name": newest folder, "history": folders kept, oldest first}
      best.json             {"name": folder with the best validation score, ...}

A folder is written under a hidden temporary name, every file fsync'd, then renamed into
place; only after that is ``last.json`` replaced (itself written to a temp file, fsync'd and
renamed). A crash at any point leaves the previous ``last.json`` naming a complete folder.
Nothing here ever unpickles arbitrary objects: loading goes through safetensors or
``torch.load(weights_only=True)`` and refuses anything else with :class:`WeightsError`.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import re
import shutil
import uuid
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as safetensors_load_file
from safetensors.torch import save as safetensors_save

from densepac.errors import InputError, InputTypeError, WeightsError
from densepac.io.files import fsync_dir

__all__ = [
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "resolve_checkpoint",
    "load_state_dict_safe",
    "capture_rng_state",
    "restore_rng_state",
]

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
META_FILE = "meta.json"
LAST_POINTER = "last.json"
BEST_POINTER = "best.json"
_TMP_PREFIX = ".tmp-"
_FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """Everything needed to resume training.

    ``model``: state dict of the bare (un-wrapped) model. ``optimizer``, ``scheduler``,
    ``scaler``: their ``state_dict()`` (or None). ``rng``: one :func:`capture_rng_state`
    dict per rank, in rank order. ``step``: optimisation steps done; ``epoch``: the epoch
    in progress; ``batch_in_epoch``: batches of that epoch already done. ``config``,
    ``metrics``, ``extra``: JSON-serialisable dicts (non-finite floats become null).
    ``path`` is filled in by :func:`load_checkpoint`.
    """

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    rng: list[dict[str, Any]] | None = None
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


# ----------------------------------------------------------------------------- RNG states


def capture_rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU, and the current CUDA device if CUDA is in use), numpy's
    global generator and Python's ``random``, as tensors and primitives only."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, py_state, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }
    # Only the current device: touching all GPUs would create a context on each of them.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Put back RNG states captured by :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            int(np_state["pos"]),
            int(np_state["has_gauss"]),
            float(np_state["cached_gaussian"]),
        )
    )
    py = state["python"]
    words = tuple(int(v) for v in py["state"].tolist())
    random.setstate((int(py["version"]), words, py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


# ----------------------------------------------------------------------------- file helpers


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _atomic_rename(src: Path, dst: Path) -> None:
    """Rename ``src`` over ``dst`` and make the rename durable. Tests patch this to crash."""
    os.replace(src, dst)
    fsync_dir(dst.parent)


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.{uuid.uuid4().hex}")
    _write_bytes(tmp, _json_bytes(obj))
    _atomic_rename(tmp, path)


def _json_safe(obj: Any) -> Any:
    """Recursively turn ``obj`` into strict JSON: non-finite floats -> None, tensors -> lists."""
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return str(obj)  # paths, dtypes, enums: keep a readable trace rather than fail


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(_json_safe(obj), indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(
            f"{path} is missing or not valid JSON ({exc}); delete it or point to another checkpoint"
        ) from exc


def _safetensors_dict(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, storage-disjoint copies (safetensors refuses shared storage)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise InputTypeError(
                f"model state entry {key!r} is a {type(value).__name__}, not a tensor; safetensors stores tensors only"
            )
        out[key] = value.detach().to("cpu", copy=True).contiguous()
    return out


def _is_checkpoint_dir(path: Path) -> bool:
    return path.is_dir() and (path / META_FILE).is_file() and (path / MODEL_FILE).is_file()


# ----------------------------------------------------------------------------- save / load


def save_checkpoint(
    root: str | Path,
    ckpt: Checkpoint,
    *,
    name: str | None = None,
    keep_last: int = 3,
    is_best: bool = False,
) -> Path:
    """Write ``ckpt`` as a new folder under ``root`` (atomically) and return its path.

    ``name`` defaults to ``step-{step:08d}``. After the write, ``last.json`` names it,
    ``best.json`` too when ``is_best``; only the ``keep_last`` newest folders plus the best
    one are kept. A name already used by a kept checkpoint gets a ``-r1``, ``-r2``...
    suffix; a leftover folder from an interrupted save is replaced.
    """
    if keep_last < 1:
        raise InputError(f"keep_last={keep_last}; keep at least 1 checkpoint")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = name or f"step-{ckpt.step:08d}"
    if name.startswith(".") or "/" in name or name in (LAST_POINTER, BEST_POINTER):
        raise InputError(f"checkpoint name {name!r} is not a plain folder name; use e.g. 'step-00000100'")

    last = _read_pointer(root, LAST_POINTER)
    best = _read_pointer(root, BEST_POINTER)
    referenced = {n for n in (last.get("name"), best.get("name")) if n}
    final_name, i = name, 0
    while final_name in referenced:
        i += 1
        final_name = f"{name}-r{i}"

    for stale in root.glob(f"{_TMP_PREFIX}*"):
        # Leftovers of a save that crashed; a save in progress elsewhere is not supported.
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)

    tmp = root / f"{_TMP_PREFIX}{final_name}.{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        weights = safetensors_save(_safetensors_dict(ckpt.model), metadata={"format": "pt"})
        _write_bytes(tmp / MODEL_FILE, weights)
        state = {
            "format_version": _FORMAT_VERSION,
            "optimizer": ckpt.optimizer,
            "scheduler": ckpt.scheduler,
            "scaler": ckpt.scaler,
            "rng": ckpt.rng,
            "step": int(ckpt.step),
            "epoch": int(ckpt.epoch),
            "batch_in_epoch": int(ckpt.batch_in_epoch),
        }
        with open(tmp / STATE_FILE, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        meta = {
            "format_version": _FORMAT_VERSION,
            "step": int(ckpt.step),
            "epoch": int(ckpt.epoch),
            "batch_in_epoch": int(ckpt.batch_in_epoch),
            "config": ckpt.config,
            "metrics": ckpt.metrics,
            "extra": ckpt.extra,
        }
        _write_bytes(tmp / META_FILE, _json_bytes(meta))
        fsync_dir(tmp)

        final = root / final_name
        if final.exists():
            shutil.rmtree(final)  # unreferenced: the remains of a crash after the rename
        _atomic_rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    if is_best:
        best_record = {"name": final_name, "step": ckpt.step, "epoch": ckpt.epoch, "metrics": ckpt.metrics}
        _write_json_atomic(root / BEST_POINTER, best_record)
        best = {"name": final_name}
    history = [n for n in last.get("history", []) if n != final_name and _is_checkpoint_dir(root / n)]
    history = (history + [final_name])[-keep_last:]
    last_record = {"name": final_name, "step": ckpt.step, "epoch": ckpt.epoch, "history": history}
    _write_json_atomic(root / LAST_POINTER, last_record)

    keep = set(history) | {best.get("name")}
    for child in root.iterdir():
        if child.name not in keep and not child.name.startswith(".") and _is_checkpoint_dir(child):
            shutil.rmtree(child, ignore_errors=True)
    return final


def _read_pointer(root: Path, pointer: str) -> dict[str, Any]:
    path = root / pointer
    if not path.is_file():
        return {}
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise WeightsError(f"{path} does not name a checkpoint folder; delete it to start over")
    return data


def resolve_checkpoint(path: str | Path, which: str = "last") -> Path | None:
    """Folder of a checkpoint: ``path`` itself if it is one, else the one ``path/{which}.json``
    names (``which`` is "last" or "best"); None when there is none yet."""
    if which not in ("last", "best"):
        raise InputError(f"which={which!r}; use 'last' or 'best'")
    path = Path(path)
    if _is_checkpoint_dir(path):
        return path
    pointer = _read_pointer(path, LAST_POINTER if which == "last" else BEST_POINTER)
    if not pointer:
        return None
    folder = path / pointer["name"]
    if not _is_checkpoint_dir(folder):
        raise WeightsError(
            f"{path / (which + '.json')} names {folder}, which is missing or incomplete; "
            "delete the pointer or restore the folder"
        )
    return folder


def load_checkpoint(path: str | Path, which: str = "last", map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint folder, or the ``last``/``best`` one under a checkpoint root.

    Raises :class:`WeightsError` when there is none, or when a file is corrupt or holds
    anything but tensors and primitives (nothing is executed in that case).
    """
    folder = resolve_checkpoint(path, which)
    if folder is None:
        raise WeightsError(f"no checkpoint in {path} (no {which}.json); train first or point to a checkpoint folder")
    model = _load_safetensors(folder / MODEL_FILE, map_location)
    state = _torch_load_weights_only(folder / STATE_FILE, map_location)
    if not isinstance(state, dict):
        raise WeightsError(f"{folder / STATE_FILE} does not hold a training state dict; it was not written by densepac")
    meta = _read_json(folder / META_FILE)
    return Checkpoint(
        model=model,
        optimizer=state.get("optimizer"),
        scheduler=state.get("scheduler"),
        scaler=state.get("scaler"),
        rng=state.get("rng"),
        step=int(state.get("step", meta.get("step", 0))),
        epoch=int(state.get("epoch", meta.get("epoch", 0))),
        batch_in_epoch=int(state.get("batch_in_epoch", meta.get("batch_in_epoch", 0))),
        config=meta.get("config", {}),
        metrics=meta.get("metrics", {}),
        extra=meta.get("extra", {}),
        path=folder,
    )


# ----------------------------------------------------------------------------- bare weights


def _load_safetensors(path: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    """The file's tensors, memory-mapped (paged in when used): reading holds no second copy of the weights."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; check the path")
    try:
        tensors = safetensors_load_file(path, device="cpu")
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path} ({exc.strerror}); check the path") from exc
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path} is not a valid .safetensors file ({exc}); re-download or re-export it") from exc
    return {k: v.to(map_location) for k, v in tensors.items()}


def _first_line(exc: BaseException) -> str:
    """The informative part of a (often multi-line) torch loading error.

    torch's own text advises retrying with ``weights_only=False``, which would run whatever
    the file holds; only the reason is kept, never that advice.
    """
    text = str(exc)
    for pattern in (r"Unsupported global: GLOBAL [\w.]+", r"unsupported GLOBAL [\w.]+", r"Unsupported operand \d+"):
        found = re.search(pattern, text)
        if found:
            return found.group(0)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [
        ln
        for ln in lines
        if "weights_only" not in ln and "WeightsUnpickler" not in ln and not ln.startswith("Check the documentation")
    ]
    return lines[0] if lines else type(exc).__name__


def _torch_load_weights_only(path: Path, map_location: str | torch.device, mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)``; ``mmap``: tensors memory-mapped from a zip-format file (paged in
    when used, so reading holds no second copy of the weights), read into memory from a legacy one."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; check the path")
    mmap = mmap and zipfile.is_zipfile(path)
    try:
        with warnings.catch_warnings():  # torch warns on stderr about pickle protocols it may not support
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"{path} holds pickled Python objects that safe loading refuses ({_first_line(exc)}); "
            "re-save it as a plain state dict or .safetensors"
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise WeightsError(f"{path} is not a readable torch weights file ({_first_line(exc)}); re-export it") from exc


def _tensor_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    if not isinstance(obj, Mapping) or not obj:
        return None
    if all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return dict(obj)
    return None


def load_state_dict_safe(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a bare weights file without executing anything.

    ``.safetensors`` through safetensors; ``.pt``/``.pth``/``.bin``/``.ckpt`` through
    ``torch.load(weights_only=True)``. A state dict nested under ``state_dict``/``model``
    is unwrapped, and a ``module.`` prefix left by DataParallel/DDP is stripped.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        state = _load_safetensors(path, map_location)
    elif suffix in (".pt", ".pth", ".bin", ".ckpt"):
        obj = _torch_load_weights_only(path, map_location, mmap=True)
        state = _tensor_dict(obj)
        if state is None and isinstance(obj, Mapping):
            for key in ("state_dict", "model", "model_state_dict", "weights"):
                state = _tensor_dict(obj.get(key))
                if state is not None:
                    break
        if state is None:
            raise WeightsError(f"{path} does not hold a state dict of tensors; save model.state_dict() instead")
    else:
        raise WeightsError(f"{path} has suffix {suffix or '(none)'!r}; give a .safetensors, .pt or .pth weights file")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def read_pretrained(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, where it came from) of a weights file or a densepac run / checkpoint folder.

    A folder may be a run (holding ``checkpoints/``), a checkpoint root or one checkpoint;
    from a root the ``best`` checkpoint is taken, else the ``last``.
    """
    # Imported here: densepac.models imports this module.
    from densepac.models.hub import resolve_weights

    p = resolve_weights(path)
    if not p.exists():
        raise InputError(f"weights {p} do not exist; give a weights file or a densepac run/checkpoint folder")
    if not p.is_dir():
        return load_state_dict_safe(p), str(p)
    folder = checkpoint_of(p)
    if folder is None:
        raise InputError(f"{p} holds no densepac checkpoint; give a run folder, a checkpoint folder or a weights file")
    return load_state_dict_safe(folder / MODEL_FILE), str(folder)


def checkpoint_of(folder: Path) -> Path | None:
    """The checkpoint folder a run (holding ``checkpoints/``), a checkpoint root or one checkpoint
    stands for: from a root its ``best`` checkpoint, else its ``last``; None when there is none."""
    root = folder / "checkpoints" if (folder / "checkpoints").is_dir() else folder
    return resolve_checkpoint(root, "best") or resolve_checkpoint(root, "last")
