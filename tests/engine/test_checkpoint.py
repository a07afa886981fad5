"""Checkpoints: round trip, retention, crash safety, refusal of pickled code."""

import json
import pathlib
import random

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from densepac.engine import checkpoint as ckpt_mod
from densepac.engine.checkpoint import (
    Checkpoint,
    capture_rng_state,
    load_checkpoint,
    load_state_dict_safe,
    resolve_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from densepac.errors import InputError, WeightsError


class Payload:
    """Unpickling this writes a marker file: stands in for a malicious weights file."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.write_text, (self.marker, "code ran"))


def _trained_parts(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    model(torch.rand(2, 1, 5, 5)).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


def _ckpt(model, opt=None, sched=None, step=1, **kw) -> Checkpoint:
    return Checkpoint(
        model=model.state_dict(),
        optimizer=opt.state_dict() if opt else None,
        scheduler=sched.state_dict() if sched else None,
        rng=[capture_rng_state()],
        step=step,
        **kw,
    )


def test_round_trip(tmp_path):
    model, opt, sched = _trained_parts()
    ck = _ckpt(
        model,
        opt,
        sched,
        step=7,
        epoch=2,
        batch_in_epoch=3,
        config={"model": "tiny", "path": tmp_path},
        metrics={"rmse": 0.5, "bad": float("nan")},
    )
    folder = save_checkpoint(tmp_path, ck)
    assert folder.name == "step-00000007"
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["meta.json", "model.safetensors", "state.pt"]
    # The state file must load under the strict loader on its own.
    torch.load(folder / "state.pt", weights_only=True)

    back = load_checkpoint(tmp_path)
    assert back.path == folder and (back.step, back.epoch, back.batch_in_epoch) == (7, 2, 3)
    assert back.metrics == {"rmse": 0.5, "bad": None}  # strict JSON: NaN -> null
    assert back.config["path"] == str(tmp_path)
    for k, v in model.state_dict().items():
        assert torch.equal(back.model[k], v)
    model2, opt2, sched2 = _trained_parts(seed=1)
    model2.load_state_dict(back.model)
    opt2.load_state_dict(back.optimizer)
    sched2.load_state_dict(back.scheduler)
    assert sched2.state_dict() == sched.state_dict()
    for s1, s2 in zip(opt.state.values(), opt2.state.values()):
        for key in s1:
            assert torch.equal(s1[key], s2[key])


def test_rng_states_round_trip(tmp_path):
    model = nn.Linear(2, 2)
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in the legacy state
    state = capture_rng_state()
    save_checkpoint(tmp_path, Checkpoint(model=model.state_dict(), rng=[state]))
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    restore_rng_state(load_checkpoint(tmp_path).rng[0])
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def test_keeps_last_k_and_best(tmp_path):
    model = nn.Linear(2, 2)
    for step in range(1, 6):
        save_checkpoint(tmp_path, _ckpt(model, step=step), keep_last=2, is_best=step == 2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["best.json", "last.json", "step-00000002", "step-00000004", "step-00000005"]
    assert load_checkpoint(tmp_path).step == 5
    assert load_checkpoint(tmp_path, which="best").step == 2
    history = json.loads((tmp_path / "last.json").read_text())["history"]
    assert history == ["step-00000004", "step-00000005"]
    # A checkpoint folder is itself a valid argument.
    assert load_checkpoint(tmp_path / "step-00000004").step == 4
    with pytest.raises(InputError, match="keep_last"):
        save_checkpoint(tmp_path, _ckpt(model, step=6), keep_last=0)


def test_saving_a_step_again_does_not_clobber_the_pointed_folder(tmp_path):
    model = nn.Linear(2, 2)
    save_checkpoint(tmp_path, _ckpt(model, step=3))
    second = save_checkpoint(tmp_path, _ckpt(model, step=3, epoch=1))
    assert second.name == "step-00000003-r1"
    assert load_checkpoint(tmp_path).epoch == 1


@pytest.mark.parametrize("crash_on", ["folder", "pointer"])
def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch, crash_on):
    model = nn.Linear(2, 2)
    save_checkpoint(tmp_path, _ckpt(model, step=1))
    real = ckpt_mod._atomic_rename

    def crashing(src, dst):
        is_pointer = dst.name == "last.json"
        if (crash_on == "pointer") == is_pointer:
            raise OSError("simulated power cut")
        real(src, dst)

    monkeypatch.setattr(ckpt_mod, "_atomic_rename", crashing)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(OSError, match="power cut"):
        save_checkpoint(tmp_path, _ckpt(model, step=2))
    monkeypatch.setattr(ckpt_mod, "_atomic_rename", real)

    back = load_checkpoint(tmp_path)
    assert back.step == 1
    assert not torch.equal(back.model["weight"], model.weight)
    # The next save works despite the leftovers (a renamed but unreferenced folder).
    save_checkpoint(tmp_path, _ckpt(model, step=2))
    assert load_checkpoint(tmp_path).step == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_missing_checkpoint_is_a_weights_error(tmp_path):
    assert resolve_checkpoint(tmp_path) is None
    with pytest.raises(WeightsError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    save_checkpoint(tmp_path, _ckpt(nn.Linear(2, 2), step=1))
    (tmp_path / "step-00000001" / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(WeightsError, match="safetensors"):
        load_checkpoint(tmp_path)


def test_pickled_code_in_checkpoint_is_refused_and_not_run(tmp_path):
    # The payload is real: an unrestricted load runs it.
    probe = tmp_path / "probe.txt"
    torch.save({"x": Payload(probe)}, tmp_path / "probe.pt")
    torch.load(tmp_path / "probe.pt", weights_only=False)
    assert probe.exists()

    root = tmp_path / "ckpts"
    folder = save_checkpoint(root, _ckpt(nn.Linear(2, 2), step=1))
    marker = tmp_path / "marker.txt"
    torch.save({"step": 1, "optimizer": Payload(marker)}, folder / "state.pt")
    with pytest.raises(WeightsError, match="pickled"):
        load_checkpoint(root)
    assert not marker.exists()


def test_load_state_dict_safe(tmp_path):
    sd = nn.Linear(3, 2).state_dict()
    save_file(dict(sd), tmp_path / "w.safetensors")
    torch.save(sd, tmp_path / "w.pt")
    wrapped = {"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}}
    torch.save(wrapped, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pt", "w.pth"):
        back = load_state_dict_safe(tmp_path / name)
        assert back.keys() == sd.keys()
        assert all(torch.equal(back[k], sd[k]) for k in sd)

    marker = tmp_path / "marker.txt"
    torch.save({"weight": Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(WeightsError, match="pickled"):
        load_state_dict_safe(tmp_path / "evil.pt")
    assert not marker.exists()

    with pytest.raises(WeightsError, match="suffix"):
        load_state_dict_safe(tmp_path / "w.pkl")
    with pytest.raises(WeightsError, match="does not exist"):
        load_state_dict_safe(tmp_path / "missing.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="state dict"):
        load_state_dict_safe(tmp_path / "list.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(WeightsError, match="safetensors"):
        load_state_dict_safe(tmp_path / "junk.safetensors")


def _mapped_from(path: pathlib.Path) -> list[tuple[int, int]]:
    """Address ranges of this process mapped from ``path`` (/proc/self/maps)."""
    ranges = []
    for line in pathlib.Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == str(path):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((start, end))
    return ranges


@pytest.mark.skipif(not pathlib.Path("/proc/self/maps").exists(), reason="needs Linux /proc/self/maps")
@pytest.mark.parametrize("suffix", ["safetensors", "pth"])
def test_weights_files_are_memory_mapped_not_read_into_a_second_copy(tmp_path, suffix):
    """The tensors of a bare weights file point into a mapping of the file: reading it holds no copy."""
    sd = {"big": torch.randn(256, 1024), "bias": torch.randn(3)}
    path = tmp_path / f"w.{suffix}"
    save_file(sd, path) if suffix == "safetensors" else torch.save(sd, path)
    back = load_state_dict_safe(path)
    ranges = _mapped_from(path.resolve())
    assert ranges, "the file is not mapped"
    for key, value in back.items():
        assert torch.equal(value, sd[key])
        ptr = value.data_ptr()
        assert any(start <= ptr < end for start, end in ranges), key
    legacy = tmp_path / "legacy.pt"  # the pre-zip format cannot be mapped: read as before
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(load_state_dict_safe(legacy)["big"], sd["big"])
