"""Analysis: known-answer aggregation, speedup and efficiency; the rendered report."""

import math

import numpy as np
import pandas as pd

import pytest

from analysis import report, scaling, summary, verdict
from bench.core.record import RunRecord, write_record


def record(run_id, workload, strategy, gpus, throughput, status="ok", global_batch=64):
    return RunRecord(run_id=run_id, workload=workload, strategy=strategy, status=status, num_replicas=gpus,
                     global_batch_size=global_batch, per_replica_batch_size=global_batch // gpus,
                     throughput={"samples_per_s": throughput}, timing={"step_time": {"median_s": 0.1}},
                     error=None if status == "ok" else "boom")


@pytest.fixture
def results(tmp_path):
    runs = [("a1", "mlp", "default", 1, 100.0), ("a2", "mlp", "default", 1, 110.0), ("a3", "mlp", "default", 1, 90.0),
            ("b1", "mlp", "mwms", 1, 80.0), ("b2", "mlp", "mwms", 2, 150.0), ("b3", "mlp", "mwms", 4, 240.0),
            ("c1", "mlp", "horovod", 2, 190.0)]
    for run_id, workload, strategy, gpus, tput in runs:
        write_record(tmp_path, record(run_id, workload, strategy, gpus, tput))
    write_record(tmp_path, record("f1", "mlp", "mwms", 4, 0.0, status="failed"))
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "record.json").write_text('{"schema_version": 1, "run_')
    return tmp_path


def test_known_speedups_and_efficiencies(results):
    table = scaling.speedup(scaling.aggregate(summary.load([results])))
    row = lambda s, g: table[(table.strategy == s) & (table.num_replicas == g)].iloc[0]
    assert row("default", 1)["samples_per_s"] == 100.0 and row("default", 1)["runs"] == 3
    assert row("mwms", 2)["speedup"] == pytest.approx(150 / 80)
    assert row("mwms", 4)["efficiency"] == pytest.approx(240 / 80 / 4)
    assert row("mwms", 4)["baseline"] == "mwms x1"
    assert row("mwms", 4)["speedup_vs_best"] == pytest.approx(240 / 100)          # best 1-GPU: default
    assert row("mwms", 4)["efficiency_vs_best"] == pytest.approx(240 / 100 / 4)
    # no 1-replica run of its own: against the best 1-replica run, said so (never a self-baseline 1.00)
    assert row("horovod", 2)["efficiency"] == pytest.approx(190 / 100 / 2)
    assert row("horovod", 2)["baseline"] == "best x1 (default; no horovod x1 run)"
    assert row("horovod", 2)["efficiency_vs_best"] == pytest.approx(190 / 100 / 2)
    low, high = row("default", 1)["ci_low"], row("default", 1)["ci_high"]
    assert 90 <= low <= 100 <= high <= 110


def shaped(run_id, strategy, nodes, per_node, throughput, data="generated", overrides=None, batch=64):
    gpus = nodes * per_node
    return RunRecord(run_id=run_id, workload="mlp", strategy=strategy, num_replicas=gpus, world_size=gpus,
                     ranks_per_node=per_node, data_source=data, global_batch_size=batch * gpus,
                     per_replica_batch_size=batch, config={"per_replica_batch_size": batch, "overrides": overrides or {}},
                     throughput={"samples_per_s": throughput}, timing={"step_time": {"median_s": 0.1}}, status="ok")


def test_unlike_runs_are_separate_series_named_by_what_differs(tmp_path):
    """Shapes (2 nodes x 1 against 1 node x 2), data sources and `set` overrides never share a cell."""
    for item in [shaped("s1", "mwms", 1, 1, 100.0), shaped("s2", "mwms", 2, 1, 180.0), shaped("s3", "mwms", 1, 2, 160.0),
                 shaped("s4", "mwms", 4, 1, 300.0), shaped("s5", "mwms", 2, 2, 280.0),
                 shaped("r1", "horovod", 1, 1, 50.0, data="real"), shaped("r2", "horovod", 1, 1, 70.0, data="real"),
                 shaped("o1", "default", 1, 1, 90.0, overrides={"n_neurons": 32})]:
        write_record(tmp_path, item)
    table = scaling.speedup(scaling.aggregate(summary.load([tmp_path])))
    cells = {(r.strategy, r.num_replicas): r for r in table.itertuples()}
    assert set(cells) == {("mwms data generated", 1), ("mwms data generated 1/node", 2),
                          ("mwms data generated 2/node", 2), ("mwms data generated 1/node", 4),
                          ("mwms data generated 2/node", 4), ("horovod data real", 1),
                          ("default data generated set n_neurons=32", 1)}
    two_per_node = cells["mwms data generated 2/node", 4]
    assert two_per_node.samples_per_s == 280.0 and two_per_node.runs == 1
    assert two_per_node.baseline == "mwms data generated x1"          # its series' 1-replica run
    assert two_per_node.efficiency == pytest.approx(280 / 100 / 4)
    assert cells["horovod data real", 1].samples_per_s == 60.0 and cells["horovod data real", 1].runs == 2


