"""Hot-swapping convolutions of arbitrary models for guided PAC layers."""

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from densepac.models.hotswap import GuidedConv2d, GuideStore, hot_swap, swapped_layers
from densepac.ops import PacConv2d


class TinyNet(nn.Module):
    """A small FCN: a side branch ``edge`` that only guides, a strided block, a 1x1 head."""

    def __init__(self) -> None:
        super().__init__()
        self.edge = nn.Conv2d(3, 2, 3, padding=1)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = nn.Sequential(
            nn.Conv2d(4, 6, 3, stride=2, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.Conv2d(6, 6, 3, padding=2, dilation=2),
            nn.ReLU(),
        )
        self.head = nn.Conv2d(6, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.edge(x)  # computed for its output hook only: a pure guide branch
        y = self.head(self.block(F.relu(self.stem(x))))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _net(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet().eval()


def _image(n: int = 2, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


TARGETS = ["block.0", "block.3", "head"]


def _swapped(guide_scale: float = 1e-4, seed: int = 0, **kw) -> tuple[TinyNet, TinyNet]:
    orig = _net(seed)
    model = copy.deepcopy(orig)
    assert hot_swap(model, TARGETS, guide="edge", guide_scale=guide_scale, **kw) == TARGETS
    return orig, model


def test_weights_copied_bit_for_bit_and_layers_listed():
    orig, model = _swapped()
    assert swapped_layers(model) == TARGETS
    for name in TARGETS:
        conv, wrapped = orig.get_submodule(name), model.get_submodule(name)
        assert isinstance(wrapped, GuidedConv2d) and isinstance(wrapped.pac, PacConv2d)
        assert torch.equal(wrapped.pac.weight, conv.weight) and torch.equal(wrapped.pac.bias, conv.bias)
        assert (wrapped.pac.stride, wrapped.pac.padding, wrapped.pac.dilation) == (
            conv.stride,
            conv.padding,
            conv.dilation,
        )


def test_small_guide_scale_reproduces_the_original():
    orig, model = _swapped()
    x = _image()
    with torch.no_grad():
        ref, out = orig(x), model(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4 * ref.abs().max().item())


def test_large_guide_scale_makes_pac_active():
    orig, model = _swapped(guide_scale=1.0)
    x = _image()
    with torch.no_grad():
        assert (model(x) - orig(x)).abs().max() > 1e-3


def test_torchvision_vgg_prefix():
    from torchvision.models import vgg16

    torch.manual_seed(0)
    orig = vgg16(weights=None).features[:10].eval()
    model = copy.deepcopy(orig)
    hot_swap(model, ["5", "7"], guide="2")  # guide at full resolution, targets at half
    assert torch.equal(model[7].pac.weight, orig[7].weight)
    x = _image(1, 32)
    with torch.no_grad():
        ref, out = orig(x), model(x)
    assert out.shape == ref.shape == (1, 128, 8, 8)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4 * ref.abs().max().item())


def test_gradients_reach_guide_branch_and_pac_weights():
    _, model = _swapped(guide_scale=1.0)
    model.train()
    model(_image()).square().mean().backward()
    # ``edge`` feeds nothing but the guide, so its gradient proves the guide path is differentiable.
    assert model.edge.weight.grad is not None and model.edge.weight.grad.abs().sum() > 0
    for name in TARGETS:
        assert model.get_submodule(name).pac.weight.grad.abs().sum() > 0


def test_state_dict_round_trip_into_a_fresh_swap():
    _, model = _swapped(guide_scale=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # as if fine-tuned
    sd = model.state_dict()
    assert {"head.pac.weight", "head.pac.bias", "block.0.pac.weight", "edge.weight"} <= set(sd)
    assert "head.weight" not in sd
    _, fresh = _swapped(guide_scale=0.5, seed=3)
    fresh.load_state_dict(sd)
    x = _image()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x))


def test_deepcopy_pickle_and_dtype_survive():
    _, model = _swapped(guide_scale=0.5)
    x = _image()
    with torch.no_grad():
        ref = model(x)
        twin = copy.deepcopy(model)
        assert twin.head.store is twin.block[0].store and twin.head.store is not model.head.store
        torch.testing.assert_close(twin(x), ref)
        torch.testing.assert_close(pickle.loads(pickle.dumps(model))(x), ref)
        torch.testing.assert_close(model.double()(x.double()), ref.double(), rtol=1e-5, atol=1e-5)


def test_store_is_empty_between_forwards_even_after_errors():
    _, model = _swapped()
    store = model.head.store
    assert isinstance(store, GuideStore)
    model(_image())
    assert store.features is None

    def boom(module, args):
        assert store.features is not None  # the guide has run by now
        raise RuntimeError("boom")

    model.block[3].register_forward_pre_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        model(_image())
    assert store.features is None


def test_guide_that_runs_after_the_target_is_a_clear_error():
    model = _net()
    hot_swap(model, ["stem"], guide="head")
    with pytest.raises(RuntimeError, match="'head' has produced no features"):
        model(_image())


def test_bad_names_are_refused_with_hints():
    model = _net()
    with pytest.raises(ValueError, match="did you mean 'block.0'"):
        hot_swap(model, ["block.00"], guide="edge")
    with pytest.raises(ValueError, match="BatchNorm2d, not an nn.Conv2d"):
        hot_swap(model, ["block.1"], guide="edge")
    with pytest.raises(ValueError, match="no guide module named 'edj'"):
        hot_swap(model, ["head"], guide="edj")
    with pytest.raises(ValueError, match="also a target"):
        hot_swap(model, ["head", "stem"], guide="stem")
    with pytest.raises(ValueError, match="contains targets"):
        hot_swap(model, ["block.3"], guide="block")
    with pytest.raises(ValueError, match="more than once"):
        hot_swap(model, ["head", "head"], guide="edge")
    with pytest.raises(ValueError, match="resize"):
        hot_swap(model, ["head"], guide="edge", resize="lanczos")
    with pytest.raises(TypeError):
        hot_swap(model, [3], guide="edge")
    # Nothing was changed by the refused calls.
    assert swapped_layers(model) == [] and not model.edge._forward_hooks


def test_swapping_a_layer_twice_is_refused():
    model = _net()
    hot_swap(model, "head", guide="edge")
    with pytest.raises(ValueError, match="already swapped"):
        hot_swap(model, ["head"], guide="stem")
    # Another layer with another guide is fine.
    assert hot_swap(model, ["block.3"], guide="stem") == ["block.3"]
    assert swapped_layers(model) == ["block.3", "head"]
    model(_image())


def test_shared_convolution_keeps_sharing():
    conv = nn.Conv2d(3, 3, 3, padding=1)
    model = nn.Sequential(nn.Conv2d(3, 3, 1), conv, nn.ReLU(), conv)
    hot_swap(model, ["1"], guide="0")
    assert model[1] is model[3] and isinstance(model[3], GuidedConv2d)
    assert model(_image()).shape == (2, 3, 16, 16)
