"""Choose, for each scale, the depth model ``densepac upsample`` uses by default: the best on the real scene.

    python scripts/pick_default_depth.py weights/ [--scales 4,8,16]

Candidates: the training-free ``graph_sr`` and every shipped learned model of the scale, each
run as ``densepac upsample`` runs it (sampling ``auto``, refinement on). The score is the mean,
over point and area sampling, of the RMSE ratio to bicubic on the Middlebury "Motorcycle"
scene (validation only: nothing is trained on it). The winning shipped model's card is marked
``default``; when ``graph_sr`` wins no card is, and ``densepac upsample`` falls back to it.
The sha256 of the weights is unaffected.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from densepac.depth.inference import FALLBACK_DEPTH_MODEL
from densepac.depth.real import score_on_motorcycle
from densepac.models import create_model


@click.command()
@click.argument("weights_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--scales", default="4,8,16", show_default=True)
def main(weights_dir: Path, scales: str) -> None:
    cards = {p: json.loads(p.read_text()) for p in sorted(weights_dir.glob("*.json"))}
    for scale in (int(s) for s in scales.split(",")):
        candidates = {FALLBACK_DEPTH_MODEL: create_model(FALLBACK_DEPTH_MODEL)}
        for path, card in cards.items():
            if card.get("kwargs", {}).get("scale") == scale:
                candidates[path.stem] = create_model(
                    card["arch"], weights=path.with_suffix(".safetensors"), **card["kwargs"]
                )
        scores = {}
        for name, model in candidates.items():
            ratios = [a / b for a, b in (score_on_motorcycle(model, scale, s) for s in ("point", "area"))]
            scores[name] = sum(ratios) / len(ratios)
        best = min(scores, key=scores.get)
        for path, card in cards.items():
            if card.get("kwargs", {}).get("scale") == scale:
                card["default"] = path.stem == best
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
                tmp.replace(path)
        click.echo(
            f"x{scale}: default {best}; "
            + ", ".join(f"{n} {r:.3f}" for n, r in sorted(scores.items(), key=lambda x: x[1]))
        )


if __name__ == "__main__":
    main()
