"""`bench`: a thin command line over the library (bench.run.runner, jobs, analysis)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Sequence

from bench.core import config, startup
from bench.core.config import STUDY_CONFIG_ENV
from bench.core.errors import UsageError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr and exit 2 (no usage dump), and no
    abbreviations: `--local-work 2` is an unknown option, not `--local-workers 2`."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:
        command = self.prog.removeprefix("bench").strip()       # main prints "bench: error: "
        raise UsageError(f"{command}: {message}" if command else message)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """RunConfig's fields (their flags, types, choices and help declared in bench.core.config), whose
    defaults are the only ones (flags left out are absent, so that --config FILE supplies them),
    and the shorthands a user types."""
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help="a run config (JSON or TOML, RunConfig's keys); flags override it")
    config.add_options(p, config.RunConfig)
    p.add_argument("--synthetic", action="store_const", const="synthetic", dest="data", default=argparse.SUPPRESS,
                   help="short for --data synthetic")
    p.add_argument("--quiet", "-q", action="store_const", const=0, dest="verbose", default=argparse.SUPPRESS,
                   help="no Keras progress output")


def _add_tune_options(p: argparse.ArgumentParser, scheduler: str) -> None:
    """StudyConfig's fields: the run a trial is (RunConfig's fields trials take) and the scheduler's."""
    config.add_options(p, config.StudyConfig, positional=("workload",), skip=("scheduler",),
                       keep=lambda f: config.trials_take(f) and f.metadata.get("scheduler") in (None, scheduler),
                       defaults=config.SCHEDULER_DEFAULTS[scheduler])
    p.add_argument("--smoke-test", action="store_true", help="4 iterations (as the course's PBT script)")