def test_overlapping_intervals_tie_and_doubtful_figures_carry_flags(tmp_path):
    for i, (strategy, gpus, tput) in enumerate([("default", 1, 100.0), ("default", 1, 98.0), ("default", 1, 102.0),
                                                ("mwms", 1, 101.0), ("mwms", 1, 99.0), ("mwms", 1, 103.0),
                                                ("mwms", 2, 230.0), ("horovod", 1, 60.0)]):
        write_record(tmp_path, record(f"r{i}", "mlp", strategy, gpus, tput))
    table = scaling.trust(scaling.speedup(scaling.aggregate(summary.load([tmp_path]))))
    flags = {(r.strategy, r.num_replicas): r.flags for r in table.itertuples()}
    assert flags["mwms", 2] == "one repeat, super-linear" and flags["default", 1] == ""
    sentences = verdict.sentences(table, verdict.CPU)
    assert sentences[0] == ("At 1 replica (CPU): mwms and default tie (101 and 100 samples/s; their 95% intervals "
                            "overlap); horovod 0.59x of mwms.")
    made = verdict.pivot(table, "mlp", "strong", verdict.CPU)
    cells = dict(made.rows)
    assert cells["mwms"][0].best and cells["default"][0].best and not cells["horovod"][0].best
    assert cells["mwms"][1].marks == "¹↑"


def test_report_lists_failed_and_torn_records_and_embeds_plots(results, tmp_path):
    built = report.build([str(results)], tmp_path / "report")
    assert built.unreadable == 1
    markdown = built.markdown.read_text()
    first_screen = markdown.split("## Plots")[0]
    assert "## mlp, strong scaling (global batch fixed)" in first_screen
    assert "- At 1 replica (CPU): default fastest, 100 samples/s; mwms 0.80x of it." in first_screen
    assert ("- At 2 replicas (CPU): horovod fastest, 190 samples/s, efficiency 0.95 of the best 1-replica run; "
            "mwms 0.79x of it.") in first_screen
    assert "- At 4 replicas (CPU): mwms fastest, 240 samples/s, efficiency 0.75 of its 1-replica run." in first_screen
    assert "| strategy | 1 replica (CPU) | 2 replicas (CPU) | 4 replicas (CPU) |" in first_screen
    assert "| mwms | 80¹<br>eff 1.00 | 150¹<br>eff 0.94 | **240** (best)¹<br>eff 0.75 |" in first_screen
    assert "Marks: ¹ one repeat: the median rests on one run" in first_screen
    assert "± wide interval" in first_screen                   # default at 1: 90, 100, 110
    assert "| mlp " in markdown and "## All measurements" in markdown        # the details follow
    assert "![throughput-mlp-strong](throughput-mlp-strong.png)" in markdown
    assert "![efficiency-mlp-strong](efficiency-mlp-strong.png)" in markdown
    assert "failed:" in markdown and "boom" in markdown and "corrupt:" in markdown
    assert "No prediction: it needs" in markdown and "No GPU utilisation samples" in markdown
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<table" in page and page.count("data:image/png;base64,") == markdown.count("![")== 2
    assert (tmp_path / "report" / "scaling.csv").read_text().startswith("workload,scaling,strategy,num_replicas")


def test_report_of_empty_directory_is_exit_2(bench, tmp_path):
    done = bench("report", str(tmp_path), "-o", str(tmp_path / "out"))
    assert done.returncode == 2 and "no readable records under" in done.stderr
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "record.json").write_text('{"schema_version": 1, "run_')
    done = bench("report", str(tmp_path), "-o", str(tmp_path / "out"))
    assert done.returncode == 2 and "1 could not be read" in done.stderr and "torn" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_ring_allreduce_prediction_known_answer():
    """1 GPU: 0.1 s per step at batch 64, 1e6 parameters (4 MB of gradients), 10 GB/s inside
    a node, 1 GB/s between nodes of 2 GPUs."""
    from analysis import predict
    table = pd.DataFrame([{"workload": "w", "scaling": "strong", "strategy": "s", "num_replicas": 1,
                           "global_batch_size": 64, "per_replica_batch_size": 64, "median_step_s": 0.1,
                           "parameters": 1e6, "samples_per_s": 640.0}])
    model = predict.predict(table, intra_bw=10e9, inter_bw=1e9, gpus_per_node=2, counts=[2, 4, 8, 32])
    row = lambda n, overlap: model[(model.num_replicas == n) & (model.overlap == overlap)].iloc[0]
    assert row(2, "none")["compute_s"] == pytest.approx(0.05)
    assert row(2, "none")["allreduce_s"] == pytest.approx(2 * 1 / 2 * 4e6 / 10e9)          # 0.4 ms in the node
    assert row(4, "none")["allreduce_s"] == pytest.approx(2 * 3 / 4 * 4e6 / 1e9)            # 6 ms over the network
    assert row(4, "none")["step_s"] == pytest.approx(0.025 + 0.006)
    assert row(4, "full")["step_s"] == pytest.approx(0.025)
    assert row(4, "none")["efficiency"] == pytest.approx(0.025 / 0.031)
    assert row(1, "none")["efficiency"] == pytest.approx(1.0)
    assert model["num_replicas"].max() == 32
    weak = predict.predict(table.assign(scaling="weak"), intra_bw=10e9, counts=[8])
    assert weak[(weak.num_replicas == 8) & (weak.overlap == "none")].iloc[0]["compute_s"] == pytest.approx(0.1)


