#!/usr/bin/env bash
# `make demo`: a small scaling study ending in a report. Where the machine allows it (root,
# network namespaces, Slurm), the real workflow on an emulated Slurm cluster of FinisTerrae
# III's shape (2 nodes of 2 replicas, half a core each; 1, 2 and 4 replicas): the
# study written with `bench jobs`, submitted through Slurm, watched, collected and reported
# (by the study's own report job). Elsewhere, the local study, and why.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
results=results/emulated-demo

if ! why=$(bench cluster check); then
    echo "demo: $why; running the local study instead (replicas share this host)"
    lost=0      # a run that failed: the report is still written, then the demo exits 1
    text=real
    bench data check tinyshakespeare >/dev/null 2>&1 || {
        text=generated; echo "demo: no tiny Shakespeare here: the char-RNNs run on generated text of its format"; }
    bench study --name local-demo --workloads mlp,memnn,charrnn-gru,charrnn-lstm \
        --strategies default,mirrored,mwms,horovod --devices 1,2 --epochs 2 --steps-per-epoch 20 \
        --data mlp=generated,memnn=generated,charrnn-gru=$text,charrnn-lstm=$text \
        --set charrnn-gru.rnn_units=256 --set charrnn-lstm.rnn_units=256 || lost=1
    bench comm --local-workers 2 --max-bytes 16777216 --results results/local-demo
    bench tune pbt memnn --data generated --set train_questions=2000 --smoke-test \
        --steps-per-iteration 50 --synch --num-cpus 2 --results results/local-demo
    bench report results/local-demo -o results/local-demo/report
    exit $lost
fi

rm -rf "$results" "$results-jobs"
mkdir -p "$results"
bench tune pbt memnn --data generated --set train_questions=2000 --smoke-test \
    --steps-per-iteration 50 --synch --num-cpus 2 --results "$results"
bench jobs write examples/emulated-demo.toml -o "$results-jobs" --missing-data generated
bench cluster run --dir "$results-jobs/cluster" --nodes 2 --cpus-per-node 1 --slots-per-node 2 -- bash -euo pipefail -c "
    for collective in mwms horovod; do     # each strategy's collective, inside a node and between nodes
        srun -N1 -n2 -c1 --mpi=pmix bench comm --strategy \$collective --max-bytes 16777216 --iters 10 --results $results
        srun -N2 -n2 -c1 --mpi=pmix bench comm --strategy \$collective --max-bytes 16777216 --iters 10 --results $results
    done
    bench jobs submit $results-jobs
    bench jobs wait $results-jobs --timeout 2400
    bench jobs collect $results-jobs --results $results > $results-jobs/collect.txt || true"
test -f "$results/report/report.md" || { echo "demo: the report job wrote no report" >&2; exit 1; }
sed -n '1,/^## Plots/p' "$results/report/report.md" | head -n -1
echo "demo: report in $results/report/report.md and report.html"
if grep -qv '^ok ' "$results-jobs/collect.txt"; then     # a job without an ok record: said, and exit 1
    echo "demo: jobs of the study failed (bench jobs collect $results-jobs --results $results):" >&2
    grep -v '^ok ' "$results-jobs/collect.txt" | head -n 20 >&2
    exit 1
fi