def _add_study_options(p: argparse.ArgumentParser) -> None:
    """The matrix, and RunConfig's fields the matrix does not set: every run of the study takes them."""
    from jobs import local
    p.add_argument("--name", default="local")
    p.add_argument("--workloads", default="mlp,memnn,charrnn-gru,charrnn-lstm")
    p.add_argument("--strategies", default="default,mirrored")
    p.add_argument("--devices", default="2",
                   help="replica counts, e.g. 1,2: --devices for mirrored, --local-workers for mwms and horovod")
    p.add_argument("--repeats", type=int, default=1, help="each run again with the next seed")
    p.add_argument("--data", default="generated",
                   help="real|generated|synthetic for all, or per workload: mlp=generated,charrnn-gru=real")
    config.add_options(p, config.RunConfig, skip=local.MATRIX_FIELDS, defaults=local.RUN_DEFAULTS)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="distbench: distributed-training benchmarks")
    parser.add_argument("-v", dest="framework_logs", action="store_true",
                        help="before the command (bench -v run ...): TensorFlow's start-up and info lines too "
                             "(off by default: TF_CPP_MIN_LOG_LEVEL=2)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run_options(sub.add_parser("run", help="train one workload under one strategy and write a record"))
    sub.add_parser("list", help="workloads and strategies, and which are available here")
    sub.add_parser("env", help="versions, devices and NVML state of this host")
    for add in (_add_doctor, _add_generate, _add_data):
        add(sub)
    _add_study_options(sub.add_parser("study", help="a local study: every workload x strategy, then a summary table"))
    for add in (_add_comm, _add_jobs, _add_report, _add_predict, _add_tune, _add_compare, _add_cluster, _add_history):
        add(sub)
    sub.add_parser("summary", help="a table of the records under results directories").add_argument("results", nargs="+")
    return parser


def _results_default() -> str:
    return os.environ.get(config.RESULTS_ENV, "results")


def _add_doctor(sub) -> None:
    doctor = sub.add_parser("doctor", help="is this node set up right? one line per check, and the fix")
    doctor.add_argument("--gpus", type=int, metavar="N", help="GPUs this node should show (default: Slurm's allocation)")
    doctor.add_argument("--data-dir")
    doctor.add_argument("--results", default=_results_default())


def _add_generate(sub) -> None:
    gen = sub.add_parser("generate", help="generate text from a char-RNN export or run")
    gen.add_argument("source", help="an export directory, or a run directory / checkpoint of a char-RNN run")
    gen.add_argument("--start", default="ROMEO:")
    gen.add_argument("--length", type=int, default=500)
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--num", type=int, default=1, help="sequences generated in one batch")
    gen.add_argument("--seed", type=int)


def _add_data(sub) -> None:
    data = sub.add_parser("data", help="fetch or check datasets")
    data.add_argument("action", choices=("fetch", "check"))
    data.add_argument("datasets", nargs="*", help="tinyshakespeare, fashion-mnist, babi (default: all)")
    data.add_argument("--data-dir")


def _add_comm(sub) -> None:
    comm = sub.add_parser("comm", help="allreduce bandwidth over MPI (algbw, busbw), as a record")
    comm.add_argument("--min-bytes", type=int, default=1024)
    comm.add_argument("--max-bytes", type=int, default=256 * 1024 * 1024)
    comm.add_argument("--warmup", type=int, default=5)
    comm.add_argument("--iters", type=int, default=20)
    comm.add_argument("--local-workers", type=int, metavar="N", help="mpirun N ranks on this host")
    comm.add_argument("--algorithm", default="default",
                      help="Open MPI's allreduce algorithm, for mpi4py's allreduce or Horovod's: default (Open MPI "
                           "chooses by the number of ranks), ring, recursive_doubling, rabenseifner, segmented_ring, "
                           "nonoverlapping, basic_linear")
    comm.add_argument("--strategy", default="mpi",
                      help="whose allreduce: mpi4py's (mpi, the default), or a backend's, as its train step runs it")
    comm.add_argument("--results", default=_results_default())


def _add_jobs(sub) -> None:
    jobs = sub.add_parser("jobs", help="scaling-study specs to sbatch scripts")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True, parser_class=_Parser)
    jobs_sub.add_parser("plan", help="the expanded job matrix, jobs and GPU-hours; writes nothing").add_argument("spec")
    jobs_write = jobs_sub.add_parser("write", help="one sbatch script per job, and a report job")
    jobs_write.add_argument("spec")
    jobs_write.add_argument("-o", "--out", required=True)
    jobs_write.add_argument("--missing-data", choices=("stop", "generated"), default="stop",
                            help="a workload whose real data is not on this machine: stop before writing "
                                 "(default), or run its jobs on generated data of the same format, said per workload")
    for action, text in (("submit", "sbatch every script not yet submitted, then the report job"),
                         ("status", "Slurm state of every job"),
                         ("collect", "which jobs produced records, which failed, which never started"),
                         ("wait", "wait until every submitted job has left the queue"),
                         ("cancel", "scancel every submitted job")):
        parser_ = jobs_sub.add_parser(action, help=text)
        parser_.add_argument("dir")
        if action == "collect":
            parser_.add_argument("--results", required=True, help="the study's results directory")
        if action == "wait":
            parser_.add_argument("--timeout", type=float, default=3600, metavar="S", help="give up after S seconds")
            parser_.add_argument("--poll", type=float, default=5, metavar="S", help="ask Slurm every S seconds")


def _add_report(sub) -> None:
    report = sub.add_parser("report", help="performance report: tables, speedup/efficiency, plots, HTML")
    report.add_argument("results", nargs="+")
    report.add_argument("-o", "--out", required=True)
    report.add_argument("--bandwidth", type=float, metavar="GBPS",
                        help="intra-node bus bandwidth for the scaling prediction (default: `bench comm` records)")
    report.add_argument("--inter-node-bandwidth", type=float, metavar="GBPS", help="default: the same")
    report.add_argument("--gpus-per-node", type=int, default=None,
                        help="replicas per node for the prediction (default: from the runs that span nodes, else 2)")
    report.add_argument("--compare", nargs="+", metavar="RESULTS",
                        help="B: another study's results; the report adds A/B columns (change, intervals overlap)")
    report.add_argument("--tolerance", default="5%", help="--compare: the change flagged when intervals are disjoint")
    report.add_argument("--profile", help="what-if: a cluster profile (ft3, or a path) to predict --gpus on")
    report.add_argument("--gpus", metavar="N,N,...", help="what-if: GPU counts, e.g. 8,16,32,64 (with --profile)")
    report.add_argument("--jobs", metavar="DIR", help="the study's job scripts (`bench jobs write -o DIR`): "
                        "its failed jobs head the report, and the exit code is 1 if any")


