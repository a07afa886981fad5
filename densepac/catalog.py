"""What the registry holds, readable without importing torch: ``densepac models`` in a blink.

``catalog.json`` (package data) lists every registered model: name, task, one-line
description and parameter count with default arguments. ``scripts/make_catalog.py`` writes
it from the registry; a test checks it against the registry and the real parameter counts,
so it cannot go stale unnoticed.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

CATALOG_FILE = "catalog.json"
WEIGHTS_PACKAGE = "densepac.weights"


def catalog_path() -> Path:
    """Where the catalog lies (inside the installed package)."""
    return Path(str(importlib.resources.files("densepac"))) / CATALOG_FILE


def read_catalog() -> list[dict[str, Any]]:
    """The catalog's rows, sorted by name: ``name``, ``task``, ``description``, ``params``."""
    return json.loads(catalog_path().read_text())["models"]


def shipped_weights() -> set[str]:
    """Registry names with shipped weights: each card's own name and its architecture (without ``+crf``)."""
    names = set()
    for card in Path(str(importlib.resources.files(WEIGHTS_PACKAGE))).glob("*.json"):
        names.add(card.stem)
        names.add(json.loads(card.read_text()).get("arch", card.stem).removesuffix("+crf"))
    return names


def model_rows(task: str | None = None) -> list[dict[str, Any]]:
    """Catalog rows (of ``task``), each with ``weights``: whether weights ship for it."""
    shipped = shipped_weights()
    return [{**row, "weights": row["name"] in shipped} for row in read_catalog() if task in (None, row["task"])]
