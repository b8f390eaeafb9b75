"""A real Dask cluster for tests: ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1.

Random free ports, bounded waits, and every process torn down (terminate, then kill) whatever happens.
Workers run without a nanny, so a worker's pid is the process that runs the tasks and SIGKILL on it
is a lost machine (no nanny to restart it).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

DASK = os.path.join(os.path.dirname(sys.executable), "dask")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RealCluster:
    address: str
    scheduler: subprocess.Popen
    workers: list = field(default_factory=list)
    logdir: str = ""

    @property
    def worker_pids(self) -> set:
        return {w.pid for w in self.workers}

    def kill_worker(self, i: int = 0):
        """SIGKILL worker ``i`` (no clean shutdown: what a lost machine looks like to the scheduler)."""
        os.kill(self.workers[i].pid, signal.SIGKILL)
        self.workers[i].wait(timeout=10)

    def n_workers(self) -> int:
        from distributed import Client

        with Client(self.address, timeout=5, set_as_default=False) as c:
            return len(c.scheduler_info(n_workers=-1)["workers"])

    def logs(self) -> str:
        out = []
        for name in sorted(os.listdir(self.logdir)):  # the logs; a worker's scratch folder sits beside them
            path = os.path.join(self.logdir, name)
            if os.path.isfile(path):
                with open(path, errors="replace") as f:
                    out.append(f"--- {name}\n{f.read()[-3000:]}")
        return "\n".join(out)


def _spawn(args, log_path, env):
    f = open(log_path, "wb")
    try:
        return subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    finally:
        f.close()


def start(logdir: str, n_workers: int = 2, timeout: float = 60.0, cwd_env=None) -> RealCluster:
    """Start a scheduler and ``n_workers`` single-threaded workers; wait (bounded) until all joined."""
    os.makedirs(logdir, exist_ok=True)
    env = dict(os.environ, **(cwd_env or {}))
    env.setdefault("OMP_NUM_THREADS", "1")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    sched = _spawn([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                   os.path.join(logdir, "scheduler.log"), env)
    cluster = RealCluster(address, sched, logdir=logdir)
    try:
        deadline = time.monotonic() + timeout
        while True:  # the scheduler's port answers
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if sched.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dask scheduler did not start:\n{cluster.logs()}")
                time.sleep(0.2)
        for i in range(n_workers):
            cluster.workers.append(_spawn(
                [DASK, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard",
                 "--name", f"w{i}", "--death-timeout", "60", "--local-directory", os.path.join(logdir, f"w{i}")],
                os.path.join(logdir, f"worker{i}.log"), env))
        while cluster.n_workers() < n_workers:
            if any(w.poll() is not None for w in cluster.workers) or time.monotonic() > deadline:
                raise RuntimeError(f"dask workers did not join within {timeout} s:\n{cluster.logs()}")
            time.sleep(0.3)
        return cluster
    except BaseException:
        stop(cluster)
        raise


def stop(cluster: RealCluster, timeout: float = 3.0):
    """Terminate the workers, then the scheduler; kill what does not exit in time.

    One after the other: a worker terminated together with its scheduler often spends seconds (3 of 6 times,
    8 s and more) trying to say goodbye to it; with the scheduler still up it exits in ~0.2 s.
    """
    for group in (list(cluster.workers), [cluster.scheduler]):
        for p in group:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + timeout
        for p in group:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
