"""Segmentation fine-tuning recipes: data specs, pretrained-weight formats, hot-swap, PAC-CRF stages."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from densepac.depth.datasets import SYNTHETIC_TEST_SEED_OFFSET
from densepac.engine.checkpoint import Checkpoint, load_checkpoint, resolve_checkpoint, save_checkpoint
from densepac.errors import InputError, WeightsError
from densepac.models import create_model, swapped_layers
from densepac.ops.crf import CRFWrapped
from densepac.segmentation.datasets import make_seg_dataset
from densepac.segmentation.models.fcn import FCN8s
from densepac.segmentation.pretrained import detect_weights_format, load_pretrained
from densepac.segmentation.recipe import (
    SegFinetuneConfig,
    build_seg_architecture,
    build_seg_model,
    build_seg_trainer,
    export_seg_weights,
    finetune_segmentation,
    model_of_run,
)

TINY = {"widths": [4, 8, 8, 16, 16], "fc_channels": 16}
K = 3


def _cfg(out: Path, **overrides) -> SegFinetuneConfig:
    """A run of two 32 px steps on a thin FCN-8s with a one-step CRF, validated on one 40 px scene."""
    base = dict(
        model="fcn8s_vgg16",
        out=str(out),
        num_classes=K,
        crop=32,
        scene_size=40,
        train_size=2,
        val_size=1,
        epochs=1,
        batch_size=1,
        lr=1e-3,
        crf_lr=1e-2,
        model_kwargs=dict(TINY),
        crf_kwargs={"num_steps": 1},
    )
    return SegFinetuneConfig(**{**base, **overrides})


def _plain_fcn(num_classes: int = K, seed: int = 0) -> FCN8s:
    """A thin FCN-8s with non-zero score layers, so its logits vary over the image."""
    torch.manual_seed(seed)
    model = FCN8s(num_classes, **TINY)
    for score in (model.score_fr, model.score_pool4, model.score_pool3):
        torch.nn.init.normal_(score.weight, std=0.5)
        torch.nn.init.normal_(score.bias, std=0.1)
    return model.eval()


def _save(model: torch.nn.Module, path: Path) -> Path:
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _image(size: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _tiny_torchvision_vgg(layout: str = "D") -> torch.nn.Module:
    """torchvision's own VGG module (so torchvision names the keys) on thin widths."""
    from torchvision.models.vgg import VGG, cfgs, make_layers

    thin = {64: 4, 128: 8, 256: 8, 512: 16}
    torch.manual_seed(3)
    vgg = VGG(make_layers([v if v == "M" else thin[v] for v in cfgs[layout]]), init_weights=False)
    fc = TINY["fc_channels"]
    # Same layer indices as torchvision's 4096-wide classifier, thin enough for a test.
    vgg.classifier = torch.nn.Sequential(
        torch.nn.Linear(16 * 49, fc),
        torch.nn.ReLU(True),
        torch.nn.Dropout(),
        torch.nn.Linear(fc, fc),
        torch.nn.ReLU(True),
        torch.nn.Dropout(),
        torch.nn.Linear(fc, 1000),
    )
    for p in vgg.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return vgg.eval()


# --------------------------------------------------------------------------- data


def test_synthetic_val_split_uses_its_own_seed_stream():
    train = make_seg_dataset("synthetic", "train", num_classes=K, size=32, num_scenes=2, seed=5)
    val = make_seg_dataset("synthetic", "val", num_classes=K, size=32, num_scenes=2, seed=5)
    assert train.seed == 5 and val.seed == 5 + SYNTHETIC_TEST_SEED_OFFSET
    assert make_seg_dataset("synthetic:9", "train", num_classes=K, size=(32, 48), num_scenes=1).seed == 9
    item = val[0]
    assert item["image"].shape == (3, 32, 32) and item["label"].dtype == torch.int64
    assert int(item["label"].max()) < K


@pytest.mark.parametrize(
    "spec, match",
    [
        ("nyu:x", "unknown segmentation data source"),
        ("voc", "needs a path"),
        ("folder:/no/such/dir", "does not exist"),
        ("synthetic:abc", "seed must be an integer"),
    ],
)
def test_bad_data_specs(spec, match):
    with pytest.raises(InputError, match=match):
        make_seg_dataset(spec, "train", num_classes=K)


