"""A contender's process tree, watched for CPU time and peak memory, stopped by its own PIDs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil


def _hwm_bytes(pid: int) -> int:
    """The kernel's peak resident set (VmHWM) of one process, 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Watched:
    """Runs `argv` with its output in `log`; `sample()` updates CPU seconds (user + system,
    children included) and peak RSS (the sum of every live process's VmHWM)."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None, stdout: Path | None = None):
        self.log = log
        self._log = open(log, "ab")
        self._stdout = open(stdout, "wb") if stdout else self._log
        self.popen = subprocess.Popen(
            argv, stdout=self._stdout, stderr=self._log, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}
        )
        self._root = psutil.Process(self.popen.pid)
        self._cpu_of_gone_children: dict[int, float] = {}
        self.cpu_seconds = 0.0
        self.peak_rss_bytes = 0

    def tree(self) -> list[psutil.Process]:
        try:
            return [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def sample(self) -> None:
        cpu, hwm = 0.0, 0
        for process in self.tree():
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            own = times.user + times.system
            if process.pid == self._root.pid:
                own += times.children_user + times.children_system
            else:
                self._cpu_of_gone_children[process.pid] = own
            cpu += own
            hwm += _hwm_bytes(process.pid)
        # A child that exited since the last sample keeps the CPU it had used then.
        live = {p.pid for p in self.tree()}
        cpu += sum(c for pid, c in self._cpu_of_gone_children.items() if pid not in live)
        self.cpu_seconds = max(self.cpu_seconds, cpu)
        self.peak_rss_bytes = max(self.peak_rss_bytes, hwm)

    def exited(self) -> int | None:
        return self.popen.poll()

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, then SIGKILL after `timeout_s`, to the root and to the children it left."""
        self.sample()
        children = self.tree()[1:]
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        for child in children:
            try:
                child.wait(5)
            except psutil.TimeoutExpired:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        self._log.close()
        if self._stdout is not self._log:
            self._stdout.close()
        return self.popen.returncode


def wait_for(condition, timeout_s: float, what: str, watched: Watched | None = None, tick=None) -> None:
    """Polls `condition()` every 50 ms; fails after `timeout_s` or when `watched` exits."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if watched is not None:
            watched.sample()
            if (code := watched.exited()) is not None:
                raise RuntimeError(f"{what}: the process exited with {code}; log: {watched.log}")
        if tick:
            tick()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not done after {timeout_s:.0f} s")
        time.sleep(0.05)
