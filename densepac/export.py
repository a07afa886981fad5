"""ONNX export of depth models and segmentation models (PAC-CRF-wrapped ones too), checked in onnxruntime.

The graph comes from ``torch.export`` (the model's own forward, PAC taps and the refinement's
conjugate gradients included: the CG loop becomes an ONNX ``Loop``) and is translated by
``torch.onnx``. Inputs and outputs:

* depth models: ``depth_lr`` (N, 1, h, w) metres (0 = missing) and ``guide`` (N, 3, h*s, w*s)
  RGB in [0, 1] -> ``depth`` (N, 1, h*s, w*s) metres;
* segmentation models: ``image`` (N, 3, H, W) RGB in [0, 1] -> ``logits`` (N, K, H, W).

A graph is exported for one size (``size``, batches of one), or with ``dynamic=True`` for any
batch and size (depth: any LR size, the guide ``scale`` times it), where the model traces
without fixing them.

The exported graph is the model alone: ``densepac upsample``'s source-consistency step,
tiling and ``--sampling auto`` estimate stay in Python. Needs the ``onnx`` extra
(``pip install 'densepac[onnx]'``: onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from densepac.errors import InputError
from densepac.io.files import PathLike, atomic_write, check_output

#: Guide / image size of a static export when none is given: a VGA frame.
DEFAULT_SIZE = (480, 640)
#: Largest relative difference (max |onnx - torch| / max |torch|) an export may show, unless
#: PyTorch's own float32 result is less exact than that (see :class:`Parity`).
PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Parity:
    """How closely onnxruntime follows PyTorch on one input, as max |a - b| / max |b|.

    ``onnx_vs_torch``: onnxruntime against PyTorch, both float32. ``torch_float32``: PyTorch
    float32 against PyTorch float64, the float32 result's own error. An iterative solver
    (``graph_sr``'s conjugate gradients) on noise input is only float32-exact to a few 1e-4,
    and two float32 runtimes cannot agree closer than that; so an export passes when
    ``onnx_vs_torch`` is at most :data:`PARITY_TOLERANCE` or twice ``torch_float32``.
    """

    onnx_vs_torch: float
    torch_float32: float

    @property
    def allowed(self) -> float:
        return max(PARITY_TOLERANCE, 2 * self.torch_float32)

    @property
    def ok(self) -> bool:
        return self.onnx_vs_torch <= self.allowed


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote: the file, its input shapes, the check on fresh random inputs (or None)."""

    path: Path
    inputs: dict[str, tuple[int, ...]]
    parity: Parity | None


def _require(module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise InputError(f"ONNX export needs {module}: pip install 'densepac[onnx]' (onnx, onnxscript, onnxruntime)")


def _solve_small(a: torch.Tensor, b: torch.Tensor, *, left: bool = True, out=None) -> torch.Tensor:
    """``torch.linalg.solve`` for 1x1 to 3x3 systems by the adjugate: ONNX has no linear solve.

    The guided filter's per-pixel 3x3 colour covariance is the case met here (kornia's
    ``guided_blur``).
    """
    n = a.shape[-1]
    if not left or out is not None or n > 3:
        raise InputError(f"a {n}x{n} linear solve has no ONNX form here; only systems up to 3x3 export")
    m = [[a[..., i, j] for j in range(n)] for i in range(n)]
    if n == 1:
        adj, det = [[torch.ones_like(m[0][0])]], m[0][0]
    elif n == 2:
        adj, det = [[m[1][1], -m[0][1]], [-m[1][0], m[0][0]]], m[0][0] * m[1][1] - m[0][1] * m[1][0]
    else:

        def cof(i: int, j: int) -> torch.Tensor:
            r = [k for k in range(3) if k != i]
            c = [k for k in range(3) if k != j]
            return m[r[0]][c[0]] * m[r[1]][c[1]] - m[r[0]][c[1]] * m[r[1]][c[0]]

        adj = [[(-1) ** (i + j) * cof(j, i) for j in range(3)] for i in range(3)]
        det = sum(m[0][j] * (-1) ** j * cof(0, j) for j in range(3))
    inverse = torch.stack([torch.stack(row, -1) for row in adj], -2) / det[..., None, None]
    vector = b.dim() == a.dim() - 1
    x = inverse @ (b.unsqueeze(-1) if vector else b)
    return x.squeeze(-1) if vector else x


class _OnnxForms(torch.overrides.TorchFunctionMode):
    """While tracing, functions ONNX lacks run as compositions of ops it has."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.linalg.solve:
            return _solve_small(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


def example_inputs(
    model: nn.Module, size: tuple[int, int], scale: int | None, seed: int = 0, batch: int = 1
) -> dict[str, torch.Tensor]:
    """Random inputs of ``model`` at guide / image ``size`` (H, W): depth with 5 % holes, RGB in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    if model.task == "segmentation":
        return {"image": torch.rand(batch, 3, h, w, generator=g)}
    depth = torch.rand(batch, 1, h // scale, w // scale, generator=g) * 4 + 0.5
    depth[torch.rand(depth.shape, generator=g) < 0.05] = 0
    return {"depth_lr": depth, "guide": torch.rand(batch, 3, h, w, generator=g)}


def _resolve_scale(model: nn.Module, scale: int | None) -> int | None:
    if model.task != "depth":
        if scale is not None:
            raise InputError(f"--scale is for depth models; {model.model_name!r} is a {model.task} model")
        return None
    fixed = getattr(model, "scales", None)
    if scale is None:
        if not fixed or len(fixed) != 1:
            raise InputError(f"{model.model_name!r} upsamples by any factor; give the one to export with --scale")
        return fixed[0]
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
        raise InputError(f"--scale must be an integer >= 2, got {scale!r}")
    if fixed and scale not in fixed:
        raise InputError(f"{model.model_name!r} upsamples by x{fixed[0]}, not x{scale}; drop --scale")
    return scale


def export_onnx(
    model: nn.Module,
    path: PathLike,
    *,
    scale: int | None = None,
    size: tuple[int, int] | None = None,
    dynamic: bool = False,
    check: bool = True,
    overwrite: bool = False,
    opset: int = 18,
    optimize: bool = False,
) -> ExportReport:
    """Write ``model`` (a registry depth or segmentation model) as an ONNX file at ``path``.

    Args:
        scale: the depth upsampling factor (default: the model's own; scale-free models need it).
        size: (H, W) of the guide / image (default 480x640); a depth export's size must be a
            multiple of ``scale``. The graph takes batches of one at this size; with
            ``dynamic``, it is the size traced and checked (with a second size and batch).
        dynamic: a graph for any batch and size (ONNX dimensions ``batch``, ``height``,
            ``width``; for depth models the LR size, the guide being ``scale`` times it;
            segmentation models pad to their multiple and crop back inside the graph). A model
            whose forward depends on the size in Python (e.g. a CRF whose dilation follows the
            image size) is refused; export it at a fixed ``size``.
        check: run the file in onnxruntime on fresh random inputs and refuse it (nothing is
            written) when it does not pass :class:`Parity`.
        opset: ONNX opset version.
        optimize: fold constants and fuse ops in the file (onnxscript's optimizer): files 2-5x
            smaller, and for some graphs (the paper's transposed PAC) faster in onnxruntime,
            but the export takes 1.5-5x as long (most of the time for PAC models).

    Raises:
        InputError: bad arguments, a missing ``onnx`` extra, a model that does not export
            (the message says why), or a failed parity check.
    """
    for module in ("onnx", "onnxscript", *(("onnxruntime",) if check else ())):
        _require(module)
    path = check_output(path, (".onnx",), "ONNX", overwrite)
    task = getattr(model, "task", None)
    if task not in ("depth", "segmentation"):
        raise InputError("export takes a registry depth or segmentation model (densepac.create_model)")
    if getattr(model, "sampling", None) == "auto":
        raise InputError(
            f"{model.model_name!r} tells point from area sampling per depth map, in Python; an ONNX graph holds "
            "one: export with --sampling point or --sampling area"
        )
    scale = _resolve_scale(model, scale)
    size = tuple(size) if size is not None else DEFAULT_SIZE
    if len(size) != 2 or any(not isinstance(v, int) or v < 1 for v in size):
        raise InputError(f"--size must be HxW in pixels, got {size!r}")
    if scale is not None and (size[0] % scale or size[1] % scale or min(size) < 4 * scale):
        good = tuple(max(4 * scale, round(v / scale) * scale) for v in size)
        raise InputError(
            f"--size {size[0]}x{size[1]}: both sides must be multiples of the scale {scale} and at least "
            f"{4 * scale} (4 LR pixels); e.g. --size {good[0]}x{good[1]}"
        )
    model = model.eval()
    # A dynamic graph is traced on a batch of two: torch.export would fix a dimension of size 1.
    inputs = example_inputs(model, size, scale, batch=2 if dynamic else 1)
    shapes = _dynamic_shapes(model, inputs, scale) if dynamic else None
    program = _trace(model, inputs, shapes)
    output = "depth" if task == "depth" else "logits"
    with atomic_write(path, overwrite=overwrite) as tmp, _quiet():
        try:
            onnx_program = torch.onnx.export(
                program, f=None, dynamo=True, opset_version=opset, output_names=[output], optimize=optimize
            )
        except Exception as e:  # an op without an ONNX form: the summary line names it
            lines = [ln for ln in str(e).splitlines() if "No ONNX function" in ln or "Error" in ln]
            raise InputError(
                f"{model.model_name!r} does not translate to ONNX: {(lines or [type(e).__name__])[-1][:300]}"
            ) from None
        onnx_program.save(str(tmp), external_data=False)
        if dynamic:
            _name_dimensions(tmp, inputs)
        parity = None
        if check:
            parity = check_onnx(tmp, model, example_inputs(model, size, scale, seed=1))
            if dynamic:  # another batch and size through the same graph
                other = (size[0] + 4 * (scale or 8), size[1] + 2 * (scale or 8))
                again = check_onnx(tmp, model, example_inputs(model, other, scale, seed=2, batch=2))
                parity = max(parity, again, key=lambda p: p.onnx_vs_torch / p.allowed)  # the worse one
            if not parity.ok:
                raise InputError(
                    f"{model.model_name!r}: onnxruntime differs from PyTorch by {parity.onnx_vs_torch:.1e} "
                    f"(relative; PyTorch float32 vs float64: {parity.torch_float32:.1e}); nothing written"
                )
    return ExportReport(
        path, _shape_names(inputs, scale) if dynamic else {k: tuple(x.shape) for k, x in inputs.items()}, parity
    )


def _name_dimensions(path: Path, inputs: dict[str, torch.Tensor]) -> None:
    """Rename the graph's symbolic dimensions (``s81``, ``8*s71``) to ``batch``, ``height``, ``width``.

    The names come from the first input's (batch, -, height, width); every dimension expression
    in the file is rewritten, so the inputs, the output and the intermediate shapes agree.
    """
    import onnx

    model = onnx.load(str(path))
    first = next(v for v in model.graph.input if v.name == next(iter(inputs)))
    dims = [d.dim_param for d in first.type.tensor_type.shape.dim]
    names = {dims[0]: "batch", dims[2]: "height", dims[3]: "width"}
    names.pop("", None)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param:
                d.dim_param = pattern.sub(lambda m: names[m.group(1)], d.dim_param)
    onnx.save(model, str(path))


def _dynamic_shapes(model: nn.Module, inputs: dict[str, torch.Tensor], scale: int | None) -> dict[str, dict]:
    """``torch.export`` dynamic shapes: any batch and size (depth: the LR size; the guide ``scale`` times it)."""
    from torch.export import Dim

    batch = Dim("batch", min=1, max=1024)
    height, width = Dim("height", min=4, max=1 << 15), Dim("width", min=4, max=1 << 15)
    if model.task == "segmentation":
        return {"image": {0: batch, 2: height, 3: width}}
    return {
        "depth_lr": {0: batch, 2: height, 3: width},
        "guide": {0: batch, 2: scale * height, 3: scale * width},
    }


def _shape_names(inputs: dict[str, torch.Tensor], scale: int | None) -> dict[str, tuple]:
    """The inputs' shapes with their dynamic dimensions named."""
    if "image" in inputs:
        return {"image": ("batch", 3, "height", "width")}
    return {
        "depth_lr": ("batch", 1, "height", "width"),
        "guide": ("batch", 3, f"{scale}*height", f"{scale}*width"),
    }


@contextlib.contextmanager
def _quiet():
    """torch.export and torch.onnx print progress and internal notes; a command shows its own."""
    loggers = [logging.getLogger(n) for n in ("torch.export", "torch._export", "torch.onnx", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _trace(model: nn.Module, inputs: dict[str, torch.Tensor], dynamic: dict[str, dict] | None = None):
    """``torch.export`` of the model (inputs named as its forward's arguments), in :class:`_OnnxForms`."""
    import inspect

    if dynamic is not None:  # keyed by the forward's own argument names, in order
        names = list(inspect.signature(model.forward).parameters)
        dynamic = {names[i]: dynamic[key] for i, key in enumerate(inputs)}
    with _quiet(), torch.no_grad(), _OnnxForms():
        try:
            program = torch.export.export(model, tuple(inputs.values()), dynamic_shapes=dynamic, strict=False)
        except Exception as e:  # torch.export's errors are many and long: the first line says what
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if dynamic is None:
                raise InputError(f"{model.model_name!r} does not export: {first[:300]}") from None
            fixed = re.match(r"Constraints violated \(([^)]*)\)", first)
            why = f"it fixes the {' and '.join(fixed.group(1).split(', '))}" if fixed else first[:200]
            raise InputError(
                f"{model.model_name!r} does not export for any size ({why}): its forward depends on the "
                "size in Python; export it for one size with --size instead of --dynamic"
            ) from None
    return program


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12))


def check_onnx(path: PathLike, model: nn.Module, inputs: dict[str, torch.Tensor]) -> Parity:
    """Run ``path`` in onnxruntime on ``inputs`` (named as the graph's) against ``model`` in float32 and float64."""
    import copy

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # its notes on unfolded constants are not the user's concern
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {k: v.numpy() for k, v in inputs.items()})[0])
    with torch.inference_mode():
        want = model(*inputs.values())
        exact = copy.deepcopy(model).double()(*(v.double() for v in inputs.values()))
    if got.shape != want.shape:
        raise InputError(f"the ONNX graph gives {tuple(got.shape)}, PyTorch {tuple(want.shape)}")
    return Parity(_relative(got, want), _relative(want, exact))
