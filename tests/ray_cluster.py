"""A real multi-node Ray cluster on loopback, inside a private network namespace.

In a namespace made with `unshare -n` (then `ip link set lo up`) loopback is the only
address, so every node Ray starts there uses 127.0.0.1 and nothing can leave the machine.
A holder process keeps the namespace alive; every command enters it with `nsenter`. The
head runs `ray start --head` (token authentication on), each worker node `ray start
--address 127.0.0.1:PORT --block` in a session of its own, so that killing that session
kills the node. Used by the Ray tests and by benchmarks/ray_scaling.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PORT = 6390
BIN = Path(sys.executable).parent
# Node death is noticed after period x threshold; Ray's default (several seconds x 5) would
# make the fault-tolerance test wait half a minute.
FAST_HEALTH_CHECKS = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "4",
}


class LoopbackCluster:
    def __init__(
        self, head_cpus: int = 1, dashboard: bool = False, fast_health_checks: bool = True
    ) -> None:
        self.head_cpus = head_cpus
        self.dashboard = dashboard
        self.fast_health_checks = fast_health_checks
        self.home = Path(tempfile.mkdtemp(prefix="rayhome"))
        # Short: Ray's unix socket paths live under it and must stay under 108 bytes.
        self.temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
        self.address = f"127.0.0.1:{PORT}"
        self.workers: list[subprocess.Popen] = []
        root = os.geteuid() == 0
        unshare = ["unshare", "-n"] if root else ["unshare", "-rn"]
        self.holder = subprocess.Popen([*unshare, "sleep", "infinity"])
        self._enter = ["nsenter", "-t", str(self.holder.pid), "-n"]
        if not root:
            self._enter = [
                "nsenter",
                "-t",
                str(self.holder.pid),
                "-U",
                "-n",
                "--preserve-credentials",
            ]
        time.sleep(0.3)
        self.run(["ip", "link", "set", "lo", "up"], check=True)

    def env(self) -> dict[str, str]:
        """The environment of every process in the cluster and of its drivers: token
        authentication on, the token in ~/.ray/auth_token of a home of the cluster's own."""
        env = dict(os.environ)
        env.update(
            HOME=str(self.home),
            PATH=f"{BIN}:{env.get('PATH', '')}",
            RAY_USAGE_STATS_ENABLED="0",
        )
        if self.fast_health_checks:
            env.update(FAST_HEALTH_CHECKS)
        env["RAY_AUTH_MODE"] = "token"
        env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # set to 0, it forbids worker nodes
        return env

    def command(self, args: list[str]) -> list[str]:
        return [*self._enter, *args]

    def run(self, args: list[str], check: bool = False, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        proc = subprocess.run(self.command(args), env=self.env(), **kw)
        if check and proc.returncode:
            raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, args: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(self.command(args), env=self.env(), **kw)

    def start(self, workers: int = 1, worker_cpus: int = 1) -> LoopbackCluster:
        self.run(["ray", "get-auth-token", "--generate"], check=True)
        self.run(
            [
                "ray",
                "start",
                "--head",
                "--port",
                str(PORT),
                "--num-cpus",
                str(self.head_cpus),
                "--temp-dir",
                str(self.temp),
                "--disable-usage-stats",
                "--include-dashboard",
                str(self.dashboard).lower(),
            ],
            check=True,
        )
        for _ in range(workers):
            self.add_worker(worker_cpus)
        return self

    def add_worker(self, cpus: int = 1) -> subprocess.Popen:
        before = self.alive_nodes()
        proc = self.popen(
            ["ray", "start", "--address", self.address, "--num-cpus", str(cpus), "--block"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.workers.append(proc)
        deadline = time.monotonic() + 60
        while self.alive_nodes() <= before:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the worker node did not join the cluster")
            time.sleep(0.5)
        return proc

    def alive_nodes(self) -> int:
        proc = self.run(
            [
                str(BIN / "python"),
                "-c",
                f"import ray; ray.init(address='127.0.0.1:{PORT}', logging_level='ERROR');"
                "print(sum(n['Alive'] for n in ray.nodes()))",
            ]
        )
        try:
            return int(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return 0

    def kill_worker(self, proc: subprocess.Popen) -> None:
        """SIGKILL the node's whole session: raylet, its workers, all at once."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        self.run(["ray", "stop", "--force"])
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        self.holder.kill()
        self.holder.wait()
        shutil.rmtree(self.temp, ignore_errors=True)
        shutil.rmtree(self.home, ignore_errors=True)
