import pytest
import torch
import torch.nn.functional as F

from densepac.ops import GuidedRefined, guided_refine


def test_flat_image_gives_twice_box_filtered_probabilities(dtype):
    """With a constant guide the slope a is 0, b = box(p) and the output box(b) = box(box(p))."""
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 20, 24, dtype=dtype)
    image = torch.full((2, 3, 20, 24), 0.3, dtype=dtype)
    out = guided_refine(logits, image, radius=2, eps=1e-2).exp()
    box = F.avg_pool2d(F.avg_pool2d(logits.softmax(1), 5, stride=1), 5, stride=1)  # full windows only
    torch.testing.assert_close(out[..., 4:-4, 4:-4], box)
    torch.testing.assert_close(out.sum(1), torch.ones(2, 20, 24, dtype=dtype))  # linear: sums stay 1


def test_keeps_a_label_edge_that_follows_an_image_edge():
    image = torch.zeros(1, 3, 16, 16)
    image[..., 8:] = 1.0
    logits = torch.zeros(1, 2, 16, 16)
    logits[:, 0, :, :8], logits[:, 1, :, 8:] = 2.0, 2.0
    logits[:, :, 5, 6] = torch.tensor([0.0, 2.0])  # a wrong pixel inside the left region
    labels = guided_refine(logits, image, radius=2, eps=1e-3).argmax(1)[0]
    assert (labels[:, :8] == 0).all() and (labels[:, 8:] == 1).all()


def test_wrapper_and_errors():
    model = torch.nn.Conv2d(3, 3, 1)
    model.num_classes = 3
    wrapped = GuidedRefined(model, radius=1)
    assert wrapped(torch.rand(1, 3, 9, 11)).shape == (1, 3, 9, 11)
    with pytest.raises(ValueError, match="one size"):
        guided_refine(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 9, 8))
    with pytest.raises(ValueError, match="radius"):
        guided_refine(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), radius=0)
