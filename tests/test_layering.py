"""Dependencies run one way: planning and reporting work without TensorFlow, workloads never
import a backend and backends never import a workload."""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_jobs_analysis_and_records_import_without_tensorflow():
    script = ("import sys, jobs.local, analysis.summary, bench.record, bench.cli, bench.workloads, strategies\n"
              "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'horovod', 'ray'))\n"
              "print(heavy)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def imports_of(folder: Path) -> set[str]:
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
    return found


def test_workloads_and_backends_do_not_know_each_other():
    assert not [m for m in imports_of(ROOT / "bench" / "workloads") if m.startswith("strategies")]
    assert not [m for m in imports_of(ROOT / "strategies") if m.startswith("bench.workloads")]
    for folder in ("jobs", "analysis"):
        assert not [m for m in imports_of(ROOT / folder)
                    if m.split(".")[0] in ("tensorflow", "keras", "horovod", "ray")]
