"""``densepac export``: writes a checked ONNX file, refuses what cannot be exported."""

import numpy as np
import pytest
from click.testing import CliRunner

from densepac.cli import main

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def test_export_writes_a_graph_that_runs_like_the_model(tmp_path):
    out = tmp_path / "bicubic.onnx"
    r = CliRunner().invoke(main, ["export", "bicubic", "-o", str(out), "--scale", "4", "--size", "32x48"])
    assert r.exit_code == 0, r.output
    assert "onnxruntime matches PyTorch" in r.output and "depth_lr 1x1x8x12" in r.output
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["depth_lr", "guide"]
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 3, (1, 1, 8, 12)).astype(np.float32)
    (got,) = session.run(None, {"depth_lr": depth, "guide": rng.random((1, 3, 32, 48), dtype=np.float32)})
    assert got.shape == (1, 1, 32, 48)
    assert got.min() > 0.5 and got.max() < 3.5  # bicubic stays near the input's range

    again = CliRunner().invoke(main, ["export", "bicubic", "-o", str(out), "--scale", "4", "--size", "32x48"])
    assert again.exit_code != 0 and "--overwrite" in again.output

    # --dynamic: one graph for any batch and LR size.
    r = CliRunner().invoke(main, ["export", "bicubic", "-o", str(out), "--scale", "4", "--dynamic", "--overwrite"])
    assert r.exit_code == 0, r.output
    assert "depth_lr batchx1xheightxwidth" in r.output and "guide batchx3x4*heightx4*width" in r.output
    assert "the worse of two sizes and batches" in r.output
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.shape for i in session.get_inputs()] == [
        ["batch", 1, "height", "width"],
        ["batch", 3, "4*height", "4*width"],
    ]
    assert session.get_outputs()[0].shape == ["batch", 1, "4*height", "4*width"]
    for n, h, w in [(1, 8, 12), (3, 5, 7)]:
        depth = rng.uniform(1, 3, (n, 1, h, w)).astype(np.float32)
        (got,) = session.run(None, {"depth_lr": depth, "guide": rng.random((n, 3, 4 * h, 4 * w), dtype=np.float32)})
        assert got.shape == (n, 1, 4 * h, 4 * w)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bicubic", "--size", "32x48"], "--scale"),
        (["bicubic", "--scale", "4", "--size", "30x48"], "multiples of the scale"),
        (["bicubic", "--scale", "4", "--size", "big"], "HxW"),
        (["graph_sr", "--scale", "4", "--size", "32x48"], "--sampling point"),
        (["bicubic", "--scale", "4", "--size", "32x48", "--sampling", "area"], "--sampling is for graph_sr"),
        (["bicubic", "--scale", "8", "--size", "8x8"], "e.g. --size 32x32"),
        (["no_such_model", "--scale", "4"], "no_such_model"),
    ],
)
def test_export_bad_requests_write_nothing(tmp_path, args, message):
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(main, ["export", *args, "-o", str(out)])
    assert r.exit_code != 0
    assert message in r.output
    assert "Traceback" not in r.output
    assert not out.exists()
