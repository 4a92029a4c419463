"""sbatch scripts for the jobs of a study: a pure function of (job, study, profile).
Every user-supplied string that reaches a script is validated (names) or shlex-quoted."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import strategies
from jobs import slurm, spec
from jobs.spec import Job, Study

HEADER = "#!/bin/bash\n# Written by `bench jobs write`; the study spec is the source of truth."
# SIGTERM two minutes before the time limit: runs stop after an agreed step and write an
# 'interrupted' record instead of being killed mid-step.
SIGNAL = "TERM@120"


def launch_lines(job: Job) -> list[str]:
    """The lines the job's backend launches its run (or study) with."""
    return strategies.get_class(job.strategy).sbatch_lines(job.placement, job.run)


def render(job: Job, study: Study) -> str:
    profile = study.profile
    shape = strategies.get_class(job.strategy).sbatch_shape(job.placement)
    options = [
        ("job-name", job.name), ("nodes", str(job.nodes)), ("ntasks-per-node", str(shape.tasks_per_node)),
        ("cpus-per-task", str(shape.cpus_per_task)),
        ("time", study.time_limit), ("signal", SIGNAL),
        ("output", f"logs/{job.name}.out"), ("error", f"logs/{job.name}.err"),
    ]
    if profile.gres:
        options.append(("gres", profile.gres.format(gpus=job.gpus_per_node)))
    if profile.mem_per_gpu:     # the GPUs' share of the node, so that its other GPUs stay usable
        options.append(("mem", spec.memory_for(profile.mem_per_gpu, max(1, job.gpus_per_node))))
    for key in ("mem", "partition", "qos", "account"):
        if getattr(profile, key):
            options.append((key, getattr(profile, key)))
    lines = [HEADER] + [f"#SBATCH --{key}={shlex.quote(value)}" for key, value in options]
    lines += ["", "set -euo pipefail", *profile.setup, *_activate(study),
              # srun (Slurm >= 22.05) does not pass the job's --cpus-per-task on to its steps
              'if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then export SRUN_CPUS_PER_TASK="$SLURM_CPUS_PER_TASK"; fi',
              f"export DISTBENCH_RESULTS={shlex.quote(study.results)}",
              f"mkdir -p {shlex.quote(study.results)}", *launch_lines(job), ""]
    return "\n".join(lines)


def _activate(study: Study) -> list[str]:
    venv = study.profile.venv or study.venv
    return [f'source "{venv}/bin/activate"'] if venv else []


def render_report(study: Study) -> str:
    lines = [HEADER, f"#SBATCH --job-name={shlex.quote(study.name + '-report')}", "#SBATCH --nodes=1",
             "#SBATCH --ntasks=1", f"#SBATCH --output=logs/{study.name}-report.out",
             f"#SBATCH --error=logs/{study.name}-report.err", "#SBATCH --time=00:30:00", "",
             "set -euo pipefail", *study.profile.setup, *_activate(study),
             # it runs in the scripts' directory (sbatch --chdir): `--jobs .` reads the study's jobs there
             f"bench report {shlex.quote(study.results)} -o {shlex.quote(study.results + '/report')} --jobs ."
             + (f" --profile {shlex.quote(study.profile.path)} --gpus {','.join(map(str, study.what_if_gpus))}"
                if study.what_if_gpus else ""), ""]
    return "\n".join(lines)


def write(study: Study, out: Path) -> list[Path]:
    """One script per job plus report.sbatch (submitted with --dependency=afterany on all)."""
    out = Path(out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    paths, planned = [], {}
    for job in study.jobs():
        path = out / f"{job.name}.sbatch"
        path.write_text(render(job, study))
        paths.append(path)
        planned[path.name] = {"workload": job.workload.name, "strategy": job.strategy, "gpus": job.gpus,
                              "nodes": job.nodes, "repeat": job.repeat}
    (out / slurm.PLAN).write_text(json.dumps({"study": study.name, "jobs": planned}, indent=1, sort_keys=True))
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
    # what the queue charges: a job holds its nodes, or its GPUs' share of a node it does not fill
    node_hours = sum(job.nodes * min(1.0, job.gpus_per_node / study.profile.gpus_per_node) for job in jobs) * hours
    lines.append(f"{len(jobs)} jobs, at most {gpu_hours:g} GPU-hours and {node_hours:g} node-hours "
                 f"(time limit {study.time_limit} each)")
    return "\n".join(lines)


def _hours(limit: str) -> float:
    days, _, clock = limit.rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return (int(days) if days else 0) * 24 + h + m / 60 + s / 3600
