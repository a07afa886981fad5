"""What every training run is made of: one config dataclass per task, on one base.

:class:`TrainConfig` holds the fields both tasks share, checks them (:meth:`validate`),
turns them into the :class:`~densepac.engine.trainer.Trainer`'s arguments and writes the
command line that reproduces the run (:meth:`command`), derived from the fields themselves:
a field ``batch_size`` is the option ``--batch-size``, a bool is a flag, a dict of model
arguments is repeated ``--arg key=value``. The CLI builds its options from the same fields,
so a default is written once, here or in a task's subclass.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from densepac.check import check_choice, check_int
from densepac.errors import InputError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("cosine", "poly", "step", "none")
#: Checkpoints a run folder keeps besides the best one: the last, which resumes; nothing more.
KEEP_LAST = 1


def option(
    default: Any, help: str = "", *, flag: str | None = None, choices: tuple[str, ...] | None = None, cli: bool = True
) -> Any:
    """A config field with what the CLI needs to offer it (help text, flag name, choices).

    ``cli=False`` fields are not options (the CLI fills them, e.g. ``device`` from ``--device``).
    """
    meta = {"help": help, "flag": flag, "choices": choices, "cli": cli}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Fields every training run shares (stored in every checkpoint of the run).

    ``model``: registry name; ``out``: run folder; ``data``: a data spec of the task;
    ``train_size`` / ``val_size``: synthetic scenes per epoch / held-out validation scenes;
    ``crop``: square training crop side (pixels); ``model_kwargs``: architecture arguments.
    """

    #: The ``densepac`` sub-command that runs this config.
    COMMAND: ClassVar[str] = "train"

    model: str
    out: str
    data: str = option("synthetic", "Training data (see the command's help for the forms).")
    train_size: int = option(2000, "Synthetic scenes per epoch.")
    val_size: int = option(50, "Held-out synthetic validation scenes.")
    crop: int = option(128, "Square training crop (pixels).")
    epochs: int = option(10, "Passes over the training data.")
    batch_size: int = option(8, "Samples per optimiser step (per process under torchrun).")
    lr: float = option(1e-3, "Learning rate.")
    weight_decay: float = option(0.0, "Weight decay.")
    optimizer: str = option("adam", "Optimiser.", choices=OPTIMIZERS)
    scheduler: str = option("cosine", "Learning-rate schedule over the whole run.", choices=SCHEDULERS)
    seed: int = option(0, "Seed of the initialisation, sample order and augmentations.")
    device: str = option("cpu", cli=False)
    workers: int = option(0, "DataLoader worker processes.")
    amp: bool = option(False, "Mixed precision.")
    checkpoint_every: int = option(0, "Also checkpoint every N optimiser steps (0: at the end of each epoch).")
    model_kwargs: dict[str, Any] = option({}, "Architecture argument key=value (repeatable).", flag="arg")

    def validate(self) -> None:
        """Raise InputError for settings that cannot make a run."""
        if not isinstance(self.model, str) or not self.model:
            raise InputError(f"model={self.model!r}; give a registry model name (see `densepac models`)")
        for name in ("train_size", "val_size", "epochs", "batch_size"):
            check_int(getattr(self, name), name, minimum=1)
        check_int(self.crop, "crop", minimum=16)
        check_int(self.seed, "seed", minimum=0)
        check_int(self.workers, "workers", minimum=0)
        check_int(self.checkpoint_every, "checkpoint_every", minimum=0)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"lr={self.lr!r}; give a positive learning rate")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise InputError(f"weight_decay={self.weight_decay!r}; give a value >= 0")
        check_choice(self.optimizer, OPTIMIZERS, "optimizer")
        check_choice(self.scheduler, SCHEDULERS, "scheduler")

    def trainer_kwargs(self) -> dict[str, Any]:
        """The :class:`~densepac.engine.trainer.Trainer` arguments of this run (the config itself included)."""
        return dict(
            out_dir=self.out,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            num_workers=self.workers,
            seed=self.seed,
            device=self.device,
            amp=self.amp,
            checkpoint_every=self.checkpoint_every or "epoch",
            keep_last=KEEP_LAST,
            config=dataclasses.asdict(self),
        )

    def command(self, export: str | Path | None = None) -> str:
        """The ``densepac`` command line that reproduces this run (``--export`` added when given)."""
        parts = ["densepac", self.COMMAND]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            flag = "--" + (f.metadata.get("flag") or f.name.replace("_", "-"))
            if isinstance(value, bool):
                parts += [flag] if value else []
            elif isinstance(value, dict):
                parts += [f"{flag} {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in value.items()]
            elif value is not None:
                parts.append(f"{flag} {shlex.quote(str(value))}")
        if export is not None:
            parts.append(f"--export {shlex.quote(str(export))}")
        return " ".join(parts)

    @classmethod
    def cli_fields(cls) -> list[dataclasses.Field]:
        """The fields the CLI offers as options, in declaration order."""
        return [f for f in dataclasses.fields(cls) if f.name not in ("model", "out") and f.metadata.get("cli", True)]


def epochs_for_steps(steps: int, batch_size: int, epochs: int) -> dict[str, int]:
    """``epochs`` and ``train_size`` config fields that make ``steps`` optimiser steps over ``epochs`` epochs."""
    return {"epochs": epochs, "train_size": max(1, steps * batch_size // epochs)}


def parse_key_values(pairs: Sequence[str], flag: str = "--arg") -> dict[str, Any]:
    """``key=value`` strings (repeatable CLI options) as a dict; values are parsed as JSON when they
    parse (Python's ``True``, ``False`` and ``None`` too), else kept as strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{flag} {pair!r} is not key=value; e.g. {flag} channels=16")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = _PYTHON_CONSTANTS.get(value, value)
    return out


_PYTHON_CONSTANTS = {"True": True, "False": False, "None": None}
