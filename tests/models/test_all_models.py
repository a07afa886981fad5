"""One tester for every registered model: tiny inputs, odd sizes, forward + backward, save/load.

New registry entries are picked up automatically; ``SMALL`` only shrinks the ones whose
defaults are too big for a test.
"""

from __future__ import annotations

import pytest
import torch

from densepac import create_model, list_models
from densepac.models import get_entry, save_weights

#: Architecture arguments that keep a model small enough for a unit test.
SMALL = {
    "fcn8s_vgg16": dict(widths=(4, 4, 8, 8, 8), fc_channels=8),
    "pac_fcn8s_vgg16": dict(widths=(4, 4, 8, 8, 8), fc_channels=8),
    "smp": dict(arch="linknet"),
    "shape_adaptor_resnet34": dict(input_size=32),
    "shape_adaptor_resnet50": dict(input_size=32),
}
NUM_CLASSES = 3


def _build(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    args = dict(SMALL.get(name, {}))
    if get_entry(name).task == "segmentation":
        args["num_classes"] = NUM_CLASSES
    return create_model(name, **args, **kwargs)


def _inputs(name: str, model: torch.nn.Module, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Random inputs of the model's task; ``size`` is the LR size for depth, the image size otherwise."""
    g = torch.Generator().manual_seed(1)
    if get_entry(name).task == "depth":
        scale = (model.scales or (4,))[0]
        lr = 1.0 + torch.rand(2, 1, *size, generator=g)
        return lr, torch.rand(2, 3, size[0] * scale, size[1] * scale, generator=g)
    return (torch.rand(2, 3, *size, generator=g),)


def _output(name: str, out) -> torch.Tensor:
    if get_entry(name).task == "encoder":
        assert isinstance(out, (list, tuple)) and len(out) >= 2
        return out[-1]
    return out


def _check_shape(name: str, model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], out) -> None:
    task = get_entry(name).task
    if task == "depth":
        assert out.shape == (2, 1, *inputs[1].shape[-2:])
    elif task == "segmentation":
        assert out.shape == (2, NUM_CLASSES, *inputs[0].shape[-2:])
    else:
        assert [f.shape[1] for f in out] == list(model.out_channels)
    assert torch.isfinite(_output(name, out)).all()


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_odd_sizes(name):
    model = _build(name).train()
    for size in [(5, 7), (9, 6)] if get_entry(name).task == "depth" else [(33, 47), (40, 29)]:
        inputs = [t.requires_grad_() for t in _inputs(name, model, size)]
        out = model(*inputs)
        _check_shape(name, model, inputs, out)
    (_output(name, out) - 1).square().mean().backward()  # not 0: zero-initialised heads output 0
    grads = [p.grad for p in model.parameters() if p.requires_grad] or [t.grad for t in inputs]
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    # learned models: some parameter learns from this loss; fixed ones: differentiable in their inputs
    assert any(g is not None and g.abs().sum() > 0 for g in grads), name


@pytest.mark.parametrize("name", list_models())
def test_save_load_round_trip(name, tmp_path):
    model = _build(name).eval()
    file = save_weights(model, "m", name, tmp_path)
    torch.manual_seed(123)  # another initialisation: equality must come from the file
    again = _build(name, weights=file).eval()
    inputs = _inputs(name, model, (5, 6) if get_entry(name).task == "depth" else (32, 32))
    with torch.no_grad():
        a, b = _output(name, model(*inputs)), _output(name, again(*inputs))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["pac_jointupsample_lite_x4", "fcn8s_vgg16"])
def test_torch_compile_smoke(name):
    """Graph capture through dynamo (``aot_eager``: no C++ compiler needed) gives the eager result."""
    model = _build(name).eval()
    inputs = _inputs(name, model, (5, 6) if get_entry(name).task == "depth" else (32, 32))
    compiled = torch.compile(model, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs), model(*inputs))