def comm_record():
    return RunRecord(run_id="comm-1", workload="allreduce", strategy="mpi", kind="comm", status="ok",
                     world_size=2, metrics={"peak_busbw_GBps": 12.5, "allreduce": []})


def test_report_with_prediction_tuning_study_and_odd_records(tmp_path):
    from bench.core.record import atomic_write_text
    results = tmp_path / "results"
    for run_id, gpus, tput in (("a", 1, 100.0), ("b", 2, 150.0)):
        rec = record(run_id, "mlp", "mwms", gpus, tput)
        rec.extra["parameters"] = 100_000
        if gpus == 2:       # NVML samples of two GPUs: 640 J over 10 steps of 64 samples
            rec.gpu = {"per_gpu": {"0": {"util_pct_mean": 40.0, "energy_j": 300.0},
                                   "1": {"util_pct_mean": 60.0, "energy_j": 340.0}}}
            rec.timing["steps"] = 10
        write_record(results, rec)
    (results / "a" / "steps.csv").write_text("epoch,step,seconds,warmup\n0,0,0.5,1\n0,1,0.010,0\n0,2,0.012,0\n")
    (results / "b" / "gpu.csv").write_text("t_s,gpu,util_pct,mem_used_mib,power_w\n0.0,0,10,100,60\n"
                                           "1.0,0,95,2000,250\n0.0,1,12,100,61\n1.0,1,90,1900,240\n")
    untimed = record("u", "mlp", "mwms", 1, 0.0)
    untimed.throughput, untimed.timing = {}, {"steps": 3}
    write_record(results, untimed)
    write_record(results, comm_record())
    newer = record("v2", "mlp", "mwms", 1, 1.0).to_dict() | {"schema_version": 99}
    atomic_write_text(results / "v2" / "record.json", __import__("json").dumps(newer))
    trials = []
    for trial_id, scores, events in (("t_0", [0.2, 0.3, 0.5], []),
                                     ("t_1", [0.2, 0.1, 0.4], [{"type": "exploit", "iteration": 3}])):
        trial = RunRecord(run_id=f"pbt-1-{trial_id}", workload="memnn", strategy="ray", kind="trial", status="ok",
                          history={"mean_accuracy": scores}, extra={"trial_id": trial_id, "events": events})
        write_record(results, trial)
        trials.append(trial.run_id)
    study = RunRecord(run_id="pbt-1", workload="memnn", strategy="ray", kind="study", status="ok",
                      hyperparameters={"dropout": 0.25}, timing={"wall_s": 12.0},
                      metrics={"trials": 2, "trials_failed": 0, "perturbations": 1, "best_mean_accuracy": 0.5},
                      extra={"scheduler": "pbt", "metric": "mean_accuracy", "trial_records": trials})
    write_record(results, study)
    markdown = report.build([str(results)], tmp_path / "out").markdown.read_text()
    assert "Inputs: `bench comm` comm-1 (2 ranks, peak busbw 12.50 GB/s)" in markdown
    assert "![prediction-mlp-strong](prediction-mlp-strong.png)" in markdown
    assert "![steps-mlp](steps-mlp.png)" in markdown and "![gpu-utilisation](gpu-utilisation.png)" in markdown
    assert "No GPU utilisation samples" not in markdown
    assert "ok, no timed steps" in markdown and "`" + str(results / "u" / "record.json") + "`" in markdown
    assert "unsupported schema_version 99" in markdown
    assert "| pbt-1 " in markdown and "dropout=0.25" in markdown and "![pbt-pbt-1](pbt-pbt-1.png)" in markdown
    assert "records: 8 (run 3, trial 2, comm 1, study 1)" in markdown
    assert (tmp_path / "out" / "prediction.csv").is_file()
    table = pd.read_csv(tmp_path / "out" / "scaling.csv")
    two = table[table.num_replicas == 2].iloc[0]
    assert two["energy_per_sample_j"] == pytest.approx(1.0) and two["gpu_util_pct"] == pytest.approx(50.0)
    assert "| 50% " in markdown
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("<table") == 4 and page.count("data:image/png;base64,") == markdown.count("![")