def _add_predict(sub) -> None:
    predict = sub.add_parser("predict", help="what-if: each strategy at GPU counts not run, from a study's records "
                             "and a cluster profile's links")
    predict.add_argument("results", nargs="+")
    predict.add_argument("--profile", required=True, help="a cluster profile (jobs/profiles: ft3, ...) or its path")
    predict.add_argument("--gpus", required=True, metavar="N,N,...", help="GPU counts, e.g. 8,16,32,64")
    predict.add_argument("-o", "--out", metavar="CSV", help="also write the table here")


def _add_tune(sub) -> None:
    tune = sub.add_parser("tune", help="Ray Tune studies: population based training, hyperparameter search")
    tune_sub = tune.add_subparsers(dest="scheduler", required=True, parser_class=_Parser)
    for name, text in (("pbt", "Population Based Training (metric: mean validation accuracy)"),
                       ("search", "random search, then the best config retrained and tested")):
        _add_tune_options(tune_sub.add_parser(name, help=text), name)


def _add_compare(sub) -> None:
    compare = sub.add_parser("compare", help="regression check: exit 1 when CURRENT is slower than BASELINE "
                             "(bench compare BASELINE CURRENT, or bench compare CURRENT --baseline last:5)")
    compare.add_argument("dirs", nargs="+", metavar="DIR",
                         help="BASELINE CURRENT: the reference runs' and the checked runs' results directories; "
                              "with --baseline, CURRENT only")
    compare.add_argument("--baseline", metavar="SPEC", help="the reference runs from the results database: "
                         "last:N (the last N studies of the same cases), FROM:TO (dates) or study:NAME")
    compare.add_argument("--db", help="the results database for --baseline (default: $DISTBENCH_DB, else the "
                                      "first distbench.db in CURRENT or above it)")
    compare.add_argument("--tolerance", default="5%", help="allowed slowdown (default: 5%%)")


def _add_cluster(sub) -> None:
    cluster = sub.add_parser("cluster", help="an emulated multi-node Slurm cluster on this machine (root)")
    cluster.add_argument("action", choices=("up", "run", "check", "clean"),
                         help="up: start it and keep it until Ctrl-C or SIGTERM; run: start it, run the command given "
                              "after --, stop it; check: say whether it can start here; clean: remove what a cluster "
                              "whose owner was killed left (--dir D, or --all)")
    cluster.add_argument("--dir", default="emucluster", help="its configuration, logs and state")
    cluster.add_argument("--all", action="store_true", help="clean: every dead owner's leftovers on this machine")
    cluster.add_argument("--nodes", type=int, default=2)
    cluster.add_argument("--cpus-per-node", "--cores-per-node", dest="cpus_per_node", type=float, default=1,
                         help="cores each node owns; a share below 1 (0.5, 0.25) is held by a cgroup's CPU quota")
    cluster.add_argument("--slots-per-node", type=int, help="CPUs each node declares to Slurm (default: its cores); "
                         "2 on nodes of 1 core runs 2 ranks per node at half a core each")
    cluster.add_argument("--rate", help="every node's link rate (tc tbf), e.g. 300mbit")
    cluster.add_argument("--delay", help="every node's added link delay (netem), e.g. 1ms")


