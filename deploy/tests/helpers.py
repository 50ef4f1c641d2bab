"""Helpers every deploy test module uses: external tools, loopback ports, HTTP reads, waits.

Domain helpers stay with their tests (kubehelpers.py for the chart and the manifests); what is
here knows nothing about Kubernetes, Prometheus or Terraform.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
# Generous bound on every wait in these tests; a healthy run takes milliseconds per wait.
WAIT_SECONDS = 20

T = TypeVar("T")


def in_ci() -> bool:
    """CI sets CI=true; there a test that needs a missing tool fails instead of skipping."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def tool(name: str, *elsewhere: str) -> str:
    """The path of the external tool `name` (looked up on PATH, then at `elsewhere`), for a test.

    A developer's machine without it skips the test; in CI (`CI` set) it fails the test, since
    `.ci/install` provides every tool or fails naming the one it cannot.
    """
    path = shutil.which(name) or next((p for p in elsewhere if os.access(p, os.X_OK)), None)
    if path:
        return path
    message = f"{name} is missing: run bash .ci/install"
    if in_ci():
        pytest.fail(f"{message} (CI is set: a missing tool fails the run)", pytrace=False)
    pytest.skip(message)


def run(cmd: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Runs `cmd` to its end with its output captured as text; the caller checks the result."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_text(url: str, timeout: float = WAIT_SECONDS) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def get_json(url: str, timeout: float = WAIT_SECONDS) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def wait_for(
    what: str,
    condition: Callable[[], T],
    processes: Iterable[subprocess.Popen] = (),
    log: Path | None = None,
    timeout: float = WAIT_SECONDS,
) -> T:
    """Polls condition() until it returns something truthy and returns that.

    Fails after `timeout`, or as soon as one of `processes` exits, with the tail of `log`.
    Connection errors and half-written JSON while a server starts count as "not yet".
    """
    processes = list(processes)
    tail = lambda: f"\n{log.read_text()[-3000:]}" if log is not None and log.exists() else ""  # noqa: E731
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"{process.args[0]} exited {process.returncode} while waiting for {what}{tail()}")
        try:
            last = condition()
            if last:
                return last
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as error:
            last = error
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}; last: {last!r}{tail()}")
