import pytest

from densepac.data.sources import make_depth_dataset
from densepac.engine.compare import compare_depth_models, format_table
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


def test_synthetic_test_split_differs_from_train():
    train = make_depth_dataset("synthetic", "train", 4, num_scenes=1, size=(32, 32))
    test = make_depth_dataset("synthetic", "test", 4, num_scenes=1, size=(32, 32))
    assert not (train[0]["depth"] == test[0]["depth"]).all()
