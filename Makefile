# The two commands of the README: `make demo` and `make test`. Both set up from nothing.
VENV ?= .venv
BENCH = $(VENV)/bin/bench
# Pre-staged data shipped beside the project (tiny Shakespeare), used when present.
export DISTBENCH_DATA_DIR ?= $(abspath ../shared/data)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup demo test test-fast
setup:
	./install.sh

demo: setup
	scripts/demo.sh

# pytest exits 5 when it collected no test: that is not a failure of the suite.
test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

# The fast tier alone (pure functions, golden files, layering; no TensorFlow start-up): seconds.
test-fast: setup
	$(VENV)/bin/python -m pytest -m "not stack" $(PYTEST_ARGS)
