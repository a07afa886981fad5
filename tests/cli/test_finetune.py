"""`densepac finetune`: staged fine-tuning of a hot-swapped FCN with a PAC-CRF, then `segment`."""

import json

import numpy as np
from click.testing import CliRunner

from densepac.cli import main
from densepac.io.images import read_label, write_image


def test_finetune_stages_export_and_segment(tmp_path):
    run = CliRunner().invoke
    common = [
        "--num-classes",
        "3",
        "--scene-size",
        "40",
        "--crop",
        "32",
        "--train-size",
        "2",
        "--val-size",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--arg",
        "widths=[4,4,8,8,8]",
        "--arg",
        "fc_channels=8",
    ]
    r = run(main, ["finetune", "--model", "fcn8s_vgg16", "--out", str(tmp_path / "fcn"), *common])
    assert r.exit_code == 0, r.output
    r = run(
        main,
        [
            "finetune",
            "--model",
            "fcn8s_vgg16",
            "--hot-swap",
            "--crf",
            "--stage",
            "crf_only",
            "--weights",
            str(tmp_path / "fcn"),
            "--out",
            str(tmp_path / "crf"),
            *common,
        ],
    )
    assert r.exit_code == 0, r.output
    r = run(
        main,
        [
            "finetune",
            "--model",
            "fcn8s_vgg16",
            "--hot-swap",
            "--crf",
            "--weights",
            str(tmp_path / "crf"),
            "--out",
            str(tmp_path / "joint"),
            "--export",
            str(tmp_path / "w"),
            *common,
        ],
    )
    assert r.exit_code == 0, r.output
    card_path = next((tmp_path / "w").glob("*.json"))
    card = json.loads(card_path.read_text())
    assert card["command"].startswith("densepac finetune --model fcn8s_vgg16")
    image = tmp_path / "a.png"
    write_image(image, np.random.default_rng(0).random((37, 41, 3)))
    r = run(
        main,
        ["segment", str(image), "-o", str(tmp_path / "seg"), "--weights", str(card_path.with_suffix(".safetensors"))],
    )
    assert r.exit_code == 0, r.output
    exported = read_label(tmp_path / "seg" / "a.png")
    assert exported.shape == (37, 41)
    # The run folder itself: its configuration names the hot-swapped FCN-8s with its CRF. The
    # export is the run's best checkpoint, so the labels are the same.
    for model in ([], ["--model", "pac_fcn8s_vgg16+crf"], ["--model", "pac_fcn8s_vgg16"]):  # its CRF either way
        r = run(
            main,
            [
                "segment",
                str(image),
                "-o",
                str(tmp_path / "run"),
                "--weights",
                str(tmp_path / "joint"),
                *model,
                "--overwrite",
            ],
        )
        assert r.exit_code == 0, r.output
        assert "pac_fcn8s_vgg16+crf" in r.stderr
        assert np.array_equal(read_label(tmp_path / "run" / "a.png"), exported)
    r = run(
        main,
        [
            "segment",
            str(image),
            "-o",
            str(tmp_path / "x"),
            "--weights",
            str(tmp_path / "joint"),
            "--model",
            "fcn_resnet50",
        ],
    )
    assert r.exit_code == 2 and "is a run of pac_fcn8s_vgg16+crf, not fcn_resnet50" in r.stderr


def test_finetune_bad_inputs(tmp_path):
    run = CliRunner().invoke
    r = run(main, ["finetune", "--model", "bicubic", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    r = run(main, ["finetune", "--stage", "crf_only", "--out", str(tmp_path / "y")])
    assert r.exit_code == 2 and "crf" in r.stderr
    r = run(main, ["finetune", "--weights", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "z")])
    assert r.exit_code == 2 and "nope.pt" in r.stderr


def test_crf_arguments_survive_export_and_reload(tmp_path):
    from densepac.inference import load_model_for_inference

    r = CliRunner().invoke(
        main,
        [
            "finetune",
            "--model",
            "fcn8s_vgg16",
            "--crf",
            "--crf-arg",
            "num_steps=2",
            "--crf-arg",
            "kernels=[[3,2]]",
            "--num-classes",
            "3",
            "--scene-size",
            "40",
            "--crop",
            "32",
            "--train-size",
            "2",
            "--val-size",
            "2",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--arg",
            "widths=[4,4,8,8,8]",
            "--arg",
            "fc_channels=8",
            "--out",
            str(tmp_path / "run"),
            "--export",
            str(tmp_path / "w"),
        ],
    )
    assert r.exit_code == 0, r.output
    weights = next((tmp_path / "w").glob("*.safetensors"))
    model = load_model_for_inference(None, weights)
    assert model.crf.num_steps == 2
