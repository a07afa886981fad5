"""The ``densepac`` command line: thin wrappers that parse, then call library functions.

Heavy imports (torch, OpenCV) happen inside the commands so ``densepac --help`` is instant.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable

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
            raise click.ClickException("out of memory; give a --max-memory budget (e.g. 2GiB) so large images "
                                       "run in tiles that fit") from None
        except (ValueError, TypeError, RuntimeError, OSError) as e:
            raise click.ClickException(f"{type(e).__name__}: {_first_line(e)}") from None

    return wrapper


def _quiet_opencv() -> None:
    # OpenCV prints its own decoder warnings on corrupt files; our error line says it all.
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def _check_depth_scale(depth_scale: float) -> None:
    import math

    if not math.isfinite(depth_scale) or depth_scale <= 0:
        raise BadInput(f"--depth-scale {depth_scale:g} must be a positive number of units per metre; "
                       "e.g. --depth-scale 1000 for millimetres")


def _write_or_undo(write: Callable[[], None], written: list[Path]) -> None:
    """Run ``write``; if it fails, remove the ``written`` outputs of this command so none is left half done."""
    try:
        write()
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def _remove_failed_run(out: Path, existed: bool) -> None:
    """Remove a run folder this command created when the run failed before its first checkpoint."""
    import shutil

    ckpts = out / "checkpoints"
    if not existed and out.is_dir() and not (ckpts.is_dir() and any(ckpts.iterdir())):
        shutil.rmtree(out, ignore_errors=True)


def _train_in_run_folder(out: Path, export_dir: Path | None, train: Callable, export: Callable) -> None:
    """Shared by `train` and `finetune`: check the folders, run ``train()``, ``export(result)`` on rank 0.

    A run folder this command created is removed when training fails before its first
    checkpoint; the process group (under torchrun) is torn down whatever happens.
    """
    from densepac.engine.distributed import cleanup, is_main_process

    _check_run_folder(out, "--out")
    _check_run_folder(export_dir, "--export")
    existed = out.exists()
    try:
        try:
            result = train()
        except Exception:
            if is_main_process():
                _remove_failed_run(out, existed)
            raise
        if export_dir is not None and is_main_process():
            click.echo(f"exported {export(result)}", err=True)
    finally:
        cleanup()
    click.echo(f"{'stopped' if result.interrupted else 'finished'} at step {result.step}; "
               f"checkpoint {result.checkpoint}", err=True)


def _require_task(name: str | None, task: str) -> None:
    """Refuse a registry model of another task before anything is built or loaded."""
    from densepac.models import get_entry

    if name is None:
        return
    found = get_entry(name.removesuffix("+crf")).task
    if found != task:
        raise BadInput(f"model {name!r} is a {found} model, not a {task} model; "
                       f"pick one from `densepac models --task {task}`")


def _check_run_folder(path: Path | None, flag: str) -> None:
    """Refuse an output folder that is a file, or that could not be created or written."""
    import os

    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise BadInput(f"{flag} {path} is a file; give a folder path (it is created if missing)")
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BadInput(f"{flag} {path}: {parent} is a file, so the folder cannot be created; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{flag} {path}: {parent} is not writable; fix its permissions or choose another folder")


def device_option(fn: Callable) -> Callable:
    return click.option("--device", default="auto", show_default=True,
                        help="cpu, cuda, cuda:N or auto (CUDA when available).")(fn)


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
    return click.option("--max-memory", default=None, callback=_memory_size, metavar="SIZE",
                        help="Peak memory budget, e.g. 2GiB, 1500MB or 800 (MiB): the process's resident memory "
                             "on CPU, allocated GPU memory on CUDA. Images that do not fit run in the largest "
                             "tiles that do.")(fn)


def training_options(fn: Callable) -> Callable:
    """Options shared by `train` and `finetune`: data sizes, schedule, run folder, export."""
    options = [
        click.option("--train-size", type=int, default=2000, show_default=True, help="Synthetic scenes per epoch."),
        click.option("--val-size", type=int, default=50, show_default=True,
                     help="Held-out synthetic validation scenes."),
        click.option("--crop", type=int, default=128, show_default=True, help="Square training crop (HR pixels)."),
        click.option("--epochs", type=int, default=10, show_default=True),
        click.option("--batch-size", type=int, default=8, show_default=True),
        click.option("--weight-decay", type=float, default=0.0, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--workers", type=int, default=0, show_default=True, help="DataLoader worker processes."),
        click.option("--amp", is_flag=True, help="Mixed precision."),
        click.option("--out", type=click.Path(path_type=Path), required=True,
                     help="Run folder: checkpoints, log.jsonl."),
        click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out."),
        click.option("--export", "export_dir", type=click.Path(path_type=Path), default=None,
                     help="After training, write the best weights + model card here (e.g. weights/)."),
        click.option("--arg", "model_args", multiple=True, help="Architecture argument key=value (repeatable)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


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
@click.option("--task", type=click.Choice(["depth", "segmentation", "encoder"]), help="Only models of this task.")
@_friendly_errors
def models_cmd(task: str | None) -> None:
    """List registered models: name, task, parameters, shipped weights."""
    import torch

    from densepac.models import create_model, get_entry, list_models, list_weights

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
@click.option("--tile", type=int, default=None,
              help="LR tile size for large images (default: HR tiles of about 1024 px, or what --max-memory "
                   "allows; 0: no tiling).")
@max_memory_option
@device_option
@overwrite_option
@_friendly_errors
def upsample(depth: Path, guide: Path, output: Path, model_name: str | None, weights: Path | None,
             scale: int | None, depth_scale: float, preview: Path | None, tile: int | None, max_memory: int | None,
             device: str, overwrite: bool) -> None:
    """Upsample a low-resolution DEPTH map to the resolution of the RGB GUIDE image."""
    _quiet_opencv()
    from densepac.depth.inference import check_scale, default_depth_model, upsample_depth
    from densepac.errors import InputError
    from densepac.inference import load_model_for_inference, resolve_device
    from densepac.io.depth import DEPTH_EXTENSIONS, read_depth, validate_depth, write_depth
    from densepac.io.files import check_output
    from densepac.io.images import IMAGE_EXTENSIONS, read_image, write_image
    from densepac.io.visualize import depth_preview

    for path, flag in ((output, "-o"), (preview, "--preview")):
        if path is not None and path.exists() and not path.is_dir() and not overwrite:
            raise BadInput(f"{path} already exists; pass --overwrite to replace it or choose another {flag} path")
    if preview is not None and preview.resolve() == output.resolve():
        raise BadInput(f"--preview {preview} is the -o output file; give the preview another name")
    check_output(output, DEPTH_EXTENSIONS, "depth", overwrite)  # fail now, not after the model ran
    if preview is not None:
        check_output(preview, IMAGE_EXTENSIONS, "image", overwrite)
    _check_depth_scale(depth_scale)
    dev = resolve_device(device)
    depth_lr = validate_depth(read_depth(depth, depth_scale), str(depth))
    rgb = read_image(guide)
    try:
        factor = check_scale(depth_lr.shape, rgb.shape[:2], scale)
    except InputError as e:
        raise BadInput(f"{guide} and {depth}: {e}") from None
    _require_task(model_name, "depth")
    name = model_name or (None if weights is not None else default_depth_model(factor))
    model = load_model_for_inference(name, weights)
    if getattr(model, "task", None) != "depth":
        source = f"{weights}: " if weights is not None else ""
        raise BadInput(f"{source}model {model.model_name!r} is a {model.task} model; "
                       "pick one from `densepac models --task depth`")
    if tile is not None and tile < 0:
        raise BadInput(f"--tile {tile} is negative; give a tile size in LR pixels, or 0 to disable tiling")
    if tile is not None and max_memory is not None:
        raise BadInput("--tile and --max-memory both given; drop --tile to let the budget pick the tiles")
    out = upsample_depth(model, depth_lr, rgb, dev, tile, max_memory=max_memory, progress=True)
    picture = depth_preview(rgb, depth_lr, out) if preview is not None else None
    write_depth(output, out, depth_scale, overwrite=overwrite)
    if picture is not None:
        _write_or_undo(lambda: write_image(preview, picture, overwrite=overwrite), [output])
    click.echo(f"{output}: {out.shape[1]}x{out.shape[0]} depth from {name} (x{factor}, {dev.type})", err=True)


@main.command()
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--output-dir", type=click.Path(path_type=Path), required=True,
              help="Folder for NAME.png (VOC-palette label map) and NAME_overlay.png.")
@click.option("--model", "model_name", default=None,
              help="Registry segmentation model (default: the one named by the weights' model card).")
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="Weights file for --model.")
@click.option("--crf/--no-crf", default=False, show_default=True, help="Refine with a PAC-CRF.")
@click.option("--arg", "model_args", multiple=True, help="Architecture argument key=value (repeatable).")
@click.option("--cam", is_flag=True,
              help="Also write NAME_cam.png: the model's attention (channel mean of a layer's features) "
                   "as a heatmap over the image.")
@click.option("--cam-layer", default=None,
              help="Layer for --cam, a name from model.named_modules() (default: the deepest feature layer).")
@max_memory_option
@device_option
@overwrite_option
@_friendly_errors
def segment(images: tuple[Path, ...], output_dir: Path, model_name: str | None, weights: Path | None, crf: bool,
            model_args: tuple[str, ...], cam: bool, cam_layer: str | None, max_memory: int | None, device: str,
            overwrite: bool) -> None:
    """Segment IMAGE files: a label PNG (VOC palette) and a mask overlay per image."""
    _quiet_opencv()
    import os

    from tqdm.auto import tqdm

    from densepac.inference import load_model_for_inference, resolve_device
    from densepac.io.images import IMAGE_EXTENSIONS, image_to_tensor, read_image, write_image, write_label
    from densepac.io.visualize import heatmap_overlay, overlay_mask
    from densepac.segmentation.cam import attention_map
    from densepac.segmentation.inference import segment_image

    if not images:
        raise BadInput("no IMAGE given; pass one or more image files")
    if cam_layer is not None and not cam:
        raise BadInput("--cam-layer is only used with --cam; add --cam or drop --cam-layer")
    for path in images:
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise BadInput(f"{path}: not an image file ({', '.join(IMAGE_EXTENSIONS)})")
        if path.is_dir():
            raise BadInput(f"{path} is a directory, not an image file; pass the image files inside it")
        if not path.is_file():
            raise BadInput(f"{path}: no such image file; check the path")
    if len({p.stem for p in images}) != len(images):
        raise BadInput("two IMAGEs share a file name; their outputs would overwrite each other")
    if output_dir.exists() and not output_dir.is_dir():
        raise BadInput(f"-o {output_dir} is a file; give a folder for the outputs (it is created if missing)")
    if not output_dir.is_dir() and not output_dir.parent.is_dir():
        raise BadInput(f"{output_dir.parent} does not exist; create it or choose another -o folder")
    writable = output_dir if output_dir.is_dir() else output_dir.parent
    if not os.access(writable, os.W_OK | os.X_OK):
        raise BadInput(f"{writable} is not writable; fix its permissions or choose another -o folder")
    suffixes = ("", "_overlay") + (("_cam",) if cam else ())
    targets = [[output_dir / f"{p.stem}{s}.png" for s in suffixes] for p in images]
    existing = [str(t) for group in targets for t in group if t.exists()]
    if existing and not overwrite:
        raise BadInput(f"{existing[0]} already exists; pass --overwrite to replace outputs")
    for path in images:  # every image decodes before any output is written
        read_image(path)
    dev = resolve_device(device)
    _require_task(model_name, "segmentation")
    model = load_model_for_inference(model_name, weights, crf=crf, **_parse_kwargs(model_args))
    if getattr(model, "task", None) != "segmentation":
        source = f"{weights}: " if weights is not None else ""
        raise BadInput(f"{source}model {model.model_name!r} is a {model.task} model; "
                       "pick one from `densepac models --task segmentation`")
    if cam_layer is not None and cam_layer not in dict(model.named_modules()):
        raise BadInput(f"--cam-layer {cam_layer!r} is not a layer of {model.model_name}; "
                       "give a name from model.named_modules(), e.g. relu7 for FCN-8s")
    output_dir.mkdir(exist_ok=True)
    quiet = not sys.stderr.isatty() or len(images) == 1
    for path, group in zip(tqdm(images, desc="segment", disable=quiet), targets):
        image = read_image(path)
        labels = segment_image(model, image, dev, max_memory=max_memory, progress=True)
        pictures = [overlay_mask(image, labels)]
        if cam:
            heat = attention_map(model.to(dev).eval(), image_to_tensor(image).to(dev), cam_layer)
            pictures.append(heatmap_overlay(image, heat[0].cpu()))
        write_label(group[0], labels, overwrite=True)
        for target, picture in zip(group[1:], pictures):
            write_image(target, picture, overwrite=True)
    click.echo(f"{len(images)} image(s) segmented into {output_dir} with {model.model_name}", err=True)


def _parse_kwargs(pairs: tuple[str, ...]) -> dict:
    """``--arg key=value`` pairs to a dict, values parsed as JSON when they parse."""
    import json

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInput(f"--arg {pair!r} is not key=value; e.g. --arg channels=16")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@main.command()
@click.option("--model", "model_name", required=True, help="Registry depth model to train, e.g. pac_jointupsample_x8.")
@click.option("--data", default="synthetic", show_default=True,
              help="synthetic | folder:PATH | nyu:FILE.mat | middlebury:PATH")
@click.option("--protocol", type=click.Choice(["point", "bicubic"]), default="point", show_default=True,
              help="How low-resolution depth is simulated.")
@click.option("--noise", type=float, default=0.0, show_default=True, help="Depth noise sigma (m at 1 m, grows as z^2).")
@click.option("--holes", type=float, default=0.0, show_default=True, help="Fraction of LR pixels made missing.")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--loss", type=click.Choice(["l1", "l2", "charbonnier"]), default="l1", show_default=True,
              help="Training loss on valid pixels; l2 optimises RMSE.")
@click.option("--export-name", default=None, help="Name of the exported weights (default: the model name).")
@click.option("--default", "mark_default", is_flag=True,
              help="Mark the export as the default `densepac upsample` model for its scale.")
@training_options
@device_option
@_friendly_errors
def train(model_name, model_args, data, protocol, train_size, val_size, crop, noise, holes, epochs, batch_size, lr,
          loss, weight_decay, seed, workers, amp, out, resume, export_dir, export_name, mark_default, device) -> None:
    """Train a depth model; runs under `torchrun --nproc_per_node N` as well (DDP)."""
    from densepac.depth.recipe import DepthTrainConfig, export_depth_weights, train_depth
    from densepac.inference import resolve_device

    cfg = DepthTrainConfig(model=model_name, out=str(out), data=data, protocol=protocol, train_size=train_size,
                           val_size=val_size, crop=crop, noise=noise, holes=holes, epochs=epochs,
                           batch_size=batch_size, lr=lr, loss=loss, weight_decay=weight_decay, seed=seed,
                           device=resolve_device(device).type, workers=workers, amp=amp,
                           model_kwargs=_parse_kwargs(model_args))
    def export(result) -> Path:
        if result.interrupted:
            click.echo("run was stopped early: exporting its best validated checkpoint so far", err=True)
        return export_depth_weights(cfg, export_dir, export_name, mark_default, cfg.device)

    _train_in_run_folder(out, export_dir, lambda: train_depth(cfg, resume=resume), export)


@main.command()
@click.option("--model", "model_name", default="fcn8s_vgg16", show_default=True,
              help="Registry segmentation model to fine-tune.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Start from: torchvision vgg16 / fcn_resnet50/101 state dict, or a densepac weights file, "
                   "run or checkpoint folder.")
@click.option("--hot-swap", is_flag=True, help="Swap conv3_3/4_3/5_3 of FCN-8s for PAC guided by conv2_2.")
@click.option("--crf", is_flag=True, help="Append a trainable PAC-CRF.")
@click.option("--stage", type=click.Choice(["joint", "crf_only"]), default="joint", show_default=True,
              help="crf_only: train the CRF with the backbone frozen (the paper's first stage).")
@click.option("--data", default="synthetic", show_default=True, help="synthetic | voc:ROOT | voc_aug:ROOT | folder:ROOT")
@click.option("--num-classes", type=int, default=21, show_default=True)
@click.option("--scene-size", type=int, default=160, show_default=True, help="Side of synthetic scenes.")
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--crf-lr", type=float, default=1e-3, show_default=True, help="Learning rate of the CRF parameters.")
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd"]), default="adam", show_default=True)
@click.option("--scheduler", type=click.Choice(["cosine", "poly", "step", "none"]), default="cosine",
              show_default=True)
@click.option("--crf-arg", "crf_args", multiple=True, help="PacCRF argument key=value (repeatable).")
@training_options
@device_option
@_friendly_errors
def finetune(model_name, weights, hot_swap, crf, stage, data, num_classes, crop, scene_size, train_size, val_size,
             epochs, batch_size, lr, crf_lr, weight_decay, optimizer, scheduler, seed, workers, amp, model_args,
             crf_args, out, resume, export_dir, device) -> None:
    """Fine-tune a (hot-swapped, CRF-wrapped) segmentation model; DDP under torchrun."""
    from densepac.inference import resolve_device
    from densepac.segmentation.recipe import SegFinetuneConfig, export_seg_weights, finetune_segmentation

    cfg = SegFinetuneConfig(model=model_name, out=str(out), weights=None if weights is None else str(weights),
                            hot_swap=hot_swap, crf=crf, stage=stage, data=data, num_classes=num_classes, crop=crop,
                            scene_size=scene_size, train_size=train_size, val_size=val_size, epochs=epochs,
                            batch_size=batch_size, lr=lr, crf_lr=crf_lr, weight_decay=weight_decay,
                            optimizer=optimizer, scheduler=scheduler, seed=seed, device=resolve_device(device).type,
                            workers=workers, amp=amp, model_kwargs=_parse_kwargs(model_args),
                            crf_kwargs=_parse_kwargs(crf_args))
    _train_in_run_folder(out, export_dir, lambda: finetune_segmentation(cfg, resume=resume),
                         lambda result: export_seg_weights(cfg, export_dir, device=cfg.device))


@main.command("eval")
@click.option("--models", "model_names", default=None,
              help="Comma-separated registry depth models; learned ones use their shipped weights. "
                   "Default: bicubic, guided_filter, joint_bilateral and the shipped default model for --scale.")
@click.option("--weights", "weight_files", multiple=True,
              help="NAME=FILE: evaluate model NAME with this weights file (repeatable).")
@click.option("--data", default="synthetic", show_default=True,
              help="synthetic | folder:PATH | nyu:FILE.mat | middlebury:PATH")
@click.option("--split", type=click.Choice(["val", "test"]), default="test", show_default=True)
@click.option("--scale", type=int, default=8, show_default=True)
@click.option("--protocol", type=click.Choice(["point", "bicubic"]), default="point", show_default=True)
@click.option("--num-scenes", type=int, default=50, show_default=True, help="Synthetic test scenes.")
@click.option("--crop", type=int, default=0, show_default=True, help="Border (px) left out of the metrics.")
@click.option("--markdown", type=click.Path(path_type=Path), default=None, help="Also write the table as Markdown.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="Also write the table as CSV.")
@device_option
@overwrite_option
@_friendly_errors
def eval_cmd(model_names, weight_files, data, split, scale, protocol, num_scenes, crop, markdown, csv_path,
             device, overwrite) -> None:
    """Evaluate depth models side by side: RMSE / MAE (cm), AbsRel, delta, time per megapixel."""
    from densepac.depth.datasets import make_depth_dataset
    from densepac.depth.evaluate import compare_depth_models, format_table
    from densepac.inference import load_model_for_inference, resolve_device
    from densepac.io.files import check_output

    weights = {}
    for pair in weight_files:
        name, sep, file = pair.partition("=")
        if not sep:
            raise BadInput(f"--weights {pair!r} is not NAME=FILE; e.g. --weights pac_jointupsample_x8=run/best.safetensors")
        weights[name] = Path(file)
    if model_names is None:
        from densepac.depth.inference import default_depth_model
        from densepac.depth.recipe import BASELINES

        model_names = ",".join(dict.fromkeys([*BASELINES, default_depth_model(scale)]))
    names = [n for n in model_names.split(",") if n] + [n for n in weights if n not in model_names.split(",")]
    if not names:
        raise BadInput("no model to evaluate; pass --models a,b,c or --weights NAME=FILE")
    tables = [(path, fmt) for path, fmt in ((markdown, "markdown"), (csv_path, "csv")) if path is not None]
    if markdown is not None and csv_path is not None and markdown.resolve() == csv_path.resolve():
        raise BadInput(f"--markdown and --csv both name {markdown}; give the tables two file names")
    for path, fmt in tables:  # fail now, not after the evaluation
        if path.exists() and not path.is_dir() and not overwrite:
            raise BadInput(f"{path} already exists; pass --overwrite to replace it or choose another --{fmt} path")
        check_output(path, kind=fmt, overwrite=overwrite)
    for n in names:
        _require_task(n, "depth")
    models = {n: load_model_for_inference(n, weights.get(n)) for n in names}
    for n, m in models.items():
        if m.task != "depth":
            raise BadInput(f"model {n!r} is a {m.task} model; densepac eval compares depth models")
        if getattr(m, "scale", scale) != scale:
            raise BadInput(f"model {n!r} upsamples x{m.scale}, not --scale {scale}")
    dataset = make_depth_dataset(data, split, scale, protocol=protocol, num_scenes=num_scenes)
    rows = compare_depth_models(models, dataset, device=resolve_device(device), crop=crop)
    click.echo(format_table(rows, "markdown"), nl=False)
    written: list[Path] = []
    for path, fmt in tables:
        text = format_table(rows, fmt)
        _write_or_undo(lambda: _write_text(path, text, overwrite), written)
        written.append(path)


def _write_text(path: Path, text: str, overwrite: bool) -> None:
    from densepac.io.files import atomic_write

    with atomic_write(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)


if __name__ == "__main__":
    main()