def test_compare_flags_a_regression_beyond_tolerance_and_not_noise(bench, tmp_path):
    def write(root, values):
        for i, tput in enumerate(values):
            write_record(root, record(f"r{i}", "mlp", "mwms", 2, tput))
    write(tmp_path / "base", [100.0, 101.0, 99.0])
    write(tmp_path / "slower", [90.0, 91.0, 89.0])          # -10%, intervals apart
    write(tmp_path / "noisy", [96.0, 80.0, 110.0])          # median -4%... within 5% anyway
    write(tmp_path / "wide", [90.0, 70.0, 100.0])           # -10%, but the intervals overlap
    done = bench("compare", str(tmp_path / "base"), str(tmp_path / "slower"), "--tolerance", "5%")
    assert done.returncode == 1 and "REGRESSION" in done.stdout and "-10.0%" in done.stdout, done.stdout
    assert bench("compare", str(tmp_path / "base"), str(tmp_path / "noisy")).returncode == 0
    wide = bench("compare", str(tmp_path / "base"), str(tmp_path / "wide"), "--tolerance", "0.05")
    assert wide.returncode == 0 and "REGRESSION" not in wide.stdout, wide.stdout
    assert bench("compare", str(tmp_path / "base"), str(tmp_path / "slower"), "--tolerance", "15%").returncode == 0
    bad = bench("compare", str(tmp_path / "base"), str(tmp_path / "slower"), "--tolerance", "lots")
    assert bad.returncode == 2 and "--tolerance 'lots'" in bad.stderr


def test_alpha_beta_fit_recovers_a_known_link():
    """2 ranks, alpha 50 us, busbw 1 GB/s: time = 2 alpha + bytes / B."""
    from analysis import predict
    rows = [{"bytes": s, "time_us": (2 * 50e-6 + s / 1e9) * 1e6} for s in (1 << 10, 1 << 16, 1 << 20, 1 << 24)]
    alpha, bandwidth = predict.fit_alpha_beta(rows, 2)
    assert alpha == pytest.approx(50e-6) and bandwidth == pytest.approx(1e9)
    four = [{"bytes": s, "time_us": (6 * 20e-6 + 1.5 * s / 2e9) * 1e6} for s in (1 << 12, 1 << 22)]
    assert predict.fit_alpha_beta(four, 4) == pytest.approx((20e-6, 2e9))


