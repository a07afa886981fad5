"""torchvision checkpoints, as torchvision writes them, straight into registry models and `densepac segment`."""

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from densepac.cli import main
from densepac.errors import InputError, WeightsError
from densepac.io.images import read_label, write_image
from densepac.models import create_model
from densepac.models.hub import resolve_weights
from densepac.segmentation.pretrained import model_for_weights


def _torchvision_checkpoint(tmp_path: Path, arch: str, aux: bool, num_classes: int = 21) -> tuple[Path, object]:
    """A torchvision model with random weights, saved with torch.save as torchvision's own files are."""
    from torchvision.models import segmentation

    torch.manual_seed(0)
    extra = {} if arch.startswith("lraspp") else {"aux_loss": aux}
    net = getattr(segmentation, arch)(weights=None, weights_backbone=None, num_classes=num_classes, **extra).eval()
    path = tmp_path / f"{arch}_coco-0123abcd.pth"
    torch.save(net.state_dict(), path)
    return path, net


@pytest.mark.parametrize(("arch", "aux"), [("fcn_resnet50", True), ("lraspp_mobilenet_v3_large", False)])
def test_a_torchvision_checkpoint_loads_by_file_and_keeps_its_logits(tmp_path, arch, aux):
    path, net = _torchvision_checkpoint(tmp_path, arch, aux)
    model = create_model(arch, weights=path).eval()  # the auxiliary head in the file is dropped
    image = torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(model(image), net(model.normalize(image))["out"])
        # Hot-swapped at load time, the checkpoint's convolutions become PAC layers with its weights.
        swapped = create_model(arch, weights=path, hot_swap=True).eval()
        assert any(".pac." in k for k in swapped.state_dict())
        torch.testing.assert_close(swapped(image), model(image), atol=1e-4, rtol=1e-4)
    assert model_for_weights(path) == (arch, {"num_classes": 21})


def test_an_imagenet_backbone_is_not_taken_for_a_segmentation_model(tmp_path):
    """Without --model, an ImageNet file is refused with the command that makes it useful."""
    from torchvision.models import resnet50

    path = tmp_path / "resnet50.pth"
    torch.save(resnet50(weights=None).state_dict(), path)
    with pytest.raises(InputError, match="ImageNet ResNet weights.*finetune --model fcn_resnet50 --weights"):
        model_for_weights(path)


def test_hot_swap_must_be_a_flag_or_a_recipe():
    for bad in ("True", "yes", {"targets": ["conv1"]}, ["conv1"]):
        with pytest.raises(InputError, match="hot_swap="):
            create_model("fcn8s_vgg16", hot_swap=bad, num_classes=3, widths=(4, 4, 4, 4, 4), fc_channels=8)


def test_another_architecture_or_class_count_is_named(tmp_path):
    path, _ = _torchvision_checkpoint(tmp_path, "lraspp_mobilenet_v3_large", False, num_classes=5)
    with pytest.raises(WeightsError, match="lraspp_mobilenet_v3_large weights, not deeplabv3_mobilenet_v3_large"):
        create_model("deeplabv3_mobilenet_v3_large", weights=path)
    with pytest.raises(InputError, match="5 classes but the model has 21"):
        create_model("lraspp_mobilenet_v3_large", weights=path)
    assert create_model("lraspp_mobilenet_v3_large", num_classes=5, weights=path).num_classes == 5


