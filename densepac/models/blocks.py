"""Building blocks the models of both tasks share: normalisation statistics, padding, upsampling, conv stacks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Side multiple every smp encoder of depth <= 5 accepts (also a multiple of 16 and 8).


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "replicate") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) at the bottom/right so H and W divide by ``multiple``.

    Bottom/right only, so pixel (0, 0) stays on the pooling grid and cropping back is
    ``y[..., :H, :W]``. ``replicate`` (default) repeats the last row/column, which keeps the
    border pixels' context plausible at any size (``reflect`` fails on tiny inputs).

    Returns:
        (padded tensor, original (H, W)).
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)
