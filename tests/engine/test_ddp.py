"""DDP on CPU: two gloo ranks launched by torchrun (see ddp_worker.py)."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch.utils.data import DistributedSampler

from densepac.engine import distributed as du
from densepac.engine.checkpoint import load_checkpoint

WORKER = Path(__file__).with_name("ddp_worker.py")

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="needs torch.distributed with gloo",
)


def _load_worker():
    spec = importlib.util.spec_from_file_location("densepac_ddp_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    out, records = root / "out", root / "records"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(WORKER),
        str(out),
        str(records),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        pytest.fail(f"torchrun failed ({proc.returncode}):\n{tail}")
    ranks = [json.loads((records / f"rank{r}.json").read_text()) for r in range(2)]
    return out, records, ranks


def test_ranks_end_with_identical_weights(ddp_run):
    _, records, ranks = ddp_run
    assert [r["world_size"] for r in ranks] == [2, 2]
    for kind in ("straight", "resumed"):
        w0 = load_file(records / f"rank0_{kind}.safetensors")
        w1 = load_file(records / f"rank1_{kind}.safetensors")
        assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert ranks[0]["metrics"] == ranks[1]["metrics"]  # all-reduced, not per-rank


def test_each_sample_once_per_epoch_across_ranks(ddp_run):
    _, _, ranks = ddp_run
    per_rank_epoch = 12 // 2
    for epoch in range(2):
        chunk = slice(epoch * per_rank_epoch, (epoch + 1) * per_rank_epoch)
        seen = ranks[0]["seen"][chunk] + ranks[1]["seen"][chunk]
        assert sorted(seen) == list(range(12))
    assert ranks[0]["seen"][:6] != ranks[0]["seen"][6:]  # reshuffled each epoch (set_epoch)


def test_odd_sized_set_is_sharded_as_distributed_sampler_promises(ddp_run):
    # 11 samples on 2 ranks, drop_last=False: the shuffled order is padded to 12 by repeating
    # its first sample, and rank r takes positions r, r + 2, ...
    _, _, ranks = ddp_run
    size, per_rank = worker.ODD_SIZE, math.ceil(worker.ODD_SIZE / 2)
    seen = [r["odd_seen"] for r in ranks]
    assert [len(s) for s in seen] == [2 * per_rank, 2 * per_rank]  # 2 epochs
    orders = []
    for epoch in range(2):
        r0, r1 = (s[epoch * per_rank : (epoch + 1) * per_rank] for s in seen)
        order = [i for pair in zip(r0, r1) for i in pair]  # the padded global order
        assert sorted(order[:size]) == list(range(size))  # every sample once...
        assert order[size:] == order[: 2 * per_rank - size]  # ...plus the padding, from the start
        assert len(set(r0)) == len(set(r1)) == per_rank and len(set(r0) & set(r1)) == 1
        # A pure function of (seed, epoch): exactly torch's DistributedSampler.
        for rank, got in enumerate((r0, r1)):
            sampler = DistributedSampler(range(size), num_replicas=2, rank=rank, shuffle=True, seed=0)
            sampler.set_epoch(epoch)
            assert got == list(sampler)
        orders.append(order)
    assert orders[0] != orders[1]
    # Evaluation pads nothing: after each epoch, every validation sample once over the ranks.
    val = [r["odd_val_seen"] for r in ranks]
    shares = [len(range(rank, worker.VAL_SIZE, 2)) for rank in range(2)]
    assert [len(v) for v in val] == [2 * n for n in shares]
    for epoch in range(2):
        chunk = [v[epoch * n : (epoch + 1) * n] for v, n in zip(val, shares)]
        assert sorted(chunk[0] + chunk[1]) == list(range(worker.VAL_SIZE))


def test_only_rank0_writes(ddp_run):
    out, _, ranks = ddp_run
    assert (out / "c" / "rank0" / "log.jsonl").is_file()
    assert load_checkpoint(out / "c" / "rank0" / "checkpoints").step == 4
    assert not (out / "c" / "rank1").exists()
    events = [json.loads(x)["event"] for x in (out / "ab" / "log.jsonl").read_text().splitlines()]
    assert events.count("start") == 1 and events.count("resume") == 1
    # Every file-system write under the output folders, as seen by each process.
    assert ranks[1]["writes"] == []
    written = {path.split(os.sep)[0] for _, path in ranks[0]["writes"] if path}  # "": out itself
    assert written == {"ab", "c", "odd"}
    for folder in ("ab", "odd"):
        kinds = {event for event, path in ranks[0]["writes"] if path.startswith(folder + os.sep)}
        assert {"open", "os.mkdir", "os.rename"} <= kinds  # logs, checkpoint folders, renames
    assert load_checkpoint(out / "odd" / "checkpoints").step == 6
    odd_events = [json.loads(x)["event"] for x in (out / "odd" / "log.jsonl").read_text().splitlines()]
    assert odd_events.count("start") == 1 and odd_events.count("done") == 1


def test_stop_and_resume_under_ddp_is_bit_identical(ddp_run):
    _, records, ranks = ddp_run
    assert ranks[0]["stopped_step"] == 3 and ranks[0]["resumed_step"] == 4
    straight = load_file(records / "rank0_straight.safetensors")
    resumed = load_file(records / "rank0_resumed.safetensors")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert ranks[0]["resumed_metrics"] == ranks[0]["metrics"]


def test_ddp_matches_one_process_with_the_global_batch(ddp_run, tmp_path):
    _, records, ranks = ddp_run
    model = worker.build_model()
    train = worker.RecordingDepthSet(worker.TRAIN_SIZE)
    result = worker.build_trainer(model, train, tmp_path, batch_size=6).fit()
    ddp = load_file(records / "rank0_straight.safetensors")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-4, atol=1e-6)
    for k, v in result.metrics.items():
        assert ranks[0]["metrics"][k] == pytest.approx(v, rel=1e-4)


def test_helpers_are_noops_in_one_process():
    info = du.init_distributed("cpu")
    assert (info.rank, info.world_size) == (0, 1)
    assert du.is_main_process() and du.world_size() == 1 and du.rank() == 0
    t = torch.ones(3)
    assert du.all_reduce_sum(t) is t and t.tolist() == [1.0, 1.0, 1.0]
    assert du.all_gather_object({"a": 1}) == [{"a": 1}]
    du.barrier()
    du.cleanup()


def test_cli_train_under_torchrun(tmp_path):
    """What users run: `torchrun -m densepac.cli train` with 2 gloo ranks; rank 0 alone writes."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "densepac.cli",
        "train",
        "--model",
        "pac_jointupsample_lite_x4",
        "--arg",
        "channels=4",
        "--train-size",
        "8",
        "--val-size",
        "2",
        "--batch-size",
        "2",
        "--crop",
        "16",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    events = [json.loads(line)["event"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert events.count("start") == 1 and events.count("done") == 1  # one writer
    # One reporter: rank 0 alone prints the epoch line and the closing line.
    assert proc.stderr.count("finished at step") == 1 and proc.stderr.count("epoch 1/1 step") == 1, proc.stderr
    # 8 scenes, batch 2 per rank, 2 ranks: 2 optimiser steps in the epoch.
    last = json.loads((out / "checkpoints" / "last.json").read_text())
    assert last["step"] == 2
