# Every target works from a fresh clone with only the package registries reachable.
VENV := .venv
PYTHON := $(VENV)/bin/python

.PHONY: setup test demo bench clean

setup:
	@bash Utilities/setup_venv.sh

# The whole headless suite; this is what CI runs.
test: setup
	$(PYTHON) -m pytest -q Testing

# The built-in model on a real chest CT shipped by slicerio; writes demo-output/.
demo: setup
	$(PYTHON) Utilities/demo.py --out demo-output

# One JSON line of benchmark results (never part of `make test`).
bench: setup
	@$(PYTHON) Utilities/bench.py

clean:
	rm -rf demo-output .pytest_cache
