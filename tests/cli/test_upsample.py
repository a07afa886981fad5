"""The command line: success paths, bad inputs (one line, exit 2, no output), a real subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from densepac.cli import main
from densepac.io.depth import read_depth


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    depth = np.full((8, 12), 2.0, np.float32)
    depth[:, 6:] = 3.5
    depth[2, 3] = 0  # a hole
    rgb = (rng.random((32, 48, 3)) * 60).astype(np.uint8)
    rgb[:, 24:] += 150
    np.save(tmp_path / "depth.npy", depth)
    cv2.imwrite(str(tmp_path / "guide.png"), rgb)
    return tmp_path / "depth.npy", tmp_path / "guide.png"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_version_and_models():
    r = run("--version")
    assert r.exit_code == 0 and "densepac, version" in r.output
    r = run("models", "--task", "depth")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["name", "task", "params", "weights"]
    assert any(line.split()[:2] == ["joint_bilateral", "depth"] for line in lines)


@pytest.mark.parametrize("model", ["bicubic", "guided_filter", "joint_bilateral"])
def test_upsample_writes_depth_and_preview(pair, tmp_path, model):
    depth, guide = pair
    out, preview = tmp_path / "out.png", tmp_path / "preview.png"
    r = run("upsample", depth, guide, "-o", out, "--preview", preview, "--model", model, "--device", "cpu")
    assert r.exit_code == 0, r.output
    d = read_depth(out)
    assert d.shape == (32, 48) and (d > 0).all()
    assert abs(d[:, :20].mean() - 2.0) < 0.05 and abs(d[:, 28:].mean() - 3.5) < 0.05
    assert cv2.imread(str(preview)).shape == (32, 144, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depth.npy", "guide.png", "out.png", "preview.png"]


def _bad_cases(tmp: Path, depth: Path, guide: Path):
    (tmp / "empty.png").write_bytes(b"")
    (tmp / "notes.txt").write_text("hello")
    np.save(tmp / "small.npy", np.ones((5, 7), np.float32))
    np.save(tmp / "zeros.npy", np.zeros((8, 12), np.float32))
    np.save(tmp / "neg.npy", -np.ones((8, 12), np.float32))
    np.save(tmp / "chan.npy", np.ones((2, 8, 12), np.float32))
    (tmp / "adir").mkdir()
    (tmp / "exists.npy").write_bytes(b"keep")
    o = tmp / "out.npy"
    return {
        "missing depth": ([tmp / "nope.npy", guide, "-o", o], "nope.npy"),
        "missing guide": ([depth, tmp / "nope.png", "-o", o], "nope.png"),
        "empty png guide": ([depth, tmp / "empty.png", "-o", o], "empty.png"),
        "unknown extension": ([tmp / "notes.txt", guide, "-o", o], "notes.txt"),
        "directory as depth": ([tmp / "adir", guide, "-o", o], "adir"),
        "shape mismatch": ([tmp / "small.npy", guide, "-o", o], "not"),
        "non-integer scale": ([depth, guide, "-o", o, "--scale", "2.5"], "integer"),
        "absurd scale": ([depth, guide, "-o", o, "--scale", "1000"], "out of range"),
        "scale disagrees": ([depth, guide, "-o", o, "--scale", "2"], "not --scale 2"),
        "all missing": ([tmp / "zeros.npy", guide, "-o", o], "missing"),
        "negative depth": ([tmp / "neg.npy", guide, "-o", o], "negative"),
        "two channels": ([tmp / "chan.npy", guide, "-o", o], "chan.npy"),
        "unknown model": ([depth, guide, "-o", o, "--model", "bicubik"], "bicubic"),
        "segmentation weights missing": (
            [depth, guide, "-o", o, "--weights", tmp / "nope.safetensors", "--model", "bicubic"],
            "nope.safetensors",
        ),
        "output exists": ([depth, guide, "-o", tmp / "exists.npy"], "--overwrite"),
        "missing output dir": ([depth, guide, "-o", tmp / "no" / "out.npy"], "no"),
        "bad output extension": ([depth, guide, "-o", tmp / "out.txt"], "out.txt"),
        "bad device": ([depth, guide, "-o", o, "--device", "tpu"], "device"),
    }


def test_bad_inputs_one_line_exit_2_no_output(pair, tmp_path):
    depth, guide = pair
    cases = _bad_cases(tmp_path, depth, guide)
    before = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    for label, (args, needle) in cases.items():
        r = run("upsample", *args)
        err = r.stderr.strip()
        assert r.exit_code == 2, (label, r.output)
        assert len(err.splitlines()) == 1 and err.startswith("Error: "), (label, err)
        assert "Traceback" not in r.output, label
        assert needle in err, (label, err)
        after = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
        assert after == before, (label, set(after) ^ set(before))


def test_console_script_subprocess(pair, tmp_path):
    depth, guide = pair
    exe = Path(sys.executable).with_name("densepac")
    out = tmp_path / "o.pfm"
    r = subprocess.run(
        [str(exe), "upsample", str(depth), str(guide), "-o", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert read_depth(out).shape == (32, 48)
    r = subprocess.run(
        [str(exe), "upsample", str(depth), str(tmp_path / "x.png"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_sampling_and_refine_options(pair, tmp_path):
    """--no-refine runs the model alone; --sampling reaches the pipeline (bad values are usage errors)."""
    depth, guide = pair
    outs = {}
    variants = {"plain": ["--no-refine"], "point": ["--sampling", "point"], "area": ["--sampling", "area"]}
    for name, extra in variants.items():
        r = run("upsample", depth, guide, "-o", tmp_path / f"{name}.npy", "--model", "bicubic", *extra)
        assert r.exit_code == 0, r.output
        outs[name] = np.load(tmp_path / f"{name}.npy")
    assert not np.array_equal(outs["plain"], outs["area"]) and not np.array_equal(outs["point"], outs["area"])
    r = run("upsample", depth, guide, "-o", tmp_path / "x.npy", "--sampling", "nearest")
    assert r.exit_code == 2 and "--sampling" in r.output


def test_model_args_reach_the_model(tmp_path):
    """--arg overrides the model card's arguments (a one-member self-ensemble is the single forward)."""
    import torch

    from densepac.depth.inference import upsample_depth
    from densepac.io.images import read_image
    from densepac.models import create_model

    rng = np.random.default_rng(1)
    depth, guide, out = tmp_path / "depth.npy", tmp_path / "guide.png", tmp_path / "single.npy"
    np.save(depth, (rng.random((8, 12)) * 3 + 1).astype(np.float32))
    cv2.imwrite(str(guide), (rng.random((32, 48, 3)) * 255).astype(np.uint8))
    args = ["--model", "pac_learned_jbu_x4", "--no-refine"]
    r = run("upsample", depth, guide, "-o", out, *args, "--arg", "self_ensemble=1")
    assert r.exit_code == 0, r.output
    rgb, lr = read_image(guide), read_depth(depth, 1000.0)
    with torch.no_grad():
        single, ensemble = (
            upsample_depth(create_model("pac_learned_jbu_x4", pretrained=True, self_ensemble=n), lr, rgb)
            for n in (1, 4)
        )
    np.testing.assert_allclose(np.load(out), single, atol=1e-6)
    assert np.abs(single - ensemble).max() > 1e-3
    r = run("upsample", depth, guide, "-o", tmp_path / "x.npy", *args, "--arg", "nope=1")
    assert r.exit_code == 2 and "nope" in r.output
