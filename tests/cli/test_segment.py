"""`densepac segment`: label PNGs and overlays, weights with their card, bad inputs."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from densepac.cli import main
from densepac.io.images import read_image, read_label, write_image
from densepac.models import create_model, save_weights

KW = {"num_classes": 3, "widths": [4, 4, 8, 8, 8], "fc_channels": 8}


@pytest.fixture
def setup(tmp_path):
    torch.manual_seed(0)
    weights = save_weights(create_model("fcn8s_vgg16", **KW), "tiny_fcn", "fcn8s_vgg16", tmp_path, kwargs=KW)
    rng = np.random.default_rng(0)
    images = []
    for i, size in enumerate([(33, 40), (48, 29)]):
        path = tmp_path / f"img{i}.png"
        write_image(path, rng.random((*size, 3)).astype(np.float32))
        images.append(path)
    return weights, images


def test_segment_writes_labels_and_overlays(setup, tmp_path):
    weights, images = setup
    out = tmp_path / "out"
    for extra in ([], ["--crf", "--overwrite"]):
        r = CliRunner().invoke(
            main, ["segment", *map(str, images), "-o", str(out), "--weights", str(weights), "--device", "cpu", *extra]
        )
        assert r.exit_code == 0, r.output
        for i, size in enumerate([(33, 40), (48, 29)]):
            labels = read_label(out / f"img{i}.png")
            assert labels.shape == size and labels.max() < 3
            assert (out / f"img{i}_overlay.png").is_file()


def test_segment_bad_inputs(setup, tmp_path):
    weights, images = setup
    run = lambda *a: CliRunner().invoke(main, ["segment", *map(str, a)])
    cases = [
        ((tmp_path / "missing.png", "-o", tmp_path / "o2", "--weights", weights), "no such image"),
        ((tmp_path / "notes.txt", "-o", tmp_path / "o3", "--weights", weights), "not an image"),
        (("-o", tmp_path / "o4", "--weights", weights), "no IMAGE"),
        ((images[0], "-o", tmp_path / "no" / "dir", "--weights", weights), "does not exist"),
        ((images[0], "-o", tmp_path / "o5", "--model", "bicubic"), "depth model"),
        (
            (images[0], "-o", tmp_path / "o6", "--weights", weights, "--arg", "num_classes=5"),
            "predicts 3 classes but the model has 5",
        ),
    ]
    for args, needle in cases:
        r = run(*args)
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, (needle, r.stderr)
    out = tmp_path / "o7"
    assert run(images[0], "-o", out, "--weights", weights).exit_code == 0
    r = run(images[0], "-o", out, "--weights", weights)
    assert r.exit_code == 2 and "--overwrite" in r.stderr


def test_segment_without_model_uses_the_shipped_default(setup, tmp_path, monkeypatch):
    from densepac.models.weights import shipped_card

    _, images = setup
    r = CliRunner().invoke(main, ["segment", str(images[0]), "-o", str(tmp_path / "out"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    card = shipped_card("pac_fcn8s_vgg16_crf")
    assert card.default and f"with {card.arch}" in r.stderr
    assert read_label(tmp_path / "out" / "img0.png").max() < card.kwargs["num_classes"]
    # Without a default (an install that ships none), the error says what to give.
    monkeypatch.setattr("densepac.segmentation.inference.default_segmentation_weights", lambda: None)
    r = CliRunner().invoke(main, ["segment", str(images[0]), "-o", str(tmp_path / "o1")])
    assert r.exit_code == 2 and "no model given" in r.stderr


def test_segment_cam_writes_attention_overlays(setup, tmp_path):
    from densepac.io.images import read_image

    weights, images = setup
    out = tmp_path / "cam"
    args = ["segment", *map(str, images), "-o", str(out), "--weights", str(weights), "--device", "cpu", "--cam"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"img{i}{s}.png" for i in range(2) for s in ("", "_overlay", "_cam")
    )
    for i, size in enumerate([(33, 40), (48, 29)]):
        cam = read_image(out / f"img{i}_cam.png")
        assert cam.shape == (*size, 3)
        assert np.abs(cam - read_image(images[i])).max() > 0.1  # the heatmap is blended in
    r = CliRunner().invoke(main, args + ["--overwrite", "--cam-layer", "features.conv3_3"])
    assert r.exit_code == 0, r.output


def test_no_crf_runs_crf_weights_without_their_crf(tmp_path):
    """`--no-crf` on weights of a +crf model: the base model alone; no flag: as the card says."""
    import torch

    from densepac.models import create_model, save_weights
    from densepac.ops.crf import CRFWrapped

    kw = {"num_classes": 3, "widths": [4, 4, 8, 8, 8], "fc_channels": 8}
    torch.manual_seed(0)
    model = create_model("fcn8s_vgg16+crf", **kw)
    path = save_weights(model, "tiny_crf", "fcn8s_vgg16+crf", tmp_path, kwargs=kw)
    write_image(tmp_path / "a.png", np.random.default_rng(0).random((40, 48, 3)))
    from densepac.segmentation.inference import segment_files

    with_crf = segment_files([tmp_path / "a.png"], tmp_path / "o1", weights=path, device="cpu")
    without = segment_files([tmp_path / "a.png"], tmp_path / "o2", weights=path, crf=False, device="cpu")
    assert with_crf.model == "fcn8s_vgg16+crf" and without.model == "fcn8s_vgg16"
    base = create_model("fcn8s_vgg16+crf", weights=path, **kw)
    assert isinstance(base, CRFWrapped)
    expected = base.model.eval()(torch.from_numpy(read_image(tmp_path / "a.png")).permute(2, 0, 1)[None]).argmax(1)[0]
    np.testing.assert_array_equal(read_label(tmp_path / "o2" / "a.png"), expected.numpy())
