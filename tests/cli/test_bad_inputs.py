"""The bad-input matrix: every command and library entry point against broken files and arguments.

CLI cases (``test_cli_bad_input``) each assert: exit code 2 (1 where marked, a genuine
runtime failure), exactly one line on stderr, ``Error: ...``, holding the needles that name
the file or option and the fix, no traceback anywhere, and a workspace left exactly as it
was: no output, no temporary file, no run folder, existing files untouched.

Library cases (``test_library_bad_input``) each assert a typed ``ValueError`` /
``TypeError`` whose message names the argument or file, and that it is an
:class:`~densepac.errors.InputError` (one error policy: the CLI maps it to exit code 2).

Accepted conversions (``test_guides_that_are_converted``): a gray, RGBA or 16-bit guide or
image file is read as RGB in [0, 1] (gray replicated, alpha dropped, 16 bits scaled), so
it gives the result of its RGB twin. Array APIs (``upsample_depth``, ``segment_image``) take
(H, W, 3) only and say how to convert anything else.

Cases kept where they were, not repeated here: ``tests/cli/test_upsample.py``
(upsample: missing depth / guide, empty PNG guide, unknown extension, directory as depth,
shape mismatch, ``--scale`` 2.5 / 1000 / disagreeing, all-missing and negative depth,
2-channel depth, unknown model, missing weights, existing output, missing output folder,
bad output extension, bad device); ``tests/test_cli_segment.py`` (no model, missing image,
non-image, no image, missing output folder, depth model, class-count mismatch, existing
output); ``tests/test_cli_train.py`` and ``tests/test_cli_finetune.py`` (non-learned model,
bad ``--arg``, crop not a multiple of the scale, existing run without ``--resume``,
``crf_only`` without ``--crf``, missing weights); ``tests/data/test_io.py`` (every reader
and writer: empty, truncated, garbage files per format, PFM headers, npz keys, object
arrays, 8-bit / color depth, atomic-write refusals).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import densepac
from densepac.cli import main
from densepac.depth.inference import upsample_depth
from densepac.errors import InputError
from densepac.io.depth import read_depth, validate_depth
from densepac.io.images import read_image, write_image, write_label
from densepac.models import create_model, save_weights
from densepac.ops import pac_conv2d
from densepac.segmentation.inference import segment_image

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
needs_permissions = pytest.mark.skipif(ROOT, reason="root ignores file permissions")

SEG_KW = {"num_classes": 3, "widths": [4, 4, 8, 8, 8], "fc_channels": 8}
DEPTH_KW = {"scale": 4, "channels": 4}
TRAIN = [
    "train",
    "--model",
    "pac_jointupsample_lite_x4",
    "--arg",
    "channels=4",
    "--crop",
    "16",
    "--train-size",
    "2",
    "--val-size",
    "1",
    "--batch-size",
    "1",
    "--epochs",
    "1",
    "--device",
    "cpu",
]
FINETUNE = [
    "finetune",
    "--num-classes",
    "3",
    "--scene-size",
    "40",
    "--crop",
    "32",
    "--train-size",
    "2",
    "--val-size",
    "1",
    "--epochs",
    "1",
    "--batch-size",
    "1",
    "--device",
    "cpu",
    "--arg",
    "widths=[4,4,8,8,8]",
    "--arg",
    "fc_channels=8",
]
EVAL = ["eval", "--models", "bicubic", "--scale", "4", "--num-scenes", "1", "--device", "cpu"]


# ----------------------------------------------------------------------------- the workspace


def _png(path: Path, array: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), array)
    return path


def _depth_folder(
    root: Path, rgb_size=(32, 32), depth: np.ndarray | None = None, depth_name="a.npy", garbage=False
) -> Path:
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    write_image(root / "rgb" / "a.png", np.random.default_rng(0).random((*rgb_size, 3)))
    if garbage:
        (root / "depth" / depth_name).write_bytes(b"\x93NUMPY garbage")
    elif depth is not None:
        np.save(root / "depth" / depth_name, depth)
    return root


def _seg_folder(root: Path, mask: np.ndarray | None = None, mask_file: str = "a.png", size=(40, 40)) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    write_image(root / "images" / "a.png", np.random.default_rng(0).random((*size, 3)))
    if mask is not None:
        if mask_file.endswith(".npy"):
            np.save(root / "masks" / mask_file, mask)
        elif mask.ndim == 3:
            _png(root / "masks" / mask_file, mask)
        else:
            write_label(root / "masks" / mask_file, mask)
    return root


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Every good and bad input file the cases name; the cases must leave it unchanged."""
    w = tmp_path_factory.mktemp("bad_inputs")
    rng = np.random.default_rng(0)
    depth = np.full((8, 12), 2.0, np.float32)
    depth[:, 6:] = 3.5
    depth[2, 3] = 0
    np.save(w / "depth.npy", depth)
    _png(w / "guide.png", (rng.random((32, 48, 3)) * 255).astype(np.uint8))
    # Broken depth files.
    (w / "empty.npy").write_bytes(b"")
    (w / "trunc.npy").write_bytes((w / "depth.npy").read_bytes()[:150])
    (w / "garbage.npy").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    np.save(w / "zero_len.npy", np.zeros((0,), np.float32))
    np.save(w / "zero_rows.npy", np.zeros((0, 12), np.float32))
    np.save(w / "nan.npy", np.full((8, 12), np.nan, np.float32))
    np.save(w / "inf.npy", np.full((8, 12), np.inf, np.float32))
    negnan = depth.copy()
    negnan[0, 0], negnan[1, 1] = -1.5, np.nan
    np.save(w / "negnan.npy", negnan)
    np.save(w / "far.npy", np.full((8, 12), 100.0, np.float32))  # beyond 16-bit millimetres
    np.save(w / "d1x1.npy", np.ones((1, 1), np.float32))
    (w / "empty_depth.png").write_bytes(b"")
    _png(w / "depth8.png", np.full((8, 12), 200, np.uint8))
    _png(w / "depth_rgb.png", (rng.random((8, 12, 3)) * 60000).astype(np.uint16))
    (w / "depth.jpg").write_bytes((w / "guide.png").read_bytes())
    (w / "unreadable.npy").write_bytes((w / "depth.npy").read_bytes())
    # Broken or mismatched guides / images.
    _png(w / "g1x1.png", np.zeros((1, 1, 3), np.uint8))
    _png(w / "guide_square.png", np.zeros((32, 32, 3), np.uint8))
    _png(w / "guide_wide.png", np.zeros((32, 96, 3), np.uint8))
    (w / "guide_trunc.png").write_bytes((w / "guide.png").read_bytes()[:200])
    # Cut inside the last image data chunk: libpng itself would print a line on stderr.
    (w / "guide_trunc_late.png").write_bytes((w / "guide.png").read_bytes()[:-40])
    (w / "photos").mkdir()
    if hasattr(os, "mkfifo"):
        os.mkfifo(w / "fifo.npy")  # reading it would block forever
    (w / "loop_a.npy").symlink_to(w / "loop_b.npy")
    (w / "loop_b.npy").symlink_to(w / "loop_a.npy")
    np.save(w / "huge.npy", np.full((8, 12), 1e30, np.float32))
    (w / "guide_garbage.jpg").write_text("this is not a JPEG")
    np.save(w / "guide.npy", np.zeros((32, 48, 3), np.float32))
    write_image(w / "img.png", rng.random((33, 40, 3)))
    (w / "img_empty.png").write_bytes(b"")
    (w / "img_trunc.png").write_bytes((w / "img.png").read_bytes()[:100])
    (w / "img_garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (w / "imgdir.png").mkdir()
    (w / "img.gif").write_bytes(b"GIF89a")
    # Weights: a tiny segmentation and a tiny depth model with their cards, and broken files.
    torch.manual_seed(0)
    save_weights(create_model("fcn8s_vgg16", **SEG_KW), "tiny_fcn", "fcn8s_vgg16", w, kwargs=SEG_KW)
    save_weights(
        create_model("pac_jointupsample_lite_x4", **DEPTH_KW),
        "tiny_depth",
        "pac_jointupsample_lite_x4",
        w,
        kwargs=DEPTH_KW,
    )
    save_weights(create_model("fcn8s_vgg16", **{**SEG_KW, "num_classes": 4}), "fcn4", "fcn8s_vgg16", w / "bare")
    (w / "bare" / "fcn4.json").unlink()  # no card: nothing says it has 4 classes
    (w / "garbage.safetensors").write_bytes(b"not a safetensors file")
    (w / "empty.safetensors").write_bytes(b"")
    (w / "garbage.pt").write_bytes(b"PK\x03\x04 not a torch zip")
    (w / "weights.txt").write_text("weights")
    # A pickle whose loading would run a command: safe loading must refuse it without advice to unpickle.
    (w / "pickled.pth").write_bytes(b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    (w / "weightsdir.safetensors").mkdir()
    # Outputs that already exist, a plain file where a folder is expected, a folder named like a file.
    (w / "exists.npy").write_bytes(b"keep")
    (w / "exists_preview.png").write_bytes(b"keep")
    (w / "table.md").write_text("keep\n")
    (w / "afile").write_text("a file, not a folder")
    (w / "outdir.npy").mkdir()
    (w / "segout").mkdir()
    (w / "segout" / "img_cam.png").write_bytes(b"keep")
    (w / "rodir").mkdir()
    # Training / evaluation data.
    _depth_folder(w / "d_corrupt", garbage=True)
    _depth_folder(w / "d_missing", depth=np.zeros((32, 32), np.float32))
    _depth_folder(w / "d_negative", depth=-np.ones((32, 32), np.float32))
    _depth_folder(w / "d_shape", depth=np.ones((16, 16), np.float32))
    _depth_folder(w / "d_unpaired", depth=np.ones((32, 32), np.float32), depth_name="b.npy")
    _depth_folder(w / "d_empty")
    (w / "d_empty" / "rgb" / "a.png").unlink()
    _seg_folder(w / "s_range", np.full((40, 40), 7))
    _seg_folder(w / "s_negative", np.full((40, 40), -1, np.int64), "a.npy")
    _seg_folder(w / "s_shape", np.zeros((20, 20), np.int64))
    _seg_folder(w / "s_color", (rng.random((40, 40, 3)) * 255).astype(np.uint8))
    _seg_folder(w / "s_unpaired")
    (w / "fake.mat").write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    return w


def _snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (
            stat.S_IFMT(st.st_mode),
            st.st_size,
            st.st_mtime_ns,
            _read(p) if p.is_file() and st.st_size < 4096 and os.access(p, os.R_OK) else None,
        )
    return out


def _read(path: Path) -> bytes:
    with open(path, "rb") as f:  # not Path.read_bytes, which a test may patch
        return f.read()


def _remove_new(root: Path, before: dict) -> None:
    import shutil

    for name in sorted(set(_snapshot(root)) - set(before), key=len):
        p = root / name
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()


# ----------------------------------------------------------------------------- CLI cases


def case(cid: str, args: list, needles: tuple[str, ...], code: int = 2, marks=()):
    """One row: ``args`` (``{w}`` stands for the workspace), the stderr ``needles``, the exit code."""
    return pytest.param(args, needles, code, id=cid, marks=marks)


U = ["upsample", "{w}/depth.npy", "{w}/guide.png"]  # a good pair; the cases vary one thing
OUT = ["-o", "{w}/out.npy"]
CLI_CASES = [
    # ---- upsample: depth files
    case("upsample-depth-0-byte-npy", ["upsample", "{w}/empty.npy", "{w}/guide.png", *OUT], ("empty.npy", "empty")),
    case(
        "upsample-depth-truncated-npy", ["upsample", "{w}/trunc.npy", "{w}/guide.png", *OUT], ("trunc.npy", "re-export")
    ),
    case(
        "upsample-depth-garbage-npy", ["upsample", "{w}/garbage.npy", "{w}/guide.png", *OUT], ("garbage.npy", "corrupt")
    ),
    case(
        "upsample-depth-0-length-array",
        ["upsample", "{w}/zero_len.npy", "{w}/guide.png", *OUT],
        ("zero_len.npy", "2-D"),
    ),
    case(
        "upsample-depth-0-rows", ["upsample", "{w}/zero_rows.npy", "{w}/guide.png", *OUT], ("zero_rows.npy", "(0, 12)")
    ),
    case(
        "upsample-depth-0-byte-png",
        ["upsample", "{w}/empty_depth.png", "{w}/guide.png", *OUT],
        ("empty_depth.png", "empty"),
    ),
    case("upsample-depth-8-bit-png", ["upsample", "{w}/depth8.png", "{w}/guide.png", *OUT], ("depth8.png", "16-bit")),
    case(
        "upsample-depth-color-png",
        ["upsample", "{w}/depth_rgb.png", "{w}/guide.png", *OUT],
        ("depth_rgb.png", "single-channel"),
    ),
    case(
        "upsample-depth-jpg-extension",
        ["upsample", "{w}/depth.jpg", "{w}/guide.png", *OUT],
        ("depth.jpg", "use one of"),
    ),
    case("upsample-depth-all-nan", ["upsample", "{w}/nan.npy", "{w}/guide.png", *OUT], ("nan.npy", "missing")),
    case("upsample-depth-all-inf", ["upsample", "{w}/inf.npy", "{w}/guide.png", *OUT], ("inf.npy", "missing")),
    case(
        "upsample-depth-negative-and-nan",
        ["upsample", "{w}/negnan.npy", "{w}/guide.png", *OUT],
        ("negnan.npy", "negative", ">= 0"),
    ),
    case(
        "upsample-depth-unreadable",
        ["upsample", "{w}/unreadable.npy", "{w}/guide.png", *OUT],
        ("unreadable.npy", "permissions"),
        marks=needs_permissions,
    ),
    # ---- upsample: guides and their shapes
    case("upsample-guide-1x1", [*U[:2], "{w}/g1x1.png", *OUT], ("g1x1.png", "expected a guide of")),
    case("upsample-1x1-both-scale-1", ["upsample", "{w}/d1x1.npy", "{w}/g1x1.png", *OUT], ("g1x1.png", "factors 2 to")),
    case(
        "upsample-guide-aspect-mismatch",
        [*U[:2], "{w}/guide_square.png", *OUT],
        ("guide_square.png", "crop or resize the guide"),
    ),
    case(
        "upsample-guide-other-scale-per-axis",
        [*U[:2], "{w}/guide_wide.png", *OUT],
        ("guide_wide.png", "expected a guide of"),
    ),
    case("upsample-guide-truncated-png", [*U[:2], "{w}/guide_trunc.png", *OUT], ("guide_trunc.png", "re-export")),
    case("upsample-guide-garbage-jpg", [*U[:2], "{w}/guide_garbage.jpg", *OUT], ("guide_garbage.jpg", "corrupt")),
    case("upsample-guide-npy", [*U[:2], "{w}/guide.npy", *OUT], ("guide.npy", "use one of")),
    case("upsample-guide-directory", [*U[:2], "{w}/imgdir.png", *OUT], ("imgdir.png", "directory")),
    case("upsample-guide-folder-without-suffix", [*U[:2], "{w}/photos", *OUT], ("photos", "directory, not an image")),
    case(
        "upsample-guide-truncated-in-last-chunk",
        [*U[:2], "{w}/guide_trunc_late.png", *OUT],
        ("guide_trunc_late.png", "truncated or corrupt"),
    ),
    case(
        "upsample-depth-named-pipe",
        ["upsample", "{w}/fifo.npy", "{w}/guide.png", *OUT],
        ("fifo.npy", "named pipe"),
        marks=pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here"),
    ),
    case(
        "upsample-depth-symlink-loop",
        ["upsample", "{w}/loop_a.npy", "{w}/guide.png", *OUT],
        ("loop_a.npy", "loops back"),
    ),
    case(
        "upsample-depth-absurd-metres",
        ["upsample", "{w}/huge.npy", "{w}/guide.png", *OUT],
        ("huge.npy", "beyond any sensor", "--depth-scale"),
    ),
    # ---- upsample: options
    case("upsample-scale-0", [*U, *OUT, "--scale", "0"], ("scale 0", "between 2 and")),
    case("upsample-scale-negative", [*U, *OUT, "--scale", "-4"], ("scale -4", "between 2 and")),
    case("upsample-scale-1", [*U, *OUT, "--scale", "1"], ("scale 1", "between 2 and")),
    case("upsample-scale-not-a-number", [*U, *OUT, "--scale", "four"], ("--scale", "integer")),
    case("upsample-depth-scale-0", [*U, *OUT, "--depth-scale", "0"], ("--depth-scale", "positive")),
    case("upsample-depth-scale-nan", [*U, *OUT, "--depth-scale", "nan"], ("--depth-scale", "1000")),
    case("upsample-tile-negative", [*U, *OUT, "--tile", "-1", "--model", "bicubic"], ("--tile", "0 to disable")),
    case("upsample-segmentation-model", [*U, *OUT, "--model", "fcn8s_vgg16"], ("fcn8s_vgg16", "--task depth")),
    # ---- upsample: weights
    case(
        "upsample-weights-pickled-code",
        [*U, *OUT, "--model", "pac_jointupsample_lite_x4", "--weights", "{w}/pickled.pth"],
        ("pickled.pth", "refuses", "posix.system"),
    ),
    case(
        "upsample-weights-other-architecture",
        [*U, *OUT, "--model", "pac_jointupsample_lite_x4", "--weights", "{w}/tiny_fcn.safetensors"],
        ("tiny_fcn.safetensors", "do not fit"),
    ),
    case(
        "upsample-weights-other-width",
        [*U, *OUT, "--model", "pac_jointupsample_lite_x8", "--weights", "{w}/tiny_depth.safetensors"],
        ("tiny_depth.safetensors", "do not fit"),
    ),
    case(
        "upsample-weights-of-segmentation-model",
        [*U, *OUT, "--weights", "{w}/tiny_fcn.safetensors"],
        ("tiny_fcn.safetensors", "segmentation model", "--task depth"),
    ),
    case(
        "upsample-weights-garbage",
        [*U, *OUT, "--model", "pac_jointupsample_lite_x4", "--weights", "{w}/garbage.safetensors"],
        ("garbage.safetensors", "re-"),
    ),
    case(
        "upsample-weights-0-byte",
        [*U, *OUT, "--model", "pac_jointupsample_lite_x4", "--weights", "{w}/empty.safetensors"],
        ("empty.safetensors", "re-"),
    ),
    case(
        "upsample-weights-garbage-pt",
        [*U, *OUT, "--model", "pac_jointupsample_lite_x4", "--weights", "{w}/garbage.pt"],
        ("garbage.pt", "re-"),
    ),
    case(
        "upsample-weights-txt",
        [*U, *OUT, "--model", "pac_jointupsample_lite_x4", "--weights", "{w}/weights.txt"],
        ("weights.txt", ".safetensors"),
    ),
    case(
        "upsample-weights-directory",
        [*U, *OUT, "--model", "pac_jointupsample_lite_x4", "--weights", "{w}/weightsdir.safetensors"],
        ("weightsdir.safetensors",),
    ),
    # ---- upsample: outputs
    case("upsample-output-is-directory", [*U, "-o", "{w}/outdir.npy"], ("outdir.npy", "directory", "file name")),
    case(
        "upsample-output-read-only-dir",
        [*U, "-o", "{w}/rodir/out.npy"],
        ("rodir", "permissions"),
        marks=needs_permissions,
    ),
    case(
        "upsample-output-16-bit-overflow",
        [*U[:1], "{w}/far.npy", "{w}/guide.png", "-o", "{w}/out.png", "--model", "bicubic"],
        ("out.png", "--depth-scale"),
    ),
    case(
        "upsample-preview-missing-dir",
        [*U, *OUT, "--preview", "{w}/nodir/p.png", "--model", "bicubic"],
        ("nodir", "create it"),
    ),
    case(
        "upsample-preview-bad-extension",
        [*U, *OUT, "--preview", "{w}/p.txt", "--model", "bicubic"],
        ("p.txt", "use one of"),
    ),
    case(
        "upsample-preview-exists",
        [*U, *OUT, "--preview", "{w}/exists_preview.png"],
        ("exists_preview.png", "--overwrite"),
    ),
    case(
        "upsample-preview-is-output",
        [*U, "-o", "{w}/same.png", "--preview", "{w}/same.png"],
        ("same.png", "another name"),
    ),
    # ---- segment
    case(
        "segment-0-byte-png",
        ["segment", "{w}/img_empty.png", "-o", "{w}/so", "--weights", "{w}/tiny_fcn.safetensors"],
        ("img_empty.png", "empty"),
    ),
    case(
        "segment-truncated-png",
        ["segment", "{w}/img_trunc.png", "-o", "{w}/so", "--weights", "{w}/tiny_fcn.safetensors"],
        ("img_trunc.png", "re-export"),
    ),
    case(
        "segment-garbage-jpg",
        ["segment", "{w}/img_garbage.jpg", "-o", "{w}/so", "--weights", "{w}/tiny_fcn.safetensors"],
        ("img_garbage.jpg", "corrupt"),
    ),
    case(
        "segment-second-image-corrupt",
        ["segment", "{w}/img.png", "{w}/img_trunc.png", "-o", "{w}/so", "--weights", "{w}/tiny_fcn.safetensors"],
        ("img_trunc.png", "re-export"),
    ),
    case(
        "segment-image-is-directory",
        ["segment", "{w}/imgdir.png", "-o", "{w}/so", "--weights", "{w}/tiny_fcn.safetensors"],
        ("imgdir.png", "directory"),
    ),
    case(
        "segment-gif",
        ["segment", "{w}/img.gif", "-o", "{w}/so", "--weights", "{w}/tiny_fcn.safetensors"],
        ("img.gif", ".png"),
    ),
    case(
        "segment-output-is-file",
        ["segment", "{w}/img.png", "-o", "{w}/afile", "--weights", "{w}/tiny_fcn.safetensors"],
        ("afile", "folder"),
    ),
    case(
        "segment-output-read-only",
        ["segment", "{w}/img.png", "-o", "{w}/rodir/so", "--weights", "{w}/tiny_fcn.safetensors"],
        ("rodir", "permissions"),
        marks=needs_permissions,
    ),
    case(
        "segment-weights-of-depth-model",
        ["segment", "{w}/img.png", "-o", "{w}/so", "--weights", "{w}/tiny_depth.safetensors"],
        ("tiny_depth.safetensors", "depth model"),
    ),
    case(
        "segment-weights-garbage",
        ["segment", "{w}/img.png", "-o", "{w}/so", "--model", "fcn8s_vgg16", "--weights", "{w}/garbage.safetensors"],
        ("garbage.safetensors", "re-"),
    ),
    case(
        "segment-weights-other-class-count",
        [
            "segment",
            "{w}/img.png",
            "-o",
            "{w}/so",
            "--model",
            "fcn8s_vgg16",
            "--weights",
            "{w}/bare/fcn4.safetensors",
            "--arg",
            "widths=[4,4,8,8,8]",
            "--arg",
            "fc_channels=8",
        ],
        ("fcn4.safetensors", "predicts 4 classes but the model has 21", "num_classes=4"),
    ),
    case(
        "segment-unknown-model",
        ["segment", "{w}/img.png", "-o", "{w}/so", "--model", "fcn8s_vgg61"],
        ("fcn8s_vgg61", "fcn8s_vgg16"),
    ),
    case(
        "segment-unknown-architecture-arg",
        ["segment", "{w}/img.png", "-o", "{w}/so", "--weights", "{w}/tiny_fcn.safetensors", "--arg", "depth=3"],
        ("depth", "architecture arguments"),
    ),
    case(
        "segment-cam-exists",
        ["segment", "{w}/img.png", "-o", "{w}/segout", "--weights", "{w}/tiny_fcn.safetensors", "--cam"],
        ("img_cam.png", "--overwrite"),
    ),
    case(
        "segment-cam-layer-unknown",
        [
            "segment",
            "{w}/img.png",
            "-o",
            "{w}/so",
            "--weights",
            "{w}/tiny_fcn.safetensors",
            "--cam",
            "--cam-layer",
            "conv9",
        ],
        ("--cam-layer", "conv9", "named_modules"),
    ),
    case(
        "segment-cam-layer-without-cam",
        ["segment", "{w}/img.png", "-o", "{w}/so", "--weights", "{w}/tiny_fcn.safetensors", "--cam-layer", "relu7"],
        ("--cam-layer", "add --cam"),
    ),
    # ---- train
    case("train-data-unknown-kind", [*TRAIN, "--data", "hdf5:x", "--out", "{w}/run"], ("hdf5:x", "use one of")),
    case(
        "train-data-missing-folder",
        [*TRAIN, "--data", "folder:{w}/nope", "--out", "{w}/run"],
        ("nope", "does not exist"),
    ),
    case("train-data-file-not-folder", [*TRAIN, "--data", "folder:{w}/afile", "--out", "{w}/run"], ("afile", "rgb")),
    case(
        "train-data-corrupt-depth",
        [*TRAIN, "--data", "folder:{w}/d_corrupt", "--out", "{w}/run"],
        ("a.npy", "re-export"),
    ),
    case(
        "train-data-all-missing-depth",
        [*TRAIN, "--data", "folder:{w}/d_missing", "--out", "{w}/run"],
        ("a.npy", "missing", "--depth-scale"),
    ),
    case(
        "train-data-negative-depth",
        [*TRAIN, "--data", "folder:{w}/d_negative", "--out", "{w}/run"],
        ("a.npy", "negative"),
    ),
    case(
        "train-data-shape-mismatch",
        [*TRAIN, "--data", "folder:{w}/d_shape", "--out", "{w}/run"],
        ("a.npy", "same size"),
    ),
    case(
        "train-data-unpaired",
        [*TRAIN, "--data", "folder:{w}/d_unpaired", "--out", "{w}/run"],
        ("d_unpaired", "unmatched"),
    ),
    case("train-data-empty", [*TRAIN, "--data", "folder:{w}/d_empty", "--out", "{w}/run"], ("d_empty", "no rgb")),
    case("train-data-not-hdf5", [*TRAIN, "--data", "nyu:{w}/fake.mat", "--out", "{w}/run"], ("fake.mat", "v7.3")),
    case(
        "train-segmentation-model",
        [*TRAIN[:2], "fcn8s_vgg16", *TRAIN[3:], "--out", "{w}/run"],
        ("fcn8s_vgg16", "--task depth"),
    ),
    case("train-out-is-file", [*TRAIN, "--out", "{w}/afile"], ("--out", "afile", "folder")),
    case("train-export-is-file", [*TRAIN, "--out", "{w}/run", "--export", "{w}/afile"], ("--export", "afile")),
    case("train-out-read-only", [*TRAIN, "--out", "{w}/rodir/run"], ("rodir", "permissions"), marks=needs_permissions),
    case("train-epochs-0", [*TRAIN, "--epochs", "0", "--out", "{w}/run"], ("epochs=0", ">= 1")),
    case("train-lr-negative", [*TRAIN, "--lr", "-1", "--out", "{w}/run"], ("lr=-1", "positive")),
    case("train-holes-above-1", [*TRAIN, "--holes", "2", "--out", "{w}/run"], ("holes=2", "[0, 1)")),
    case("train-protocol-unknown", [*TRAIN, "--protocol", "nearest", "--out", "{w}/run"], ("--protocol", "point")),
    # ---- finetune
    case(
        "finetune-labels-out-of-range",
        [*FINETUNE, "--data", "folder:{w}/s_range", "--out", "{w}/run"],
        ("a.png", "label values 7", "num_classes"),
    ),
    case(
        "finetune-labels-negative", [*FINETUNE, "--data", "folder:{w}/s_negative", "--out", "{w}/run"], ("a.npy", "-1")
    ),
    case(
        "finetune-mask-shape-mismatch",
        [*FINETUNE, "--data", "folder:{w}/s_shape", "--out", "{w}/run"],
        ("a.png", "same size"),
    ),
    case("finetune-color-mask", [*FINETUNE, "--data", "folder:{w}/s_color", "--out", "{w}/run"], ("a.png", "indexed")),
    case(
        "finetune-unpaired", [*FINETUNE, "--data", "folder:{w}/s_unpaired", "--out", "{w}/run"], ("s_unpaired", "mask")
    ),
    case(
        "finetune-voc-without-lists",
        [*FINETUNE, "--data", "voc:{w}/d_empty", "--out", "{w}/run"],
        ("train.txt", "no such split"),
    ),
    case(
        "finetune-synthetic-bad-seed",
        [*FINETUNE, "--data", "synthetic:abc", "--out", "{w}/run"],
        ("synthetic:abc", "integer"),
    ),
    case(
        "finetune-weights-of-depth-model",
        [*FINETUNE, "--weights", "{w}/tiny_depth.safetensors", "--out", "{w}/run"],
        ("tiny_depth.safetensors", "do not fit"),
    ),
    case(
        "finetune-weights-0-byte",
        [*FINETUNE, "--weights", "{w}/empty.safetensors", "--out", "{w}/run"],
        ("empty.safetensors", "re-"),
    ),
    case(
        "finetune-weights-txt",
        [*FINETUNE, "--weights", "{w}/weights.txt", "--out", "{w}/run"],
        ("weights.txt", ".safetensors"),
    ),
    case("finetune-num-classes-0", [*FINETUNE[:2], "0", *FINETUNE[3:], "--out", "{w}/run"], ("num_classes=0",)),
    case(
        "finetune-num-classes-300",
        [*FINETUNE[:2], "300", *FINETUNE[3:], "--out", "{w}/run"],
        ("num_classes=300", "255"),
    ),
    case(
        "finetune-crf-arg-unknown",
        [*FINETUNE, "--crf", "--crf-arg", "steps=3", "--out", "{w}/run"],
        ("steps", "PacCRF"),
    ),
    case("finetune-out-is-file", [*FINETUNE, "--out", "{w}/afile"], ("--out", "afile")),
    # ---- eval
    case("eval-weights-not-pair", [*EVAL, "--weights", "{w}/tiny_depth.safetensors"], ("--weights", "NAME=FILE")),
    case(
        "eval-weights-missing",
        [*EVAL, "--weights", "pac_jointupsample_lite_x4={w}/nope.safetensors"],
        ("nope.safetensors", "check the path"),
    ),
    case(
        "eval-weights-other-architecture",
        [*EVAL, "--weights", "pac_jointupsample_lite_x4={w}/tiny_fcn.safetensors"],
        ("tiny_fcn.safetensors", "do not fit"),
    ),
    case("eval-segmentation-model", [*EVAL[:2], "bicubic,fcn8s_vgg16", *EVAL[3:]], ("fcn8s_vgg16", "--task depth")),
    case("eval-scale-mismatch", [*EVAL[:2], "pac_jointupsample_jbu_x8", *EVAL[3:]], ("x8", "--scale 4")),
    case("eval-no-models", [*EVAL[:2], ",", *EVAL[3:]], ("--models",)),
    case("eval-data-all-missing-depth", [*EVAL, "--data", "folder:{w}/d_missing"], ("a.npy", "missing")),
    case("eval-data-not-hdf5", [*EVAL, "--data", "nyu:{w}/fake.mat"], ("fake.mat", "v7.3")),
    case("eval-markdown-missing-dir", [*EVAL, "--markdown", "{w}/nodir/t.md"], ("nodir", "create it")),
    case("eval-csv-is-directory", [*EVAL, "--csv", "{w}/outdir.npy"], ("outdir.npy", "directory")),
    case("eval-markdown-exists", [*EVAL, "--markdown", "{w}/table.md"], ("table.md", "--overwrite")),
    case(
        "eval-markdown-and-csv-same",
        [*EVAL, "--markdown", "{w}/t.txt", "--csv", "{w}/t.txt"],
        ("t.txt", "two file names"),
    ),
    case("eval-num-scenes-0", [*EVAL, "--num-scenes", "0"], ("num_scenes=0", "positive")),
    case("eval-scale-0", [*EVAL[:3], "--scale", "0"], ("scale=0",)),
    case("eval-crop-negative", [*EVAL, "--crop", "-3"], ("crop=-3", ">= 0")),
    case("eval-split-unknown", [*EVAL, "--split", "train"], ("--split", "val")),
    # ---- models
    case("models-task-unknown", ["models", "--task", "detection"], ("--task", "segmentation")),
    case("models-extra-argument", ["models", "fcn"], ("unexpected extra argument", "--help")),
    case("models-unknown-option", ["models", "--all"], ("--all",)),
]


def test_matrix_is_big_enough():
    commands = {c.values[0][0] for c in CLI_CASES}
    assert commands == {"upsample", "segment", "train", "finetune", "eval", "models"}
    assert len(CLI_CASES) >= 40 and len({c.id for c in CLI_CASES}) == len(CLI_CASES)


def _check_cli_case(ws: Path, args: list, needles: tuple[str, ...], code: int) -> None:
    argv = [str(a).replace("{w}", str(ws)) for a in args]
    if "unreadable.npy" in " ".join(argv):
        (ws / "unreadable.npy").chmod(0)
    if "rodir" in " ".join(argv):
        (ws / "rodir").chmod(0o555)
    before = _snapshot(ws)
    try:
        r = CliRunner().invoke(main, argv)
    finally:
        (ws / "unreadable.npy").chmod(0o644)
        (ws / "rodir").chmod(0o755)
    after = _snapshot(ws)
    _remove_new(ws, before)  # keep the shared workspace clean for the other cases, then judge
    err = r.stderr.strip()
    assert r.exit_code == code, (r.exit_code, r.output, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    assert len(err.splitlines()) == 1 and err.startswith("Error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    # No output, no temp file, no run folder; existing files byte-for-byte unchanged.
    for snap in (before, after):
        snap.pop("unreadable.npy", None), snap.pop("rodir", None)
    assert after == before, sorted(set(after) ^ set(before)) or "an existing file changed"


@pytest.mark.parametrize("args, needles, code", CLI_CASES)
def test_cli_bad_input(ws, args, needles, code):
    _check_cli_case(ws, args, needles, code)


PERMISSION_CASES = [c for c in CLI_CASES if needs_permissions in c.marks]


@pytest.mark.skipif(not ROOT, reason="the real permission cases run in test_cli_bad_input")
@pytest.mark.parametrize("args, needles, code", [pytest.param(*c.values, id=c.id) for c in PERMISSION_CASES])
def test_cli_permission_cases_simulated_for_root(ws, args, needles, code, monkeypatch):
    """As root, permissions are simulated: os.access and reads answer as they would for a user."""
    real_access, real_read = os.access, Path.read_bytes

    def access(path, mode, *a, **k):
        if "rodir" in str(path) and mode & os.W_OK:
            return False
        return real_access(path, mode, *a, **k)

    def read_bytes(self):
        if self.name == "unreadable.npy":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    _check_cli_case(ws, args, needles, code)


# ----------------------------------------------------------------------------- accepted conversions


def test_guides_that_are_converted(ws, tmp_path):
    """Gray, RGBA and 16-bit guides are read as their RGB twin, in upsample and segment alike."""
    rgb8 = cv2.imread(str(ws / "guide.png"))  # BGR uint8
    gray8 = rgb8[..., 1]
    variants = {
        "gray.png": gray8,
        "rgba.png": np.dstack([rgb8, np.full(rgb8.shape[:2], 77, np.uint8)]),
        "rgb16.png": rgb8.astype(np.uint16) * 257,
    }
    twins = {"gray.png": np.dstack([gray8] * 3), "rgba.png": rgb8, "rgb16.png": rgb8}
    for name, arr in variants.items():
        _png(tmp_path / name, arr)
        _png(tmp_path / f"twin_{name}", twins[name])
        np.testing.assert_allclose(read_image(tmp_path / name), read_image(tmp_path / f"twin_{name}"), atol=1e-6)
        outs = []
        for guide in (name, f"twin_{name}"):
            out = tmp_path / f"{Path(guide).stem}.npy"
            r = CliRunner().invoke(
                main,
                [
                    "upsample",
                    str(ws / "depth.npy"),
                    str(tmp_path / guide),
                    "-o",
                    str(out),
                    "--model",
                    "joint_bilateral",
                ],
            )
            assert r.exit_code == 0, r.output
            outs.append(read_depth(out))
        np.testing.assert_allclose(outs[0], outs[1], atol=1e-6)
    r = CliRunner().invoke(
        main,
        [
            "segment",
            *(str(tmp_path / n) for n in variants),
            "-o",
            str(tmp_path / "seg"),
            "--weights",
            str(ws / "tiny_fcn.safetensors"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "seg").iterdir()) == sorted(
        f"{Path(n).stem}{s}.png" for n in variants for s in ("", "_overlay")
    )


def test_failed_training_keeps_an_existing_run_folder(ws, tmp_path):
    """Cleaning up after a failed start removes only a run folder the command itself created."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = CliRunner().invoke(main, [*TRAIN, "--data", f"folder:{ws / 'd_corrupt'}", "--out", str(out)])
    assert r.exit_code == 2 and "a.npy" in r.stderr
    assert (out / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------- library cases


def _lib(cid: str, call, exc: type, match: str, marks=()):
    return pytest.param(call, exc, match, id=cid, marks=marks)


_DEPTH = np.full((8, 12), 2.0, np.float32)
_GUIDE = np.random.default_rng(0).random((32, 48, 3)).astype(np.float32)
_X, _G, _W = torch.rand(1, 2, 8, 8), torch.rand(1, 3, 8, 8), torch.rand(4, 2, 3, 3)


def _bicubic():
    return create_model("bicubic")


def _tiny_fcn():
    return create_model("fcn8s_vgg16", **SEG_KW)


LIBRARY_CASES = [
    # densepac.io
    _lib("read_depth-missing", lambda w: read_depth(w / "nope.npy"), ValueError, "nope.npy.*check the path"),
    _lib("read_depth-directory", lambda w: read_depth(w / "outdir.npy"), ValueError, "outdir.npy is a directory"),
    _lib("read_depth-0-length", lambda w: read_depth(w / "zero_len.npy"), ValueError, r"zero_len.npy.*\(0,\)"),
    _lib("read_depth-truncated", lambda w: read_depth(w / "trunc.npy"), ValueError, "trunc.npy.*re-export"),
    _lib(
        "read_depth-depth-scale-0",
        lambda w: read_depth(w / "depth_rgb.png", depth_scale=0),
        ValueError,
        "depth_rgb.png",
    ),
    _lib("read_depth-path-not-str", lambda w: read_depth(12), TypeError, "int"),
    _lib("read_image-npy", lambda w: read_image(w / "guide.npy"), ValueError, "guide.npy.*use one of"),
    _lib("read_image-truncated", lambda w: read_image(w / "img_trunc.png"), ValueError, "img_trunc.png"),
    _lib("validate_depth-all-nan", lambda w: validate_depth(np.full((4, 4), np.nan), "d"), ValueError, "d: every"),
    _lib("validate_depth-strings", lambda w: validate_depth(np.array([["a"]]), "d"), ValueError, "dtype"),
    # densepac.inference
    _lib(
        "upsample_depth-3-d-depth",
        lambda w: upsample_depth(_bicubic(), _DEPTH[None], _GUIDE),
        ValueError,
        "depth_lr.*2-D",
    ),
    _lib(
        "upsample_depth-empty-depth",
        lambda w: upsample_depth(_bicubic(), np.zeros((0,)), _GUIDE),
        ValueError,
        "depth_lr",
    ),
    _lib(
        "upsample_depth-nan-depth", lambda w: upsample_depth(_bicubic(), _DEPTH * np.nan, _GUIDE), ValueError, "missing"
    ),
    _lib(
        "upsample_depth-negative-depth", lambda w: upsample_depth(_bicubic(), -_DEPTH, _GUIDE), ValueError, "negative"
    ),
    _lib(
        "upsample_depth-gray-guide",
        lambda w: upsample_depth(_bicubic(), _DEPTH, _GUIDE[..., 0]),
        ValueError,
        r"guide.*\(H, W, 3\).*read_image",
    ),
    _lib(
        "upsample_depth-rgba-guide",
        lambda w: upsample_depth(_bicubic(), _DEPTH, np.dstack([_GUIDE, _GUIDE])),
        ValueError,
        "guide",
    ),
    _lib(
        "upsample_depth-aspect",
        lambda w: upsample_depth(_bicubic(), _DEPTH, _GUIDE[:, :40]),
        ValueError,
        "32x40.*crop or resize",
    ),
    _lib(
        "upsample_depth-tensor-depth",
        lambda w: upsample_depth(_bicubic(), torch.ones(8, 12), _GUIDE),
        TypeError,
        "numpy",
    ),
    _lib(
        "upsample_depth-int-guide",
        lambda w: upsample_depth(_bicubic(), _DEPTH, _GUIDE.astype(np.int64)),
        TypeError,
        "dtype",
    ),
    _lib(
        "upsample_depth-segmentation-model",
        lambda w: upsample_depth(_tiny_fcn(), _DEPTH, _GUIDE),
        TypeError,
        "segmentation model",
    ),
    _lib(
        "upsample_depth-tile-negative",
        lambda w: upsample_depth(_bicubic(), np.ones((24, 24), np.float32), np.zeros((96, 96, 3), np.float32), tile=-1),
        ValueError,
        "tile=-1",
    ),
    _lib("segment_image-gray", lambda w: segment_image(_tiny_fcn(), _GUIDE[..., 0]), ValueError, "image"),
    _lib(
        "segment_image-0-size",
        lambda w: segment_image(_tiny_fcn(), np.zeros((0, 0, 3), np.float32)),
        ValueError,
        r"\(0, 0, 3\)",
    ),
    _lib("segment_image-depth-model", lambda w: segment_image(_bicubic(), _GUIDE), TypeError, "depth model"),
    # densepac.create_model
    _lib("create_model-unknown", lambda w: densepac.create_model("bicubik"), ValueError, "bicubic"),
    _lib("create_model-unknown-kwarg", lambda w: densepac.create_model("bicubic", radius=3), ValueError, "radius"),
    _lib(
        "create_model-classes-0",
        lambda w: densepac.create_model("fcn8s_vgg16", num_classes=0),
        ValueError,
        "num_classes=0",
    ),
    _lib(
        "create_model-scale-3",
        lambda w: densepac.create_model("pac_jointupsample_lite_x4", scale=3),
        ValueError,
        "scale",
    ),
    _lib(
        "create_model-other-architecture",
        lambda w: densepac.create_model("pac_jointupsample_lite_x4", weights=w / "tiny_fcn.safetensors"),
        ValueError,
        "tiny_fcn.*do not fit",
    ),
    _lib(
        "create_model-other-class-count",
        lambda w: densepac.create_model(
            "fcn8s_vgg16", weights=w / "tiny_fcn.safetensors", **{**SEG_KW, "num_classes": 5}
        ),
        ValueError,
        "tiny_fcn.*predicts 3 classes but the model has 5",
    ),
    _lib(
        "create_model-garbage-weights",
        lambda w: densepac.create_model("bicubic", weights=w / "garbage.safetensors"),
        ValueError,
        "garbage.safetensors",
    ),
    _lib(
        "create_model-no-shipped-weights",
        lambda w: densepac.create_model("fcn8s_vgg16", pretrained=True),
        ValueError,
        "no shipped weights",
    ),
    _lib("create_model-crf-on-depth", lambda w: densepac.create_model("bicubic+crf"), ValueError, "segmentation model"),
    _lib("create_model-name-not-str", lambda w: densepac.create_model(123), TypeError, "name"),
    # densepac.ops.pac_conv2d
    _lib("pac_conv2d-numpy-input", lambda w: pac_conv2d(_X.numpy(), _G, _W), TypeError, "input"),
    _lib("pac_conv2d-3-d-input", lambda w: pac_conv2d(_X[0], _G, _W), ValueError, "4-D"),
    _lib("pac_conv2d-guide-size", lambda w: pac_conv2d(_X, _G[..., :4], _W), ValueError, "guide"),
    _lib("pac_conv2d-guide-batch", lambda w: pac_conv2d(_X, _G.expand(2, -1, -1, -1), _W), ValueError, "batch"),
    _lib("pac_conv2d-weight-channels", lambda w: pac_conv2d(_X, _G, torch.rand(4, 3, 3, 3)), ValueError, "weight"),
    _lib("pac_conv2d-stride-0", lambda w: pac_conv2d(_X, _G, _W, stride=0), ValueError, "stride"),
    _lib("pac_conv2d-stride-float", lambda w: pac_conv2d(_X, _G, _W, stride=1.5), ValueError, "stride"),
    _lib("pac_conv2d-padding-negative", lambda w: pac_conv2d(_X, _G, _W, padding=-1), ValueError, "padding"),
    _lib("pac_conv2d-kernel-type", lambda w: pac_conv2d(_X, _G, _W, kernel_type="box"), ValueError, "kernel_type"),
    _lib(
        "pac_conv2d-input-1x1",
        lambda w: pac_conv2d(torch.rand(1, 2, 1, 1), torch.rand(1, 3, 1, 1), _W),
        ValueError,
        "too small",
    ),
    _lib("pac_conv2d-bias-2-d", lambda w: pac_conv2d(_X, _G, _W, bias=torch.rand(4, 1)), ValueError, "bias"),
    _lib("pac_conv2d-bias-length", lambda w: pac_conv2d(_X, _G, _W, bias=torch.rand(3)), ValueError, "bias"),
]


@pytest.mark.parametrize("call, exc, match", LIBRARY_CASES)
def test_library_bad_input(ws, call, exc, match):
    with pytest.raises(exc, match=match) as info:
        call(ws)
    assert isinstance(info.value, InputError), type(info.value)


def test_library_matrix_is_big_enough():
    assert len(LIBRARY_CASES) >= 30 and len({c.id for c in LIBRARY_CASES}) == len(LIBRARY_CASES)


def test_array_guides_convert_like_files():
    """uint8 / uint16 guide arrays are scaled to [0, 1], as the file readers do."""
    m = create_model("joint_bilateral")
    ref = upsample_depth(m, _DEPTH, np.round(_GUIDE * 255) / 255)
    np.testing.assert_allclose(upsample_depth(m, _DEPTH, np.round(_GUIDE * 255).astype(np.uint8)), ref, atol=1e-5)
    np.testing.assert_allclose(
        upsample_depth(m, _DEPTH, (np.round(_GUIDE * 255) * 257).astype(np.uint16)), ref, atol=1e-5
    )


def test_no_foreign_lines_on_the_real_stderr(ws):
    """What C libraries write to file descriptor 2 (libpng) and torch's unpickling advice never reach the user.

    CliRunner only sees Python's sys.stderr, so these run the real console entry point.
    """
    import subprocess
    import sys

    for args, needle in (
        (["upsample", ws / "depth.npy", ws / "guide_trunc_late.png", "-o", ws / "x.npy"], "truncated or corrupt"),
        (
            [
                "upsample",
                ws / "depth.npy",
                ws / "guide.png",
                "-o",
                ws / "x.npy",
                "--model",
                "pac_jointupsample_lite_x4",
                "--weights",
                ws / "pickled.pth",
            ],
            "refuses",
        ),
    ):
        r = subprocess.run([sys.executable, "-m", "densepac.cli", *map(str, args)], capture_output=True, text=True)
        assert r.returncode == 2 and needle in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "weights_only" not in r.stderr and "libpng" not in r.stderr, r.stderr
    assert not (ws / "x.npy").exists()
