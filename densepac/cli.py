"""The ``densepac`` command line: each command parses its options, calls one library function, prints.

Every check lives in the library, which raises :class:`~densepac.errors.InputError` for a
user's mistake (one line on stderr, exit code 2) and anything else for a failed run (one
line, exit code 1). Heavy imports (torch, OpenCV) happen inside the commands so
``densepac --help`` is instant.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from densepac import __version__


class BadInput(click.ClickException):
    """A user error: one line on stderr, exit code 2, no traceback."""

    exit_code = 2


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _friendly_errors(fn: Callable) -> Callable:
    """One-line CLI errors: bad input (exit 2) and runtime failures (exit 1), no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from densepac.errors import DensepacError

        try:
            return fn(*args, **kwargs)
        except DensepacError as e:
            raise BadInput(_first_line(e)) from None
        except MemoryError:
            raise click.ClickException(
                "out of memory; give a --max-memory budget (e.g. 2GiB) so large images run in tiles that fit"
            ) from None
        except (ValueError, TypeError, RuntimeError, OSError) as e:
            raise click.ClickException(f"{type(e).__name__}: {_first_line(e)}") from None

    return wrapper


def _quiet_opencv() -> None:
    # OpenCV prints its own decoder warnings on corrupt files; our error line says it all.
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def device_option(fn: Callable) -> Callable:
    return click.option(
        "--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto (CUDA when available)."
    )(fn)


def overwrite_option(fn: Callable) -> Callable:
    return click.option("--overwrite", is_flag=True, help="Replace output files that already exist.")(fn)


