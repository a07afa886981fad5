"""Plug-ins that compose with any segmentation model of the registry.

- :mod:`densepac.plugins.stn`: spatial transformers that align the input (affine, attention, TPS);
- :mod:`densepac.plugins.adl`: attention-based dropout, a parameter-free forward hook;
- :mod:`densepac.plugins.shape_adaptor`: learnable resizing in ResNet encoders.

``create_model(name, adl=True, stn="affine", crf=True)`` puts them together.
"""
