"""The ``densepac`` command line: thin wrappers that parse, then call library functions.

Heavy imports (torch, OpenCV) happen inside the commands so ``densepac --help`` is instant.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable

import click

from . import __version__


class BadInput(click.ClickException):
    """A user error: one line on stderr, exit code 2, no traceback."""

    exit_code = 2


def _friendly_errors(fn: Callable) -> Callable:
    """Turn library input errors into one-line CLI errors."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .errors import DensepacError

        try:
            return fn(*args, **kwargs)
        except (DensepacError, ValueError, TypeError) as e:
            raise BadInput(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
        except MemoryError:
            raise click.ClickException("out of memory; use a smaller input or --device cuda") from None

    return wrapper


def _quiet_opencv() -> None:
    # OpenCV prints its own decoder warnings on corrupt files; our error line says it all.
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def device_option(fn: Callable) -> Callable:
    return click.option("--device", default="auto", show_default=True,
                        help="cpu, cuda, cuda:N or auto (CUDA when available).")(fn)


def overwrite_option(fn: Callable) -> Callable:
    return click.option("--overwrite", is_flag=True, help="Replace output files that already exist.")(fn)


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
def main() -> None:
    """Guided dense prediction with pixel-adaptive convolution (PAC)."""


@main.command("models")
@click.option("--task", type=click.Choice(["depth", "segmentation"]), help="Only models of this task.")
@_friendly_errors
def models_cmd(task: str | None) -> None:
    """List registered models: name, task, parameters, shipped weights."""
    import torch

    from .models import create_model, get_entry, list_models, list_weights

    shipped = set(list_weights())
    rows = []
    for name in list_models(task=task):
        with torch.device("meta"):  # count parameters without allocating them
            n_params = sum(p.numel() for p in create_model(name).parameters())
        rows.append((name, get_entry(name).task, f"{n_params:,}", "yes" if name in shipped else "no"))
    widths = [max(len(r[i]) for r in rows + [("name", "task", "params", "weights")]) for i in range(4)]
    for row in [("name", "task", "params", "weights")] + rows:
        click.echo("  ".join(c.ljust(w) if i != 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


@main.command()
@click.argument("depth", type=click.Path(path_type=Path))
@click.argument("guide", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output depth file (.npy, .npz, .pfm, 16-bit .png, .tiff).")
@click.option("--model", "model_name", default=None,
              help="Registry depth model (default: the best shipped one). See `densepac models --task depth`.")
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="Weights file for --model.")
@click.option("--scale", type=int, default=None, help="Upsampling factor (default: inferred from the shapes).")
@click.option("--depth-scale", type=float, default=1000.0, show_default=True,
              help="Units per metre of integer depth files (16-bit PNG): 1000 for millimetres.")
@click.option("--preview", type=click.Path(path_type=Path), default=None,
              help="Also write a colourised guide | input | output PNG.")
@device_option
@overwrite_option
@_friendly_errors
def upsample(depth: Path, guide: Path, output: Path, model_name: str | None, weights: Path | None,
             scale: int | None, depth_scale: float, preview: Path | None, device: str, overwrite: bool) -> None:
    """Upsample a low-resolution DEPTH map to the resolution of the RGB GUIDE image."""
    _quiet_opencv()
    from .data.io import read_depth, read_image, validate_depth, write_depth
    from .data.visualize import depth_preview
    from .inference import check_scale, default_depth_model, load_model_for_inference, resolve_device, upsample_depth

    for path, flag in ((output, "-o"), (preview, "--preview")):
        if path is not None and path.exists() and not overwrite:
            raise BadInput(f"{path} already exists; pass --overwrite to replace it or choose another {flag} path")
    dev = resolve_device(device)
    depth_lr = validate_depth(read_depth(depth, depth_scale), str(depth))
    rgb = read_image(guide)
    factor = check_scale(depth_lr.shape, rgb.shape[:2], scale)
    name = model_name or default_depth_model(factor)
    model = load_model_for_inference(name, weights)
    if getattr(model, "task", None) != "depth":
        raise BadInput(f"model {name!r} is a {model.task} model; pick one from `densepac models --task depth`")
    out = upsample_depth(model, depth_lr, rgb, dev)
    write_depth(output, out, depth_scale, overwrite=overwrite)
    if preview is not None:
        depth_preview(rgb, depth_lr, out, preview)
    click.echo(f"{output}: {out.shape[1]}x{out.shape[0]} depth from {name} (x{factor}, {dev.type})", err=True)


if __name__ == "__main__":
    main()
