"""Mark, for each scale, the shipped depth model with the lowest validation RMSE as default.

    python scripts/pick_default_depth.py weights/

Reads each model card's own validation metrics (written by ``densepac train --export``);
the sha256 of the weights is unaffected.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("weights_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
def main(weights_dir: Path) -> None:
    cards = {p: json.loads(p.read_text()) for p in sorted(weights_dir.glob("*.json"))}
    by_scale: dict[int, list[tuple[float, Path]]] = {}
    for path, card in cards.items():
        scale = card.get("kwargs", {}).get("scale")
        rmse = card.get("metrics", {}).get(card["arch"], {}).get("rmse_cm")
        if scale is not None and rmse is not None:
            by_scale.setdefault(scale, []).append((rmse, path))
    for scale, entries in sorted(by_scale.items()):
        best = min(entries)[1]
        for _, path in entries:
            card = cards[path]
            card["default"] = path == best
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
            tmp.replace(path)
        click.echo(f"x{scale}: default {best.stem} " + ", ".join(f"{p.stem} {r:.2f} cm" for r, p in sorted(entries)))


if __name__ == "__main__":
    main()
