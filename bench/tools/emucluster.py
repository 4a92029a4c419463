"""An emulated multi-node Slurm cluster on one machine, for tests and the demo.

Each node is a network + UTS + mount namespace with its own hostname, its own address on a
private bridge, its own /etc/hosts (bound inside its mount namespace, never the machine's),
its own munged (same key; the socket directory bound privately: slurmds sharing one munged
reject each other's credentials), its own slurmd pinned to its own cores with taskset, and
its own PMIx / TmpFS directory. slurmctld and a munged run in the host namespace. A node's
link can be shaped (`tc tbf` rate, `netem` delay), cut and restored; a node can be killed.

    with EmulatedCluster(root, nodes=2, cores_per_node=1, rate="300mbit") as cluster:
        subprocess.run(["sbatch", ...], env={**os.environ, **cluster.env})

Everything it makes (namespaces, links, daemons, the processes of its jobs) is removed by
`stop()`, also when `start()` failed halfway, and on SIGINT, SIGTERM or SIGHUP while it is up
(they raise `procs.Terminated` in the main thread, so `with` blocks and fixtures unwind).
Everything is named with one prefix (`dbemu<tag>`) and listed, with its owner's pid, in
`owner.json` in the cluster's directory and in a registry under /run: `leftovers()` finds
what an owner killed with SIGKILL left, and `clean()` removes it (never a live cluster's).
Needs root, iproute2, util-linux, slurm-wlm and munge; `unavailable()` says why not, in one
line, where the machine cannot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.core import procs
from bench.core.errors import UsageError
from bench.core.procs import free_ports
from bench.run import cgroups

DAEMONS = ("munged", "slurmctld", "slurmd")
TOOLS = ("ip", "tc", "nsenter", "unshare", "taskset", "sinfo", "srun", "sbatch")
PREFIX = "dbemu"                          # every namespace, link and cgroup a cluster makes
NAME_RE = re.compile(rf"^{PREFIX}(\d+)(?:[bnv]\d*|t\d+)$")     # bridge, node, veth, task
REGISTRY = Path(os.environ.get("DISTBENCH_EMU_REGISTRY", "/run/distbench/emucluster"))
OWNER_FILE = "owner.json"
DAEMON_COMMANDS = {"munged", "slurmctld", "slurmscriptd", "slurmd"}


# The nodes' TaskProlog and TaskEpilog (run by slurmstepd in the node, as root here): a task's
# cgroup of its CPUs' share on its node's cores, joined before the task execs (its threads and
# children inherit it); before and after every task, the cgroups of the cluster's ended tasks removed.
TASK_SHARE = '''import os, sys
sys.path.insert(0, "{root}")
from bench.run import cgroups
TAG, SHARE, CORES, PROLOG = "{tag}", {share!r}, {cores!r}, {prolog!r}
for path in [p for pattern in ("*/" + TAG + "t*", TAG + "t*") for p in cgroups.ROOT.glob(pattern)]:
    try:             # its task gone (a cgroup just made for a starting task is not yet joined)
        if not os.path.exists("/proc/" + path.name[len(TAG) + 1:]) and not (path / "cgroup.procs").read_text().split():
            path.rmdir()
    except OSError:
        pass
pid = os.environ.get("SLURM_TASK_PID")
if PROLOG and pid:
    host = os.environ.get("SLURMD_NODENAME") or os.uname().nodename
    cpus = int(os.environ.get("SLURM_CPUS_PER_TASK") or 1)
    cgroups.join(cgroups.create(TAG + "t" + pid, CORES[host], SHARE * cpus), pid)
'''


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def rate_bits(rate: str) -> float:
    """Bits per second of a tc rate ("300mbit", "1gbit", "500kbit")."""
    units = {"tbit": 1e12, "gbit": 1e9, "mbit": 1e6, "kbit": 1e3, "bit": 1.0}
    for unit, scale in units.items():
        if rate.lower().endswith(unit):
            try:
                return float(rate[:-len(unit)]) * scale
            except ValueError:
                break
    raise UsageError(f"link rate {rate!r}: a number and one of {', '.join(units)} (e.g. 300mbit)")


def unavailable() -> str | None:
    """Why an emulated cluster cannot start here (None: it can)."""
    if os.geteuid() != 0:
        return "the emulated cluster needs root (network namespaces, veth links, bind mounts)"
    missing = [t for t in (*DAEMONS, *TOOLS) if not (shutil.which(t) or Path(f"/usr/sbin/{t}").exists())]
    if missing:
        return f"the emulated cluster needs {', '.join(missing)} (./install.sh installs slurm-wlm, munge, iproute2)"
    probe = f"dbprobe{os.getpid() % 100000}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return f"cannot create network namespaces here: {done.stderr.strip() or done.returncode}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class EmulatedCluster:
    def __init__(self, root: str | Path, nodes: int = 2, cores_per_node: float = 1, rate: str | None = None,
                 delay: str | None = None, subnet: str | None = None, name: str = "emu",
                 slots_per_node: int | None = None) -> None:
        """`cores_per_node` may be a share of a core (0.5: two nodes per core, each held to
        half of its time by a cgroup's CPU quota). `slots_per_node`: the CPUs each node
        declares to Slurm (default: its whole cores, at least 1); 2 on a 1-core node runs two
        ranks of half a core each, as FinisTerrae III's nodes run two ranks (one per GPU).
        A slot smaller than a core is a share every task holds whatever else runs on its node
        (a cgroup per task, made by the nodes' TaskProlog), so that one rank alone on a node
        runs as fast as each of two: the unit of a weak-scaling study stays the same."""
        if not 1 <= nodes <= 8:
            raise UsageError(f"--nodes {nodes}: 1 to 8 nodes")
        self.node_cores = cgroups.fit(nodes, cores_per_node, sorted(os.sched_getaffinity(0)))
        if rate:
            rate_bits(rate)
        self.root = Path(root).resolve()
        self.nodes, self.cores_per_node, self.rate, self.delay = nodes, cores_per_node, rate, delay
        if slots_per_node is not None and slots_per_node < 1:
            raise UsageError(f"--slots-per-node {slots_per_node}: must be >= 1")
        self.slots_per_node = slots_per_node or max(1, int(cores_per_node))
        self.slot_share = cores_per_node / self.slots_per_node
        self.name = name
        self.tag = f"{PREFIX}{_free_tag()}"
        # per cluster, so that two clusters on one machine (a test run beside a demo, two
        # shapes in one test session) do not share an address range; only ever on its own bridge
        self.subnet = subnet or _free_subnet(int(self.tag[len(PREFIX):]))
        self.bridge = f"{self.tag}b"
        self.netns = [f"{self.tag}n{i}" for i in range(1, nodes + 1)]
        self.veths = [f"{self.tag}v{i}" for i in range(1, nodes + 1)]
        self.hostnames = [f"{name}node{i}" for i in range(1, nodes + 1)]
        self.addresses = [f"{self.subnet}.{10 + i}" for i in range(1, nodes + 1)]
        self.conf = self.root / "slurm.conf"
        self._daemons: list[subprocess.Popen] = []
        self._node_daemons: dict[int, subprocess.Popen] = {}
        self._signals: dict[int, object] = {}
        self.cgroups: list[str] = []       # directories, deepest last

    # --- public ---------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    @property
    def controller(self) -> str:
        return f"{self.subnet}.1"

    def __enter__(self) -> "EmulatedCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout_s: float = 60) -> "EmulatedCluster":
        why = unavailable()
        if why:
            raise UsageError(why)
        self._signals = procs.catch_stop_signals()
        try:
            self._write_owner()
            self._network()
            self._files()
            self._controller()
            for index in range(self.nodes):
                self._start_node(index)
            self._wait(lambda: self.idle_nodes() == self.nodes, timeout_s, "every node to register idle")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> dict[str, list[str]]:
        """Its jobs cancelled, then every process started with its SLURM_CONF (a command run
        against it, srun, the jobs' tasks), its daemons, namespaces, links and cgroups: what
        was removed, by kind. The directory's files stay (logs), but for its owner file."""
        try:
            return procs.deferring_signals(self._stop)
        finally:
            procs.restore_signals(self._signals)
            self._signals = {}

    def _stop(self) -> dict[str, list[str]]:
        removed = {"jobs": self._cancel_jobs()}
        started = _pids_with_conf(self.conf)
        daemon_pids = [pid for pid in started if process_name(pid) in DAEMON_COMMANDS]
        removed["daemons"] = [process_name(pid) for pid in daemon_pids]
        removed["processes"] = _end([pid for pid in started if pid not in daemon_pids], grace_s=3)
        daemons = list(self._node_daemons.values()) + self._daemons
        for proc in daemons:
            _kill_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in daemons:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGKILL)
                proc.wait()
        _end(_pids_with_conf(self.conf), grace_s=0)       # daemons that forked away
        self._node_daemons.clear()
        self._daemons.clear()
        removed.update(_remove_resources(self.netns, [*self.veths, self.bridge], self.task_cgroups() + self.cgroups))
        self._forget_owner()
        return removed

    def idle_nodes(self) -> int:
        done = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True,
                              env={**os.environ, **self.env})
        return sum(1 for line in done.stdout.splitlines() if line.split()[-1] in ("idle", "mixed", "allocated"))

    def in_node(self, index: int, command: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run a command in node `index`'s network namespace (0-based)."""
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.netns[index]}", *command], **kwargs)

    def shape(self, index: int, rate: str | None = None, delay: str | None = None) -> None:
        """Shape node `index`'s link: a token bucket at `rate`, `delay` added (netem).

        The bucket holds 2 ms of the rate (at least 16 KiB): what passes above the rate after
        an idle spell, so a step's communication costs what the link's speed says. With a fixed
        256 KiB bucket, which refills while a replica computes, a 50 Mbit/s link sent the first
        256 KiB of every step's allreduce at once (up to 42 ms of line time), and `bench comm`, whose
        collectives follow each other without a pause, never saw that."""
        dev = ["dev", "eth0"]
        self.in_node(index, ["tc", "qdisc", "del", *dev, "root"], capture_output=True)
        if delay:
            self.in_node(index, ["tc", "qdisc", "add", *dev, "root", "handle", "1:", "netem", "delay", delay],
                         check=True, capture_output=True)
        if rate:
            parent = ["parent", "1:1", "handle", "10:"] if delay else ["root"]
            self.in_node(index, ["tc", "qdisc", "add", *dev, *parent, "tbf", "rate", rate, "burst",
                                 str(max(16384, int(rate_bits(rate) / 8 * 0.002))),
                                 "latency", "50ms"], check=True, capture_output=True)

    def set_link(self, index: int, up: bool) -> None:
        subprocess.run(["ip", "link", "set", self.veths[index], "up" if up else "down"], check=True)

    def kill_node(self, index: int) -> None:
        """The node dies: its slurmd, munged and every task in it are killed at once."""
        proc = self._node_daemons.pop(index, None)
        if proc is not None:
            _kill_group(proc, signal.SIGKILL)
            proc.wait()
        self._kill_namespace(self.netns[index])

    def restart_node(self, index: int, timeout_s: float = 60) -> None:
        """A killed node comes back: its daemons start again and Slurm returns it to service."""
        self.kill_node(index)
        self._start_node(index)
        self._wait(lambda: self.idle_nodes() == self.nodes, timeout_s, f"{self.hostnames[index]} to return")

    # --- start-up -------------------------------------------------------------------

    def _network(self) -> None:
        def run(*args: str) -> None:
            done = subprocess.run(args, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.controller}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for index, (netns, veth, address) in enumerate(zip(self.netns, self.veths, self.addresses)):
            run("ip", "netns", "add", netns)
            run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
            run("ip", "link", "set", veth, "master", self.bridge, "up")
            run("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
            run("ip", "-n", netns, "link", "set", "eth0", "up")
            run("ip", "-n", netns, "link", "set", "lo", "up")
            if self.rate or self.delay:
                self.shape(index, self.rate, self.delay)

    def _files(self) -> None:
        for sub in ("munge", "state", "spool", "log", "msock", "nodetmp", "etc"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        for index in range(self.nodes):
            (self.root / f"munge{index + 1}").mkdir(exist_ok=True)
            (self.root / f"tmp{index + 1}").mkdir(exist_ok=True)
        key = self.root / "munge" / "key"
        if key.exists():
            key.chmod(0o600)
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        hosts = Path("/etc/hosts").read_text() + f"\n{self.controller} {socket.gethostname().split('.')[0]}-ctl\n"
        hosts += "".join(f"{a} {h}\n" for a, h in zip(self.addresses, self.hostnames))
        (self.root / "etc" / "hosts").write_text(hosts)
        ctl_port, node_port = free_ports(2)
        nodes = f"{self.name}node[1-{self.nodes}]" if self.nodes > 1 else self.hostnames[0]
        lines = [
            f"ClusterName=distbench-{self.name}", f"SlurmctldHost={socket.gethostname().split('.')[0]}({self.controller})",
            "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge", f"AuthInfo=socket={self._socket}",
            "CredType=cred/munge", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "MpiDefault=none",
            f"StateSaveLocation={self.root / 'state'}", f"SlurmdSpoolDir={self.root / 'spool'}/%n",
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}", f"SlurmdPidFile={self.root / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={self.root / 'log' / 'slurmd-%n.log'}",
            f"SlurmctldPort={ctl_port}", f"SlurmdPort={node_port}", "ReturnToService=2",
            f"TmpFS={self.root / 'nodetmp'}", "SlurmdParameters=config_overrides",
            "JobCompType=jobcomp/filetxt", f"JobCompLoc={self.root / 'jobcomp.txt'}",
            # a request the nodes can never hold is refused at once with the reason, not queued forever
            "EnforcePartLimits=ALL",
            # a dead node is noticed within seconds, not minutes
            "SlurmdTimeout=10", "MessageTimeout=5", "KillWait=5", "InactiveLimit=0",
            *(f"NodeName={h} NodeAddr={a} CPUs={self.slots_per_node} State=UNKNOWN"
              for h, a in zip(self.hostnames, self.addresses)),
            f"PartitionName=emu Nodes={nodes} Default=YES MaxTime=INFINITE State=UP",
            *self._task_share_lines(),
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        (self.root / "mpi.conf").write_text(f"PMIxCliTmpDirBase={self.root / 'nodetmp'}\n")

    def _task_share_lines(self) -> list[str]:
        """Where a slot is less than a core and a node holds several: each task's cgroup of its
        CPUs' share, made before it starts (TaskProlog, given the task's pid) and removed after
        (TaskEpilog: every such cgroup of this cluster left empty)."""
        if self.slot_share >= 1 or self.slots_per_node == 1:
            return []
        cores = {host: cores for host, cores in zip(self.hostnames, self.node_cores)}
        lines = []
        for when, prolog in (("Prolog", True), ("Epilog", False)):
            script = self.root / f"task_{when.lower()}.py"
            script.write_text(f"#!{sys.executable}\n" + TASK_SHARE.format(
                tag=self.tag, share=self.slot_share, cores=cores, prolog=prolog,
                root=Path(__file__).resolve().parents[2]))
            script.chmod(0o755)
            lines.append(f"Task{when}={script}")
        return lines

    def task_cgroups(self) -> list[str]:
        """The cgroups of this cluster's tasks that exist now."""
        return [path for path in _cgroup_dirs() if Path(path).name.startswith(f"{self.tag}t")]

    @property
    def _socket(self) -> Path:
        return self.root / "msock" / "sock"

    def _controller(self) -> None:
        munge = self.root / "munge"
        self._spawn([_sbin("munged"), "--foreground", "--force", f"--socket={self._socket}",
                     f"--key-file={munge / 'key'}", f"--pid-file={munge / 'pid'}",
                     f"--log-file={self.root / 'log' / 'munged.log'}", f"--seed-file={munge / 'seed'}"], "munged")
        self._wait(self._socket.exists, 20, "munged")
        self._spawn([_sbin("slurmctld"), "-D", "-f", str(self.conf)], "slurmctld")
        self._wait(lambda: subprocess.run(["scontrol", "ping"], capture_output=True,
                                          env={**os.environ, **self.env}).returncode == 0, 30, "slurmctld")

    def _start_node(self, index: int) -> None:
        n = index + 1
        root, host = self.root, self.hostnames[index]
        cores = ",".join(map(str, self.node_cores[index]))
        (root / "spool" / host).mkdir(parents=True, exist_ok=True)
        share = []
        if self.cores_per_node < 1:         # the node's daemons and every task in it: its share
            name = f"{self.tag}n{n}"
            mine = [path for path in self.cgroups if Path(path).name == name]    # kept on a restart
            if not mine:
                mine = cgroups.create(name, self.node_cores[index], self.cores_per_node)
                self.cgroups += mine
                self._write_owner()
            share = [f"echo $$ > {path}/cgroup.procs" for path in mine]
        script = " && ".join([
            *share,
            f"hostname {host}",
            f"mount --bind {root / 'etc' / 'hosts'} /etc/hosts",
            f"mount --bind {root / f'munge{n}'} {root / 'msock'}",
            f"mount --bind {root / f'tmp{n}'} {root / 'nodetmp'}",
            f"{_sbin('munged')} --force --socket={self._socket} --key-file={root / 'munge' / 'key'} "
            f"--pid-file={root / f'munge{n}' / 'pid'} --log-file={root / 'log' / f'munged{n}.log'} "
            f"--seed-file={root / f'munge{n}' / 'seed'}",
            f"exec taskset -c {cores} {_sbin('slurmd')} -D -f {self.conf}",
        ])
        command = ["nsenter", f"--net=/run/netns/{self.netns[index]}", "unshare", "--uts", "--mount",
                   "--propagation", "private", "bash", "-c", script]
        self._node_daemons[index] = self._popen(command, f"node{n}")
        self._write_owner()

    def _spawn(self, command: list[str], label: str) -> None:
        self._daemons.append(self._popen(command, label))
        self._write_owner()

    def _popen(self, command: list[str], label: str) -> subprocess.Popen:
        log = open(self.root / "log" / f"{label}.out", "w")
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **self.env})

    def _wait(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [p.args[0] for p in [*self._daemons, *self._node_daemons.values()] if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{Path(dead[0]).name} exited while waiting for {what}; logs in {self.root / 'log'}")
            time.sleep(0.3)
        raise RuntimeError(f"timed out waiting for {what}; logs in {self.root / 'log'}")

    def _kill_namespace(self, netns: str) -> None:
        """Every process in a node's network namespace (its daemons and tasks)."""
        _end(_namespace_pids(netns), grace_s=0)

    def _cancel_jobs(self) -> list[str]:
        try:
            done = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=5,
                                  env={**os.environ, **self.env})
            jobs = done.stdout.split() if done.returncode == 0 else []
            if jobs:
                subprocess.run(["scancel", *jobs], capture_output=True, timeout=5, env={**os.environ, **self.env})
            return jobs
        except subprocess.TimeoutExpired:
            return []

    def _daemon_pids(self) -> set[int]:
        return {p.pid for p in [*self._daemons, *self._node_daemons.values()]}

    def _owner(self) -> dict:
        return {"owner_pid": os.getpid(), "owner_start": _start_time(os.getpid()), "tag": self.tag,
                "root": str(self.root), "conf": str(self.conf), "namespaces": self.netns,
                "links": [*self.veths, self.bridge], "cgroups": self.cgroups,
                "daemons": sorted(self._daemon_pids())}

    def _write_owner(self) -> None:
        """What this cluster makes, with its owner, where `bench cluster clean` finds it if
        the owner is killed without a chance to clean up."""
        text = json.dumps(self._owner(), indent=1)
        self.root.mkdir(parents=True, exist_ok=True)
        REGISTRY.mkdir(parents=True, exist_ok=True)
        for path in (self.root / OWNER_FILE, REGISTRY / f"{self.tag}.json"):
            _write_atomically(path, text)

    def _forget_owner(self) -> None:
        for path in (self.root / OWNER_FILE, REGISTRY / f"{self.tag}.json"):
            path.unlink(missing_ok=True)


# --- what a dead owner left -------------------------------------------------------------

def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot): a pid and its start name one process."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def owner_alive(state: dict) -> bool:
    start = _start_time(int(state.get("owner_pid", 0)))
    return start is not None and start == state.get("owner_start")


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return pids


def _pids_with_conf(conf: str | Path) -> list[int]:
    """Every process but this one and its ancestors started with SLURM_CONF=conf: a cluster's
    daemons, the commands run against it, their srun and sbatch, the jobs' tasks."""
    marker = f"SLURM_CONF={conf}".encode()
    mine, found = _ancestors(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def _namespace_pids(netns: str) -> list[int]:
    done = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    return [int(pid) for pid in done.stdout.split() if pid.isdigit()]


def process_name(pid: int) -> str:
    """The process's command name (`comm`), '?' once it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _end(pids: list[int], grace_s: float) -> list[str]:
    """SIGTERM, up to `grace_s` to exit, then SIGKILL (at once where grace_s is 0): the names
    of the processes ended."""
    names = {pid: process_name(pid) for pid in pids}
    if grace_s > 0:
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.1)
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    return [names[pid] for pid in pids if names[pid] != "?"]


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _existing(kind: str) -> list[str]:
    """Namespaces ("netns") or links ("link") whose name has the cluster prefix."""
    command = ["ip", "netns", "list"] if kind == "netns" else ["ip", "-o", "link", "show"]
    try:
        lines = subprocess.run(command, capture_output=True, text=True).stdout.splitlines()
    except FileNotFoundError:           # no iproute2: nothing of ours can exist
        return []
    if kind == "netns":
        names = [line.split()[0] for line in lines if line.strip()]
    else:
        names = [line.split(":")[1].strip().split("@")[0] for line in lines if line.count(":") >= 2]
    return [name for name in names if NAME_RE.match(name)]


def _cgroup_dirs() -> list[str]:
    return sorted(str(path) for pattern in (f"*/{PREFIX}*", f"{PREFIX}*")
                  for path in cgroups.ROOT.glob(pattern) if path.is_dir())


def _remove_resources(namespaces: list[str], links: list[str], cgroup_dirs: list[str]) -> dict[str, list[str]]:
    """Namespaces (their processes killed first), links and cgroups; the names of those that existed."""
    present = set(_existing("netns")) | set(_existing("link"))
    removed = {"namespaces": [], "links": [], "cgroups": []}
    for netns in namespaces:
        _end(_namespace_pids(netns), grace_s=0)
        if subprocess.run(["ip", "netns", "del", netns], capture_output=True).returncode == 0:
            removed["namespaces"].append(netns)
    for link in links:                   # a veth goes with its peer's namespace: what was here and is gone
        if link in present:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
    still = set(_existing("link"))
    removed["links"] = [link for link in links if link in present and link not in still]
    removed["cgroups"] = cgroups.remove(list(reversed(cgroup_dirs)))
    return removed


def _registered() -> list[dict]:
    states = []
    for path in sorted(REGISTRY.glob(f"{PREFIX}*.json")) if REGISTRY.is_dir() else []:
        try:
            states.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            states.append({"tag": path.stem, "owner_pid": 0})
    return states


def _free_subnet(start: int) -> str:
    """A 10.213.N range no interface of this machine has an address in."""
    try:
        used = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        used = ""
    for offset in range(200):
        subnet = f"10.213.{20 + (start + offset) % 200}"
        if f" {subnet}." not in used:
            return subnet
    raise UsageError("no free 10.213.N address range for another emulated cluster")


def _free_tag() -> int:
    """A tag no registered cluster and no leftover name uses."""
    taken = {state.get("tag") for state in _registered()}
    taken |= {f"{PREFIX}{NAME_RE.match(n).group(1)}" for n in _existing("netns") + _existing("link")}
    taken |= {f"{PREFIX}{m.group(1)}" for m in (NAME_RE.match(Path(c).name) for c in _cgroup_dirs()) if m}
    tag = os.getpid() % 10000
    while f"{PREFIX}{tag}" in taken:
        tag = (tag + 1) % 10000
    return tag


def leftovers(root: str | Path | None = None) -> list[dict]:
    """What clusters whose owner is no longer alive left: one entry per cluster with what of
    it still exists ("processes", "namespaces", "links", "cgroups"). With `root`, that cluster's
    directory only; else every registered cluster and every prefixed name no live cluster claims."""
    registered = _registered()
    if root is None:
        states = registered
    else:
        path = Path(root) / OWNER_FILE
        try:
            states = [json.loads(path.read_text())] if path.exists() else []
        except ValueError:
            raise UsageError(f"{path}: not a cluster's owner file (malformed JSON)")
    live = {s.get("tag") for s in registered if owner_alive(s)}
    found = []
    for state in states:
        if owner_alive(state):
            continue
        found.append(_what_is_left(state))
    if root is None:                      # names whose owner file is gone too
        claimed = {s.get("tag") for s in states}
        orphans: dict[str, dict] = {}
        for kind, names in (("namespaces", _existing("netns")), ("links", _existing("link")),
                            ("cgroups", _cgroup_dirs())):
            for name in names:
                match = NAME_RE.match(Path(name).name)
                tag = f"{PREFIX}{match.group(1)}" if match else None
                if tag and tag not in live and tag not in claimed:
                    orphans.setdefault(tag, {"tag": tag, "namespaces": [], "links": [], "cgroups": []})[kind].append(name)
        for state in orphans.values():
            found.append(_what_is_left(state))
    return [entry for entry in found if entry["processes"] or entry["namespaces"] or entry["links"]
            or entry["cgroups"] or entry.get("owner_file")]


def _what_is_left(state: dict) -> dict:
    namespaces = set(_existing("netns"))
    links = set(_existing("link"))
    pids = set(_pids_with_conf(state["conf"])) if state.get("conf") else set()
    for netns in state.get("namespaces", []):
        if netns in namespaces:
            pids |= set(_namespace_pids(netns))
    pids |= {pid for pid in state.get("daemons", []) if state.get("root", "\0") in _cmdline(pid)}
    pids -= _ancestors()
    return {"tag": state.get("tag"), "owner_pid": state.get("owner_pid"), "root": state.get("root"),
            "owner_file": bool(state.get("root")), "processes": sorted(pids),
            "namespaces": [n for n in state.get("namespaces", []) if n in namespaces],
            "links": [n for n in state.get("links", []) if n in links],
            "cgroups": [c for c in state.get("cgroups", []) if Path(c).is_dir()]}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def clean(root: str | Path | None = None) -> list[dict]:
    """Remove what dead owners left (a cluster's directory, or all of them); what was removed,
    per cluster. A live cluster is never touched; running it twice removes nothing the second time."""
    removed = []
    for entry in leftovers(root):
        names = _end(entry["processes"], grace_s=0)
        gone = _remove_resources(entry["namespaces"], entry["links"], entry["cgroups"])
        for path in ([Path(entry["root"]) / OWNER_FILE] if entry.get("root") else []) + [REGISTRY / f"{entry['tag']}.json"]:
            path.unlink(missing_ok=True)
        removed.append({**entry, "processes": names, **gone})
    return removed


def describe(removed: dict[str, list[str]]) -> str:
    """'7 processes (munged x3, slurmd x2, ...), 2 namespaces, 3 links' of what was removed."""
    parts = []
    for kind in ("processes", "jobs", "daemons", "namespaces", "links", "cgroups"):
        items = removed.get(kind) or []
        if not items:
            continue
        if kind in ("processes", "daemons"):
            counts: dict[str, int] = {}
            for name in items:
                counts[name] = counts.get(name, 0) + 1
            detail = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in counts.items())
            noun = "process" if kind == "processes" else "daemon"
            parts.append(f"{len(items)} {noun}{'es' if len(items) > 1 and noun == 'process' else 's' if len(items) > 1 else ''} ({detail})")
        else:
            parts.append(f"{len(items)} {kind[:-1] if len(items) == 1 else kind}")
    return ", ".join(parts) or "nothing"


def _kill_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