def _add_history(sub) -> None:
    history = sub.add_parser("history", help="every record in a results database: list and filter, import, rebuild")
    history.add_argument("action", nargs="?", default="list", choices=("list", "import", "rebuild", "trend"),
                         help="list (default): the records the filters select; import DIR...: add the records "
                              "under DIR (again: nothing new); rebuild DIR...: recreate the database from them; "
                              "trend CASE...: a case's throughput across studies (CASE: mlp/mwms/2 or mlp/mwms)")
    history.add_argument("dirs", nargs="*", metavar="DIR|CASE", help="results directories (import, rebuild); "
                                                                      "cases (trend)")
    history.add_argument("-o", "--out", default="trend.png", help="trend: the plot (PNG)")
    history.add_argument("--db", help="the database (default: $DISTBENCH_DB, else the first distbench.db in "
                                      "RESULTS or above it, else RESULTS/distbench.db; RESULTS: the first DIR, "
                                      "or $DISTBENCH_RESULTS, or ./results)")
    for name, kind in (("workload", str), ("strategy", str), ("replicas", int), ("study", str), ("status", str),
                       ("kind", str)):
        history.add_argument(f"--{name}", type=kind)
    history.add_argument("--since", help="30d, 12h, 2w ago, or a date (2026-11-01)")
    history.add_argument("--until", help="as --since")
    history.add_argument("--tag", action="append", metavar="KEY=VALUE", help="runs given --tag KEY=VALUE (repeatable)")
    history.add_argument("--format", choices=("table", "csv", "json"), default="table")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        trailing = argv[argv.index("--") + 1:] if "--" in argv else []    # bench cluster run ... -- CMD
        parser = build_parser()
        args, extra = parser.parse_known_args(argv[:len(argv) - len(trailing) - bool(trailing or "--" in argv)])
        if extra and args.command == "data" and not any(word.startswith("-") for word in extra):
            args.datasets += extra          # `bench data check --data-dir DIR NAME`: names after options
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.trailing = trailing
        # before anything imports TensorFlow; the workers a run starts inherit it
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if args.framework_logs else "2")
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:         # `bench history | head`: the reader is gone, and nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _bind_before_tensorflow(cfg):
    """A worker's cores, applied before anything imports TensorFlow (whose threads would
    otherwise start on every core); the backend's class says whether it trains several
    replicas in this process, without importing it."""
    from bench.run import binding
    from bench.run.runner import prepare, replicas_in_process
    _, backend, _ = prepare(cfg)        # every check that needs no TensorFlow, before it loads
    return binding.bind_process(replicas_in_process(cfg, backend), cfg.cpus_per_replica)


def cmd_run(args: argparse.Namespace) -> int:
    from bench.run import launch
    cfg = launch.config_from_command(getattr(args, "config", None), config.given(config.RunConfig, args))
    if cfg.local_workers is not None:
        return launch.launch_local(cfg)
    bound = _bind_before_tensorflow(cfg)
    startup.import_tensorflow()     # without its native start-up lines (unless -v)
    from bench.run import runner
    result = runner.run(cfg, bound)
    # a non-chief rank says nothing (the chief reports); a launched chief neither: its launcher
    # says the same from the record, unprefixed (horovodrun puts "[0]<stdout>:" before each line)
    if result.written and not os.environ.get(launch.LAUNCHED_ENV):
        line = result.record.outcome_line()
        if line:
            print(line, file=sys.stderr if result.record.status != "ok" else sys.stdout)
        print(result.path)
    return _leave_if_interrupted(result.exit_code)


