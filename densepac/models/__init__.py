"""Model registry and the models it holds."""

from . import baselines, joint_upsample  # noqa: F401  (registering imports)
from .registry import ModelEntry, create_model, get_entry, list_models, register_model
from .weights import WeightsCard, list_weights, load_weights_into, save_weights

__all__ = [
    "ModelEntry",
    "WeightsCard",
    "create_model",
    "get_entry",
    "list_models",
    "list_weights",
    "load_weights_into",
    "register_model",
    "save_weights",
]
