"""Registry behaviour and safe weight loading."""

import json
import os
import pickle

import pytest
import torch
from torch import nn

import densepac
from densepac.depth.models.base import DepthModel
from densepac.engine.checkpoint import load_state_dict_safe
from densepac.errors import InputError, WeightsError
from densepac.models import create_model, list_models, load_weights_into, register_model, save_weights


@register_model("_test_tiny_depth", width=3)
class TinyDepth(DepthModel):
    """A learned 1x1 conv, enough to test weights."""

    def __init__(self, width: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 1)
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, depth_lr, guide):
        up = nn.functional.interpolate(depth_lr, size=guide.shape[-2:])
        return self.head(self.conv(up))


def test_list_models_filters_by_task_and_pattern():
    depth = list_models(task="depth")
    assert {"bicubic", "guided_filter", "joint_bilateral", "_test_tiny_depth"} <= set(depth)
    assert list_models("joint_*") == ["joint_bilateral"]
    assert list_models("depth") == depth  # the task alone, positionally (DESIGN's list_models(task))
    assert densepac.list_models is list_models
    with pytest.raises(ValueError, match="task"):
        list_models(task="audio")


def test_create_model_sets_task_and_defaults():
    m = create_model("_test_tiny_depth")
    assert m.task == "depth" and m.conv.out_channels == 3
    assert create_model("_test_tiny_depth", width=5).conv.out_channels == 5


def test_unknown_name_lists_closest():
    with pytest.raises(InputError, match="did you mean joint_bilateral"):
        create_model("joint_bilatral")


def test_duplicate_and_taskless_registration_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_model("bicubic")(TinyDepth)
    with pytest.raises(ValueError, match="task"):
        register_model("_no_task")(nn.Identity)