def test_segment_runs_a_torchvision_checkpoint_without_model(tmp_path):
    path, _ = _torchvision_checkpoint(tmp_path, "lraspp_mobilenet_v3_large", False, num_classes=4)
    write_image(tmp_path / "photo.png", np.random.default_rng(0).random((48, 64, 3)))
    r = CliRunner().invoke(
        main,
        [
            "segment",
            str(tmp_path / "photo.png"),
            "-o",
            str(tmp_path / "masks"),
            "--weights",
            str(path),
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "lraspp_mobilenet_v3_large" in r.stderr
    labels = read_label(tmp_path / "masks" / "photo.png")
    assert labels.shape == (48, 64) and labels.max() < 4


def _sha_prefix(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


def test_torchvision_enum_names_resolve_through_the_hub_cache(tmp_path, monkeypatch):
    import densepac.models.hub as hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec = "torchvision:FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1"

    def offline(url, dst, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(
        InputError,
        match=r"download https://download\.pytorch\.org/models/fcn_resnet50_coco-1167a1af"
        r"\.pth and place it at .*torch/hub/checkpoints/fcn_resnet50_coco-1167a1af\.pth",
    ):
        resolve_weights(spec)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "fcn_resnet50_coco-1167a1af.pth"
    cached.parent.mkdir(parents=True, exist_ok=True)  # resolve_weights made it before it failed
    cached.write_bytes(b"not torchvision's file")
    with pytest.raises(InputError, match="does not match the sha256 its name promises"):
        resolve_weights(spec)
    # A file whose name carries its own hash, as torch hub names them, is taken from the cache.
    good = tmp_path / "torch" / "hub" / "checkpoints" / "weights.pth"
    good.write_bytes(b"some weights")
    named = good.with_name(f"weights-{_sha_prefix(good)}.pth")
    good.rename(named)
    monkeypatch.setattr(hub, "torchvision_weights_url", lambda name: f"https://example/models/{named.name}")
    assert resolve_weights(spec) == named
    assert resolve_weights(tmp_path / "plain.pth") == tmp_path / "plain.pth"
    monkeypatch.undo()
    with pytest.raises(InputError, match="torchvision has no weights"):
        resolve_weights("torchvision:NoSuch_Weights.V1")


def test_segment_takes_a_torchvision_enum_without_model(tmp_path, monkeypatch):
    import densepac.models.hub as hub

    path, _ = _torchvision_checkpoint(tmp_path, "lraspp_mobilenet_v3_large", False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    cached = cache / f"lraspp-{_sha_prefix(path)}.pth"
    path.rename(cached)
    monkeypatch.setattr(hub, "torchvision_weights_url", lambda name: f"https://example/models/{cached.name}")
    write_image(tmp_path / "photo.png", np.random.default_rng(0).random((48, 64, 3)))
    r = CliRunner().invoke(
        main,
        [
            "segment",
            str(tmp_path / "photo.png"),
            "-o",
            str(tmp_path / "masks"),
            "--weights",
            "torchvision:LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "lraspp_mobilenet_v3_large" in r.stderr and (tmp_path / "masks" / "photo.png").is_file()


def test_an_smp_checkpoint_loads_by_file_plain_hot_swapped_and_with_new_classes(tmp_path):
    import segmentation_models_pytorch as smp
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = smp.create_model("unet", encoder_name="resnet18", encoder_weights=None, classes=4).eval()
    files = {"pth": tmp_path / "unet.pth", "ddp": tmp_path / "unet_ddp.pth", "st": tmp_path / "model.safetensors"}
    torch.save(net.state_dict(), files["pth"])
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, files["ddp"])
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, files["st"])
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = net(create_model("smp_unet", num_classes=4).normalize(image))
        for path in files.values():
            model = create_model("smp_unet", num_classes=4, weights=path).eval()
            torch.testing.assert_close(model(image), expected)
        swapped = create_model("smp_unet", num_classes=4, weights=files["pth"], hot_swap=True).eval()
        assert any(".pac." in k for k in swapped.state_dict())
        torch.testing.assert_close(swapped(image), expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(InputError, match="4 classes but the model has 6"):
        create_model("smp_unet", num_classes=6, weights=files["pth"])
    with pytest.raises(WeightsError, match="segmentation_models_pytorch weights, which fit smp_unet"):
        create_model("fcn8s_vgg16", weights=files["pth"])
    with pytest.raises(WeightsError, match="do not fit"):
        create_model("smp_fpn", num_classes=4, weights=files["pth"])


@pytest.mark.parametrize("library", ["torchvision", "smp"])
def test_third_party_checkpoints_are_loaded_into_a_model_built_on_the_meta_device(tmp_path, built, library):
    """The weights are held once: the only model built is a meta one that takes the file's tensors."""
    if library == "torchvision":
        path, net = _torchvision_checkpoint(tmp_path, "lraspp_mobilenet_v3_large", False)
        name, kwargs = "lraspp_mobilenet_v3_large", {}
    else:
        import segmentation_models_pytorch as smp

        torch.manual_seed(0)
        net = smp.create_model("unet", encoder_name="resnet18", encoder_weights=None, classes=4)
        path = tmp_path / "unet.pth"
        torch.save(net.state_dict(), path)
        name, kwargs = "smp_unet", {"num_classes": 4}
    model = create_model(name, weights=path, **kwargs).eval()
    assert built == ["meta"]
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = net.eval()(model.normalize(image))
        torch.testing.assert_close(model(image), out["out"] if isinstance(out, dict) else out)
