#!/usr/bin/env python3
"""The slow path: fast-route latency with and without /metrics/slow scrapes running.

An exporter stand-in that honours collect[] like windows_exporter (one process-wide lock, one
collection at a time; fast collectors FAST seconds each, `process` and `service` SLOW seconds
each; every enabled collector when collect[] is absent) runs behind the proxy with
PROXY_COLLECT=cpu,logical_disk,memory,net,os and PROXY_SLOW_COLLECT=process,service. A fast
scraper scrapes /metrics every FAST_EVERY seconds with Prometheus's timeout header
(FAST_TIMEOUT). Measured, each for DURATION seconds:

- `alone`: the fast scraper only;
- with slow scrapes: a slow scraper also scrapes /metrics/slow (60 s timeout) every SLOW_EVERY
  seconds (the monitors' ratio is 4-8 fast scrapes per slow one), and back to back (a new scrape
  as soon as the last one ends: the exporter collects process and service most of the time);
- `direct, no slow path`: the fast scraper scrapes the stand-in directly with no collect[], so
  every scrape runs every collector, process and service included (what /metrics costs without
  the slow path).

Reported per scenario: fast-scrape latency p50, p90, p99 and max, failures, and from
/proxy/metrics the count and sum of windows_exporter_proxy_slow_wait_seconds. Writes
bench/out/slow_path.json and, unless --no-write, the section between the markers in
BENCHMARKS.md.

    .venv/bin/python bench/slow_path.py [--duration S] [--no-write] [--binary PATH]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
MARK_START = "<!-- bench:slow-path:start -->"
MARK_END = "<!-- bench:slow-path:end -->"

ENABLED = ["cpu", "logical_disk", "memory", "net", "os", "process", "service"]
SLOW_COLLECTORS = {"process", "service"}
FAST = 0.02  # s per fast collector: 0.1 s for the five
SLOW = 1.5  # s per slow collector: 3 s for process and service
FAST_EVERY = 0.5  # s between fast scrapes
FAST_TIMEOUT = "10"  # Prometheus's timeout header for /metrics
SLOW_TIMEOUT = "60"
SLOW_EVERY = 6.0  # s between slow scrapes in the paced scenario (12 fast scrapes per slow one)


class Exporter:
    """The collecting stand-in: a lock, collectors that take time, collect[] as Go reads it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                # As Go's net/http: no Nagle, so headers and body written apart do not wait for
                # the proxy's delayed ACK (40 ms on Linux).
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self):  # noqa: N802
                url = urlsplit(self.path)
                if url.path == "/health":
                    return self.reply(200, b"ok\n")
                requested = parse_qs(url.query).get("collect[]", [])
                unknown = [c for c in requested if c not in ENABLED]
                if unknown:
                    return self.reply(400, f"Couldn't create filtered metrics handler: unknown collector {unknown[0]}".encode())
                run = requested or ENABLED
                with exporter.lock:
                    lines = []
                    for name in run:
                        took = SLOW if name in SLOW_COLLECTORS else FAST
                        time.sleep(took)
                        lines.append(f'windows_exporter_collector_duration_seconds{{collector="{name}"}} {took}')
                        lines.append(f'windows_exporter_collector_success{{collector="{name}"}} 1')
                        lines.append(f"windows_{name}_sample 1")
                self.reply(200, ("\n".join(lines) + "\n").encode())

            def reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def start_proxy(binary: Path, exporter_port: int) -> tuple[subprocess.Popen, int]:
    env = {
        "PROXY_HOSTIP": "127.0.0.1",
        "PROXY_PORT": str(exporter_port),
        "PROXY_LISTEN": "127.0.0.1:0",
        "PROXY_LOG_FORMAT": "json",
        "PROXY_COLLECT": "cpu,logical_disk,memory,net,os",
        "PROXY_SLOW_COLLECT": "process,service",
        "RUST_LOG": "info",
    }
    proc = subprocess.Popen([str(binary)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        record = json.loads(line)
        if record.get("message") == "listening":
            port = int(record["listen"].rsplit(":", 1)[1])
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, port
    raise SystemExit(f"the proxy exited: {proc.wait()}")


def get(port: int, path: str, timeout_header: str) -> tuple[int, float]:
    """One scrape on a fresh connection: (status, seconds); status 0 for a failure."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=float(timeout_header) + 5)
    try:
        conn.request("GET", path, headers={"X-Prometheus-Scrape-Timeout-Seconds": timeout_header})
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    except OSError:
        return 0, time.monotonic() - started
    finally:
        conn.close()


def own_metrics(port: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/proxy/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def scenario(port: int, path: str, duration: float, slow_port: int | None, slow_every: float = 0.0) -> dict:
    stop = threading.Event()
    slow_results: list[tuple[int, float]] = []

    def slow_loop() -> None:
        while not stop.is_set():
            started = time.monotonic()
            slow_results.append(get(slow_port, "/metrics/slow", SLOW_TIMEOUT))
            stop.wait(max(0.0, slow_every - (time.monotonic() - started)))

    slow_thread = None
    if slow_port is not None:
        slow_thread = threading.Thread(target=slow_loop, daemon=True)
        slow_thread.start()
        time.sleep(0.3)  # the first slow collection is running
    fast: list[tuple[int, float]] = []
    end = time.monotonic() + duration
    next_at = time.monotonic()
    while time.monotonic() < end:
        fast.append(get(port, path, FAST_TIMEOUT))
        next_at += FAST_EVERY
        time.sleep(max(0.0, next_at - time.monotonic()))
    stop.set()
    if slow_thread:
        slow_thread.join(timeout=float(SLOW_TIMEOUT))
    ok = sorted(t for s, t in fast if s == 200)
    q = statistics.quantiles(ok, n=100, method="inclusive") if len(ok) > 1 else [ok[0]] * 99 if ok else [float("nan")] * 99
    return {
        "fast_scrapes": len(fast),
        "fast_failed": sum(1 for s, _ in fast if s != 200),
        "p50_ms": round(q[49] * 1000, 1),
        "p90_ms": round(q[89] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1),
        "max_ms": round(max(ok) * 1000, 1) if ok else None,
        "slow_scrapes": len(slow_results),
        "slow_failed": sum(1 for s, _ in slow_results if s != 200),
        "slow_p50_ms": round(statistics.median(t for s, t in slow_results if s == 200) * 1000, 1)
        if any(s == 200 for s, _ in slow_results)
        else None,
    }


def write_section(results: dict, binary: Path) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    rows = [
        "| scenario | fast scrapes | failed | p50 | p90 | p99 | max | slow scrapes (p50) | fast waits behind slow (count, total) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["scenarios"].items():
        slow = f"{r['slow_scrapes']} ({r['slow_p50_ms']} ms)" if r["slow_scrapes"] else "-"
        waits = f"{r['waits']:.0f}, {r['waited_s']:.2f} s" if "waits" in r else "-"
        rows.append(
            f"| {name} | {r['fast_scrapes']} | {r['fast_failed']} | {r['p50_ms']} ms | {r['p90_ms']} ms | "
            f"{r['p99_ms']} ms | {r['max_ms']} ms | {slow} | {waits} |"
        )
    body = "\n".join([
        MARK_START,
        "<!-- written by bench/slow_path.py; edit outside the markers -->",
        f"Latest run: {time.strftime('%Y-%m-%d %H:%M %Z')}, at {commit}, {binary.relative_to(ROOT)}. "
        f"Command: `.venv/bin/python bench/slow_path.py --duration {results['duration']:g}`.",
        "",
        f"Stand-in: five fast collectors of {FAST * 1000:.0f} ms, process and service of {SLOW:g} s each, one "
        f"collection at a time. Fast scraper every {FAST_EVERY:g} s for {results['duration']:g} s per scenario.",
        "",
        *rows,
        MARK_END,
    ])
    text = BENCHMARKS_MD.read_text()
    if MARK_START in text:
        before, rest = text.split(MARK_START, 1)
        after = rest.split(MARK_END, 1)[1]
        text = before + body + after
    else:
        raise SystemExit(f"BENCHMARKS.md has no {MARK_START} section")
    BENCHMARKS_MD.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per scenario")
    parser.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "windows-exporter-proxy")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    exporter = Exporter()
    proxy, port = start_proxy(args.binary, exporter.port)
    results = {"duration": args.duration, "scenarios": {}}
    try:
        get(port, "/metrics", FAST_TIMEOUT)  # connections warm
        for name, target, path, slow, every in [
            ("/metrics alone", port, "/metrics", None, 0.0),
            (f"/metrics, /metrics/slow every {SLOW_EVERY:g} s", port, "/metrics", port, SLOW_EVERY),
            ("/metrics, /metrics/slow back to back", port, "/metrics", port, 0.0),
            ("direct, no slow path (every scrape runs process and service)", exporter.port, "/metrics", None, 0.0),
        ]:
            before = own_metrics(port)
            r = scenario(target, path, args.duration, slow, every)
            after = own_metrics(port)
            if target == port:
                count, total = "windows_exporter_proxy_slow_wait_seconds_count", "windows_exporter_proxy_slow_wait_seconds_sum"
                r["waits"] = after.get(count, 0) - before.get(count, 0)
                r["waited_s"] = after.get(total, 0) - before.get(total, 0)
            results["scenarios"][name] = r
            print(name, r, flush=True)
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
        exporter.server.shutdown()
    OUT.mkdir(exist_ok=True)
    (OUT / "slow_path.json").write_text(json.dumps(results, indent=1))
    if not args.no_write:
        write_section(results, args.binary)
        print("updated BENCHMARKS.md (slow path section)")
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
