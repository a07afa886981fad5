"""Write densepac/catalog.json from the registry (run after adding or changing a model).

python scripts/make_catalog.py
"""

from __future__ import annotations

import json

import click
import torch

from densepac.catalog import catalog_path
from densepac.models import create_model, get_entry, list_models


def catalog_rows() -> list[dict]:
    """Every registered model: name, task, description and parameter count (default arguments)."""
    rows = []
    for name in list_models():
        entry = get_entry(name)
        with torch.device("meta"):  # count parameters without allocating them
            params = sum(p.numel() for p in create_model(name).parameters())
        rows.append({"name": name, "task": entry.task, "description": entry.description, "params": params})
    return rows


@click.command()
def main() -> None:
    path = catalog_path()
    path.write_text(json.dumps({"models": catalog_rows()}, indent=1) + "\n")
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
