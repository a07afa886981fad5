"""ONNX export: every depth model and PAC-CRF segmentation models, onnxruntime against PyTorch."""

import pytest
import torch

from densepac.catalog import model_rows
from densepac.errors import InputError
from densepac.export import PARITY_TOLERANCE, Parity, check_onnx, example_inputs, export_onnx
from densepac.models import create_model, list_models

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _depth_cases() -> list:
    """One case per class of registered depth model (the catalog lists them without importing them).

    The scales and variants of a class share its code and take 10-30 s each to export, so one
    stands for all: ``pac_jointupsample_res_x4`` (residual, mask input) for the paper's models,
    ``pac_learned_jbu_x8``, ``graph_sr`` with area sampling (point sampling is the dynamic test's).
    """
    cases = []
    for name in (row["name"] for row in model_rows("depth")):
        if name == "graph_sr":
            cases.append(pytest.param(name, {"sampling": "area"}, id="graph_sr-area"))
        elif not name.startswith(("pac_jointupsample", "pac_learned_jbu")) or name in _STAND_INS:
            cases.append(pytest.param(name, {}, id=name))
    return cases


_STAND_INS = ("pac_jointupsample_res_x4", "pac_learned_jbu_x8")


def test_the_cases_cover_every_class_of_depth_model():
    registered = {n for n in list_models(task="depth") if not n.startswith("_test")}  # other tests' toys
    assert {type(create_model(c.values[0], **c.values[1])) for c in _depth_cases()} == {
        type(create_model(n)) for n in registered
    }


