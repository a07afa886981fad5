"""One training loop for every densepac task, in one process or under ``torchrun``.

Determinism and resumption rest on three choices:

- the order of the training samples is a pure function of (seed, epoch): torch's
  ``DistributedSampler`` (also used with one process), so the batches of an epoch are known
  in advance and a resumed run skips the ones already done without loading them;
- every sample's own randomness (augmentations) is seeded from (seed, epoch, index), so it
  does not depend on worker count, rank count or where a run was resumed;
- a checkpoint carries the model, optimiser, scheduler, grad scaler, every rank's RNG
  states and the (epoch, batch) position, so stop + resume replays the exact same steps.

On CPU, training N steps straight and training k steps, stopping and resuming give the same
weights bit for bit (on CUDA, as far as the kernels are deterministic).
"""

from __future__ import annotations

import json
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm import tqdm

from densepac.engine import distributed as dist_utils
from densepac.engine.checkpoint import (
    Checkpoint,
    capture_rng_state,
    load_checkpoint,
    resolve_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from densepac.engine.config import OPTIMIZERS, SCHEDULERS, TrainConfig
from densepac.engine.tasks import Task
from densepac.errors import InputError, WeightsError

__all__ = ["Trainer", "FitResult", "evaluate", "seed_everything"]

# A second SIGINT/SIGTERM sooner than this is taken as a duplicate of the first, not as
# "stop now": under torchrun each worker gets Ctrl-C from the terminal and from the agent.
_REPEAT_GRACE_S = 2.0


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class FitResult:
    """How :meth:`Trainer.fit` ended.

    ``interrupted`` is True when a signal (SIGINT/SIGTERM) or ``max_steps`` stopped the
    run early; a checkpoint was written in every case. ``metrics`` are the latest
    validation metrics ({} without a validation set).
    """

    step: int
    epoch: int
    interrupted: bool
    checkpoint: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)
    best_score: float | None = None


@dataclass
class _RunState:
    """Where a fit() call is: counters, latest metrics, best score, last checkpoint."""

    step: int = 0
    epoch: int = 0  # the epoch in progress (== epochs done when batch_in_epoch is 0)
    batch_in_epoch: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    best_score: float | None = None
    saved_step: int = -1
    save_pending: bool = False
    path: Path | None = None


class _SeededItems(Dataset):
    """Dataset view whose item ``i`` in epoch ``e`` is drawn with RNGs seeded from
    (seed, e, i); the caller's RNG streams are put back afterwards."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0  # set before each epoch's DataLoader iterator copies this object

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        sequence = np.random.SeedSequence([self.seed, self.epoch, int(index)])
        item_seed = int(sequence.generate_state(1)[0])
        saved = (torch.get_rng_state(), np.random.get_state(), random.getstate())
        # default_generator only: torch.manual_seed would also reseed CUDA streams.
        torch.default_generator.manual_seed(item_seed)
        np.random.seed(item_seed)
        random.seed(item_seed)
        try:
            return self.dataset[index]
        finally:
            torch.set_rng_state(saved[0])
            np.random.set_state(saved[1])
            random.setstate(saved[2])


class _SkipSampler(Sampler[int]):
    """The indices of ``base`` after the first ``skip`` (batches already trained on)."""

    def __init__(self, base: Sampler[int], skip: int) -> None:
        self.base = base
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return islice(iter(self.base), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)  # type: ignore[arg-type]


class _ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...``: every sample once over all ranks, no padding
    (so evaluation never counts a sample twice)."""

    def __init__(self, size: int, rank: int, world: int) -> None:
        self.indices = range(rank, size, world)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _check_dataset(dataset: Any, name: str) -> int:
    try:
        size = len(dataset)
    except TypeError:
        raise InputError(f"{name} has no len(); give a map-style torch Dataset") from None
    if size == 0:
        raise InputError(f"{name} is empty; check the dataset path and split")
    return size


def _autocast(device: torch.device, enabled: bool) -> Any:
    if not enabled:
        return nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def show_progress(progress: bool | None) -> bool:
    if not dist_utils.is_main_process():
        return False
    if progress is None:
        return sys.stderr.isatty()
    return progress