def test_folder_spec_prefers_the_split_subfolder(tmp_path):
    import cv2
    import numpy as np

    for split in ("train", "val"):
        (tmp_path / split / "images").mkdir(parents=True)
        (tmp_path / split / "masks").mkdir()
        for i in range(2 if split == "train" else 1):
            cv2.imwrite(str(tmp_path / split / "images" / f"{i}.png"), np.zeros((20, 24, 3), np.uint8))
            cv2.imwrite(str(tmp_path / split / "masks" / f"{i}.png"), np.full((20, 24), i, np.uint8))
    assert len(make_seg_dataset(f"folder:{tmp_path}", "train", num_classes=K)) == 2
    assert len(make_seg_dataset(f"folder:{tmp_path}", "val", num_classes=K)) == 1


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"stage": "crf_only"}, "also set crf=True"),
        ({"stage": "warmup"}, "stage='warmup' is unknown"),
        ({"model_kwargs": {"num_classes": 4}}, "model_kwargs sets 'num_classes'"),
        ({"model": "pac_jointupsample_x8"}, "not a segmentation model"),
        ({"model": "fcn8s_vgg16+crf"}, "crf=True"),
        ({"num_classes": 1}, "num_classes=1"),
        ({"crf": True, "crf_kwargs": {"num_stepz": 2}}, "crf_kwargs"),
    ],
)
def test_config_errors(tmp_path, overrides, match):
    with pytest.raises(InputError, match=match):
        build_seg_model(_cfg(tmp_path / "run", **overrides))


def test_command_reproduces_the_config(tmp_path):
    cfg = _cfg(tmp_path / "my run", weights="w b.pth", hot_swap=True, crf=True, stage="crf_only")
    argv = shlex.split(cfg.command(export="weights"))
    assert argv[:2] == ["densepac", "finetune"]
    flags = dict(zip(argv[2::2], argv[3::2]))
    assert "--hot-swap" in argv and "--crf" in argv
    assert argv[argv.index("--weights") + 1] == "w b.pth" and argv[argv.index("--out") + 1] == str(tmp_path / "my run")
    assert flags.get("--stage") == "crf_only" and argv[argv.index("--crf-lr") + 1] == "0.01"
    assert f"widths={json.dumps(TINY['widths'])}" in argv and "num_steps=1" in argv
    assert argv[-2:] == ["--export", "weights"]
    assert cfg.arch() == "pac_fcn8s_vgg16+crf"


# --------------------------------------------------------------------------- training


