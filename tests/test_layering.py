"""Dependencies run one way: planning and reporting work without TensorFlow, workloads never
import a backend and backends never import a workload, and jobs/ and analysis/ never name
a backend (fast tier)."""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

HEAVY = ("tensorflow", "keras", "horovod", "ray")

# Every module of jobs/ and analysis/, and every backend module, imported with TensorFlow,
# Keras, Horovod and Ray unimportable; then a study is planned and written, records are
# reported on and compared, as on a login node or a laptop.
# Python run with the frameworks unimportable ({heavy}: their top-level names)
UNIMPORTABLE = r'''
import sys

class Unimportable:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {heavy!r}:
            raise ImportError(f"{{name}} is unimportable in this test")
sys.meta_path.insert(0, Unimportable())
'''
LOGIN_NODE = UNIMPORTABLE + r'''
import importlib, pkgutil, sys, tempfile
from pathlib import Path

import analysis, jobs, strategies
modules = [f"{{p.__name__}}.{{m.name}}" for p in (analysis, jobs) for m in pkgutil.iter_modules(p.__path__)]
modules += [strategies._BACKENDS[name][0] for name in strategies.names()]
modules += ["strategies.cluster", "strategies.ray_slurm", "strategies.compat",
            "bench.cli", "bench.run.launch", "bench.run.runner", "bench.run.lifecycle", "bench.core.record", "bench.core.config"]
for module in modules:
    importlib.import_module(module)

from jobs import sbatch, spec
from analysis import compare, report
from bench.core.record import RunRecord, write_record
work = Path(tempfile.mkdtemp())
study = spec.load("{example}")
print(sbatch.plan(study).splitlines()[-1])
print(len(sbatch.write(study, work / "jobs")), "scripts")
for directory, speed in (("base", 100.0), ("new", 101.0)):
    for i, (strategy, gpus) in enumerate([("default", 1), ("mwms", 2), ("horovod", 2)]):
        write_record(work / directory, RunRecord(
            run_id=f"r{{i}}", workload="mlp", strategy=strategy, status="ok", num_replicas=gpus,
            global_batch_size=64, per_replica_batch_size=64 // gpus,
            throughput={{"samples_per_s": speed * gpus}}, timing={{"step_time": {{"median_s": 0.1}}}}))
print(report.build([str(work / "base")], work / "report").markdown.name)
table = compare.compare([work / "base"], [work / "new"], 0.05)
print((table["verdict"] == "REGRESSION").sum(), "regressions")
print(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r}))
'''


def test_planning_writing_reporting_and_comparing_work_without_the_frameworks():
    script = LOGIN_NODE.format(heavy=HEAVY, example=ROOT / "examples" / "ft3-charrnn.toml")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].endswith("node-hours (time limit 00:30:00 each)")
    assert lines[1:] == ["45 scripts", "report.md", "0 regressions", "[]"]


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
        assert not [m for m in imports_of(ROOT / folder) if m.split(".")[0] in HEAVY]


# Strings that are a backend's name but name something else here: Python distributions whose
# versions a record carries, and Ray's own files and facts (Ray Tune runs the studies).
NOT_A_BACKEND = {("bench/core/provenance.py", "horovod"), ("bench/core/provenance.py", "ray"),
                 ("bench/core/history.py", "horovod"), ("bench/core/history.py", "ray"),
                 ("bench/study/tune.py", "ray")}


def test_no_code_outside_strategies_names_a_backend():
    """Adding a backend touches strategies/ only: no string in bench/, jobs/ or analysis/ is a
    backend's name ("default" aside: it is also Open MPI's and argparse's word, and RunConfig's
    default strategy)."""
    import strategies
    names = set(strategies.names()) - {"default"}
    assert names, "no backend registered"
    found = []
    for folder in ("bench", "jobs", "analysis"):
        for path in (ROOT / folder).rglob("*.py"):
            where = str(path.relative_to(ROOT))
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and node.value in names and (where, node.value) not in NOT_A_BACKEND:
                    found.append(f"{where}:{node.lineno} names backend {node.value!r}")
    assert not found, "\n".join(found)


PACKAGES = ("bench", "strategies", "jobs", "analysis")


