"""Memory and CPU readings from /proc: a server's processes (nginx master and workers), their
resident and private memory, peak memory (VmHWM, and a sampler thread for what it misses), and
CPU ticks spent."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from processes import BenchError

CLK_TCK = os.sysconf("SC_CLK_TCK")


def pids_of(root_pid: int) -> list[int]:
    """The process and its children (nginx master + workers); for setpriv, the exec'd process
    keeps the pid, so no extra level."""
    pids = [root_pid]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == root_pid:
            pids.append(int(entry))
    return pids


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {field} for pid {pid}")


def rss_kib(pids: list[int]) -> int:
    return sum(status_kib(p, "VmRSS") for p in pids)


def private_kib(pids: list[int]) -> int:
    """RssAnon: the resident pages no other process can share (heap, stacks, relocated data).

    It leaves out the mapped binary and libraries, which VmRSS counts in 64 KiB fault-around
    windows. It is the Linux side of what a Windows node charges the pod: containerd's CRI reports
    a Windows container's working set as its private working set (BENCHMARKS.md, "Memory")."""
    return sum(status_kib(p, "RssAnon") for p in pids)


def hwm_kib(pids: list[int]) -> int:
    return sum(status_kib(p, "VmHWM") for p in pids)


def reset_hwm(pids: list[int]) -> None:
    for p in pids:
        Path(f"/proc/{p}/clear_refs").write_text("5")


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for p in pids:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


class RssSampler(threading.Thread):
    """Polls the summed VmRSS every `interval` seconds and keeps the maximum."""

    def __init__(self, pids: list[int], interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.pids, self.interval, self.peak = pids, interval, 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pids))
            except (OSError, BenchError):
                pass
            time.sleep(self.interval)

    def finish(self) -> int:
        self._halt.set()
        self.join(timeout=2)
        return self.peak