def _memory_size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """``--max-memory`` text -> bytes; a malformed size is a usage error (one line, exit 2)."""
    if value is None:
        return None
    from densepac.tiling import parse_memory

    try:
        return parse_memory(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def max_memory_option(fn: Callable) -> Callable:
    return click.option(
        "--max-memory",
        default=None,
        callback=_memory_size,
        metavar="SIZE",
        help="Peak memory budget, e.g. 2GiB, 1500MB or 800 (MiB): the process's resident memory "
        "on CPU, allocated GPU memory on CUDA. Images that do not fit run in the largest "
        "tiles that do.",
    )(fn)


def model_args_option(fn: Callable) -> Callable:
    return click.option("--arg", "model_args", multiple=True, help="Architecture argument key=value (repeatable).")(fn)


def config_options(config: type) -> Callable:
    """Click options for the fields of a training config (:mod:`densepac.engine.config`): one default, one help."""

    def decorate(fn: Callable) -> Callable:
        for f in reversed(config.cli_fields()):
            meta = f.metadata
            flag = "--" + (meta.get("flag") or f.name.replace("_", "-"))
            if f.default_factory is not dataclasses.MISSING:  # key=value dicts
                option = click.option(flag, f.name, multiple=True, help=meta.get("help"))
            elif isinstance(f.default, bool):
                option = click.option(flag, f.name, is_flag=True, help=meta.get("help"))
            else:
                kind = (
                    click.Choice(meta["choices"])
                    if meta.get("choices")
                    else (type(f.default) if f.default is not None else str)
                )
                option = click.option(
                    flag,
                    f.name,
                    type=kind,
                    default=f.default,
                    show_default=f.default is not None,
                    help=meta.get("help"),
                )
            fn = option(fn)
        return fn

    return decorate


def run_folder_options(fn: Callable) -> Callable:
    """Options of every training command that are not part of its config."""
    options = [
        click.option(
            "--out", type=click.Path(path_type=Path), required=True, help="Run folder: checkpoints, log.jsonl."
        ),
        click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out."),
        click.option(
            "--export",
            "export_dir",
            type=click.Path(path_type=Path),
            default=None,
            help="After training, write the best weights + model card here (e.g. weights/).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _make_config(config: type, model: str, out: Path, device: str, options: dict[str, Any]) -> Any:
    """The config of a training command from its parsed options (key=value options become dicts)."""
    from densepac.engine.config import parse_key_values
    from densepac.inference import resolve_device

    fields = {f.name: f for f in config.cli_fields()}
    values = {}
    for name, value in options.items():
        f = fields[name]
        if f.default_factory is not dataclasses.MISSING:
            value = parse_key_values(value, "--" + (f.metadata.get("flag") or name.replace("_", "-")))
        values[name] = value
    return config(model=model, out=str(out), device=resolve_device(device).type, **values)


def _report_run(report: Any) -> None:
    """The end of a training command, printed by rank 0 alone."""
    if not report.main_process:
        return
    if report.exported is not None:
        if report.result.interrupted:
            click.echo("run was stopped early: exported its best validated checkpoint so far", err=True)
        click.echo(f"exported {report.exported}", err=True)
    state = "stopped" if report.result.interrupted else "finished"
    click.echo(f"{state} at step {report.result.step}; checkpoint {report.result.checkpoint}", err=True)


class _OneLineErrors(click.Group):
    """A group whose every error, usage errors included, is one line on stderr."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"Error: {e.format_message()}{hint}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"Error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="densepac")
@click.option(
    "-v", "--verbose", is_flag=True, help="Log what the commands decide (tile plans, memory checks) to stderr."
)
def main(verbose: bool) -> None:
    """Guided dense prediction with pixel-adaptive convolution (PAC)."""
    if verbose:
        logger = logging.getLogger("densepac")
        if not any(isinstance(h, _EchoHandler) for h in logger.handlers):
            logger.addHandler(_EchoHandler())
        logger.setLevel(logging.INFO)


class _EchoHandler(logging.Handler):
    """Log records to the command's stderr (looked up at each record, as click's test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(record.getMessage(), err=True)


@main.command("models")
@click.option("--task", type=click.Choice(["depth", "segmentation", "encoder"]), help="Only models of this task.")
@_friendly_errors
def models_cmd(task: str | None) -> None:
    """List registered models: name, task, parameters, shipped weights."""
    from densepac.catalog import model_rows  # the catalog: no torch import, so the list is instant

    header = ("name", "task", "params", "weights")
    rows = [(r["name"], r["task"], f"{r['params']:,}", "yes" if r["weights"] else "no") for r in model_rows(task)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) if i != 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


@main.command()
@click.argument("depth", type=click.Path(path_type=Path))
@click.argument("guide", type=click.Path(path_type=Path), required=False)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Output depth file (.npy, .npz, .pfm, 16-bit .png, .tiff).",
)
@click.option(
    "--model",
    "model_name",
    default=None,
    help="Registry depth model (default: the best shipped one). See `densepac models --task depth`.",
)
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="Weights file for --model.")
@click.option("--scale", type=int, default=None, help="Upsampling factor (default: inferred from the shapes).")
@click.option(
    "--depth-scale",
    type=float,
    default=1000.0,
    show_default=True,
    help="Units per metre of integer depth files (16-bit PNG): 1000 for millimetres.",
)
@click.option(
    "--preview",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write a colorised guide | input | output PNG.",
)
@click.option(
    "--tile",
    type=int,
    default=None,
    help="LR tile size for large images (default: HR tiles of about 1024 px, or what --max-memory "
    "allows; 0: no tiling).",
)
@click.option(
    "--pointcloud",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the output as a coloured point cloud (binary .ply); needs --intrinsics.",
)
@click.option("--intrinsics", default=None, metavar="FX,FY,CX,CY", help="The guide camera's pinhole intrinsics (px).")
@click.option(
    "--sampling",
    type=click.Choice(["auto", "point", "area"]),
    default="auto",
    show_default=True,
    help="What an LR pixel stands for: one HR pixel (point) or the mean of its block (area); auto tells "
    "them apart from the depth map's steps.",
)
@click.option(
    "--refine/--no-refine",
    default=True,
    show_default=True,
    help="Edge-aware graph refinement after the model (training-free); --no-refine: the model alone.",
)
@model_args_option
@max_memory_option
@device_option
@overwrite_option
@_friendly_errors
def upsample(
    depth: Path,
    guide: Path,
    output: Path,
    model_name: str | None,
    weights: Path | None,
    scale: int | None,
    depth_scale: float,
    preview: Path | None,
    tile: int | None,
    pointcloud: Path | None,
    intrinsics: str | None,
    sampling: str,
    refine: bool,
    model_args: tuple[str, ...],
    max_memory: int | None,
    device: str,
    overwrite: bool,
) -> None:
    """Upsample a low-resolution DEPTH map to the resolution of the RGB GUIDE image.

    DEPTH and GUIDE may be folders: every depth file is paired with the guide of the same
    name and written to the folder -o under its own name. Without GUIDE, DEPTH is a list
    file of `DEPTH GUIDE` pairs, one per line (relative to the list's folder). In both
    cases the model is loaded once, a bad pair is reported and skipped, and the exit code
    is 2 if any was.
    """
    _quiet_opencv()
    from densepac.depth.inference import pair_folders, read_pair_list, upsample_file, upsample_pairs
    from densepac.engine.config import parse_key_values

    model_kwargs = parse_key_values(model_args)

    many = guide is None or (depth.is_dir() and guide.is_dir())
    if many:
        if preview is not None or pointcloud is not None:
            raise BadInput("--preview and --pointcloud write one file; drop them for folders or a list of pairs")
        if guide is None and depth.is_dir():
            raise BadInput(f"{depth} is a folder: give the guide folder too (DEPTH_DIR GUIDE_DIR)")
        pairs, skipped = (read_pair_list(depth), []) if guide is None else pair_folders(depth, guide)
        report = upsample_pairs(
            pairs,
            output,
            skipped=skipped,
            model=model_name,
            weights=weights,
            scale=scale,
            depth_scale=depth_scale,
            tile=tile,
            max_memory=max_memory,
            device=device,
            overwrite=overwrite,
            sampling=sampling,
            refine=refine,
            model_kwargs=model_kwargs,
        )
        for stem, why in report.skipped:
            click.echo(f"skipped {stem}: {why}", err=True)
        click.echo(f"{len(report.written)} depth map(s) written to {output}", err=True)
        if report.skipped:
            raise BadInput(f"{len(report.skipped)} pair(s) skipped (listed above); the others were written")
        return
    r = upsample_file(
        depth,
        guide,
        output,
        model=model_name,
        weights=weights,
        scale=scale,
        depth_scale=depth_scale,
        preview=preview,
        tile=tile,
        max_memory=max_memory,
        device=device,
        overwrite=overwrite,
        sampling=sampling,
        refine=refine,
        pointcloud=pointcloud,
        intrinsics=intrinsics,
        model_kwargs=model_kwargs,
    )
    click.echo(f"{r.output}: {r.size[1]}x{r.size[0]} depth from {r.model} (x{r.scale}, {r.device})", err=True)


@main.command()
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for NAME.png (VOC-palette label map) and NAME_overlay.png.",
)
@click.option(
    "--model",
    "model_name",
    default=None,
    help="Registry segmentation model (default: the one named by the weights' model card).",
)
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    default=None,
    help="Weights for --model: a densepac, torchvision or smp file, or torchvision:ENUM_NAME.",
)
@click.option(
    "--crf/--no-crf", default=None, help="Refine with a PAC-CRF, or not (default: as the weights' model card says)."
)
@model_args_option
@click.option(
    "--cam",
    is_flag=True,
    help="Also write NAME_cam.png: the model's attention (channel mean of a layer's features) "
    "as a heatmap over the image.",
)
@click.option(
    "--cam-layer",
    default=None,
    help="Layer for --cam, a name from model.named_modules() (default: the deepest feature layer).",
)
@max_memory_option
@device_option
@overwrite_option
@_friendly_errors
def segment(
    images: tuple[Path, ...],
    output_dir: Path,
    model_name: str | None,
    weights: Path | None,
    crf: bool | None,
    model_args: tuple[str, ...],
    cam: bool,
    cam_layer: str | None,
    max_memory: int | None,
    device: str,
    overwrite: bool,
) -> None:
    """Segment IMAGE files: a label PNG (VOC palette) and a mask overlay per image."""
    _quiet_opencv()
    from densepac.engine.config import parse_key_values
    from densepac.segmentation.inference import segment_files

    r = segment_files(
        images,
        output_dir,
        model=model_name,
        weights=weights,
        crf=crf,
        model_kwargs=parse_key_values(model_args),
        cam=cam,
        cam_layer=cam_layer,
        max_memory=max_memory,
        device=device,
        overwrite=overwrite,
    )
    click.echo(f"{len(r.outputs)} image(s) segmented into {output_dir} with {r.model}", err=True)


