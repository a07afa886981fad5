"""densepac: guided dense prediction with pixel-adaptive convolution."""
__version__ = "0.1.0"