def test_alpha_beta_around_a_size_follows_a_bent_curve():
    """A token-bucket link: 64 KiB goes at 10 MB/s (the burst), 128 KiB and up at 6 MB/s. The
    line through all sizes is pulled by the burst; the one around 1.5 MB meets the curve."""
    from analysis import predict
    rate = lambda s: 10e6 if s <= 1 << 16 else 6e6
    rows = [{"bytes": s, "time_us": 1e6 * s / rate(s)} for s in (1 << 14, 1 << 15, 1 << 16, 1 << 20, 1 << 21)]
    gradient = 1.5 * (1 << 20)
    alpha, bandwidth = predict.fit_alpha_beta(rows, 2, around=gradient)
    assert predict.allreduce_s(gradient, 2, alpha, bandwidth) == pytest.approx(gradient / 6e6)
    assert bandwidth == pytest.approx(6e6)
    edge = predict.fit_alpha_beta(rows, 2, around=64 << 20)           # beyond the largest: the last two
    assert edge[1] == pytest.approx(6e6)


def test_alpha_beta_where_time_falls_with_size_around_the_gradient():
    """Noise larger than the bytes' cost (bench comm at half a core: 8.0 ms for 512 KiB, 5.3 ms
    for 1 MiB) gives no negative bandwidth: the line over every size, or latency alone."""
    from analysis import predict
    noisy = [{"bytes": s << 10, "time_us": t} for s, t in ((64, 6300), (256, 6250), (512, 8020), (1024, 5280),
                                                            (4096, 11690))]
    alpha, bandwidth = predict.fit_alpha_beta(noisy, 2, around=473128)
    assert 0 < bandwidth < math.inf and alpha > 0
    flat = [{"bytes": s << 10, "time_us": t} for s, t in ((256, 6000), (512, 5000), (1024, 4000))]
    assert predict.fit_alpha_beta(flat, 2, around=473128) == (pytest.approx(0.0025), math.inf)


def test_alpha_beta_around_a_size_fits_the_sizes_within_a_factor_of_it():
    """Around 473,128 bytes (mlp's gradient) the fit is the least-squares line of 256 KiB,
    512 KiB and 1 MiB; the burst at 64 KiB and a stall at 4 MiB are left out, and one slow
    run at 512 KiB moves the prediction by less than half of what it would through two sizes
    (12% against 27%)."""
    from analysis import predict
    line = lambda s: s / 6.25e6                          # 50 Mbit/s, no latency
    times = {1 << 16: 0.5 * line(1 << 16), 1 << 18: line(1 << 18), 1 << 19: 1.3 * line(1 << 19),
             1 << 20: line(1 << 20), 1 << 22: 3 * line(1 << 22)}
    rows = [{"bytes": s, "time_us": t * 1e6} for s, t in times.items()]
    gradient = 473128
    slope, intercept = np.polyfit([1 << 18, 1 << 19, 1 << 20], [times[1 << 18], times[1 << 19], times[1 << 20]], 1)
    alpha, bandwidth = predict.fit_alpha_beta(rows, 2, around=gradient)
    assert predict.allreduce_s(gradient, 2, alpha, bandwidth) == pytest.approx(intercept + slope * gradient)
    assert predict.allreduce_s(gradient, 2, alpha, bandwidth) / line(gradient) == pytest.approx(1.12, abs=0.01)


def test_compute_fit_and_step_model_known_answers():
    from analysis import predict
    t0, c = predict.fit_compute([(32, 0.010 + 32 * 0.001), (64, 0.010 + 64 * 0.001)])
    assert (t0, c) == pytest.approx((0.010, 0.001))
    comm = predict.allreduce_s(4e6, 2, alpha=1e-4, bandwidth=1e9, collectives=3)
    assert comm == pytest.approx(3 * 2 * 1e-4 + 4e6 / 1e9)
    assert predict.step_s(0.074, 0.005, comm, overlap=0.5) == pytest.approx(0.079 + comm / 2)
    assert predict.allreduce_s(4e6, 1, 1e-4, 1e9) == 0.0
    with pytest.raises(ValueError):
        predict.fit_compute([(32, 0.1), (32, 0.2)])


