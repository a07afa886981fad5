"""Run by test_crash_resume.py; not a test module itself.

A fork server for crash tests of ``densepac train``: it imports densepac (and torch) once,
then for every request forks a child that runs the real command line (``densepac.cli:main``)
with a fault injected, and reports how the child ended. Forking a pre-imported process makes
each run cost its training time instead of a few seconds of imports; the child is an
ordinary process that ``SIGKILL`` really kills.

Protocol (one JSON object per line): stdin gets ``{"argv": [...], "fault": {...} | null,
"log": PATH}``; stdout answers ``{"exitcode": N}``, where a negative N is the signal that ended
the child (``os.waitstatus_to_exitcode``). The child's stdout/stderr go to ``log``.

Faults (injected in the child only, by wrapping library functions; nothing in densepac
knows about them):

* ``{"kind": "step", "call": K, "signal": "SIGKILL" | "SIGTERM"}``: the signal is sent to
  the child itself right after its K-th optimiser step (``Trainer._train_step``), i.e. in
  the middle of an epoch.
* ``{"kind": "write", "name": S, "nth": N}``: during the N-th checkpoint file write whose
  file name contains S (``model.safetensors``, ``meta.json``, ``last.json``...), half of the
  bytes are written and flushed to disk, then SIGKILL.
* ``{"kind": "torch_save", "nth": N}``: the same inside the N-th ``torch.save`` (state.pt).
* ``{"kind": "rename", "name": S, "nth": N}``: SIGKILL just before the N-th atomic rename
  whose destination is named S (e.g. ``last.json``: after the checkpoint folder is in place,
  before the pointer names it).
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import traceback

import torch

torch.set_num_threads(1)

# What `densepac train` imports lazily, so that the forked children find it loaded.
import torch._dynamo  # noqa: E402  (the optimisers import it on first use)

import densepac.cli  # noqa: E402
import densepac.depth.recipe  # noqa: E402
import densepac.depth.transforms  # noqa: E402
import densepac.inference  # noqa: E402
from densepac.engine import checkpoint as ckpt_mod  # noqa: E402
from densepac.engine import trainer as trainer_mod  # noqa: E402


def _die_after_half(f, data: bytes) -> None:
    f.write(data[: len(data) // 2])
    f.flush()
    os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def install_fault(fault: dict | None) -> None:
    if not fault:
        return
    kind, seen = fault["kind"], [0]

    def hit() -> bool:
        seen[0] += 1
        return seen[0] == fault.get("nth", fault.get("call"))

    if kind == "step":
        real_step = trainer_mod.Trainer._train_step
        signum = getattr(signal, fault["signal"])

        def step(self, batch):
            loss = real_step(self, batch)
            if hit():
                os.kill(os.getpid(), signum)
            return loss

        trainer_mod.Trainer._train_step = step
    elif kind == "write":
        real_write = ckpt_mod._write_bytes

        def write(path, data):
            if fault["name"] in path.name and hit():
                with open(path, "wb") as f:
                    _die_after_half(f, data)
            real_write(path, data)

        ckpt_mod._write_bytes = write
    elif kind == "torch_save":
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            if not hit():
                return real_save(obj, f, *args, **kwargs)
            buf = io.BytesIO()
            real_save(obj, buf, *args, **kwargs)
            _die_after_half(f, buf.getvalue())

        torch.save = save
    elif kind == "rename":
        real_rename = ckpt_mod._atomic_rename

        def rename(src, dst):
            if dst.name == fault["name"] and hit():
                os.kill(os.getpid(), signal.SIGKILL)
            real_rename(src, dst)

        ckpt_mod._atomic_rename = rename
    else:
        raise ValueError(f"unknown fault {fault!r}")


def run_child(request: dict) -> None:
    """In the forked child: redirect output, inject the fault, run the CLI, exit."""
    code = 1
    try:
        fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        install_fault(request.get("fault"))
        densepac.cli.main(request["argv"], prog_name="densepac")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            run_child(request)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"exitcode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
