"""How ops behave while ``torch.export`` traces them for any size (ONNX export with ``--dynamic``)."""

from __future__ import annotations

import contextlib

import torch


def any_size() -> contextlib.AbstractContextManager:
    """While ``torch.export`` traces, reason about sizes as if no dimension were 1; outside, nothing.

    A traced size that is 1 for small inputs only (a coarse pyramid level, a network's deepest
    feature map) would otherwise fix the exported size through the contiguity and broadcasting
    checks torch makes on size-1 dimensions, although the ops traced are the same for any size.
    Entered by the ops that need it, around their own code only.
    """
    if not torch.compiler.is_exporting():
        return contextlib.nullcontext()
    import torch.fx.experimental._config as fx_config  # private, but the only switch there is

    return fx_config.patch(backed_size_oblivious=True)
