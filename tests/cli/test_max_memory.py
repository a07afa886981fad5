"""``--max-memory`` through the CLI."""

import numpy as np
import torch
from click.testing import CliRunner

from densepac.models import create_model


def test_cli_max_memory(tmp_path):
    from densepac.cli import main
    from densepac.io.depth import read_depth
    from densepac.io.images import read_label, write_image
    from densepac.models import save_weights

    rng = np.random.default_rng(0)
    lr, rgb = (rng.random((8, 12)) + 1).astype(np.float32), rng.random((32, 48, 3)).astype(np.float32)
    np.save(tmp_path / "d.npy", lr)
    write_image(tmp_path / "g.png", rgb)
    run = lambda *a: CliRunner().invoke(main, [str(v) for v in a])
    up = ["upsample", tmp_path / "d.npy", tmp_path / "g.png", "--model", "joint_bilateral", "--device", "cpu"]
    assert run(*up, "-o", tmp_path / "a.npy").exit_code == 0
    r = run(*up, "-o", tmp_path / "b.npy", "--max-memory", "64GiB")
    assert r.exit_code == 0, r.output
    assert "memory budget" not in r.stderr
    r = run("-v", *up, "-o", tmp_path / "b.npy", "--max-memory", "64GiB", "--overwrite")  # the plan, on request
    assert r.exit_code == 0 and "memory budget 65536 MiB: the whole" in r.stderr, r.output
    np.testing.assert_array_equal(read_depth(tmp_path / "b.npy"), read_depth(tmp_path / "a.npy"))
    for bad, message in [("lots", "not a memory size"), ("2XB", "unknown unit"), ("0", "not a positive")]:
        r = run(*up, "-o", tmp_path / "c.npy", "--max-memory", bad)
        assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = run(*up, "-o", tmp_path / "c.npy", "--max-memory", "1MiB")
    assert r.exit_code == 2 and "too small for joint_bilateral" in r.output and "give at least" in r.output
    r = run(*up, "-o", tmp_path / "c.npy", "--max-memory", "1GiB", "--tile", "8")
    assert r.exit_code == 2 and "both given" in r.output
    assert not (tmp_path / "c.npy").exists()

    torch.manual_seed(0)
    kw = {"num_classes": 3, "widths": [4, 4, 8, 8, 8], "fc_channels": 8}
    weights = save_weights(create_model("fcn8s_vgg16", **kw), "tiny_fcn", "fcn8s_vgg16", tmp_path, kwargs=kw)
    seg = ["segment", tmp_path / "g.png", "--weights", weights, "--device", "cpu"]
    assert run(*seg, "-o", tmp_path / "s1").exit_code == 0
    r = run(*seg, "-o", tmp_path / "s2", "--max-memory", "64GiB", "--crf")
    assert r.exit_code == 0, r.output
    assert read_label(tmp_path / "s2" / "g.png").shape == (32, 48)
    r = run(*seg, "-o", tmp_path / "s3", "--max-memory", "1MiB")
    assert r.exit_code == 2 and "too small for fcn8s_vgg16" in r.output, r.output
    assert not (tmp_path / "s3" / "g.png").exists()