def _segmentation_model(name: str, **crf_kwargs) -> torch.nn.Module:
    """A narrow FCN-8s (+ CRF) whose score layers are random: at their zero init the logits are constant."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, widths=[4, 4, 8, 8, 8], fc_channels=8, crf_kwargs=crf_kwargs)
    with torch.no_grad():
        for key, p in model.named_parameters():
            if "score" in key:
                p.normal_(0, 0.5)
    return model


@pytest.mark.parametrize(("name", "kwargs"), _depth_cases())
def test_every_depth_model_exports_and_matches_pytorch(tmp_path, name, kwargs):
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    scale = None if getattr(model, "scales", None) else 4
    size = (64, 64) if "x16" in name or "x8" in name else (32, 48)
    report = export_onnx(model, tmp_path / "m.onnx", scale=scale, size=size, optimize=False)
    assert report.parity.ok and report.parity.onnx_vs_torch <= max(PARITY_TOLERANCE, 2 * report.parity.torch_float32)
    s = scale or model.scales[0]
    assert report.inputs == {"depth_lr": (1, 1, size[0] // s, size[1] // s), "guide": (1, 3, *size)}
    # Another random input than the check's, checked here independently.
    again = check_onnx(report.path, model, example_inputs(model, size, s, seed=7))
    assert again.ok


@pytest.mark.parametrize("name", ["graph_sr"])  # the default at x4/x8; learned JBU and the filters by hand (slow)
def test_a_dynamic_graph_runs_any_batch_and_size(tmp_path, name):
    torch.manual_seed(0)
    model = create_model(name, **({"sampling": "point"} if name == "graph_sr" else {}))
    scale = None if getattr(model, "scales", None) else 4
    report = export_onnx(model, tmp_path / "d.onnx", scale=scale, size=(32, 48), dynamic=True, optimize=False)
    assert report.parity.ok
    s = scale or model.scales[0]
    assert report.inputs == {
        "depth_lr": ("batch", 1, "height", "width"),
        "guide": ("batch", 3, f"{s}*height", f"{s}*width"),
    }
    for size, batch in [((48, 32), 1), ((64, 100), 3)]:
        parity = check_onnx(report.path, model, example_inputs(model, size, s, seed=3, batch=batch))
        assert parity.ok, (size, batch, parity)


def test_models_whose_forward_depends_on_the_size_are_refused_for_dynamic_export(tmp_path):
    class SizeInPython(torch.nn.Module):
        """A depth model whose forward reads its input size as a Python number."""

        task, model_name, scales = "depth", "size_in_python", (4,)

        def forward(self, depth_lr, guide):
            up = torch.nn.functional.interpolate(depth_lr, scale_factor=4)
            return up if guide.shape[-1] > 40 else -up

    with pytest.raises(InputError, match=r"does not export for any size \(it fixes the .*--size instead of --dynamic"):
        export_onnx(SizeInPython(), tmp_path / "s.onnx", size=(32, 48), dynamic=True, optimize=False)
    assert not (tmp_path / "s.onnx").exists()


def test_a_hot_swapped_crf_segmentation_model_exports(tmp_path):
    model = _segmentation_model("pac_fcn8s_vgg16+crf", num_steps=2)
    report = export_onnx(model, tmp_path / "seg.onnx", size=(48, 64), optimize=False)
    assert report.inputs == {"image": (1, 3, 48, 64)}
    assert report.parity.onnx_vs_torch <= PARITY_TOLERANCE
    again = check_onnx(report.path, model, example_inputs(model, (48, 64), None, seed=7))
    assert again.ok


def test_a_dynamic_segmentation_graph_runs_any_batch_and_size(tmp_path):
    """Padding to a multiple of 32 and cropping back are in the graph: sizes that are not multiples work."""
    model = _segmentation_model("fcn8s_vgg16+crf", num_steps=1, kernels=[(3, 1)])
    report = export_onnx(model, tmp_path / "seg.onnx", size=(48, 64), dynamic=True, optimize=False)
    assert report.inputs == {"image": ("batch", 3, "height", "width")}
    for size, batch in [((20, 30), 1), ((33, 97), 3)]:  # one 1x1 pool5, one padded on both sides
        parity = check_onnx(report.path, model, example_inputs(model, size, None, seed=3, batch=batch))
        assert parity.ok, (size, batch, parity)


def test_pac_exports_without_an_unfold_buffer(tmp_path):
    """The largest tensor of an exported PAC layer stays a few feature maps, not C*k*k of them."""
    import onnx

    from densepac.ops import PacConv2d

    c, k, h, w = 4, 5, 16, 16
    layer = PacConv2d(c, c, k, padding=k // 2).eval()
    x, guide = torch.rand(1, c, h, w), torch.rand(1, 2, h, w)
    torch.onnx.export(layer, (x, guide), tmp_path / "pac.onnx", dynamo=True, optimize=False, external_data=False)
    graph = onnx.shape_inference.infer_shapes(onnx.load(tmp_path / "pac.onnx")).graph
    sizes = []
    for v in graph.value_info:
        dims = [d.dim_value for d in v.type.tensor_type.shape.dim]
        if dims and all(d > 0 for d in dims):
            sizes.append(torch.Size(dims).numel())
    assert max(sizes) <= 2 * c * h * w < c * k * k * h * w


def test_bad_requests_are_refused_before_any_work(tmp_path):
    with pytest.raises(InputError, match="--sampling point or --sampling area"):
        export_onnx(create_model("graph_sr"), tmp_path / "g.onnx", scale=8)
    with pytest.raises(InputError, match="give the one to export with --scale"):
        export_onnx(create_model("bicubic"), tmp_path / "b.onnx")
    with pytest.raises(InputError, match="upsamples by x8, not x4"):
        export_onnx(create_model("pac_learned_jbu_x8"), tmp_path / "b.onnx", scale=4)
    with pytest.raises(InputError, match="multiples of the scale 8"):
        export_onnx(create_model("bicubic"), tmp_path / "b.onnx", scale=8, size=(60, 64))
    with pytest.raises(InputError, match=r"\.onnx"):
        export_onnx(create_model("bicubic"), tmp_path / "b.txt", scale=8)
    (tmp_path / "there.onnx").write_bytes(b"keep")
    with pytest.raises(InputError, match="exists"):
        export_onnx(create_model("bicubic"), tmp_path / "there.onnx", scale=8, size=(64, 64))
    assert (tmp_path / "there.onnx").read_bytes() == b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there.onnx"]


def test_parity_rule():
    assert Parity(5e-5, 1e-7).ok and not Parity(2e-4, 1e-7).ok
    assert Parity(2e-4, 1.5e-4).ok  # an iterative solver no more exact than float32 allows
