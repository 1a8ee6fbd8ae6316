# Two commands: `make demo` and `make test`. Each installs what it needs
# (a virtualenv in .venv, the Python packages, ffmpeg from Debian's packages
# when missing) and is safe to run again.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# The install stamp carries a hash of pyproject.toml: editing dependencies
# reinstalls, an unchanged tree does nothing.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml 2>/dev/null | sha1sum | cut -c1-12)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

DEMO_DIR    ?= demo-output
DEMO_VIDEOS ?= 120
DEMO_SEED   ?= 2026
# Seconds of coincidence-model training (the model card records them).
DEMO_TRAIN_BUDGET ?= 480
# Extra flags for pytest, e.g. `make test PYTEST_ARGS="-k ingest -x"`.
PYTEST_ARGS ?=

.PHONY: help install ffmpeg demo test clean distclean

help:
	@echo "make demo   run the whole main job on the synthetic corpus (into $(DEMO_DIR)/)"
	@echo "make test   run the test suite"
	@echo "make clean  remove demo output and caches (keeps .venv)"
	@echo "Both install what they need first: .venv, Python packages, ffmpeg."

install: ffmpeg $(STAMP)

ffmpeg:
	@if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then \
	  echo "ffmpeg not found: installing it from Debian's packages"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq ffmpeg >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing Python packages into $(VENV) (a few minutes the first time)"
	@set -o pipefail; $(BIN)/python -m pip install -q --disable-pip-version-check -e '.[cpu,dev]' 2>&1 \
	  | { grep -v "^WARNING: Location .* is ignored" || true; }
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: install
	@bash scripts/demo.sh "$(DEMO_DIR)" "$(DEMO_VIDEOS)" "$(DEMO_SEED)" "$(DEMO_TRAIN_BUDGET)"

test: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
