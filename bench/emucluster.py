"""An emulated multi-node Slurm cluster on one machine, for tests and the demo.

Each node is a network + UTS + mount namespace with its own hostname, its own address on a
private bridge, its own /etc/hosts (bound inside its mount namespace, never the machine's),
its own munged (same key; the socket directory bound privately: slurmds sharing one munged
reject each other's credentials), its own slurmd pinned to its own cores with taskset, and
its own PMIx / TmpFS directory. slurmctld and a munged run in the host namespace. A node's
link can be shaped (`tc tbf` rate, `netem` delay), cut and restored; a node can be killed.

    with EmulatedCluster(root, nodes=2, cores_per_node=1, rate="300mbit") as cluster:
        subprocess.run(["sbatch", ...], env={**os.environ, **cluster.env})

Everything it makes (namespaces, links, daemons, files) is removed by `stop()`, also when
`start()` failed halfway. Needs root, iproute2, util-linux, slurm-wlm and munge;
`unavailable()` says why not, in one line, where the machine cannot.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from bench.errors import UsageError
from bench.procs import free_ports

DAEMONS = ("munged", "slurmctld", "slurmd")
TOOLS = ("ip", "tc", "nsenter", "unshare", "taskset", "sinfo", "srun", "sbatch")


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
    def __init__(self, root: str | Path, nodes: int = 2, cores_per_node: int = 1, rate: str | None = None,
                 delay: str | None = None, subnet: str | None = None, name: str = "emu") -> None:
        if not 1 <= nodes <= 8:
            raise UsageError(f"--nodes {nodes}: 1 to 8 nodes")
        if cores_per_node < 1 or nodes * cores_per_node > len(os.sched_getaffinity(0)):
            raise UsageError(f"{nodes} nodes x {cores_per_node} cores do not fit this machine's "
                             f"{len(os.sched_getaffinity(0))} cores")
        if rate:
            rate_bits(rate)
        self.root = Path(root).resolve()
        self.nodes, self.cores_per_node, self.rate, self.delay = nodes, cores_per_node, rate, delay
        # per process, so that two clusters on one machine (a test run beside a demo) do not
        # share an address range; only ever on the cluster's own bridge
        self.subnet = subnet or f"10.213.{20 + os.getpid() % 200}"
        self.name = name
        tag = f"{os.getpid() % 10000}"
        self.bridge = f"dbb{tag}"
        self.netns = [f"db{tag}n{i}" for i in range(1, nodes + 1)]
        self.veths = [f"db{tag}v{i}" for i in range(1, nodes + 1)]
        self.hostnames = [f"{name}node{i}" for i in range(1, nodes + 1)]
        self.addresses = [f"{self.subnet}.{10 + i}" for i in range(1, nodes + 1)]
        self.conf = self.root / "slurm.conf"
        self._daemons: list[subprocess.Popen] = []
        self._node_daemons: dict[int, subprocess.Popen] = {}
        self._made_links = False

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
        try:
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

    def stop(self) -> None:
        """Daemons, namespaces, links and the bridge; the directory's files stay (logs)."""
        procs = list(self._node_daemons.values()) + self._daemons
        for proc in procs:
            _kill_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGKILL)
                proc.wait()
        for netns in self.netns:
            self._kill_namespace(netns)
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        for veth in self.veths:
            subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        self._node_daemons.clear()
        self._daemons.clear()

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
        self._made_links = True
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
            # a dead node is noticed within seconds, not minutes
            "SlurmdTimeout=10", "MessageTimeout=5", "KillWait=5", "InactiveLimit=0",
            *(f"NodeName={h} NodeAddr={a} CPUs={self.cores_per_node} State=UNKNOWN"
              for h, a in zip(self.hostnames, self.addresses)),
            f"PartitionName=emu Nodes={nodes} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        (self.root / "mpi.conf").write_text(f"PMIxCliTmpDirBase={self.root / 'nodetmp'}\n")

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
        cores = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[index * self.cores_per_node:
                                                                           (index + 1) * self.cores_per_node])
        (root / "spool" / host).mkdir(parents=True, exist_ok=True)
        script = " && ".join([
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

    def _spawn(self, command: list[str], label: str) -> None:
        self._daemons.append(self._popen(command, label))

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
        done = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
        for pid in done.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def _kill_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
