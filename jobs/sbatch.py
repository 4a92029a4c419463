"""sbatch scripts for the jobs of a study: a pure function of (job, study, profile).
Every user-supplied string that reaches a script is validated (names) or shlex-quoted."""

from __future__ import annotations

import shlex
from pathlib import Path

import strategies
from jobs.spec import Job, Study

HEADER = "#!/bin/bash\n# Written by `bench jobs write`; the study spec is the source of truth."
# SIGTERM two minutes before the time limit: runs stop after an agreed step and write an
# 'interrupted' record instead of being killed mid-step.
SIGNAL = "TERM@120"


def launch_line(job: Job, study: Study) -> str:
    """The srun line the job's backend needs."""
    if job.strategy == "ray":
        return _tune_line(job, study)
    profile = study.profile
    backend = strategies.get_class(job.strategy)
    batch = (["--batch-size", str(study.batch_size)] if study.scaling == "strong"
             else ["--per-replica-batch-size", str(study.batch_size)])
    run = ["bench", "run", "--workload", job.workload.name, "--strategy", job.strategy,
           "--epochs", str(study.epochs), "--steps-per-epoch", str(study.steps_per_epoch),
           "--data", job.workload.data, "--seed", str(job.repeat), "--results", study.results, "-q", *batch]
    for key, value in job.workload.settings:
        run += ["--set", f"{key}={value}"]
    if backend.multi_process:
        srun = ["srun", "--nodes", str(job.nodes), "--ntasks-per-node", str(job.gpus_per_node)]
        if job.strategy == "horovod" and profile.mpi:
            srun += shlex.split(profile.mpi)
    else:
        srun = ["srun", "--nodes", "1", "--ntasks", "1"]
        if backend.multi_device and not profile.gres:      # no GPUs: logical CPU devices
            run += ["--devices", str(job.gpus)]
    return " ".join(shlex.quote(part) for part in srun + run)


def _tune_line(job: Job, study: Study) -> str:
    """Ray: the batch script itself runs the study; `--ray slurm` starts a Ray head here and
    workers on the other nodes in srun steps. One trial per GPU, each with the per-GPU batch
    and the workload's settings of the spec."""
    profile = study.profile
    per_gpu = study.batch_size if study.scaling == "weak" else study.batch_size // job.gpus
    tune = ["bench", "tune", study.tune, job.workload.name, "--ray", "slurm", "--samples", str(job.gpus),
            "--iterations", str(study.epochs), "--steps-per-iteration", str(study.steps_per_epoch),
            "--batch-size", str(per_gpu), "--data", job.workload.data, "--seed", str(job.repeat),
            "--results", study.results]
    tune += ["--gpus-per-trial", "1"] if profile.gres else ["--cpus-per-trial", str(profile.cpus_per_task)]
    if study.tune == "search":       # trials differ in learning rate only: the same step time
        tune += ["--space", "learning_rate=loguniform(0.0001, 0.01)", "--no-retrain"]
    for key, value in job.workload.settings:
        tune += ["--set", f"{key}={value}"]
    return " ".join(shlex.quote(part) for part in tune)


def render(job: Job, study: Study) -> str:
    profile = study.profile
    backend = strategies.get_class(job.strategy)
    tasks_per_node = job.gpus_per_node if backend.multi_process else 1
    whole_nodes = job.strategy == "ray" or (not backend.multi_process and job.gpus > 1)
    options = [
        ("job-name", job.name), ("nodes", str(job.nodes)), ("ntasks-per-node", str(tasks_per_node)),
        ("cpus-per-task", str(profile.cpus_per_task * job.gpus_per_node if whole_nodes
                              else profile.cpus_per_task)),
        ("time", study.time_limit), ("signal", SIGNAL),
        ("output", f"logs/{job.name}.out"), ("error", f"logs/{job.name}.err"),
    ]
    if profile.gres:
        options.append(("gres", profile.gres.format(gpus=job.gpus_per_node)))
    for key in ("mem", "partition", "qos", "account"):
        if getattr(profile, key):
            options.append((key, getattr(profile, key)))
    lines = [HEADER] + [f"#SBATCH --{key}={shlex.quote(value)}" for key, value in options]
    lines += ["", "set -euo pipefail", *profile.setup,
              f"export DISTBENCH_RESULTS={shlex.quote(study.results)}",
              f"mkdir -p {shlex.quote(study.results)}", launch_line(job, study), ""]
    return "\n".join(lines)


def render_report(study: Study) -> str:
    lines = [HEADER, f"#SBATCH --job-name={shlex.quote(study.name + '-report')}", "#SBATCH --nodes=1",
             "#SBATCH --ntasks=1", f"#SBATCH --output=logs/{study.name}-report.out",
             f"#SBATCH --error=logs/{study.name}-report.err", "#SBATCH --time=00:30:00", "",
             "set -euo pipefail", *study.profile.setup,
             f"bench report {shlex.quote(study.results)} -o {shlex.quote(study.results + '/report')}", ""]
    return "\n".join(lines)


def write(study: Study, out: Path) -> list[Path]:
    """One script per job plus report.sbatch (submitted with --dependency=afterany on all)."""
    out = Path(out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    paths = []
    for job in study.jobs():
        path = out / f"{job.name}.sbatch"
        path.write_text(render(job, study))
        paths.append(path)
    (out / "report.sbatch").write_text(render_report(study))
    return paths


def plan(study: Study) -> str:
    jobs = study.jobs()
    hours = _hours(study.time_limit)
    lines = [f"study {study.name}: profile {study.profile.name}, {study.scaling} scaling, "
             f"batch {study.batch_size} {'global' if study.scaling == 'strong' else 'per GPU'}"]
    lines += [f"  {job.name}: {job.workload.name} {job.strategy} gpus={job.gpus} nodes={job.nodes}" for job in jobs]
    for combination, why in study.skipped:
        lines.append(f"  skipped {combination}: {why}")
    gpu_hours = sum(job.gpus for job in jobs) * hours
    lines.append(f"{len(jobs)} jobs, at most {gpu_hours:g} GPU-hours (time limit {study.time_limit} each)")
    return "\n".join(lines)


def _hours(limit: str) -> float:
    days, _, clock = limit.rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return (int(days) if days else 0) * 24 + h + m / 60 + s / 3600
