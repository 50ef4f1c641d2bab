"""The load runs: wrk against one target for a while (throughput, exact latency percentiles from
bench/report.lua, CPU per 1,000 scrapes and peak memory of the target's processes), and one large
body streamed through a target with curl (memory growth and MiB/s)."""

from __future__ import annotations

import json
import re
import subprocess

from paths import BENCH
from processes import BenchError
from procfs import CLK_TCK, RssSampler, cpu_ticks, hwm_kib, reset_hwm, rss_kib
from targets import Target


def wrk(target: Target, conns: int, seconds: float, extra: tuple[str, ...] = ()) -> dict:
    threads = 1 if conns == 1 else 2
    argv = [
        "wrk", f"-t{threads}", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        *extra, "-s", str(BENCH / "report.lua"), target.url + "/metrics",
    ]  # fmt: skip
    reset_hwm(target.pids)
    cpu0 = cpu_ticks(target.pids)
    sampler = RssSampler(target.pids, interval=0.01)
    sampler.start()
    run = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    sampled = sampler.finish()
    cpu1 = cpu_ticks(target.pids)
    hwm = hwm_kib(target.pids)
    m = re.search(r"^BENCH_JSON (.*)$", run.stdout, re.M)
    if run.returncode != 0 or not m:
        raise BenchError(f"wrk against {target.name} failed: {run.stdout}{run.stderr}")
    r = json.loads(m.group(1))
    errors = sum(r[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    r["errors"] = errors
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["cpu_s"] = (cpu1 - cpu0) / CLK_TCK
    r["cpu_s_per_1000"] = r["cpu_s"] / r["requests"] * 1000 if r["requests"] else float("nan")
    r["peak_rss_kib"] = max(hwm, sampled)
    return r


def stream_rss(target: Target, payload: dict, url_suffix: str = "/metrics") -> dict:
    """RSS while one large body streams to curl (which writes to /dev/null)."""
    before = rss_kib(target.pids)
    reset_hwm(target.pids)
    sampler = RssSampler(target.pids, interval=0.01)
    sampler.start()
    run = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}", target.url + url_suffix],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    sampled = sampler.finish()
    hwm = hwm_kib(target.pids)
    if run.returncode != 0:
        raise BenchError(f"curl through {target.name} failed: {run.stderr}")
    code, size, secs = run.stdout.split()
    if code != "200" or int(size) != payload["bytes"]:
        raise BenchError(f"{target.name}: stream answered {code} with {size} of {payload['bytes']} bytes")
    peak = max(hwm, sampled)
    return {
        "before_kib": before,
        "peak_kib": peak,
        "growth_kib": peak - before,
        "seconds": float(secs),
        "mib_per_s": payload["bytes"] / 2**20 / float(secs),
    }
