"""densepac: guided dense prediction with pixel-adaptive convolution."""

__version__ = "0.1.0"

from .models import create_model, list_models, register_model  # noqa: E402

__all__ = ["__version__", "create_model", "list_models", "register_model"]
