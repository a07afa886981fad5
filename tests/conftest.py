"""Shared fixtures: every op test runs on CPU, and on CUDA when a GPU is present."""

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture
def nothing_in_use(monkeypatch):
    """Plan as if the process held no memory, so budgets in tests do not depend on pytest's own.

    Nor on this process's allocator: the check that runs a planned window and measures it
    (``peak_added_by``) reports nothing, so plans follow the memory model alone.
    """
    for module in ("densepac.depth.inference", "densepac.segmentation.inference"):
        monkeypatch.setattr(f"{module}.memory_in_use", lambda device: 0)
    monkeypatch.setattr("densepac.tiling.peak_added_by", lambda run, device="cpu": None)


@pytest.fixture
def built(monkeypatch) -> list[str]:
    """The device type of every model ``create_model`` builds, in order (a spy on its builder)."""
    from densepac.models import registry

    devices: list[str] = []
    real_build = registry._build

    def spy(*args):
        model = real_build(*args)
        devices.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setattr(registry, "_build", spy)
    return devices