def _leave_if_interrupted(code: int) -> int:
    """An interrupted run has written its record: exit now with 128 + signal. Python restores
    the default signal handlers while it finalizes, and TensorFlow's teardown takes seconds
    (more on a loaded node): a late SIGTERM in that window (Slurm, a launcher, a peer's
    shutdown) killed the process instead, and its exit code said killed, not interrupted."""
    if code > 128:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def cmd_list(args: argparse.Namespace) -> int:
    from bench import workloads
    import strategies
    print("workloads:")
    for name in workloads.names():
        print(f"  {name}")
    print("strategies:")
    for name, (ok, reason) in strategies.availability().items():
        print(f"  {name:<10} {'available' if ok else 'unavailable: ' + reason}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from bench.tools import doctor
    checks = doctor.run_checks(args.data_dir, args.results, args.gpus)
    for check in checks:
        print(check.line(), flush=True)
    errors = sum(check.status == doctor.ERROR for check in checks)
    if errors:
        print(f"bench: error: {errors} check(s) failed", file=sys.stderr)
    return 1 if errors else 0


def cmd_env(args: argparse.Namespace) -> int:
    import json
    from bench.core import gpu, provenance
    state = gpu.probe()
    info = provenance.collect(state)
    info["nvml"] = {"available": state.available, "reason": state.reason,
                    "driver_version": state.driver_version, "gpus": state.gpus}
    try:
        tf = startup.import_tensorflow()
        info["tensorflow_devices"] = [d.name for d in tf.config.list_physical_devices()]
    except ImportError as exc:
        info["tensorflow_devices"] = f"tensorflow not installed ({exc})"
    print(json.dumps(info, indent=2))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from bench.workloads import textgen
    if args.length < 1 or args.num < 1 or args.temperature <= 0:
        raise UsageError("--length and --num must be >= 1 and --temperature > 0")
    for text in textgen.generate_from(args.source, args.start, args.length, args.temperature,
                                      args.num, args.seed):
        print(text)
        print("-" * 40)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from bench.data import catalog
    return catalog.run(args.action, args.datasets, args.data_dir)


def cmd_study(args: argparse.Namespace) -> int:
    from jobs import local
    chosen = [w for w in args.workloads.split(",") if w]
    study = local.LocalStudy(
        workloads=chosen, strategies=[s for s in args.strategies.split(",") if s],
        counts=local.parse_counts(args.devices), name=args.name, repeats=args.repeats,
        data=local.data_sources(args.data, chosen), run=config.given(config.RunConfig, args, skip=local.MATRIX_FIELDS))
    failed = local.run_study(study)
    from analysis import summary
    print()
    print(summary.table(summary.load([study.results_dir])))
    return 1 if failed else 0


def cmd_comm(args: argparse.Namespace) -> int:
    from bench.core.config import from_json
    from bench.tools import comm
    handed = os.environ.get(comm.COMM_CONFIG_ENV)
    if handed is not None:            # a rank started by `bench comm --local-workers N`
        return comm.main(from_json(comm.CommConfig, handed, comm.COMM_CONFIG_ENV))
    return comm.main(comm.CommConfig(min_bytes=args.min_bytes, max_bytes=args.max_bytes, warmup=args.warmup,
                                     iters=args.iters, results=args.results, local_workers=args.local_workers,
                                     algorithm=args.algorithm, strategy=args.strategy))


def cmd_jobs(args: argparse.Namespace) -> int:
    from jobs import sbatch, slurm, spec
    if args.jobs_command == "submit":
        try:
            fresh, before = slurm.submit(args.dir)
        except slurm.SubmissionError as exc:
            print(f"bench: error: {exc} (jobs submitted so far are in the manifest)", file=sys.stderr)
            return 1
        print(f"submitted {fresh} jobs ({before} already submitted) and the report job")
        return 0
    if args.jobs_command == "status":
        for script, state in sorted(slurm.states(args.dir).items()):
            print(f"{state:<12} {script}")
        return 0
    if args.jobs_command == "collect":
        rows = slurm.collect(args.dir, args.results)
        if Path(args.results).is_dir():
            from bench.core import history
            history.index_quietly(args.results)
        for row in rows:
            print(f"{row['status']:<14} {row['job_id']:>8} {row['script']}")
            for line in row.get("errors", []) + row.get("stderr_tail", []):
                print(f"    {line}")
        return 0 if all(r["status"] == "ok" for r in rows) else 1
    if args.jobs_command == "wait":
        if slurm.wait(args.dir, args.timeout, args.poll, report=lambda line: print(line, flush=True)):
            return 0
        print(f"bench: error: jobs still queued or running after {args.timeout:g} s", file=sys.stderr)
        return 1
    if args.jobs_command == "cancel":
        print(f"cancelled {slurm.cancel(args.dir)} jobs")
        return 0
    study = spec.load(args.spec)
    if args.jobs_command == "plan":
        print(sbatch.plan(study))
        return 0
    study = _with_venv(study)
    missing = spec.missing_data(study)
    if missing and args.missing_data == "stop":
        workload, why = next(iter(missing.items()))
        from bench import workloads
        raise UsageError(f"{workload}: its real data is missing ({why}): fetch it (`bench data fetch "
                         f"{workloads.real_dataset(workload)}`) or write with --missing-data generated")
    for workload, why in missing.items():
        print(f"{workload}: real data missing ({why}): its jobs run on generated data of the same format")
    paths = sbatch.write(spec.on_generated_data(study, list(missing)), args.out)
    print(f"{len(paths)} job scripts and report.sbatch in {args.out}; results will be in {study.results}, "
          f"the report in {study.results}/report")
    return 0


def _with_venv(study):
    """The study with the virtual environment the jobs will activate, said where it is in doubt."""
    import dataclasses
    if study.profile.venv:
        if not Path(os.path.expandvars(study.profile.venv)).is_dir():
            print(f"bench: warning: the profile's venv {study.profile.venv} does not exist on this host "
                  "(the jobs activate it on theirs)", file=sys.stderr)
        return study
    if sys.prefix == sys.base_prefix:
        print("bench: warning: not run from a virtual environment: the jobs run `bench` from their PATH",
              file=sys.stderr)
        return study
    return dataclasses.replace(study, venv=sys.prefix)


def cmd_report(args: argparse.Namespace) -> int:
    from analysis import report
    for value in (args.bandwidth, args.inter_node_bandwidth):
        if value is not None and value <= 0:
            raise UsageError("--bandwidth and --inter-node-bandwidth must be > 0 (GB/s)")
    if args.gpus_per_node is not None and args.gpus_per_node < 1:
        raise UsageError(f"--gpus-per-node {args.gpus_per_node}: must be >= 1")
    from analysis.compare import parse_tolerance
    if bool(args.profile) != bool(args.gpus):
        raise UsageError("the what-if needs both --profile and --gpus (e.g. --profile ft3 --gpus 8,16,32,64)")
    jobs = None
    if args.jobs:
        from jobs import slurm
        jobs = slurm.collect(args.jobs, args.results[0])
        if Path(args.results[0]).is_dir():      # the report job: the study's records into its history
            from bench.core import history
            history.index_quietly(args.results[0])
    built = report.build(args.results, args.out, report.Options(
        args.bandwidth, args.inter_node_bandwidth, args.gpus_per_node, compare=args.compare,
        tolerance=parse_tolerance(args.tolerance), profile=args.profile,
        what_if_gpus=_gpu_counts(args.gpus) if args.gpus else None, jobs=jobs))
    print(built.summary.strip())
    if built.unreadable:
        print(f"\n{built.unreadable} record file(s) could not be read: listed in the report's problems")
    print(f"\nreport: {built.markdown} and {built.html}")
    failed = [job for job in jobs or [] if job["status"] != "ok"]
    if failed:
        print(f"bench: {len(failed)} of {len(jobs)} jobs of the study failed (the report's first section)",
              file=sys.stderr)
    return 1 if failed else 0


def _gpu_counts(text: str) -> list[int]:
    try:
        return [int(n) for n in text.split(",")]
    except ValueError:
        raise UsageError(f"--gpus {text!r}: GPU counts separated by commas, e.g. 8,16,32,64") from None


def cmd_predict(args: argparse.Namespace) -> int:
    from analysis import whatif
    prediction, inputs = whatif.from_results(args.results, args.profile, _gpu_counts(args.gpus))
    print(whatif.text(prediction, inputs))
    if args.out:
        prediction.to_csv(args.out, index=False)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from bench.study import tune
    handed = os.environ.get(STUDY_CONFIG_ENV)
    cfg = _handed_study(args, handed) if handed is not None else _study_from_options(args)
    result = tune.run_study(cfg)
    print(tune.describe(result))
    print(result.path)
    return _leave_if_interrupted(result.exit_code)


def _study_from_options(args: argparse.Namespace) -> config.StudyConfig:
    values = {**config.SCHEDULER_DEFAULTS[args.scheduler], **config.given(config.StudyConfig, args),
              "scheduler": args.scheduler}
    if args.smoke_test:
        values["epochs"] = 4
    return config.from_dict(config.StudyConfig, config.with_env(config.StudyConfig, values), f"bench tune {args.scheduler}")


def _handed_study(args: argparse.Namespace, handed: str) -> config.StudyConfig:
    """A study handed as JSON (a job script's): `bench tune SCHEDULER WORKLOAD` and no options."""
    cfg = config.from_json(config.StudyConfig, handed, STUDY_CONFIG_ENV)
    if (cfg.scheduler, cfg.workload) != (args.scheduler, args.workload):
        raise UsageError(f"{STUDY_CONFIG_ENV} is a {cfg.scheduler} study of {cfg.workload}, "
                         f"not {args.scheduler} {args.workload}")
    options = sorted(config.given(config.StudyConfig, args, skip=("workload", "scheduler")))
    options += ["smoke_test"] if args.smoke_test else []
    if options:
        raise UsageError(f"{STUDY_CONFIG_ENV} is set (a job's study): give no tune options "
                         f"(got --{options[0].replace('_', '-')})")
    return cfg


def cmd_compare(args: argparse.Namespace) -> int:
    from analysis import compare
    tolerance = compare.parse_tolerance(args.tolerance)
    if args.baseline is None:
        if len(args.dirs) != 2:
            raise UsageError("compare: give BASELINE CURRENT, or CURRENT --baseline last:5 (see --help)")
        table = compare.compare([args.dirs[0]], [args.dirs[1]], tolerance)
    else:
        if len(args.dirs) != 1:
            raise UsageError("compare --baseline: give CURRENT only (the baseline comes from the database)")
        from bench.core import history
        with history.opened(history.location(args.dirs[0], args.db), create=False) as db:
            words, paths = history.baseline(db, args.baseline, args.dirs)
        print(f"baseline: {words}, {len(paths)} run(s)")
        from analysis import summary
        table = compare.compare_frames(compare.records_frame(paths), summary.load(args.dirs), tolerance,
                                       f"the baseline ({words})", args.dirs[0])
    print(compare.render(table, tolerance))
    return 1 if (table["verdict"] == "REGRESSION").any() else 0


def cmd_cluster(args: argparse.Namespace) -> int:
    import subprocess
    from bench.core.procs import Terminated
    from bench.tools import emucluster
    if args.action == "clean":
        return _clean_clusters(None if args.all else args.dir)
    cluster = emucluster.EmulatedCluster(args.dir, args.nodes, args.cpus_per_node, args.rate, args.delay,
                                         slots_per_node=args.slots_per_node)
    if args.action == "check":      # the options too: what `up` would reject, check rejects
        why = emucluster.unavailable()
        print(why or "the emulated cluster can start here")
        return 1 if why else 0
    command = args.trailing
    if args.action == "run" and not command:
        raise UsageError("bench cluster run: give the command after --")
    left = emucluster.leftovers()
    if left:
        print(f"cluster: leftovers of {len(left)} cluster(s) whose owner died: {emucluster.describe(_merged(left))}; "
              f"remove them with: bench cluster clean --all", flush=True)
    try:
        cluster.start()
        print(f"cluster: {args.nodes} nodes ({', '.join(cluster.hostnames)}), {args.cpus_per_node:g} core(s) each; "
              f"export SLURM_CONF={cluster.conf}", flush=True)
        if args.action == "run":
            returncode = subprocess.Popen(command, env={**os.environ, **cluster.env}).wait()
        else:
            while True:
                signal.pause()
    except Terminated as stop:
        started = time.monotonic()
        removed = cluster.stop()
        print(f"cluster: {stop}: stopped {emucluster.describe(removed)} in {time.monotonic() - started:.1f} s",
              file=sys.stderr, flush=True)
        return stop.exit_code
    except BaseException:
        cluster.stop()
        raise
    cluster.stop()
    return returncode


def _merged(entries: list[dict]) -> dict[str, list]:
    from bench.tools import emucluster
    merged: dict[str, list] = {}
    for entry in entries:
        for kind in ("processes", "namespaces", "links", "cgroups"):
            merged.setdefault(kind, []).extend(entry[kind])
    merged["processes"] = [emucluster.process_name(pid) for pid in merged["processes"]]
    return merged


def _clean_clusters(directory: str | None) -> int:
    from bench.tools import emucluster
    if directory is not None:
        state = Path(directory) / emucluster.OWNER_FILE
        try:
            owner = json.loads(state.read_text()) if state.exists() else {}
        except ValueError:
            raise UsageError(f"{state}: not a cluster's owner file (malformed JSON); remove it by hand") from None
        if emucluster.owner_alive(owner):
            print(f"bench cluster clean: the cluster in {directory} is running (its owner is alive); "
                  f"stop it with Ctrl-C or SIGTERM to its owner", file=sys.stderr)
            return 1
    removed = emucluster.clean(directory)
    for entry in removed:
        print(f"cluster clean: removed {entry['tag']} (owner pid {entry.get('owner_pid') or '?'} gone"
              f"{', ' + entry['root'] if entry.get('root') else ''}): {emucluster.describe(entry)}")
    if not removed:
        print("cluster clean: nothing to clean" + (f" in {directory}" if directory else ""))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from analysis import summary
    print(summary.table(summary.load(args.results)))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from bench.core import history
    from bench.core.hparams import parse_set_options
    if args.action in ("import", "rebuild") and not args.dirs:
        raise UsageError(f"history {args.action}: give the results directories (bench history {args.action} DIR...)")
    if args.action == "trend" and not args.dirs:
        raise UsageError("history trend: give the cases, e.g. bench history trend mlp/mwms/2")
    if args.action == "list" and args.dirs:
        raise UsageError("history list takes no directories: it reads the database (--db); "
                         "add directories with: bench history import DIR...")
    where = history.location(args.dirs[0] if args.action in ("import", "rebuild") else None, args.db)
    if args.action == "rebuild":
        return _imported(history.rebuild(where, args.dirs), where)
    if args.action == "import":
        with history.opened(where) as db:
            return _imported(history.import_dirs(db, args.dirs), where)
    query = history.Query({name: getattr(args, name) for name in history.FILTERS if getattr(args, name) is not None},
                          since=args.since and history.parse_time(args.since, "--since"),
                          until=args.until and history.parse_time(args.until, "--until"),
                          tags=parse_set_options(args.tag, "--tag"))
    if args.action == "trend":
        from analysis import history as trends
        cases = [trends.parse_case(text) for text in args.dirs]
    with history.opened(where, create=False) as db:
        if args.action == "trend":
            rows = [row for case in cases for row in history.select(db, dataclasses.replace(
                query, equal={**query.equal, **case}))]
        else:
            rows = history.select(db, query)
    if args.action == "list":
        print(history.render(rows, args.format))
        return 0
    table = trends.points(rows)
    print(trends.text(table))
    if table.empty:
        return 1
    print(f"plot: {trends.plot(table, Path(args.out))}")
    return 0


def _imported(imported, where: Path) -> int:
    print(f"{imported.added} new of {imported.seen} records in {where}")
    for line in imported.unreadable:
        print(f"    unreadable: {line}")
    return 1 if imported.unreadable else 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "env": cmd_env, "generate": cmd_generate,
            "data": cmd_data, "study": cmd_study, "summary": cmd_summary, "comm": cmd_comm,
            "jobs": cmd_jobs, "report": cmd_report, "predict": cmd_predict, "tune": cmd_tune,
            "compare": cmd_compare, "cluster": cmd_cluster, "doctor": cmd_doctor,
            "history": cmd_history}

if __name__ == "__main__":
    sys.exit(main())
