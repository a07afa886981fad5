"""File I/O: depth maps, images and label maps in every format densepac reads, atomic writes, previews.

- :mod:`densepac.io.files`: atomic writes, output checks (the layer every other module writes through);
- :mod:`densepac.io.depth`: depth files (``.npy``, ``.npz``, ``.pfm``, 16-bit ``.png``, float ``.tiff``, ``.exr``);
- :mod:`densepac.io.images`: RGB images and label maps (VOC palette);
- :mod:`densepac.io.visualize`: colorised depth, previews, mask and heatmap overlays.
"""

from densepac.io.depth import (
    DEPTH_EXTENSIONS,
    depth_to_tensor,
    read_depth,
    tensor_to_depth,
    validate_depth,
    write_depth,
)
from densepac.io.files import atomic_write, check_output
from densepac.io.images import (
    IMAGE_EXTENSIONS,
    LABEL_EXTENSIONS,
    image_to_tensor,
    read_image,
    read_label,
    tensor_to_image,
    write_image,
    write_label,
)

__all__ = [
    "DEPTH_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "LABEL_EXTENSIONS",
    "atomic_write",
    "check_output",
    "depth_to_tensor",
    "image_to_tensor",
    "read_depth",
    "read_image",
    "read_label",
    "tensor_to_depth",
    "tensor_to_image",
    "validate_depth",
    "write_depth",
    "write_image",
    "write_label",
]
