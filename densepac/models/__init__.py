"""Model registry and the models it holds."""

from . import baselines  # noqa: F401  (registers the baseline models)
from .registry import ModelEntry, create_model, get_entry, list_models, register_model
from .weights import WeightsCard, list_weights, load_weights_into, read_state_dict, save_weights

__all__ = [
    "ModelEntry",
    "WeightsCard",
    "create_model",
    "get_entry",
    "list_models",
    "list_weights",
    "load_weights_into",
    "read_state_dict",
    "register_model",
    "save_weights",
]
