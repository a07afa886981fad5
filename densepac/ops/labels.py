"""Label prediction shared by every segmentation module (models and the wrappers in ``ops``)."""

from __future__ import annotations

import torch
from torch import nn


class PredictsLabels(nn.Module):
    """Base for modules whose ``forward(image)`` returns logits (N, K, h, w): adds :meth:`predict`."""

    @torch.inference_mode()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """(N, h, w) int64 labels: argmax of the logits in eval mode; the train/eval mode is restored."""
        was_training = self.training
        self.eval()
        try:
            return self(image).argmax(1)
        finally:
            self.train(was_training)
