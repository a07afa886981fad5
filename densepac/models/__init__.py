"""Model registry and the models it holds."""

# Registering imports: each module adds its models to the registry.
from densepac.models import adapters, baselines, dla_up, encoder_fcn, fcn, joint_upsample, learned_jbu, shape_adaptor  # noqa: F401
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
