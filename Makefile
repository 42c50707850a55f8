# The two commands of the set-up contract: `make demo` and `make test`.
# Each creates .venv and installs what it needs (re-installing only when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean clean-cache

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# after installing, compile the numba kernels once (numba caches them on disk)
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -c "import hdlmm; hdlmm.warm_up()"
	touch $@

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev,bench]"
	$(BIN)/python -c "import hdlmm; hdlmm.warm_up()"
	touch $@

demo: $(VENV)/.installed-dev
	$(BIN)/hdlmm demo --out demo_output

test: $(VENV)/.installed-dev
	$(BIN)/ruff check hdlmm tests benchmarks examples
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/seed.py

clean:
	rm -rf $(VENV) demo_output

# numba's cache follows each file's own edits only: after editing a compiled kernel
clean-cache:
	find hdlmm -name '*.nbi' -delete -o -name '*.nbc' -delete