def evaluate(
    model: nn.Module,
    task: Task,
    dataset: Dataset,
    *,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    amp: bool = False,
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``dataset`` (``task.new_metrics().compute()`` keys).

    Under DDP every rank takes every ``world_size``-th sample and the metric sums are
    reduced, so all ranks return the same dataset-level values and no sample counts twice.
    ``model`` must be the bare module (not a DistributedDataParallel wrapper).
    """
    size = _check_dataset(dataset, "evaluation dataset")
    if batch_size < 1:
        raise InputError(f"batch_size={batch_size}; use a batch size of at least 1")
    device = torch.device(device)
    items = _SeededItems(dataset, seed)
    sampler = _ShardSampler(size, dist_utils.rank(), dist_utils.world_size())
    loader = DataLoader(
        items,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),
    )
    metrics = task.new_metrics()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            bar = tqdm(loader, desc="eval", disable=not show_progress(progress), leave=False)
            for batch in bar:
                batch = task.to_device(batch, device)
                with _autocast(device, amp):
                    output = task.forward(model, batch)
                task.evaluate(metrics, output.float(), batch)
    finally:
        model.train(was_training)
    metrics.all_reduce()
    return metrics.compute()


class Trainer:
    """Trains ``model`` on ``train_set`` for a :class:`Task`, in one process or under DDP.

    Arguments (units: steps are optimiser steps, one per batch):

    - ``out_dir``: gets ``log.jsonl`` (one JSON object per line) and ``checkpoints/``;
      only rank 0 writes there.
    - ``optimizer``: "adamw", "adam" or "sgd" (momentum 0.9). ``param_groups``: torch-style
      groups (``{"params": ..., "lr": ...}``) for parameters that need their own settings;
      every other trainable parameter joins a default group with ``lr``/``weight_decay``.
    - ``scheduler``: stepped once per optimiser step over the whole run: "cosine" (to 0),
      "poly" (power 0.9), "step" (x``gamma`` every ``step_epochs`` epochs, default
      epochs // 3) or "none".
    - ``grad_clip``: max global L2 norm of the gradients, or None.
    - ``amp``: autocast (float16 + grad scaling on CUDA, bfloat16 on CPU).
    - ``checkpoint_every``: a number of steps, or "epoch". A checkpoint is also written at
      the end, when stopped, and whenever the validation score (``task.monitor``) improves
      (that one becomes ``best``). ``keep_last`` checkpoints are kept plus the best.
    - ``eval_every``: evaluate on ``val_set`` every this many epochs (and after the last).
    - ``config``: JSON-able description of the run (model name, kwargs, data) stored in
      every checkpoint so it can be rebuilt.
    - ``progress``: tqdm bars on rank 0; None = only when stderr is a terminal.

    - ``num_workers``: DataLoader worker processes; results do not depend on it.
    - ``seed``: sample order, per-sample augmentation seeds and the global RNGs; the caller
      seeds model initialisation itself.
    - ``eval_batch_size``, ``log_every`` (steps between ``train`` log lines),
      ``find_unused_parameters`` (passed to DistributedDataParallel).

    Under ``torchrun`` the model is wrapped in DistributedDataParallel (``device`` "cuda"
    uses GPU ``LOCAL_RANK``); ``batch_size`` is per process, and when the train set does
    not divide by the number of processes ``DistributedSampler`` repeats a few samples per
    epoch (evaluation never does). Call :func:`densepac.engine.distributed.cleanup` when
    the process is done.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        train_set: Dataset,
        val_set: Dataset | None = None,
        *,
        out_dir: str | Path,
        epochs: int = TrainConfig.epochs,
        batch_size: int = TrainConfig.batch_size,
        lr: float = TrainConfig.lr,
        weight_decay: float = TrainConfig.weight_decay,
        optimizer: str = TrainConfig.optimizer,
        scheduler: str = TrainConfig.scheduler,
        param_groups: Sequence[Mapping[str, Any]] | None = None,
        step_epochs: int | None = None,
        gamma: float = 0.1,
        grad_clip: float | None = None,
        num_workers: int = TrainConfig.workers,
        seed: int = TrainConfig.seed,
        device: str | torch.device = "cpu",
        amp: bool = TrainConfig.amp,
        checkpoint_every: int | str = "epoch",
        keep_last: int = 3,
        eval_every: int = 1,
        eval_batch_size: int = 1,
        log_every: int = 10,
        find_unused_parameters: bool = False,
        config: Mapping[str, Any] | None = None,
        progress: bool | None = None,
    ) -> None:
        counts = {
            "epochs": epochs,
            "batch_size": batch_size,
            "eval_every": eval_every,
            "eval_batch_size": eval_batch_size,
            "log_every": log_every,
            "keep_last": keep_last,
        }
        for name, value in counts.items():
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name}={value!r}; give an integer >= 1")
        if not (lr > 0 and math.isfinite(lr)):
            raise InputError(f"lr={lr!r}; give a positive learning rate")
        if weight_decay < 0:
            raise InputError(f"weight_decay={weight_decay!r}; give a value >= 0")
        if optimizer not in OPTIMIZERS:
            raise InputError(f"optimizer={optimizer!r} is unknown; use one of {OPTIMIZERS}")
        if scheduler not in SCHEDULERS:
            raise InputError(f"scheduler={scheduler!r} is unknown; use one of {SCHEDULERS}")
        if grad_clip is not None and not grad_clip > 0:
            raise InputError(f"grad_clip={grad_clip!r}; give a positive norm or None")
        if num_workers < 0:
            raise InputError(f"num_workers={num_workers}; give 0 (load in this process) or more")
        if not isinstance(seed, int) or seed < 0:
            raise InputError(f"seed={seed!r}; give an integer >= 0")
        every_steps = isinstance(checkpoint_every, int) and checkpoint_every >= 1
        if checkpoint_every != "epoch" and not every_steps:
            raise InputError(f"checkpoint_every={checkpoint_every!r}; give a number of steps >= 1 or 'epoch'")
        if step_epochs is not None and step_epochs < 1:
            raise InputError(f"step_epochs={step_epochs}; give a number of epochs >= 1")
        model_task = getattr(model, "task", None)
        if isinstance(model_task, str) and model_task != task.name:
            raise InputError(f"model is a {model_task!r} model but the task is {task.name!r}; pick the matching task")
        train_size = _check_dataset(train_set, "train_set")
        if val_set is not None:
            _check_dataset(val_set, "val_set")

        self.dist = dist_utils.init_distributed(device)
        self.device = self.dist.device
        self.task = task
        self.model = model.to(self.device)
        self.val_set = val_set
        self.out_dir = Path(out_dir)
        self.ckpt_root = self.out_dir / "checkpoints"
        self.log_path = self.out_dir / "log.jsonl"
        self.epochs = epochs
        self.batch_size = batch_size
        self.grad_clip = grad_clip
        self.num_workers = num_workers
        self.seed = seed
        self.amp = amp
        self.checkpoint_every = checkpoint_every
        self.keep_last = keep_last
        self.eval_every = eval_every
        self.eval_batch_size = eval_batch_size
        self.log_every = log_every
        self.progress = progress

        self._items = _SeededItems(train_set, seed)
        # Also with one process: the sampler's order is a pure function of (seed, epoch).
        self.sampler = DistributedSampler(
            self._items,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            shuffle=True,
            seed=seed,
        )
        self.steps_per_epoch = math.ceil(len(self.sampler) / batch_size)
        self.total_steps = self.steps_per_epoch * epochs

        if self.dist.world_size > 1:
            self.train_model: nn.Module = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused_parameters,
            )
        else:
            self.train_model = self.model
        groups = self._param_groups(param_groups, lr, weight_decay)
        self.optimizer: torch.optim.Optimizer
        if optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
        elif optimizer == "adam":
            self.optimizer = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
        else:
            self.optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
        self.scheduler = self._build_scheduler(scheduler, step_epochs, gamma)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp and self.device.type == "cuda")

        self.config: dict[str, Any] = dict(config or {})
        # (mean loss, steps) of the logging windows since the last epoch line.
        self._epoch_losses: list[tuple[float, int]] = []
        self.config["trainer"] = {
            "task": repr(task),
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "optimizer": optimizer,
            "scheduler": scheduler,
            "step_epochs": step_epochs,
            "gamma": gamma,
            "grad_clip": grad_clip,
            "seed": seed,
            "amp": amp,
            "world_size": self.dist.world_size,
            "train_size": train_size,
        }
        self._stop_signal: int | None = None

    # ------------------------------------------------------------------ construction helpers

    def _param_groups(
        self, param_groups: Sequence[Mapping[str, Any]] | None, lr: float, weight_decay: float
    ) -> list[dict[str, Any]]:
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        owned = {id(p) for p in self.model.parameters()}
        seen: set[int] = set()
        groups: list[dict[str, Any]] = []
        for i, group in enumerate(param_groups or ()):
            if "params" not in group:
                raise InputError(f"param_groups[{i}] has no 'params'; give dicts like {{'params': [...], 'lr': 1e-4}}")
            params = group["params"]
            params = [params] if isinstance(params, torch.Tensor) else list(params)
            for p in params:
                if id(p) not in owned:
                    raise InputError(
                        f"param_groups[{i}] holds a tensor that is not a parameter of the model; "
                        "build groups from model.parameters()"
                    )
                if id(p) in seen:
                    raise InputError(
                        f"param_groups[{i}] repeats a parameter of an earlier group; list each parameter once"
                    )
                seen.add(id(p))
            groups.append({**group, "params": params})
        rest = [p for p in trainable if id(p) not in seen]
        if rest:
            groups.insert(0, {"params": rest, "lr": lr, "weight_decay": weight_decay})
        if not groups or not any(g["params"] for g in groups):
            raise InputError("the model has no trainable parameters; unfreeze some (requires_grad=True)")
        return groups

    def _build_scheduler(self, kind: str, step_epochs: int | None, gamma: float) -> Any:
        sched = torch.optim.lr_scheduler
        if kind == "cosine":
            return sched.CosineAnnealingLR(self.optimizer, T_max=max(1, self.total_steps))
        if kind == "poly":
            total = max(1, self.total_steps)
            return sched.PolynomialLR(self.optimizer, total_iters=total, power=0.9)
        if kind == "step":
            period = step_epochs or max(1, self.epochs // 3)
            size = period * self.steps_per_epoch
            return sched.StepLR(self.optimizer, step_size=size, gamma=gamma)
        return None

    def _train_loader(self, epoch: int, skip_batches: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        self._items.epoch = epoch
        sampler: Sampler[int] = self.sampler
        if skip_batches:
            sampler = _SkipSampler(self.sampler, skip_batches * self.batch_size)
        return DataLoader(
            self._items,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            # Own generator: creating the iterator must not consume the global torch RNG,
            # or a resumed run would diverge from an uninterrupted one.
            generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch),
        )

    # ------------------------------------------------------------------ logging / checkpoints

    def _log(self, record: Mapping[str, Any]) -> None:
        if not dist_utils.is_main_process():
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps({**record, "time": round(time.time(), 3)}, default=str)
        with open(self.log_path, "a") as f:
            f.write(line + "\n")

    def _save(self, run: _RunState, is_best: bool) -> None:
        """Collective: every rank hands in its RNG state; rank 0 writes the checkpoint."""
        rng = dist_utils.all_gather_object(capture_rng_state())
        if dist_utils.is_main_process():
            ckpt = Checkpoint(
                model=self.model.state_dict(),
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict() if self.scheduler is not None else None,
                scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
                rng=rng,  # type: ignore[arg-type]
                step=run.step,
                epoch=run.epoch,
                batch_in_epoch=run.batch_in_epoch,
                config=self.config,
                metrics=dict(run.metrics),
                extra={
                    "best_score": run.best_score,
                    "monitor": self.task.monitor,
                    "world_size": self.dist.world_size,
                    "batch_size": self.batch_size,
                },
            )
            run.path = save_checkpoint(self.ckpt_root, ckpt, keep_last=self.keep_last, is_best=is_best)
            self._log(
                {
                    "event": "checkpoint",
                    "step": run.step,
                    "epoch": self._epochs_done(run),
                    "path": str(run.path),
                    "best": is_best,
                }
            )
        run.saved_step = run.step
        run.save_pending = False
        dist_utils.barrier()

    def _restore(self, ckpt: Checkpoint) -> None:
        try:
            self.model.load_state_dict(ckpt.model)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise WeightsError(
                f"checkpoint {ckpt.path} does not fit this model ({first}); resume with the same model settings"
            ) from exc
        try:
            if ckpt.optimizer is not None:
                self.optimizer.load_state_dict(ckpt.optimizer)
            if self.scheduler is not None and ckpt.scheduler is not None:
                self.scheduler.load_state_dict(ckpt.scheduler)
        except (ValueError, KeyError) as exc:
            raise WeightsError(
                f"checkpoint {ckpt.path} has another optimiser layout ({exc}); "
                "resume with the same optimizer and param_groups"
            ) from exc
        if self.scaler.is_enabled() and ckpt.scaler:
            self.scaler.load_state_dict(ckpt.scaler)
        rank = self.dist.rank
        if ckpt.rng and rank < len(ckpt.rng):
            restore_rng_state(ckpt.rng[rank])
        else:
            seed_everything(self.seed + rank + ckpt.step)

    # ------------------------------------------------------------------ signals

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        first_at: list[float] = []

        def request_stop(signum: int, frame: Any) -> None:
            now = time.monotonic()
            if not first_at:
                first_at.append(now)
                self._stop_signal = signum
            elif now - first_at[0] > _REPEAT_GRACE_S:
                raise KeyboardInterrupt  # asked twice: stop now, the last checkpoint stays
            # else: the same Ctrl-C delivered twice (terminal and torchrun both forward it)

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, request_stop)
        return previous

    def _stop_agreed(self) -> bool:
        """Whether any rank got a stop signal; all ranks must agree to save together."""
        flag = torch.tensor([1.0 if self._stop_signal is not None else 0.0])
        if self.dist.world_size > 1:
            dist_utils.all_reduce_sum(flag)
        return bool(flag.item() > 0)

    # ------------------------------------------------------------------ public API

    def evaluate(self, dataset: Dataset | None = None) -> dict[str, Any]:
        """Metrics of the current model on ``dataset`` (default: ``val_set``), all ranks."""
        dataset = dataset if dataset is not None else self.val_set
        if dataset is None:
            raise InputError("no dataset to evaluate; pass val_set= to Trainer or a dataset here")
        return evaluate(
            self.model,
            self.task,
            dataset,
            batch_size=self.eval_batch_size,
            device=self.device,
            num_workers=self.num_workers,
            amp=self.amp,
            seed=self.seed,
            progress=self.progress,
        )

    def fit(self, resume: bool | str | Path = False, max_steps: int | None = None) -> FitResult:
        """Train to the end (or until ``max_steps`` optimiser steps in all), then return.

        ``resume``: False starts fresh (refused when ``out_dir`` already has checkpoints);
        True continues from the last checkpoint in ``out_dir`` if there is one; a path
        continues from that checkpoint folder (or checkpoint root). SIGINT/SIGTERM finish
        the current step, write a checkpoint and return with ``interrupted=True``; a second
        signal raises KeyboardInterrupt at once.
        """
        if max_steps is not None and max_steps < 1:
            raise InputError(f"max_steps={max_steps}; give a number of steps >= 1 or None")
        run = _RunState()
        source = self._resume_source(resume)
        if source is not None:
            ckpt = load_checkpoint(source)
            self._restore(ckpt)
            run.step, run.epoch, run.batch_in_epoch = ckpt.step, ckpt.epoch, ckpt.batch_in_epoch
            run.metrics = dict(ckpt.metrics)
            run.best_score = ckpt.extra.get("best_score")
            run.saved_step, run.path = ckpt.step, ckpt.path
            self._log({"event": "resume", "step": run.step, "epoch": self._epochs_done(run), "from": str(ckpt.path)})
        else:
            seed_everything(self.seed + self.dist.rank)
            self._log({"event": "start", "config": self.config})

        self._stop_signal = None
        previous_handlers = self._install_signal_handlers()
        try:
            while run.epoch < self.epochs:
                stopped = self._train_epoch(run, max_steps)
                if stopped is not None:
                    return self._stop(run, stopped)
                run.epoch += 1
                run.batch_in_epoch = 0
                is_best = self._end_of_epoch_eval(run)
                due = self.checkpoint_every == "epoch" or run.save_pending or run.epoch == self.epochs
                if (due and run.saved_step != run.step) or is_best:
                    self._save(run, is_best)
                if run.epoch < self.epochs and self._stop_agreed():
                    return self._stop(run, "signal")
            self._log({"event": "done", "step": run.step, "epoch": run.epoch, "metrics": run.metrics})
            return FitResult(run.step, run.epoch, False, run.path, run.metrics, run.best_score)
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)

    # ------------------------------------------------------------------ loop internals

    def _epochs_done(self, run: _RunState) -> float:
        return round(run.epoch + run.batch_in_epoch / self.steps_per_epoch, 4)

    def _train_epoch(self, run: _RunState, max_steps: int | None) -> str | None:
        """Train the rest of ``run.epoch``; return why it stopped early, or None."""
        loader = self._train_loader(run.epoch, run.batch_in_epoch)
        window_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        window_steps = 0
        self.train_model.train()
        bar = tqdm(
            loader,
            total=self.steps_per_epoch,
            initial=run.batch_in_epoch,
            disable=not show_progress(self.progress),
            desc=f"epoch {run.epoch + 1}/{self.epochs}",
            leave=False,
            dynamic_ncols=True,
        )
        reason = None
        try:
            for batch in bar:
                loss = self._train_step(batch)
                run.step += 1
                run.batch_in_epoch += 1
                window_loss += loss.detach().to(torch.float64)
                window_steps += 1
                if run.step % self.log_every == 0:
                    bar.set_postfix(loss=f"{self._log_train(run, window_loss, window_steps):.4g}")
                    window_loss.zero_()
                    window_steps = 0
                if self._stop_agreed():
                    reason = "signal"
                elif max_steps is not None and max_steps <= run.step < self.total_steps:
                    reason = "max_steps"
                if reason is not None:
                    break
                if isinstance(self.checkpoint_every, int) and run.step % self.checkpoint_every == 0:
                    if run.batch_in_epoch < self.steps_per_epoch:
                        self._save(run, False)
                    else:
                        # Saved after the epoch's evaluation instead, so that the checkpoint
                        # carries its metrics and can become `best` without a second copy.
                        run.save_pending = True
        finally:
            bar.close()
        if window_steps:
            self._log_train(run, window_loss, window_steps)
        return reason

    def _end_of_epoch_eval(self, run: _RunState) -> bool:
        """Evaluate when due; return whether the score is the best so far."""
        if self.val_set is None:
            return False
        if run.epoch % self.eval_every != 0 and run.epoch != self.epochs:
            return False
        run.metrics = self.evaluate()
        score = run.metrics.get(self.task.monitor)
        is_best = isinstance(score, float) and self.task.is_better(score, run.best_score)
        if is_best:
            run.best_score = score
        self._log({"event": "eval", "step": run.step, "epoch": run.epoch, "metrics": run.metrics, "best": is_best})
        self._say_epoch(run, is_best)
        return is_best

    def _say_epoch(self, run: _RunState, is_best: bool) -> None:
        """One line per evaluated epoch on stderr (rank 0; silent with ``progress=False``): loss and metrics."""
        seen, self._epoch_losses = self._epoch_losses, []
        if self.progress is False or not dist_utils.is_main_process():
            return
        steps = sum(n for _, n in seen)
        loss = f"train loss {sum(v * n for v, n in seen) / steps:.4g}" if steps else "train loss -"
        shown = [self.task.monitor, *(k for k in run.metrics if k != self.task.monitor)]
        metrics = " ".join(f"{k} {run.metrics[k]:.4g}" for k in shown if isinstance(run.metrics.get(k), float))
        best = " (best)" if is_best else ""
        tqdm.write(f"epoch {run.epoch}/{self.epochs} step {run.step}: {loss} | val {metrics}{best}", file=sys.stderr)

    def _stop(self, run: _RunState, reason: str) -> FitResult:
        if run.saved_step != run.step:
            self._save(run, False)
        self._log({"event": "stopped", "reason": reason, "step": run.step, "epoch": self._epochs_done(run)})
        return FitResult(run.step, run.epoch, True, run.path, run.metrics, run.best_score)

    def _resume_source(self, resume: bool | str | Path) -> Path | None:
        if resume is False:
            if resolve_checkpoint(self.ckpt_root) is not None:
                raise InputError(
                    f"{self.ckpt_root} already holds checkpoints; pass resume=True to continue, or use another out_dir"
                )
            return None
        if resume is True:
            return resolve_checkpoint(self.ckpt_root)
        found = resolve_checkpoint(Path(resume))
        if found is None:
            raise InputError(
                f"resume={str(resume)!r} is not a checkpoint folder or root; point to one written by densepac"
            )
        return found

    def _train_step(self, batch: Mapping[str, Any]) -> torch.Tensor:
        batch = self.task.to_device(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with _autocast(self.device, self.amp):
            output = self.task.forward(self.train_model, batch)
        loss = self.task.loss(output.float(), batch)
        self.scaler.scale(loss).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss

    def _log_train(self, run: _RunState, window_loss: torch.Tensor, window_steps: int) -> float:
        """Collective: mean loss of the window over all ranks, logged by rank 0."""
        steps = torch.tensor(float(window_steps), dtype=torch.float64)
        totals = torch.stack([window_loss.detach().cpu(), steps])
        dist_utils.all_reduce_sum(totals)
        mean_loss = float(totals[0] / totals[1])
        self._epoch_losses.append((mean_loss, window_steps))
        self._log(
            {
                "event": "train",
                "step": run.step,
                "epoch": self._epochs_done(run),
                "loss": mean_loss,
                "lr": self.optimizer.param_groups[0]["lr"],
            }
        )
        return mean_loss
