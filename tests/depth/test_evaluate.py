import pytest

from densepac.depth.datasets import make_depth_dataset
from densepac.depth.evaluate import compare_depth_models, format_table
from densepac.models import create_model


def test_compare_and_tables():
    data = make_depth_dataset("synthetic", "test", 4, num_scenes=2, size=(32, 48))
    rows = compare_depth_models({n: create_model(n) for n in ("bicubic", "joint_bilateral")}, data, progress=False)
    assert [r["model"] for r in rows] == ["bicubic", "joint_bilateral"]
    assert all(r["rmse_cm"] >= r["mae_cm"] > 0 and r["sec_per_mp"] > 0 for r in rows)
    md = format_table(rows)
    assert md.splitlines()[0].startswith("| model | RMSE (cm)") and len(md.splitlines()) == 4
    csv = format_table(rows, "csv").splitlines()
    assert csv[0] == "model,rmse_cm,mae_cm,absrel,delta1,sec_per_mp" and csv[1].startswith("bicubic,")
    with pytest.raises(ValueError):
        format_table(rows, "html")


def test_synthetic_splits_are_disjoint():
    """Train, val (checkpoint choice) and test (tables) scenes all differ."""
    splits = {
        s: make_depth_dataset("synthetic", s, 4, num_scenes=1, size=(32, 32))[0]["depth"]
        for s in ("train", "val", "test")
    }
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not (splits[a] == splits[b]).all(), (a, b)