def test_two_step_finetune_writes_checkpoints_and_exports(tmp_path):
    cfg = _cfg(tmp_path / "run", crf=True)
    result = finetune_segmentation(cfg, progress=False)
    assert result.step == 2 and not result.interrupted
    assert result.checkpoint is not None and result.checkpoint.is_dir()
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints")
    assert ckpt.step == 2 and ckpt.config["model"] == "fcn8s_vgg16" and ckpt.config["crf"] is True
    assert any(k.startswith("crf.") for k in ckpt.model) and "miou" in ckpt.metrics
    events = [json.loads(line)["event"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert "eval" in events
    with pytest.raises(InputError, match="already holds checkpoints"):
        finetune_segmentation(cfg, progress=False)

    path = export_seg_weights(cfg, tmp_path / "weights")
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["arch"] == "fcn8s_vgg16+crf" and card["kwargs"]["num_classes"] == K
    assert set(card["metrics"]["fcn8s_vgg16+crf"]) >= {"miou", "boundary_miou", "pixel_acc"}
    assert card["command"].startswith("densepac finetune") and card["steps"] == 2


def test_joint_stage_gives_the_crf_its_own_learning_rate(tmp_path):
    trainer = build_seg_trainer(_cfg(tmp_path / "run", crf=True, lr=1e-4, crf_lr=5e-3))
    model = trainer.model
    assert isinstance(model, CRFWrapped)
    groups = trainer.optimizer.param_groups
    crf_ids = {id(p) for p in model.crf.parameters()}
    by_lr = {g["initial_lr"]: {id(p) for p in g["params"]} for g in groups}
    assert by_lr[5e-3] == crf_ids
    assert by_lr[1e-4] == {id(p) for p in model.model.parameters() if p.requires_grad}


def test_crf_only_then_joint_staged_training(tmp_path):
    start = _save(_plain_fcn(), tmp_path / "fcn.safetensors")
    stage1 = _cfg(tmp_path / "crf", weights=str(start), crf=True, stage="crf_only")
    trainer = build_seg_trainer(stage1)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert all(torch.equal(before[f"model.{k}"], v) for k, v in _plain_fcn().state_dict().items())
    assert all(not p.requires_grad for p in trainer.model.model.parameters())
    trainer.fit()
    after = load_checkpoint(tmp_path / "crf" / "checkpoints").model
    backbone = [k for k in before if k.startswith("model.")]
    assert backbone and all(torch.equal(before[k], after[k]) for k in backbone)
    crf = [k for k in before if k.startswith("crf.")]
    assert any(not torch.equal(before[k], after[k]) for k in crf)
    card = json.loads(export_seg_weights(stage1, tmp_path / "w", "stage1").with_suffix(".json").read_text())
    assert set(card["metrics"]) == {"fcn8s_vgg16+crf", "start"} and card["stage"] == "crf_only"

    # Stage 2 starts from the stage-1 run folder, backbone and CRF alike, and trains both.
    stage2 = dataclasses.replace(stage1, out=str(tmp_path / "joint"), weights=str(tmp_path / "crf"), stage="joint")
    model = build_seg_model(stage2)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in after.items())
    assert all(p.requires_grad for p in model.parameters())
    finetune_segmentation(stage2, progress=False)
    final = load_checkpoint(tmp_path / "joint" / "checkpoints").model
    assert any(not torch.equal(final[k], after[k]) for k in backbone)


# --------------------------------------------------------------------------- hot-swap


@pytest.mark.parametrize(
    "model_name, source", [("fcn8s_vgg16", "file"), ("fcn8s_vgg16", "checkpoint"), ("pac_fcn8s_vgg16", "file")]
)
def test_hot_swapped_model_starts_with_the_plain_fcn_logits(tmp_path, model_name, source):
    fcn = _plain_fcn()
    if source == "file":
        weights = _save(fcn, tmp_path / "fcn.safetensors")
    else:
        save_checkpoint(tmp_path / "run" / "checkpoints", Checkpoint(model=fcn.state_dict(), step=7))
        weights = tmp_path / "run"
    model = build_seg_model(_cfg(tmp_path / "out", model=model_name, hot_swap=True, weights=str(weights))).eval()
    assert swapped_layers(model) == ["features.conv3_3", "features.conv4_3", "features.conv5_3"]
    assert torch.equal(model.features.conv3_3.pac.weight, fcn.features.conv3_3.weight)
    x = _image()
    with torch.no_grad():
        expected, got = fcn(x), model(x)
    assert expected.std() > 1e-2  # the comparison would be empty on constant logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


@pytest.mark.parametrize(
    "name", ["fcn_resnet50", "lraspp_mobilenet_v3_large", "smp_unet", "fcn8s", "dla_up", "shape_adaptor"]
)
def test_every_family_has_a_hot_swap_recipe_that_keeps_its_logits(name):
    """The recipe swaps three deep convolutions for PAC guided by an early layer; the model starts where it was."""
    from densepac.models import hot_swap, swapped_layers

    torch.manual_seed(0)
    kwargs = {"encoder_name": "shape_adaptor_resnet18"} if name == "shape_adaptor" else {}
    model = create_model("fcn8s" if name == "shape_adaptor" else name, num_classes=5, **kwargs).eval()
    for m in model.modules():  # score layers that start at zero would hide any change
        if isinstance(m, torch.nn.Conv2d) and m.out_channels == 5:
            torch.nn.init.normal_(m.weight, std=0.1)
    targets, guide = model.hot_swap_recipe()
    assert len(targets) == 3 and guide not in targets
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model(image)
        hot_swap(model, targets, guide)
        after = model(image)
    assert swapped_layers(model) == targets
    torch.testing.assert_close(after, before, rtol=0, atol=1e-4 * before.abs().max().item())


def test_hot_swap_and_swap_override_for_any_model(tmp_path):
    from densepac.models import swapped_layers

    cfg = _cfg(tmp_path / "run", model="fcn8s", model_kwargs={}, hot_swap=True)
    assert swapped_layers(build_seg_model(cfg)) == [
        "encoder.layer2.1.conv2",
        "encoder.layer3.1.conv2",
        "encoder.layer4.1.conv2",
    ]
    one = dataclasses.replace(cfg, swap="encoder.layer4.1.conv2", guide="encoder.layer2")
    assert swapped_layers(build_seg_model(one)) == ["encoder.layer4.1.conv2"]
    with pytest.raises(InputError, match="hot_swap=True"):
        build_seg_model(dataclasses.replace(cfg, hot_swap=False, swap="encoder.layer4.1.conv2"))


def test_swapped_weights_need_a_swapped_model(tmp_path):
    swapped = build_seg_model(_cfg(tmp_path / "a", hot_swap=True))
    path = _save(swapped, tmp_path / "pac.safetensors")
    with pytest.raises(WeightsError, match="hot-swapped PAC model.*hot_swap=True"):
        build_seg_model(_cfg(tmp_path / "b", weights=str(path)))


# --------------------------------------------------------------------------- weight errors


def test_another_class_count_keeps_everything_but_the_class_layers(tmp_path, caplog):
    """`finetune --num-classes` different from the checkpoint: the head starts fresh, with a note."""
    source = _plain_fcn(num_classes=3)
    path = _save(source, tmp_path / "k3.safetensors")
    with caplog.at_level("WARNING"):
        model = build_seg_model(_cfg(tmp_path / "run", num_classes=4, weights=str(path)))
    assert "predicts 3 classes, the model 4" in caplog.text and "score_fr.weight" in caplog.text
    torch.testing.assert_close(model.features.conv1_1.weight, source.features.conv1_1.weight)
    assert model.score_fr.weight.shape[0] == 4
    crf = build_seg_model(_cfg(tmp_path / "run", num_classes=5, crf=True, weights=str(path)))
    torch.testing.assert_close(crf.model.fc6.weight, source.fc6.weight)
    # Inference is stricter: a head of another class count is named, not silently replaced.
    with pytest.raises(InputError, match=r"predicts 3 classes but the model has 4; set num_classes=3"):
        create_model("fcn8s_vgg16", weights=path, **{**TINY, "num_classes": 4})


def test_state_dict_of_another_architecture_is_refused(tmp_path):
    other = create_model("pac_jointupsample_x8")
    torch.save(other.state_dict(), tmp_path / "depth.pt")
    with pytest.raises(WeightsError, match=r"do not fit model 'fcn8s_vgg16'.*missing keys"):
        build_seg_model(_cfg(tmp_path / "run", weights=str(tmp_path / "depth.pt")))
    thinner = FCN8s(K, widths=(2, 4, 4, 8, 8), fc_channels=8)
    path = _save(thinner, tmp_path / "thin.safetensors")
    with pytest.raises(WeightsError, match="shape mismatch"):
        build_seg_model(_cfg(tmp_path / "run", weights=str(path)))


def test_crf_weights_need_a_crf_model(tmp_path):
    path = _save(build_seg_model(_cfg(tmp_path / "a", crf=True)), tmp_path / "crf.safetensors")
    with pytest.raises(WeightsError, match=r"PAC-CRF.*crf=True"):
        build_seg_model(_cfg(tmp_path / "b", weights=str(path)))


@pytest.mark.parametrize("make", [lambda p: p / "missing.pth", lambda p: p])
def test_missing_weights_are_input_errors(tmp_path, make):
    with pytest.raises(InputError, match="do not exist|holds no densepac checkpoint"):
        load_pretrained(_plain_fcn(), make(tmp_path))


# --------------------------------------------------------------------------- torchvision formats


def test_torchvision_vgg16_state_dict_is_detected_and_loaded(tmp_path):
    vgg = _tiny_torchvision_vgg()
    sd = vgg.state_dict()
    assert detect_weights_format(sd) == "vgg16"
    torch.save(sd, tmp_path / "vgg16.pth")
    cfg = _cfg(tmp_path / "run", hot_swap=True, crf=True, weights=str(tmp_path / "vgg16.pth"))
    model = build_seg_model(cfg).eval()
    fcn = model.model
    x = _image(32)
    with torch.no_grad():  # the PAC layers (guide_scale 1e-4) match their convs to ~1e-6 relative
        expected = vgg.features(fcn.normalize(x))
        got = fcn.features(fcn.normalize(x))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    torch.testing.assert_close(fcn.features.conv5_3.pac.weight, vgg.features[28].weight)
    torch.testing.assert_close(fcn.fc6.weight, vgg.classifier[0].weight.reshape(fcn.fc6.weight.shape))
    torch.testing.assert_close(fcn.fc7.weight[..., 0, 0], vgg.classifier[3].weight)
    assert torch.count_nonzero(fcn.score_fr.weight) == 0  # new head keeps the paper's zero init

    with pytest.raises(WeightsError, match="VGG16 weights, which fit fcn8s_vgg16"):
        load_pretrained(create_model("fcn_resnet50", num_classes=K), tmp_path / "vgg16.pth")
    torch.save(_tiny_torchvision_vgg("E").state_dict(), tmp_path / "vgg19.pth")
    with pytest.raises(WeightsError, match="16 convolutions, not VGG16's 13"):
        load_pretrained(_plain_fcn(), tmp_path / "vgg19.pth")


def test_torchvision_fcn_resnet_state_dicts(tmp_path):
    from torchvision.models import resnet50
    from torchvision.models.segmentation import fcn_resnet50

    torch.manual_seed(0)
    reference = fcn_resnet50(weights=None, weights_backbone=None, num_classes=K, aux_loss=True).eval()
    torch.save(reference.state_dict(), tmp_path / "fcn.pth")
    assert detect_weights_format(reference.state_dict()) == "torchvision_seg"
    model = create_model("fcn_resnet50", num_classes=K).eval()
    assert load_pretrained(model, tmp_path / "fcn.pth") == "torchvision_seg"  # aux head dropped
    x = _image(32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(model.normalize(x))["out"])
    with pytest.raises(InputError, match=f"predicts {K} classes but the model has 21"):
        load_pretrained(create_model("fcn_resnet50"), tmp_path / "fcn.pth")
    with pytest.raises(WeightsError, match="fcn_resnet50 weights, which fit fcn_resnet50"):
        load_pretrained(_plain_fcn(), tmp_path / "fcn.pth")

    imagenet = resnet50(weights=None)
    torch.save(imagenet.state_dict(), tmp_path / "resnet50.pth")
    assert load_pretrained(model, tmp_path / "resnet50.pth") == "resnet"
    torch.testing.assert_close(model.net.backbone.layer4[2].conv3.weight, imagenet.layer4[2].conv3.weight)


def test_a_hot_swapped_export_rebuilds_from_its_card(tmp_path):
    """Any family: the card records the swap, so `segment --weights` rebuilds the same PAC model."""
    from densepac.models import swapped_layers
    from densepac.models.weights import WeightsCard

    # 64 px: the ResNet's last stage keeps 2x2 features, enough for batch norm in training.
    cfg = _cfg(tmp_path / "run", model="fcn8s", model_kwargs={}, hot_swap=True, crop=64, scene_size=64)
    finetune_segmentation(cfg, progress=False)
    path = export_seg_weights(cfg, tmp_path / "weights")
    assert path.name == "pac_fcn8s.safetensors"  # hot-swapped, though the registry has no pac_fcn8s
    card = WeightsCard.from_json(path.with_suffix(".json"))
    assert card.arch == "fcn8s" and card.kwargs["hot_swap"]["targets"][-1] == "encoder.layer4.1.conv2"
    rebuilt = create_model(card.arch, weights=path, **card.kwargs).eval()
    trained = build_seg_architecture(cfg).eval()
    trained.load_state_dict(load_checkpoint(tmp_path / "run" / "checkpoints", which="best").model)
    assert swapped_layers(rebuilt) == swapped_layers(trained)
    image = _image()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(image), trained(image))
    # The run folder (or its checkpoints, one checkpoint, the model file in it) names the same model.
    best = resolve_checkpoint(tmp_path / "run" / "checkpoints", "best")
    for where in (tmp_path / "run", tmp_path / "run" / "checkpoints", best, best / "model.safetensors"):
        name, kwargs = model_of_run(where)
        assert (name, kwargs) == (card.arch, card.kwargs), where
        with torch.no_grad():
            torch.testing.assert_close(create_model(name, weights=where, **kwargs).eval()(image), trained(image))
    assert model_of_run(path) is None and model_of_run(tmp_path / "nothing") is None
