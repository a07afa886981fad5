"""densepac: guided dense prediction with pixel-adaptive convolution."""

__version__ = "0.1.0"

_LAZY = {"create_model", "list_models", "register_model", "upsample"}
__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str):
    # Lazy so that `import densepac` (and `densepac --help`) does not pay for importing torch.
    if name == "upsample":
        from densepac.depth.inference import upsample

        return upsample
    if name in _LAZY:
        from densepac import models

        return getattr(models, name)
    raise AttributeError(f"module 'densepac' has no attribute {name!r}")
