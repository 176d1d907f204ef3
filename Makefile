# warmstart-dqn: `make train` trains on CPU into ./ckpt (a second run warm-starts from it),
# `make test` runs the test suite. Both build the virtualenv .venv from pinned requirements.

PYTHON ?= python3
VENV ?= .venv
# Extra pip index for torch, e.g. https://download.pytorch.org/whl/cpu for a CPU-only wheel.
TORCH_INDEX ?=

# `make train` defaults: a short CPU demo run. Any of these can be overridden from the
# environment or the command line (GAME=breakout STEPS=200000 CKPT_DIR=/data/ckpt make train);
# every other setting in README's table passes through from the environment as it is. An
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

.PHONY: venv train test bench inspect eval lineage readme clean

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml docker/requirements.txt tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) \
		-r docker/requirements.txt -r tests/requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

# Only the demo's own ./ckpt is created here; any other CKPT_DIR gets warmstart's checks (a
# mistyped path is exit 4, not a cold start in a new folder).
train: venv
	$(if $(filter $(DEFAULT_CKPT_DIR),$(abspath $(CKPT_DIR))),mkdir -p "$(CKPT_DIR)")
	$(VENV)/bin/warmstart train

test: venv
	$(VENV)/bin/python -m pytest

# Training speed against the machine's limits and against rlpyt (where importable); prints a
# table and writes bench-results/bench-<date>.json. DEVICE=cuda make bench on a GPU machine.
bench: venv
	$(VENV)/bin/python bench/throughput.py $(BENCH_ARGS)

# Summarise the newest snapshot in CKPT_DIR.
inspect: venv
	$(VENV)/bin/warmstart inspect "$(CKPT_DIR)"

# Play EVAL_EPISODES games (default 10) with the newest snapshot in CKPT_DIR; print the score.
eval: venv
	$(VENV)/bin/warmstart eval "$(CKPT_DIR)"

# The chain of runs (parent -> child) behind the newest snapshot in CKPT_DIR.
lineage: venv
	$(VENV)/bin/warmstart lineage "$(CKPT_DIR)"

# Regenerate the settings table in README.md from the config object.
readme: venv
	$(VENV)/bin/python -c "import re, pathlib; from warmstart.config import markdown_table as t; \
	p = pathlib.Path('README.md'); s = p.read_text(); \
	p.write_text(re.sub(r'(<!-- settings:start -->\n).*?(<!-- settings:end -->)', \
	lambda m: m.group(1) + t() + '\n' + m.group(2), s, flags=re.S))"

clean:
	rm -rf $(VENV) .pytest_cache

-include docker/image.mk