def test_weights_round_trip_and_card(tmp_path):
    torch.manual_seed(0)
    m = create_model("_test_tiny_depth")
    path = save_weights(m, "tiny", "_test_tiny_depth", tmp_path, kwargs={"width": 3}, seed=0)
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert card["arch"] == "_test_tiny_depth" and len(card["sha256"]) == 64
    m2 = create_model("_test_tiny_depth", weights=path)
    for a, b in zip(m.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    torch.save({"state_dict": {"module." + k: v for k, v in m.state_dict().items()}}, tmp_path / "ddp.pt")
    m3 = create_model("_test_tiny_depth", weights=tmp_path / "ddp.pt")
    assert torch.equal(m3.head.weight, m.head.weight)
    # Both files get the user's umask (others may read shipped weights), no temporaries stay.
    umask = os.umask(0)
    os.umask(umask)
    for f in (path, tmp_path / "tiny.json"):
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.pt", "tiny.json", "tiny.safetensors"]


def test_weights_loaded_without_a_random_init_match_a_normal_load(tmp_path):
    """A plain model given a file is built on the meta device; it must equal build-then-load."""
    torch.manual_seed(0)
    m = create_model("_test_tiny_depth")
    from safetensors.torch import save_file

    save_file({k: v.half() for k, v in m.state_dict().items()}, tmp_path / "half.safetensors")
    path = save_weights(m, "tiny", "_test_tiny_depth", tmp_path, kwargs={"width": 3}, seed=0)
    for file, tol in ((path, 0.0), (tmp_path / "half.safetensors", 1e-3)):
        loaded = create_model("_test_tiny_depth", weights=file)
        tensors = [*loaded.parameters(), *loaded.buffers()]
        assert not any(t.is_meta for t in tensors)
        assert all(t.dtype == torch.float32 for t in tensors)
        assert all(p.requires_grad for p in loaded.parameters())
        for a, b in zip(m.state_dict().values(), loaded.state_dict().values()):
            torch.testing.assert_close(b, a, atol=tol, rtol=tol)
        x = torch.rand(1, 1, 8, 8), torch.rand(1, 3, 32, 32)
        torch.testing.assert_close(loaded(*x), m(*x), atol=1e-2, rtol=1e-2)


def test_weights_for_part_of_a_model_replace_its_initialisation_instead_of_being_copied(tmp_path, built):
    """A file without the class layers (an ImageNet VGG16) needs a real build; its tensors then take
    the place of the initialised ones (held once), and the rest keeps the seeded initialisation."""
    from densepac.segmentation.models.fcn import VGG16_LAYERS

    small = dict(num_classes=3, widths=(4, 4, 4, 4, 4), fc_channels=8)
    features = create_model("fcn8s_vgg16", **small).features
    sd = {}  # a torchvision VGG16 state dict of the small widths, without its classifier
    for index, name in VGG16_LAYERS:
        if name.startswith("conv"):
            sd[f"features.{index}.weight"] = torch.randn_like(features.get_submodule(name).weight)
            sd[f"features.{index}.bias"] = torch.randn_like(features.get_submodule(name).bias)
    assert len(sd) == 26
    path = tmp_path / "vgg16_features.pth"
    torch.save(sd, path)
    built.clear()
    torch.manual_seed(3)
    model = create_model("fcn8s_vgg16", weights=path, **small)
    assert built == ["meta", "cpu"]  # the meta attempt leaves the score layers unset, so a real build follows
    torch.manual_seed(3)
    reference = create_model("fcn8s_vgg16", **small)
    loaded = dict(model.named_parameters())
    for index, name in VGG16_LAYERS:
        if name.startswith("conv"):
            assert torch.equal(loaded[f"features.{name}.weight"], sd[f"features.{index}.weight"])
    for key, value in reference.state_dict().items():
        if not key.startswith("features."):
            assert torch.equal(model.state_dict()[key], value), key
    assert all(p.requires_grad for p in model.parameters())


def test_loading_assigns_the_files_tensors(tmp_path):
    """``load_state_into`` hands the model the file's tensors (converted to its dtype), no copy."""
    from densepac.models.weights import load_state_into

    model = TinyDepth(3)
    state = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    state["head.bias"] = state["head.bias"].double()
    load_state_into(model, model.state_dict(), state)
    assert model.conv.weight.data_ptr() == state["conv.weight"].data_ptr()
    assert model.head.bias.dtype == torch.float32 and torch.equal(model.head.bias, state["head.bias"].float())
    assert isinstance(model.conv.weight, nn.Parameter) and model.conv.weight.requires_grad


def test_wrong_architecture_named_in_error(tmp_path):
    m = create_model("_test_tiny_depth", width=4)
    path = save_weights(m, "w4", "_test_tiny_depth", tmp_path)
    with pytest.raises(WeightsError, match=r"shape mismatch.*conv.weight \(4, 1, 1, 1\) vs \(3, 1, 1, 1\)"):
        create_model("_test_tiny_depth", weights=path)
    torch.save({"other.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="missing keys"):
        create_model("_test_tiny_depth", weights=tmp_path / "other.pt")


def test_sha256_checked(tmp_path):
    m = create_model("_test_tiny_depth")
    path = save_weights(m, "t", "_test_tiny_depth", tmp_path)
    with pytest.raises(WeightsError, match="sha256"):
        load_weights_into(m, path, expected_sha256="0" * 64)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_payload_refused_and_not_executed(tmp_path):
    marker = tmp_path / "executed"
    bad = tmp_path / "bad.pt"
    with open(bad, "wb") as f:
        pickle.dump({"w": _Payload(str(marker))}, f)
    with pytest.raises(WeightsError, match="refuses"):
        load_state_dict_safe(bad)
    assert not marker.exists()


def test_corrupt_safetensors_refused(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"\x00garbage")
    with pytest.raises(WeightsError, match="safetensors"):
        load_state_dict_safe(p)


def test_pretrained_without_shipped_weights_is_clear():
    with pytest.raises(InputError, match="no shipped weights"):
        create_model("_test_tiny_depth", pretrained=True)


def test_crf_suffix_wraps_segmentation_models(tmp_path, built):
    from densepac.ops.crf import CRFWrapped, PacCRF

    kw = {"num_classes": 3, "widths": (4, 4, 8, 8, 8), "fc_channels": 8}
    torch.manual_seed(0)
    m = create_model("fcn8s_vgg16+crf", **kw)
    assert isinstance(m, CRFWrapped) and m.task == "segmentation" and m.model_name == "fcn8s_vgg16+crf"
    assert m(torch.rand(1, 3, 35, 33)).shape == (1, 3, 35, 33)
    assert isinstance(create_model("fcn8s_vgg16", crf=True, **kw), CRFWrapped)
    # Weights of the base model alone, or of the whole wrapped model, both load.
    base = create_model("fcn8s_vgg16", **kw)
    base_file = save_weights(base, "base", "fcn8s_vgg16", tmp_path)
    torch.manual_seed(1)  # a different initialisation, so equality comes from the file
    built.clear()
    wrapped = create_model("fcn8s_vgg16+crf", weights=base_file, **kw)
    assert built == ["meta"]  # the base model takes the file's tensors; only the CRF is initialised
    for key, value in base.state_dict().items():
        assert torch.equal(wrapped.model.state_dict()[key], value), key
    for key, value in PacCRF(3).state_dict().items():  # the CRF's initialisation is not random
        assert torch.equal(wrapped.crf.state_dict()[key], value), key
    whole = save_weights(wrapped, "whole", "fcn8s_vgg16+crf", tmp_path)
    again = create_model("fcn8s_vgg16+crf", weights=whole, **kw)
    for a, b in zip(again.state_dict().values(), wrapped.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(InputError, match="segmentation"):
        create_model("bicubic+crf")


def test_shipped_weights_load_and_pass_their_checksum():
    from densepac.depth.inference import default_depth_model
    from densepac.models import list_weights
    from densepac.models.weights import sha256_file, shipped_card

    names = list_weights()
    assert names, "no shipped weights found in the package"
    for name in names:
        card = shipped_card(name)
        assert sha256_file(card.weights_path) == card.sha256, name
        if "scale" in card.kwargs:  # depth weights: named as their registry model
            model = create_model(name, pretrained=True)
            assert model.scale == card.kwargs["scale"]
            assert card.command.startswith("densepac train")
        else:  # segmentation weights: the card names the architecture, e.g. pac_fcn8s_vgg16+crf
            model = create_model(card.arch, weights=card.weights_path, **card.kwargs)
            assert model.task == "segmentation" and card.command.startswith("densepac finetune")
    for scale in (4, 8, 16):
        default = default_depth_model(scale)
        card = shipped_card(default)
        # A shipped default is marked in its card; with none marked, the training-free graph_sr.
        assert (card is not None and card.default) or (
            default == "graph_sr"
            and not any(shipped_card(n).default and shipped_card(n).kwargs.get("scale") == scale for n in names)
        )


def test_adl_option_hooks_the_default_stages_and_keeps_the_weights(tmp_path):
    from densepac.ops import adl_layers

    kw = dict(num_classes=3, widths=(4, 4, 4, 4, 4), fc_channels=8)
    torch.manual_seed(0)
    plain = create_model("fcn8s_vgg16", **kw)
    file = save_weights(plain, "plain", "fcn8s_vgg16", tmp_path)
    with_adl = create_model("fcn8s_vgg16", adl=True, adl_kwargs={"drop_rate": 1.0}, weights=file, **kw)
    assert adl_layers(with_adl) == ["features.pool4", "features.relu5_3"]
    assert list(with_adl.state_dict()) == list(plain.state_dict())  # ADL adds no parameters
    image = torch.rand(1, 3, 40, 40)
    plain.eval(), with_adl.eval()
    assert torch.equal(with_adl(image), plain(image))  # identity at eval
    with pytest.raises(InputError, match="adl=True"):
        create_model("fcn8s_vgg16", adl_kwargs={"threshold": 0.5}, **kw)
    with pytest.raises(InputError, match="segmentation"):
        create_model("bicubic", adl=True)
    with pytest.raises(ValueError, match="no submodule"):
        create_model("fcn8s_vgg16", adl=["features.nope"], **kw)


def test_adl_default_stages_of_encoder_models():
    assert create_model("smp_unet", num_classes=2).adl_stages() == ["net.encoder.layer3", "net.encoder.layer4"]
    assert create_model("dla_up", num_classes=2).adl_stages() == ["encoder.model.level4", "encoder.model.level5"]


def test_stn_option_wraps_and_loads_base_or_whole_weights(tmp_path, built):
    kw = dict(num_classes=3, widths=(4, 4, 4, 4, 4), fc_channels=8)
    torch.manual_seed(0)
    base = create_model("fcn8s_vgg16", **kw).eval()
    base_file = save_weights(base, "base", "fcn8s_vgg16", tmp_path)
    torch.manual_seed(1)
    built.clear()
    aligned = create_model("fcn8s_vgg16", stn="affine", weights=base_file, **kw).eval()
    assert built == ["meta"]
    assert aligned.model_name == "fcn8s_vgg16+stn_affine"
    image = torch.rand(1, 3, 36, 44)
    torch.testing.assert_close(aligned(image), base(image))  # identity-initialised STN
    with torch.no_grad():
        aligned.stn.head.bias.add_(0.05)  # the whole wrapped model round-trips through a file
    whole = save_weights(aligned, "whole", "fcn8s_vgg16+stn_affine", tmp_path)
    both = create_model("fcn8s_vgg16+crf", stn="affine", weights=whole, **kw).eval()
    assert both.model_name == "fcn8s_vgg16+stn_affine+crf"
    assert torch.equal(both.model.stn.head.bias, aligned.stn.head.bias)
    with pytest.raises(InputError, match="STN kind 'perspective'"):
        create_model("fcn8s_vgg16", stn="perspective", **kw)


def test_plug_ins_compose_through_create_model():
    """Shape-adaptor encoder under PAC DLA-Up, with ADL inside, an STN around and a CRF outermost."""
    from densepac.ops import adl_layers

    model = create_model(
        "pac_dla_up+crf",
        num_classes=3,
        encoder_name="shape_adaptor_resnet18",
        encoder_kwargs={"input_size": 64},
        adl=True,
        stn="attention",
    )
    assert model.model_name == "pac_dla_up+stn_attention+crf"
    assert adl_layers(model) == ["model.model.encoder.layers.2", "model.model.encoder.layers.3"]
    image = torch.rand(2, 3, 61, 83)
    logits = model.train()(image)
    assert logits.shape == (2, 3, 61, 83)
    logits.logsumexp(1).mean().backward()
    assert model.model.model.encoder.stem_adaptor.logit.grad is not None


def test_a_whole_export_of_a_swapped_crf_model_loads_on_the_meta_device(built):
    """The shipped default segmentation weights (hot-swapped FCN-8s + PAC-CRF) are held once."""
    from densepac.inference import load_model_for_inference

    model = load_model_for_inference("pac_fcn8s_vgg16+crf")
    assert built == ["meta"] and model.model_name == "pac_fcn8s_vgg16+crf"
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    reference = create_model("pac_fcn8s_vgg16", crf=True, **_default_seg_kwargs())  # built for real
    reference.load_state_dict(model.state_dict())  # same keys and shapes
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(image), reference.eval()(image))


def _default_seg_kwargs() -> dict:
    from densepac.models.weights import WeightsCard, shipped_weights_of

    card = WeightsCard.from_json(shipped_weights_of("pac_fcn8s_vgg16+crf").with_suffix(".json"))
    return {k: v for k, v in card.kwargs.items() if k != "crf"}