def test_report_compares_two_studies_in_a_b_columns(bench, results, tmp_path):
    newer = tmp_path.with_name(tmp_path.name + "-newer")       # results is tmp_path: B beside it, not in it
    for run_id, strategy, gpus, tput in (("n1", "default", 1, 101.0), ("n2", "mwms", 4, 120.0)):
        write_record(newer, record(run_id, "mlp", strategy, gpus, tput))
    done = bench("report", str(results), "-o", str(tmp_path / "out"), "--compare", str(newer))
    assert done.returncode == 0, done.stderr
    markdown = (tmp_path / "out" / "report.md").read_text()
    comparison = markdown.split("## Comparison: A (this report) and B")[1].split("## Plots")[0]
    assert "| mlp        | strong    | mwms       |       4 | 240 [240, 240]" in comparison
    assert "| 120 [120, 120] | -50.0% | no                  | REGRESSION |" in comparison
    default = next(line for line in comparison.splitlines() if "| default" in line)
    assert "+1.0%" in default and "| yes" in default and "| same" in default   # 101 within 100 [90, 110]
    horovod = next(line for line in comparison.splitlines() if "| horovod" in line)
    assert "| missing" in horovod and "| no " not in horovod
    bad = bench("report", str(results), "-o", str(tmp_path / "out2"), "--compare", str(tmp_path / "none"))
    assert bad.returncode == 2 and "no such results directory" in bad.stderr


def test_runs_with_gpus_are_counted_in_gpus(tmp_path):
    for run_id, gpus, tput in (("g1", 1, 1000.0), ("g2", 2, 1900.0)):
        rec = record(run_id, "charrnn-gru", "horovod", gpus, tput)
        rec.provenance = {"gpu_models": ["NVIDIA A100-SXM4-40GB"]}
        write_record(tmp_path / "r", rec)
    built = report.build([str(tmp_path / "r")], tmp_path / "out")
    assert "| strategy | 1 GPU | 2 GPUs |" in built.summary
    assert "At 2 GPUs: horovod fastest, 1,900 samples/s, efficiency 0.95 of its 1-GPU run." in built.summary


def test_prediction_uses_the_strategys_own_link_calibrates_overhead_and_flags_misses(tmp_path):
    """A 2-rank mwms link of alpha 50 us and B 0.1 GB/s; 1e6 parameters (4 MB), weak scaling
    from a 100 ms step at batch 64. 2 replicas: allreduce 2 x 50 us + 4 MB / 0.1 GB/s = 40.1
    ms; measured 700 samples/s (182.86 ms a step) calibrates the overhead: 42.76 ms.
    4 replicas: allreduce 6 x 50 us + 1.5 x 4 MB / 0.1 GB/s = 60.3 ms, predicted step 203.06
    ms, 256 / 0.20306 = 1,261 samples/s; measured 1,000 is 0.79 of it: flagged."""
    results = tmp_path / "results"
    for run_id, gpus, tput in (("a", 1, 640.0), ("b", 2, 700.0), ("c", 4, 1000.0)):
        rec = record(run_id, "mlp", "mwms", gpus, tput, global_batch=64 * gpus)
        rec.per_replica_batch_size, rec.config = 64, {"per_replica_batch_size": 64}
        rec.extra["parameters"] = 1_000_000
        rec.world_size, rec.ranks_per_node = gpus, 1         # one replica per node
        write_record(results, rec)
    rows = [{"bytes": n, "time_us": 1e6 * (2 * 50e-6 + n / 0.1e9)} for n in (4096, 65536, 1 << 20, 1 << 24)]
    write_record(results, RunRecord(run_id="comm-mwms", workload="allreduce", strategy="mwms", kind="comm",
                                    status="ok", world_size=2, metrics={"peak_busbw_GBps": 0.1, "allreduce": rows}))
    markdown = report.build([str(results)], tmp_path / "out").markdown.read_text()
    assert ("mwms between nodes: alpha 50 us, B 0.100 GB/s over all sizes of `bench comm` comm-mwms "
            "(mwms, 2 ranks, between nodes)") in markdown
    assert "1 replica per node (from the runs that span nodes)" in markdown
    cells = {}
    for line in markdown.splitlines():
        if line.startswith("| mlp") and " ms " in line:
            row = [c.strip() for c in line.strip().strip("|").split("|")]
            cells[row[3]] = row[4:]
    assert cells["2"] == ["100.0 ms", "42.8 ms", "40.10 ms", "700", "700", "1", "fitted overhead", ""], cells
    assert cells["4"] == ["100.0 ms", "42.8 ms", "60.30 ms", "1,261", "1,000", "0.79", "tested", "yes"], cells
    assert cells["1"][1:3] == ["0.0 ms", "0.00 ms"] and cells["1"][-2:] == ["fitted", ""]


