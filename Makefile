# Every target works from a fresh clone with only the package registries reachable.
VENV := .venv
PYTHON := $(VENV)/bin/python

.PHONY: setup lint format test demo bench clean

setup:
	@bash Utilities/setup_venv.sh

# Style and static checks (ruff: rules and line length in pyproject.toml); CI runs it before the tests.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Rewrite the code in the project's format and fix what ruff can fix safely.
format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The whole headless suite, with its ten slowest steps; this is what CI runs.
test: setup
	$(PYTHON) -m pytest -q Testing --durations=10

# The built-in model on a real chest CT shipped by slicerio; writes demo-output/.
demo: setup
	$(PYTHON) Utilities/demo.py --out demo-output

# One JSON line of benchmark results (never part of `make test`).
bench: setup
	@$(PYTHON) Utilities/bench.py

clean:
	rm -rf demo-output .pytest_cache
