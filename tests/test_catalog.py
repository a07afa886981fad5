"""The model catalog (what `densepac models` lists without importing torch) matches the registry."""

import subprocess
import sys

import torch

from densepac.catalog import model_rows, read_catalog
from densepac.models import create_model, get_entry, list_models


def test_catalog_matches_the_registry_and_the_real_parameter_counts():
    rows = {r["name"]: r for r in read_catalog()}
    registered = [n for n in list_models() if not n.startswith("_test")]  # other tests register toy models
    assert sorted(rows) == registered, "run scripts/make_catalog.py after adding or renaming a model"
    for name in registered:
        entry = get_entry(name)
        with torch.device("meta"):
            params = sum(p.numel() for p in create_model(name).parameters())
        assert rows[name] == {"name": name, "task": entry.task, "description": entry.description, "params": params}, (
            "run scripts/make_catalog.py"
        )


def test_rows_filter_by_task_and_mark_shipped_weights():
    depth = model_rows("depth")
    assert depth and all(r["task"] == "depth" for r in depth)
    assert {r["name"] for r in depth if r["weights"]} >= {"pac_learned_jbu_x8"}


def test_densepac_models_does_not_import_torch():
    code = (
        "import sys\nimport densepac.cli as c\nsys.argv = ['densepac', 'models']\n"
        "try:\n    c.main()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules, file=sys.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pac_learned_jbu_x8" in r.stdout and r.stderr.strip() == "False", r.stderr
