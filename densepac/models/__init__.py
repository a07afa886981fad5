"""The model registry (timm style) and what every model shares: weights files, hot-swapping, building blocks.

Models live with their task, in :mod:`densepac.depth.models` and
:mod:`densepac.segmentation.models` (plus the Shape Adaptor encoders of
:mod:`densepac.plugins.shape_adaptor`); the registry imports those modules the first time it
is asked for a model.
"""

from densepac.models.hotswap import GuidedConv2d, hot_swap, swapped_layers
from densepac.models.registry import ModelEntry, create_model, get_entry, list_models, register_model
from densepac.models.weights import WeightsCard, list_weights, load_weights_into, save_weights

__all__ = [
    "GuidedConv2d",
    "ModelEntry",
    "WeightsCard",
    "create_model",
    "get_entry",
    "hot_swap",
    "list_models",
    "list_weights",
    "load_weights_into",
    "register_model",
    "save_weights",
    "swapped_layers",
]
