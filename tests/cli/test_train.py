"""`densepac train` -> export -> `densepac eval` / `upsample --weights` on a tiny run."""

import json

from click.testing import CliRunner

from densepac.cli import main


def test_train_export_eval(tmp_path):
    run = CliRunner().invoke
    out, export = tmp_path / "run", tmp_path / "weights"
    base = [
        "train",
        "--model",
        "pac_jointupsample_lite_x4",
        "--arg",
        "channels=8",
        "--train-size",
        "4",
        "--val-size",
        "2",
        "--batch-size",
        "2",
        "--crop",
        "32",
        "--loss",
        "l2",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    args = base + ["--epochs", "2", "--export", str(export)]
    r = run(main, args)
    assert r.exit_code == 0, r.output
    # Off a terminal too: one line per epoch with the training loss and the validation metrics.
    epochs = [line for line in r.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2 step 2", "epoch 2/2 step 4"], r.stderr
    assert all("train loss" in line and "| val rmse " in line for line in epochs)
    card = json.loads((export / "pac_jointupsample_lite_x4.json").read_text())
    assert card["kwargs"] == {"scale": 4, "channels": 8} and card["steps"] == 4
    assert set(card["metrics"]) == {"bicubic", "guided_filter", "joint_bilateral", "pac_jointupsample_lite_x4"}
    assert card["command"].startswith("densepac train --model pac_jointupsample_lite_x4")
    assert "--arg channels=8" in card["command"] and "--train-size 4" in card["command"]
    assert "--loss l2" in card["command"]
    # Starting again in the same folder without --resume is refused; with it, training goes on.
    r = run(main, args)
    assert r.exit_code == 2 and "resume" in r.stderr
    r = run(main, base + ["--epochs", "3", "--resume"])
    assert r.exit_code == 0, r.output
    assert "step 6" in r.stderr
    weights = export / "pac_jointupsample_lite_x4.safetensors"
    # The model card beside the weights supplies channels=8.
    r = run(
        main,
        [
            "eval",
            "--models",
            "bicubic",
            "--weights",
            f"pac_jointupsample_lite_x4={weights}",
            "--scale",
            "4",
            "--num-scenes",
            "2",
            "--csv",
            str(tmp_path / "t.csv"),
        ],
    )
    assert r.exit_code == 0, r.output
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["bicubic", "pac_jointupsample_lite_x4"]
    # Without its card, the default width (16) does not fit the file, and the error says so.
    bare = tmp_path / "bare.safetensors"
    bare.write_bytes(weights.read_bytes())
    r = run(
        main,
        [
            "eval",
            "--models",
            "bicubic",
            "--weights",
            f"pac_jointupsample_lite_x4={bare}",
            "--scale",
            "4",
            "--num-scenes",
            "2",
        ],
    )
    assert r.exit_code == 2 and "do not fit" in r.stderr


def test_train_refuses_non_learned_and_bad_args(tmp_path):
    run = CliRunner().invoke
    r = run(main, ["train", "--model", "bicubic", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "nothing to train" in r.stderr
    r = run(main, ["train", "--model", "pac_jointupsample_x4", "--arg", "oops", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "key=value" in r.stderr
    r = run(main, ["train", "--model", "pac_jointupsample_x8", "--crop", "36", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "multiple of the scale" in r.stderr


def test_loss_choices_are_the_engines():
    from densepac.engine.tasks import DEPTH_LOSSES

    option = next(p for p in main.commands["train"].params if p.name == "loss")
    assert tuple(option.type.choices) == DEPTH_LOSSES


def test_eval_compares_the_shipped_default_with_the_baselines(tmp_path):
    from densepac.depth.inference import default_depth_model

    r = CliRunner().invoke(main, ["eval", "--scale", "4", "--num-scenes", "1", "--csv", str(tmp_path / "t.csv")])
    assert r.exit_code == 0, r.output
    rows = [row.split(",")[0] for row in (tmp_path / "t.csv").read_text().splitlines()[1:]]
    assert rows == ["bicubic", "guided_filter", "joint_bilateral", default_depth_model(4)]
    # The default is chosen on the real scene (scripts/pick_default_depth.py): a shipped model or graph_sr.
    assert default_depth_model(4) in {
        "graph_sr",
        "pac_learned_jbu_x4",
        "pac_jointupsample_jbu_x4",
        "pac_jointupsample_x4",
    }


def test_run_folder_keeps_the_last_and_the_best_checkpoint_only(tmp_path):
    out = tmp_path / "run"
    args = [
        "train",
        "--model",
        "pac_jointupsample_lite_x4",
        "--arg",
        "channels=4",
        "--train-size",
        "8",
        "--val-size",
        "2",
        "--batch-size",
        "2",
        "--crop",
        "32",
        "--epochs",
        "3",
        "--checkpoint-every",
        "3",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    kept = sorted(p.name for p in (out / "checkpoints").iterdir() if p.is_dir())
    best = json.loads((out / "checkpoints" / "best.json").read_text())["name"]
    last = json.loads((out / "checkpoints" / "last.json").read_text())["name"]
    assert last == "step-00000012" and set(kept) == {best, last}, kept


def test_train_starts_from_weights(tmp_path):
    """--weights: a run starts from an exported file or a run folder; weights of another shape are refused."""
    import pytest
    import torch

    from densepac.depth.recipe import DepthTrainConfig
    from densepac.engine.checkpoint import load_state_dict_safe
    from densepac.errors import InputError

    run = CliRunner().invoke
    first, tuned, export = tmp_path / "first", tmp_path / "tuned", tmp_path / "weights"
    base = ["train", "--model", "pac_jointupsample_lite_x4", "--arg", "channels=8", "--train-size", "2"]
    base += ["--val-size", "1", "--batch-size", "2", "--crop", "32", "--epochs", "1", "--device", "cpu"]
    r = run(main, base + ["--out", str(first), "--export", str(export)])
    assert r.exit_code == 0, r.output
    weights = export / "pac_jointupsample_lite_x4.safetensors"
    saved = load_state_dict_safe(weights)
    for source in (weights, first):
        cfg = DepthTrainConfig(
            model="pac_jointupsample_lite_x4", model_kwargs={"channels": 8}, out=str(tuned), weights=str(source)
        )
        start = cfg.build_model().state_dict()
        assert start.keys() == saved.keys()
        assert all(torch.equal(start[k], saved[k]) for k in saved)
    with pytest.raises(InputError, match="do not fit"):
        DepthTrainConfig(model="pac_jointupsample_lite_x4", out=str(tuned), weights=str(weights)).build_model()
    r = run(main, base + ["--out", str(tuned), "--weights", str(weights), "--export", str(tmp_path / "w2")])
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "w2" / "pac_jointupsample_lite_x4.json").read_text())
    assert f"--weights {weights}" in card["command"] and f"started from {weights}" in card["data"]
