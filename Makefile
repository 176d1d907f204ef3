# warmstart-dqn: `make train` trains on CPU into ./ckpt (a second run warm-starts from it),
# `make test` runs the test suite. Both build the virtualenv .venv from pinned requirements.

PYTHON ?= python3
VENV ?= .venv
# Where torch comes from. Unset: on a machine without an NVIDIA GPU (no nvidia-smi, no
# /dev/nvidia0), PyTorch's CPU build (a local +cpu wheel pip already finds, else the CPU index
# when it answers within 3 s); with a GPU, PyPI's build (CUDA on Linux). TORCH_INDEX=URL takes
# torch from that index (https://download.pytorch.org/whl/cpu, .../whl/cu128); TORCH_INDEX=pypi
# takes PyPI's build on any machine.
TORCH_INDEX ?=
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_VERSION = $(shell sed -n 's/^torch==//p' docker/requirements.txt)

# `make train` defaults: a short CPU demo run. Any of these can be overridden from the
# environment or the command line (GAME=breakout STEPS=200000 CKPT_DIR=/data/ckpt make train);
# every other setting in docs/settings.md passes through from the environment as it is. An
# empty one means unset, as it does for warmstart itself: `make train STEPS=` is the demo.
DEFAULT_CKPT_DIR := $(CURDIR)/ckpt
DEFAULT_STEPS := 2000
DEFAULT_MIN_STEPS_LEARN := 1000
# a log point (a progress row, a point of the learning curve) every 500 steps, not every 10,000
DEFAULT_LOG_EVERY := 500
DEMO_SETTINGS := CKPT_DIR STEPS MIN_STEPS_LEARN LOG_EVERY
$(foreach v,$(DEMO_SETTINGS),$(if $(strip $($(v))),,$(eval override $(v) := $(DEFAULT_$(v)))))
export $(DEMO_SETTINGS)

VENV_STAMP := $(VENV)/.installed

.PHONY: venv train test drills bench learn-check inspect eval lineage docs clean

venv: $(VENV_STAMP)

# torch alone comes from the chosen index (--no-deps: everything else, its dependencies
# included, comes from PyPI at the pinned versions, which the installed torch then satisfies).
# moto's server for the s3fs tests goes into a virtualenv of its own, .venv/s3-server: its pins
# clash with the image's (tests/requirements-s3.txt says which).
$(VENV_STAMP): pyproject.toml docker/requirements.txt tests/requirements.txt \
		tests/requirements-s3.txt
	$(PYTHON) -m venv $(VENV)
	@index="$(strip $(TORCH_INDEX))"; pip="$(VENV)/bin/pip"; \
	if [ -z "$$index" ] && ! command -v nvidia-smi >/dev/null 2>&1 && [ ! -e /dev/nvidia0 ]; then \
		if "$$pip" install --dry-run --quiet --no-deps --no-index \
				"torch==$(TORCH_VERSION)+cpu" >/dev/null 2>&1; then \
			echo "no NVIDIA GPU: torch's CPU build, from a wheel pip already finds"; \
		elif $(VENV)/bin/python -c '$(PROBE)' "$(TORCH_CPU_INDEX)/torch/" 2>/dev/null; then \
			echo "no NVIDIA GPU: torch's CPU build, from $(TORCH_CPU_INDEX)"; \
			index="$(TORCH_CPU_INDEX)"; \
		else \
			echo "no NVIDIA GPU, but $(TORCH_CPU_INDEX) does not answer: torch from PyPI" \
				"(set TORCH_INDEX to choose)"; \
		fi; \
	fi; \
	if [ -n "$$index" ] && [ "$$index" != pypi ]; then \
		"$$pip" install --quiet --no-deps --index-url "$$index" "torch==$(TORCH_VERSION)"; \
	fi
	$(VENV)/bin/pip install --quiet -r docker/requirements.txt -r tests/requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	$(PYTHON) -m venv $(VENV)/s3-server
	$(VENV)/s3-server/bin/pip install --quiet -r tests/requirements-s3.txt
	touch $@

# Whether a URL answers within 3 s, DNS included (urlopen's timeout does not cover DNS).
PROBE := import sys, threading, urllib.request; ok = []; \
	t = threading.Thread(daemon=True, \
	                     target=lambda: ok.append(urllib.request.urlopen(sys.argv[1], timeout=3))); \
	t.start(); t.join(3); sys.exit(0 if ok else 1)

# Only the demo's own ./ckpt is created here; any other CKPT_DIR gets warmstart's checks (a
# mistyped path is exit 4, not a cold start in a new folder).
train: venv
	$(if $(filter $(DEFAULT_CKPT_DIR),$(abspath $(CKPT_DIR))),mkdir -p "$(CKPT_DIR)")
	$(VENV)/bin/warmstart train

# Tests run side by side (pytest-xdist): most drive a real trainer process on one thread, and
# `make test` runs one more of them than there are cores, so that while one waits (a lease's
# settle, a signal's delay, another trainer's LOCK_WAIT) the cores stay busy; `make drills`,
# whose stalls and kills are timed against the trainer, runs one per core. TEST_ARGS=-n0 runs
# them in one process; TEST_ARGS='-k eval' picks tests. `make test` leaves out the long drills
# (tests marked `drill`: kill sequences, FUSE volumes that stall, tear or are shared by two
# nodes, many signals in a row, the benchmark end to end); `make drills` runs just those, and
# CI runs both.
TEST_ARGS ?=
TEST_WORKERS := $(shell $(PYTHON) -c 'import os; print(len(os.sched_getaffinity(0)) + 1)' \
	2>/dev/null || echo auto)
test: venv
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not drill" $(TEST_ARGS)

drills: venv
	$(VENV)/bin/python -m pytest -n auto --dist loadgroup -m drill $(TEST_ARGS)

# Training speed against the machine's limits and against rlpyt (where importable); prints a
# table and writes bench-results/bench-<date>.json. DEVICE=cuda make bench on a GPU machine.
bench: venv
	$(VENV)/bin/python bench/throughput.py $(BENCH_ARGS)

# Does the fast path learn? pong from scratch in rlpyt's 2 x 16 shape for LEARN_MINUTES
# (default 8) on DEVICE (default cuda), then 10 games and the curve (bench/learn_check.sh).
learn-check: venv
	bench/learn_check.sh

# Summarise the newest snapshot in CKPT_DIR.
inspect: venv
	$(VENV)/bin/warmstart inspect "$(CKPT_DIR)"

# Play EVAL_EPISODES games (default 10) with the newest snapshot in CKPT_DIR; print the score.
eval: venv
	$(VENV)/bin/warmstart eval "$(CKPT_DIR)"

# The chain of runs (parent -> child) behind the newest snapshot in CKPT_DIR.
lineage: venv
	$(VENV)/bin/warmstart lineage "$(CKPT_DIR)"

# Regenerate the settings table in docs/settings.md from the config object.
docs: venv
	$(VENV)/bin/python -c "import re, pathlib; from warmstart.config import markdown_table as t; \
	p = pathlib.Path('docs/settings.md'); s = p.read_text(); \
	p.write_text(re.sub(r'(<!-- settings:start -->\n).*?(<!-- settings:end -->)', \
	lambda m: m.group(1) + t() + '\n' + m.group(2), s, flags=re.S))"

clean:
	rm -rf $(VENV) .pytest_cache

-include docker/image.mk
