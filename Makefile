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
	$(BENCH) study --name local-demo --workloads mlp,memnn,charrnn-gru,charrnn-lstm \
	    --strategies default,mirrored,mwms,horovod --devices 1,2 --epochs 2 --steps-per-epoch 20 \
	    --data mlp=generated,memnn=generated,charrnn-gru=real,charrnn-lstm=real \
	    --set charrnn-gru.rnn_units=256 --set charrnn-lstm.rnn_units=256
	$(BENCH) comm --local-workers 2 --max-bytes 16777216 --results results/local-demo
	$(BENCH) tune pbt memnn --data generated --set train_questions=2000 --smoke-test \
	    --steps-per-iteration 50 --synch --num-cpus 2 --results results/local-demo
	$(BENCH) report results/local-demo -o results/local-demo/report

# pytest exits 5 when it collected no test: that is not a failure of the suite.
test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

# The fast tier alone (pure functions, golden files, layering; no TensorFlow start-up): seconds.
test-fast: setup
	$(VENV)/bin/python -m pytest -m "not stack" $(PYTEST_ARGS)
