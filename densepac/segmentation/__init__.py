"""Semantic segmentation: models, pretrained-weight reading, dataset readers, synthetic scenes, recipe, inference.

- :mod:`densepac.segmentation.models`: the registry's segmentation models (FCN-8s, torchvision
  FCNs, smp architectures, DLA-Up, FCN-8s heads on any encoder) and the encoders they take;
- :mod:`densepac.segmentation.pretrained`: torchvision / densepac checkpoints, recognised by their keys;
- :mod:`densepac.segmentation.datasets`: PASCAL VOC (+ SBD) and folder readers, data specs;
- :mod:`densepac.segmentation.synthetic`: procedural labelled scenes;
- :mod:`densepac.segmentation.transforms`: joint image + label augmentations;
- :mod:`densepac.segmentation.recipe`: fine-tuning (hot-swap, PAC-CRF, staged training), export;
- :mod:`densepac.segmentation.inference`: labels of an image, tiled and memory-bounded;
- :mod:`densepac.segmentation.cam`: attention and class activation maps.
"""
