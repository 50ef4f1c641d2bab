"""Processes and plain HTTP: every server a run starts (in its own session, unprivileged when the
bench runs as root, killed on exit), free loopback ports, and waiting until a server answers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


class BenchError(Exception):
    """A component failed to start, answered wrongly, or a measurement could not be taken."""


class Procs:
    """Every process this run started, each in its own session, killed on exit."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def spawn(self, argv: list[str], env: dict | None = None, log: Path | None = None) -> subprocess.Popen:
        out = open(log, "ab") if log else subprocess.DEVNULL
        full_env = dict(os.environ)
        full_env.update(env or {})
        # From "/": the servers run as nobody, who may not be allowed into the checkout
        # (HAProxy refuses to start when it cannot return to its start-up directory).
        p = subprocess.Popen(
            demote() + argv, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd="/"
        )
        self.started.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
        # nginx workers may outlive a master killed hard: the group is ours, clear it.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop_all(self) -> None:
        for p in reversed(self.started):
            self.stop(p)
        self.started.clear()


def demote() -> list[str]:
    """Servers run unprivileged: when the benchmark runs as root, as `nobody`."""
    if os.geteuid() == 0 and shutil.which("setpriv"):
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
    return []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(name: str, proc: subprocess.Popen, url: str, log: Path | None, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < end:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise BenchError(f"{name} exited with {proc.returncode} during start-up\n{tail}")
        try:
            status, _ = http_get(url, timeout=1)
            if status == 200:
                return
            last = f"status {status}"
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    raise BenchError(f"{name} not ready at {url} within {timeout}s ({last})")


def chown_for_servers(tmp: Path) -> None:
    if not demote():
        return
    import pwd

    nobody = pwd.getpwnam("nobody")
    for dirpath, dirnames, filenames in os.walk(tmp):
        for n in [dirpath] + [os.path.join(dirpath, f) for f in dirnames + filenames]:
            os.chown(n, nobody.pw_uid, nobody.pw_gid)