def module_graph() -> dict[str, set[str]]:
    """Every module of the packages and the modules of the packages it imports, at any depth
    of its code (a function's late import is an arrow too)."""
    paths = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1], *filter(None, [base])])
                found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base for alias in node.names}
        graph[name] = {module for module in found if module in paths and module != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))
    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_through_others():
    graph = module_graph()
    assert "jobs.spec" in graph and "bench.core.config" in graph["bench.run.runner"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]    # it can find one
    assert circles(graph) == []


# The floors, lowest first: a package imports only packages on floors below its own.
FLOORS = [("bench.core",), ("bench.data", "strategies"), ("bench.workloads",), ("bench.run",),
          ("bench.study", "bench.tools", "jobs"), ("analysis",), ("bench",)]


def package_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "bench" and len(parts) > 2 or (len(parts) == 2 and (ROOT / "bench" / parts[1]).is_dir()):
        return ".".join(parts[:2])
    return parts[0]


def test_every_package_imports_only_the_floors_below_it():
    floor = {package: level for level, packages in enumerate(FLOORS) for package in packages}
    graph = module_graph()
    packages = {package_of(module) for module in graph}
    assert packages == set(floor), "a package without a floor: add it to FLOORS"
    upward = sorted((module, other) for module, imported in graph.items() for other in imported
                    if package_of(other) != package_of(module) and floor[package_of(other)] >= floor[package_of(module)])
    assert not upward, "imports of a floor not below: " + ", ".join(f"{a} -> {b}" for a, b in upward)


# With the frameworks unimportable, every error a run's names, choices, placement or `--set` keys
# can cause is still one line and exit 2 (it comes before TensorFlow would load), `bench list`
# answers, and nothing imported a framework.
BEFORE_TENSORFLOW = UNIMPORTABLE + r'''
import contextlib, io

from bench import cli
for argv in {commands!r}:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = cli.main(argv)
    print(code, (err.getvalue().strip() or out.getvalue().strip()).splitlines()[0])
print(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r}))
'''
BEFORE_TENSORFLOW_ERRORS = {
    ("run", "-w", "mlp", "--set", "nonsense=1"): "unknown hyperparameter 'nonsense' for mlp",
    ("run", "-w", "memnn", "--set", "hops=3"): "hops: applies with architecture=memn2n only",
    ("run", "-w", "mlp", "--devices", "2"): "strategy 'default' runs one device a process; --devices 2 needs",
    ("run", "-w", "mlp", "-s", "horovod", "--devices", "2"): "--devices 2 needs --strategy mirrored (or --local-workers N)",
    ("run", "-w", "mlp", "--local-workers", "2"): "--local-workers: strategy 'default' runs in one process",
    ("run", "-w", "mlp", "-s", "nonsense"): "unknown strategy 'nonsense'",
    ("run", "-w", "nonsense"): "unknown workload 'nonsense'",
    ("run", "-w", "mlp", "--precision", "fp8"): "--precision",
    ("study", "--workloads", "mlp", "--set", "nonsense=1"): "unknown hyperparameter 'nonsense' for mlp",
}


def test_errors_that_need_no_tensorflow_come_before_it():
    commands = [list(argv) for argv in BEFORE_TENSORFLOW_ERRORS] + [["list"]]
    script = BEFORE_TENSORFLOW.format(heavy=HEAVY, commands=commands)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    for line, (argv, message) in zip(lines, BEFORE_TENSORFLOW_ERRORS.items()):
        assert line.startswith("2 bench: error: ") and message in line, (argv, line)
    assert lines[-2] == "0 workloads:" and lines[-1] == "[]", lines


def _best_of_3(*argv: str) -> float:
    import time
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bench", *argv], capture_output=True, cwd=ROOT, timeout=120)
        times.append(time.perf_counter() - started)
    return min(times)


def test_list_and_errors_before_tensorflow_take_about_as_long_as_help():
    """As ratios to `bench --help` (Python and argparse alone), not seconds: importing
    TensorFlow would make them 30-60 times that here, these take 2-3."""
    help_s = _best_of_3("--help")
    for argv in (("list",), ("run", "-w", "mlp", "--set", "nonsense=1"), ("run", "-w", "mlp", "--devices", "2")):
        assert _best_of_3(*argv) < 10 * help_s, argv
