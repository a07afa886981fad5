# Two entry points for a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	mkdir -p out
	$(VENV)/bin/densepac upsample datasets/samples/scene_depth_lr.png datasets/samples/scene_rgb.png \
		-o out/demo_depth.png --preview out/demo_preview.png --overwrite
	$(VENV)/bin/densepac segment datasets/samples/seg_scene.png -o out/seg --overwrite
	@echo "wrote out/demo_depth.png (16-bit, mm), out/demo_preview.png and out/seg/seg_scene_overlay.png"

test: $(STAMP) lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) scripts/bench_pac.py

clean:
	rm -rf out build dist *.egg-info
