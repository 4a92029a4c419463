"""A real single-node Slurm cluster for tests: munged, slurmctld and slurmd from Debian's
packages, with a generated configuration in a temporary directory (own munge socket and
key, free ports, no GPUs, CPUs from nproc), stopped afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from bench.core import procs
from bench.core.procs import free_ports

DAEMONS = ("munged", "slurmctld", "slurmd")


def missing_binaries() -> list[str]:
    return [d for d in DAEMONS if not (shutil.which(d) or Path(f"/usr/sbin/{d}").exists())]


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SlurmCluster:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.procs: list[subprocess.Popen] = []
        self._signals: dict[int, object] = {}

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def start(self, timeout_s: float = 60) -> "SlurmCluster":
        self._signals = procs.catch_stop_signals()     # SIGTERM unwinds the session like Ctrl-C
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        sock = self.root / "munge" / "munge.sock"
        self._spawn([_binary("munged"), "--foreground", "--force", f"--socket={sock}", f"--key-file={key}",
                     f"--pid-file={self.root / 'munge' / 'munged.pid'}", f"--log-file={self.root / 'log' / 'munged.log'}",
                     f"--seed-file={self.root / 'munge' / 'seed'}"])
        self._wait(lambda: sock.exists(), timeout_s, "munged")
        host = socket.gethostname().split(".")[0]
        ctl_port, node_port = free_ports(2)
        self.conf.write_text("\n".join([
            "ClusterName=distbench-test", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", f"AuthInfo=socket={sock}", "CredType=cred/munge",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "MpiDefault=none",
            f"StateSaveLocation={self.root / 'state'}", f"SlurmdSpoolDir={self.root / 'spool'}",
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}", f"SlurmdPidFile={self.root / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
            f"SlurmctldPort={ctl_port}", f"SlurmdPort={node_port}", "ReturnToService=2",
            "JobCompType=jobcomp/filetxt", f"JobCompLoc={self.root / 'jobcomp.txt'}",
            f"NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN",
            f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4",
        ]) + "\n")
        env = {**os.environ, **self.env}
        self._spawn([_binary("slurmctld"), "-D", "-f", str(self.conf)], env)
        self._spawn([_binary("slurmd"), "-D", "-f", str(self.conf)], env)
        self._wait(self._idle, timeout_s, "slurmd to register")
        return self

    def _idle(self) -> bool:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                              env={**os.environ, **self.env})
        return done.returncode == 0 and done.stdout.strip() in ("idle", "mixed", "allocated")

    def _spawn(self, cmd: list[str], env: dict | None = None) -> None:
        log = open(self.root / "log" / f"{Path(cmd[0]).name}.out", "w")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))

    def _wait(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead[0]} exited; logs in {self.root / 'log'}")
            time.sleep(0.3)
        raise RuntimeError(f"timed out waiting for {what}; logs in {self.root / 'log'}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        procs.restore_signals(self._signals)