def test_prediction_takes_the_link_inside_a_node_or_between_nodes_by_count():
    """mwms measured inside a node (2 ranks on one node: alpha 50 us, B 1 GB/s) and between
    nodes (B 0.1 GB/s); the runs put 2 replicas on a node. 4 MB of gradients: at 2 replicas
    the allreduce costs 2 x 50 us + 4 MB / 1 GB/s = 4.1 ms, at 4 replicas (across nodes)
    6 x 50 us + 1.5 x 4 MB / 0.1 GB/s = 60.3 ms."""
    from analysis import predict
    rows = lambda bw: [{"bytes": n, "time_us": 1e6 * (2 * 50e-6 + n / bw)} for n in (65536, 1 << 20, 1 << 24)]
    comms = [RunRecord(run_id=f"comm-{where}", workload="allreduce", strategy="mwms", kind="comm", status="ok",
                       world_size=2, ranks_per_node=per_node, metrics={"allreduce": rows(bw)})
             for where, per_node, bw in (("inside", 2, 1e9), ("between", 1, 0.1e9))]
    runs = [RunRecord(run_id=f"run-{n}", workload="mlp", strategy="mwms", kind="run", status="ok",
                      world_size=n, ranks_per_node=min(n, 2)) for n in (1, 2, 4)]
    assert report.replicas_per_node(runs + comms) == (2, "from the runs that span nodes")
    assert report.replicas_per_node(runs[:2]) == (2, "assumed: no run spans nodes; --gpus-per-node sets it")
    links = predict.links_from_comm(comms)
    assert {key: link.where for key, link in links.items()} == {("mwms", False): "inside a node",
                                                                ("mwms", True): "between nodes"}
    table = pd.DataFrame([{"workload": "mlp", "scaling": "weak", "strategy": "mwms", "num_replicas": 1,
                           "global_batch_size": 64, "per_replica_batch_size": 64, "parameters": 1e6,
                           "samples_per_s": 640.0}])
    model = predict.predict(table, intra_bw=1.0, gpus_per_node=2, counts=[2, 4], links=links)
    none = model[model.overlap == "none"].set_index("num_replicas")
    assert none.loc[2, "allreduce_s"] == pytest.approx(4.1e-3)
    assert none.loc[4, "allreduce_s"] == pytest.approx(60.3e-3)
    assert "inside a node" in none.loc[2, "link"] and "between nodes" in none.loc[4, "link"]
    assert predict.choose_link({("mpi", True): links["mwms", True]}, "horovod", False) is links["mwms", True]


def test_compute_follows_t0_plus_c_times_batch_where_two_batch_sizes_were_run():
    """One replica: 0.2 s a step at batch 256 (a strong study's base), 0.08 s at batch 64 (a
    weak study's): c = 0.12 s / 192 samples, t0 = 0.04 s. Strong scaling to 4 replicas runs
    64 samples a replica: 0.08 s of compute, not the 0.05 s proportional to the batch."""
    from analysis import predict
    rows = [{"workload": "w", "scaling": scaling, "strategy": "s", "num_replicas": 1, "global_batch_size": batch,
             "per_replica_batch_size": batch, "parameters": 1e6, "samples_per_s": batch / step}
            for scaling, batch, step in (("strong", 256, 0.2), ("weak", 64, 0.08))]
    table = pd.DataFrame(rows)
    assert predict.compute_slope(table, "w", "s", 1) == pytest.approx(0.12 / 192)
    model = predict.predict(table, intra_bw=10e9, counts=[4])
    compute = model[model.overlap == "none"].set_index(["scaling", "num_replicas"])["compute_s"]
    assert compute["strong", 4] == pytest.approx(0.08)
    assert compute["weak", 4] == pytest.approx(0.08) and compute["strong", 1] == pytest.approx(0.2)
    assert predict.compute_slope(table[table.scaling == "strong"], "w", "s", 1) is None
