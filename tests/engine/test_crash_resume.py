"""`densepac train` survives SIGKILL anywhere: mid-epoch and mid-checkpoint-write.

One run is taken through a chain of real process deaths (see crash_driver.py for how the
faults are injected into a child running ``densepac.cli:main``); after each one the
previous checkpoint must be intact and nothing half-written picked up, and after the last
``--resume`` the run must end with exactly the weights, optimiser state and metrics of an
uninterrupted run with the same seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from densepac.engine.checkpoint import load_checkpoint, resolve_checkpoint

DRIVER = Path(__file__).with_name("crash_driver.py")

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the crash driver forks its runs")

# 6 scenes, batch 2: 3 steps per epoch, 3 epochs, a checkpoint (and evaluation) per epoch.
TRAIN = [
    "train",
    "--model",
    "pac_jointupsample_lite_x4",
    "--arg",
    "channels=4",
    "--train-size",
    "6",
    "--val-size",
    "1",
    "--batch-size",
    "2",
    "--crop",
    "16",
    "--epochs",
    "3",
    "--device",
    "cpu",
]
KILLED = -signal.SIGKILL


class Driver:
    """The fork server: one process that imported densepac, forking a child per run."""

    def __init__(self, logs: Path) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(var, None)
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
        )
        self.logs, self.runs = logs, 0

    def run(self, out: Path, *extra: str, fault: dict | None = None, timeout: float = 120) -> tuple[int, str]:
        """Run `densepac train ... --out OUT EXTRA` with ``fault``; (exit code, its output)."""
        self.runs += 1
        log = self.logs / f"run{self.runs}.log"
        request = {"argv": TRAIN + ["--out", str(out), *extra], "fault": fault, "log": str(log)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            pytest.fail(f"run {self.runs} did not end within {timeout}s: {log.read_text()[-2000:]}")
        line = self.proc.stdout.readline()
        if not line:
            pytest.fail(f"the crash driver died (exit {self.proc.wait()})")
        return json.loads(line)["exitcode"], log.read_text()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    d = Driver(tmp_path_factory.mktemp("logs"))
    yield d
    d.close()


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _pointer(root: Path, name: str = "last.json") -> dict:
    return json.loads((root / name).read_text())


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def _assert_same_state(a, b) -> None:
    assert a.model.keys() == b.model.keys()
    for k in a.model:
        assert torch.equal(a.model[k], b.model[k]), k
    sa, sb = a.optimizer["state"], b.optimizer["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for key in sa[i]:
            assert torch.equal(torch.as_tensor(sa[i][key]), torch.as_tensor(sb[i][key])), (i, key)
    assert a.scheduler == b.scheduler
    assert a.metrics == b.metrics
    assert (a.step, a.epoch, a.batch_in_epoch) == (b.step, b.epoch, b.batch_in_epoch)


def test_sigkill_anywhere_then_resume_equals_an_uninterrupted_run(driver, tmp_path):
    ref_out, out = tmp_path / "reference", tmp_path / "crashed"
    code, log = driver.run(ref_out)
    assert code == 0, log
    reference = load_checkpoint(ref_out / "checkpoints")
    ref_best = load_checkpoint(ref_out / "checkpoints", which="best")
    assert reference.step == 9 and reference.metrics
    root = out / "checkpoints"
    faults = 0

    # 1. SIGKILL in the middle of epoch 2 (after step 5): the epoch-1 checkpoint remains.
    code, log = driver.run(out, fault={"kind": "step", "call": 5, "signal": "SIGKILL"})
    assert code == KILLED, log
    faults += 1
    assert _pointer(root)["name"] == "step-00000003" and _leftovers(root) == []
    kept = _digest(root / "step-00000003")

    # 2. Resumed, then SIGKILL half-way through writing model.safetensors of the step-6
    #    checkpoint: the half-written folder exists but is never picked up.
    code, log = driver.run(out, "--resume", fault={"kind": "write", "name": "model.safetensors", "nth": 1})
    assert code == KILLED, log
    faults += 1
    [tmp] = [p for p in root.iterdir() if p.name.startswith(".tmp-step-00000006")]
    assert (tmp / "model.safetensors").stat().st_size > 0  # really cut off mid-file
    assert resolve_checkpoint(root) == root / "step-00000003"
    assert _digest(root / "step-00000003") == kept and load_checkpoint(root).step == 3

    # 3. Resumed, then SIGKILL half-way through torch.save of the step-6 state.pt.
    code, log = driver.run(out, "--resume", fault={"kind": "torch_save", "nth": 1})
    assert code == KILLED, log
    faults += 1
    assert not tmp.exists()  # the previous crash's remains were swept by this save
    [tmp] = [p for p in root.iterdir() if p.name.startswith(".tmp-step-00000006")]
    with pytest.raises(RuntimeError):
        torch.load(tmp / "state.pt", weights_only=True)  # really cut off mid-file
    assert _digest(root / "step-00000003") == kept and load_checkpoint(root).step == 3

    # 4. Resumed, then SIGKILL after the step-6 folder (and best.json) are in place but
    #    before last.json names it: the resume must still start from step 3.
    code, log = driver.run(out, "--resume", fault={"kind": "rename", "name": "last.json", "nth": 1})
    assert code == KILLED, log
    faults += 1
    assert (root / "step-00000006" / "model.safetensors").is_file()
    assert _pointer(root)["name"] == "step-00000003" and _digest(root / "step-00000003") == kept
    assert _pointer(root, "best.json")["name"] == "step-00000006"

    # 5. Resumed; SIGTERM in the middle of epoch 3 (step 8 = 5th step of this run): it
    #    writes a mid-epoch checkpoint and exits cleanly.
    code, log = driver.run(out, "--resume", fault={"kind": "step", "call": 5, "signal": "SIGTERM"})
    assert code == 0 and "stopped at step 8" in log, log
    faults += 1
    mid = load_checkpoint(root)
    assert (mid.step, mid.epoch, mid.batch_in_epoch) == (8, 2, 2)
    kept = _digest(mid.path)

    # 6. Resumed mid-epoch, then SIGKILL half-way through writing the new last.json (final
    #    save, step 9): a truncated temporary pointer is left, last.json itself is intact.
    code, log = driver.run(out, "--resume", fault={"kind": "write", "name": "last.json", "nth": 1})
    assert code == KILLED, log
    faults += 1
    [partial] = [p for p in root.iterdir() if p.name.startswith(".tmp-last.json")]
    with pytest.raises(json.JSONDecodeError):
        json.loads(partial.read_text())
    assert (root / "step-00000009" / "model.safetensors").is_file()
    assert load_checkpoint(root).path == mid.path and _digest(mid.path) == kept

    # 7. The last resume finishes the run: identical to the uninterrupted one.
    code, log = driver.run(out, "--resume")
    assert code == 0 and "finished at step 9" in log, log
    final = load_checkpoint(root)
    _assert_same_state(final, reference)
    best = load_checkpoint(root, which="best")
    _assert_same_state(best, ref_best)
    assert _leftovers(root) == []  # every crash's remains swept by a later save
    done = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    ref_done = [json.loads(line) for line in (ref_out / "log.jsonl").read_text().splitlines()]
    assert done[-1]["event"] == ref_done[-1]["event"] == "done"
    assert done[-1]["metrics"] == ref_done[-1]["metrics"]
    assert [r["event"] for r in done].count("resume") == 6
    assert faults == 6


def test_same_seed_same_weights(driver, tmp_path):
    """Random crops follow the Trainer's per-sample seeds: two runs with one --seed are identical."""
    for name in ("a", "b"):
        code, log = driver.run(tmp_path / name)
        assert code == 0, log
    a, b = (load_checkpoint(tmp_path / name / "checkpoints") for name in ("a", "b"))
    _assert_same_state(a, b)
