"""Weights named by torchvision: ``torchvision:ENUM_NAME`` resolved through the torch hub cache.

``torchvision:FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1`` (or the bare member name of a
weights enum) is the file torchvision itself would download for it, looked up where
torchvision keeps it (``$TORCH_HOME/hub/checkpoints``, see :func:`torch.hub.get_dir`). A file
already there is used as is; otherwise it is downloaded when a network is reachable, and
when none is, the error says in one line which file to place where.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from densepac.errors import InputError

PREFIX = "torchvision:"


def is_hub_spec(weights: str | os.PathLike[str]) -> bool:
    """Whether ``weights`` names torchvision weights (``torchvision:ENUM``) rather than a file."""
    return str(weights).startswith(PREFIX)


def torchvision_weights_url(name: str) -> str:
    """The download URL of torchvision's weights enum member ``name`` (``Enum.MEMBER``)."""
    from torchvision.models import get_weight

    try:
        return get_weight(name).url
    except (KeyError, ValueError, AttributeError) as exc:
        raise InputError(
            f"torchvision has no weights {name!r} ({exc}); give an enum member such as "
            "torchvision:FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1"
        ) from None


def torchvision_arch_of(spec: str) -> tuple[str, dict[str, int]]:
    """(lower-case architecture name, ``num_classes``) that torchvision's weights ``torchvision:ENUM`` are for.

    ``FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1`` -> ``("fcn_resnet50", {"num_classes": 21})``: the
    registry names torchvision's segmentation networks as torchvision does.
    """
    from torchvision.models import get_weight

    name = str(spec)[len(PREFIX) :]
    torchvision_weights_url(name)  # an unknown name fails with its own message
    weights = get_weight(name)
    arch = type(weights).__name__.removesuffix("_Weights").lower()
    categories = weights.meta.get("categories") or []
    return arch, ({"num_classes": len(categories)} if categories else {})


def _hash_prefix_ok(path: Path) -> bool:
    """Whether a file named like torch hub's ``name-<sha256 prefix>.ext`` has that hash (other names pass)."""
    match = re.search(r"-([0-9a-f]{8,})$", path.stem)
    if match is None:
        return True
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest().startswith(match.group(1))


def resolve_weights(weights: str | os.PathLike[str], download: bool = True) -> Path:
    """A weights file for ``weights``: the path itself, or the hub cache's file for ``torchvision:ENUM``."""
    if not is_hub_spec(weights):
        return Path(weights)
    import torch.hub

    name = str(weights)[len(PREFIX) :]
    url = torchvision_weights_url(name)
    target = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if target.is_file():
        if not _hash_prefix_ok(target):
            raise InputError(
                f"{target} does not match the sha256 its name promises; it is not torchvision's file for {name}: "
                f"download {url} again and replace it"
            )
        return target
    if download:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(target), progress=False)
            return target
        except OSError:
            target.unlink(missing_ok=True)
    raise InputError(
        f"torchvision weights {name} are not in the torch hub cache and cannot be downloaded here; "
        f"download {url} and place it at {target} (or set TORCH_HOME)"
    )
