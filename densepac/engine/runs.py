"""A training run in its folder: checks, cleanup of a failed new run, rank-0 export, teardown.

Both tasks' recipes (``densepac train`` and ``densepac finetune``) go through
:func:`train_in_run_folder`, so a run behaves the same whichever task it trains.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from densepac.engine.distributed import cleanup, is_main_process
from densepac.engine.trainer import FitResult
from densepac.io.files import PathLike, check_output_folder


@dataclass(frozen=True)
class RunReport:
    """How a run ended: the :class:`FitResult`, the exported weights file (None without export),
    and whether this process was rank 0 (the one that reports)."""

    result: FitResult
    exported: Path | None
    main_process: bool = True


def _remove_failed_run(out: Path, existed: bool) -> None:
    """Remove a run folder this call created when the run failed before its first checkpoint."""
    ckpts = out / "checkpoints"
    if not existed and out.is_dir() and not (ckpts.is_dir() and any(ckpts.iterdir())):
        shutil.rmtree(out, ignore_errors=True)


def train_in_run_folder(
    out: PathLike, export_dir: PathLike | None, train: Callable[[], FitResult], export: Callable[[FitResult], Path]
) -> RunReport:
    """Check the folders, run ``train()``, then ``export(result)`` on rank 0 when ``export_dir`` is given.

    A run folder this call created is removed when training fails before its first
    checkpoint; the process group (under torchrun) is torn down whatever happens.
    """
    out = check_output_folder(out, "--out")
    if export_dir is not None:
        check_output_folder(export_dir, "--export")
    existed = out.exists()
    exported = None
    main = True
    try:
        try:
            result = train()
        except Exception:
            if is_main_process():
                _remove_failed_run(out, existed)
            raise
        main = is_main_process()  # asked before the process group is torn down
        if export_dir is not None and main:
            exported = export(result)
    finally:
        cleanup()
    return RunReport(result, exported, main)