def _depth_config() -> type:
    from densepac.depth.recipe import DepthTrainConfig

    return DepthTrainConfig


def _seg_config() -> type:
    from densepac.segmentation.recipe import SegFinetuneConfig

    return SegFinetuneConfig


class _LazyConfigCommand(click.Command):
    """A training command whose config options (after its first, --model) are built when it is used, not at import."""

    def __init__(self, *args, config: Callable[[], type], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._config = config
        self._built = False

    def _build(self) -> None:
        if not self._built:
            holder = config_options(self._config())(lambda: None)
            self.params[1:1] = list(reversed(holder.__click_params__))  # after --model
            self._built = True

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        self._build()
        return super().get_params(ctx)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        self._build()
        return super().parse_args(ctx, args)


@main.command(cls=_LazyConfigCommand, config=_depth_config)
@click.option("--model", "model_name", required=True, help="Registry depth model to train, e.g. pac_learned_jbu_x8.")
@click.option("--export-name", default=None, help="Name of the exported weights (default: the model name).")
@click.option(
    "--default",
    "mark_default",
    is_flag=True,
    help="Mark the export as the default `densepac upsample` model for its scale.",
)
@run_folder_options
@device_option
@_friendly_errors
def train(
    model_name: str,
    out: Path,
    resume: bool,
    export_dir: Path | None,
    export_name: str | None,
    mark_default: bool,
    device: str,
    **options: Any,
) -> None:
    """Train a depth model; runs under `torchrun --nproc_per_node N` as well (DDP)."""
    from densepac.depth.recipe import DepthTrainConfig, train_depth_run

    cfg = _make_config(DepthTrainConfig, model_name, out, device, options)
    _report_run(
        train_depth_run(cfg, resume=resume, export_dir=export_dir, export_name=export_name, default=mark_default)
    )


@main.command(cls=_LazyConfigCommand, config=_seg_config)
@click.option(
    "--model", "model_name", default="fcn8s_vgg16", show_default=True, help="Registry segmentation model to fine-tune."
)
@run_folder_options
@device_option
@_friendly_errors
def finetune(model_name: str, out: Path, resume: bool, export_dir: Path | None, device: str, **options: Any) -> None:
    """Fine-tune a (hot-swapped, CRF-wrapped) segmentation model; DDP under torchrun."""
    from densepac.segmentation.recipe import SegFinetuneConfig, finetune_run

    cfg = _make_config(SegFinetuneConfig, model_name, out, device, options)
    _report_run(finetune_run(cfg, resume=resume, export_dir=export_dir))


@main.command("eval")
@click.option(
    "--models",
    "model_names",
    default=None,
    help="Comma-separated registry depth models; learned ones use their shipped weights. "
    "Default: bicubic, guided_filter, joint_bilateral and the shipped default model for --scale.",
)
@click.option(
    "--weights",
    "weight_files",
    multiple=True,
    help="NAME=FILE: evaluate model NAME with this weights file (repeatable).",
)
@click.option(
    "--data", default="synthetic", show_default=True, help="synthetic | folder:PATH | nyu:FILE.mat | middlebury:PATH"
)
@click.option("--split", type=click.Choice(["val", "test"]), default="test", show_default=True)
@click.option("--scale", type=int, default=8, show_default=True)
@click.option(
    "--protocol",
    default="point",
    show_default=True,
    help="How LR depth is simulated: point | area | bicubic | mix (a realistic sensor drawn per scene).",
)
@click.option("--num-scenes", type=int, default=50, show_default=True, help="Synthetic test scenes.")
@click.option("--crop", type=int, default=0, show_default=True, help="Border (px) left out of the metrics.")
@click.option("--markdown", type=click.Path(path_type=Path), default=None, help="Also write the table as Markdown.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="Also write the table as CSV.")
@device_option
@overwrite_option
@_friendly_errors
def eval_cmd(
    model_names: str | None,
    weight_files: tuple[str, ...],
    data: str,
    split: str,
    scale: int,
    protocol: str,
    num_scenes: int,
    crop: int,
    markdown: Path | None,
    csv_path: Path | None,
    device: str,
    overwrite: bool,
) -> None:
    """Evaluate depth models side by side: RMSE / MAE (cm), AbsRel, delta, time per megapixel."""
    from densepac.depth.evaluate import evaluate_depth, format_table, parse_named_weights

    models = [n for n in model_names.split(",") if n] if model_names is not None else None
    rows = evaluate_depth(
        models,
        parse_named_weights(weight_files),
        data=data,
        split=split,
        scale=scale,
        protocol=protocol,
        num_scenes=num_scenes,
        crop=crop,
        device=device,
        markdown=markdown,
        csv_path=csv_path,
        overwrite=overwrite,
    )
    click.echo(format_table(rows, "markdown"), nl=False)


def _size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    """``--size HxW`` -> (H, W); anything else is a usage error."""
    h, sep, w = value.lower().partition("x")
    if not sep or not h.isdigit() or not w.isdigit() or int(h) < 1 or int(w) < 1:
        raise click.BadParameter(f"{value!r} is not HxW in pixels, e.g. 480x640")
    return int(h), int(w)


@main.command("export")
@click.argument("model_name", metavar="MODEL")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="ONNX file to write (.onnx).")
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    default=None,
    help="Weights for MODEL (default: its shipped weights).",
)
@click.option("--scale", type=int, default=None, help="Depth upsampling factor (default: the model's own).")
@click.option(
    "--size",
    default="480x640",
    show_default=True,
    callback=_size,
    metavar="HxW",
    help="Guide / image size the graph takes (a multiple of the scale for depth models); with --dynamic, "
    "the size traced and checked.",
)
@click.option(
    "--dynamic",
    is_flag=True,
    help="A graph for any batch and size (dimensions batch, height, width; for depth models the LR size).",
)
@click.option(
    "--sampling",
    type=click.Choice(["point", "area"]),
    default=None,
    help="For graph_sr: what an LR pixel stands for (the graph holds one; `upsample` tells them apart).",
)
@model_args_option
@click.option(
    "--check/--no-check", default=True, show_default=True, help="Compare onnxruntime with PyTorch before writing."
)
@click.option(
    "--optimize/--no-optimize",
    default=False,
    show_default=True,
    help="Fold constants and fuse ops in the file: smaller (sometimes faster) files, much slower exports.",
)
@overwrite_option
@_friendly_errors
def export_cmd(
    model_name: str,
    output: Path,
    weights: Path | None,
    scale: int | None,
    size: tuple[int, int],
    dynamic: bool,
    sampling: str | None,
    model_args: tuple[str, ...],
    check: bool,
    optimize: bool,
    overwrite: bool,
) -> None:
    """Export MODEL (a depth model, or a segmentation model, e.g. NAME+crf) as an ONNX graph."""
    from densepac.engine.config import parse_key_values
    from densepac.export import export_onnx
    from densepac.inference import load_model_for_inference

    kwargs = parse_key_values(model_args)
    if sampling is not None:
        import inspect

        from densepac.errors import InputError
        from densepac.models.registry import get_entry

        if "sampling" not in inspect.signature(get_entry(model_name).factory).parameters:
            raise InputError(f"--sampling is for graph_sr, which solves with it; {model_name!r} takes no sampling")
        kwargs["sampling"] = sampling
    model = load_model_for_inference(model_name, weights, **kwargs)
    click.echo(
        f"exporting {model.model_name} for {'any batch and size' if dynamic else 'x'.join(map(str, size))}: "
        "tracing takes seconds to minutes (the most for PAC models)",
        err=True,
    )
    r = export_onnx(
        model, output, scale=scale, size=size, dynamic=dynamic, check=check, overwrite=overwrite, optimize=optimize
    )
    shapes = ", ".join(f"{name} {'x'.join(map(str, shape))}" for name, shape in r.inputs.items())
    click.echo(f"{r.path}: {model.model_name} ({shapes})", err=True)
    if r.parity is not None:
        where = ", the worse of two sizes and batches" if dynamic else ""
        click.echo(
            f"onnxruntime matches PyTorch to {r.parity.onnx_vs_torch:.1e} (max relative{where}; PyTorch float32 vs "
            f"float64: {r.parity.torch_float32:.1e})",
            err=True,
        )


def entry() -> None:
    """The ``densepac`` command: :func:`main`, then an exit that skips the interpreter's teardown.

    Tearing down a process that imported torch raises its resident memory by ~125 MiB above
    its working set (measured: 507 -> 632 MiB for ``import torch`` alone), which would break a
    ``--max-memory`` budget after the work is done. Exit handlers still run and the output
    streams are flushed; every file the commands write is closed by then.
    """
    import atexit
    import os

    try:
        main()
        code: Any = 0
    except SystemExit as e:
        code = e.code
    if code is not None and not isinstance(code, int):
        click.echo(code, err=True)
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    entry()
