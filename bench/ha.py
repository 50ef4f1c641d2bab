"""The HA scenario: two scrapers of one target, as an HA Prometheus pair, in front of
an exporter that serialises collections like windows_exporter v0.31+ (bench/ha_exporter.py).

Every INTERVAL seconds scraper A scrapes, and scraper B OFFSET seconds later, each with
Prometheus's timeout header and a client timeout of INTERVAL (scrape_timeout = scrape_interval).
Each target runs for a few intervals in turn, round-robin over rounds, against the same exporter;
between targets the exporter is left to finish its backlog. Reported per target: collections per
interval (from the exporter's own count), the second scraper's latency (p50, max) and both
scrapers' failures (timeouts, non-200, wrong bodies).

Run by the CLI (bench.py): the full run includes it, `--ha-only` runs only it, `--smoke` runs it
briefly.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

from paths import BENCH, PROXY_BIN, SAMPLE
from processes import BenchError, Procs, chown_for_servers, free_port, wait_ready
from targets import start_targets

INTERVAL = 2.0  # s, Prometheus scrape_interval = scrape_timeout
OFFSET = 0.25  # s between the two scrapers of a pair
COLLECTION = 1.2  # s the stand-in holds its lock per collection: > INTERVAL / 2, < the 1.5 s budget
HA_TARGETS = ["direct", "proxy", "proxy-nocoalesce", "haproxy", "nginx"]
HA_MARK_START = "<!-- bench:ha:start -->"
HA_MARK_END = "<!-- bench:ha:end -->"


def label(name: str) -> str:
    return {
        "direct": "direct (no proxy)",
        "proxy": "windows-exporter-proxy (coalescing on, the default)",
        "proxy-nocoalesce": "windows-exporter-proxy, PROXY_COALESCE=false",
        "haproxy": "HAProxy",
        "nginx": "nginx, original config",
    }.get(name, name)


def exporter_state(port: int) -> tuple[int, int]:
    """(collections started, collections running or waiting for the lock)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/collections")
        started, pending = conn.getresponse().read().decode().split()
        return int(started), int(pending)
    finally:
        conn.close()


def start_exporter(procs: Procs, tmp: Path) -> int:
    """The serialising stand-in, run from the run's directory (it may run as nobody)."""
    script = tmp / "ha_exporter.py"
    shutil.copy(BENCH / "ha_exporter.py", script)
    sample = tmp / "ha-sample.prom"
    shutil.copy(SAMPLE, sample)
    chown_for_servers(tmp)
    port = free_port()
    log = tmp / "ha-exporter.log"
    p = procs.spawn([sys.executable, str(script), str(port), str(COLLECTION), str(sample)], log=log)
    wait_ready("ha exporter", p, f"http://127.0.0.1:{port}/health", log)
    return port


class Scraper:
    """One scraper of a pair: a kept-alive connection, Prometheus's timeout header and timeout."""

    def __init__(self, url: str, digest: str) -> None:
        host_port = url.removeprefix("http://")
        self.host, self.port = host_port.split(":")[0], int(host_port.split(":")[1])
        self.digest = digest
        self.conn: http.client.HTTPConnection | None = None
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.busy = threading.Lock()

    def scrape(self) -> None:
        # Prometheus never overlaps two scrapes of one target; one still running is a timeout.
        if not self.busy.acquire(blocking=False):
            self.failures.append("timeout")
            return
        try:
            self._scrape()
        finally:
            self.busy.release()

    def _scrape(self) -> None:
        start = time.monotonic()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=INTERVAL)
            self.conn.request("GET", "/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": f"{INTERVAL:g}"})
            response = self.conn.getresponse()
            body = response.read()
            elapsed = time.monotonic() - start
            if response.status != 200:
                self.failures.append(f"status {response.status}")
            elif hashlib.sha256(body).hexdigest() != self.digest:
                self.failures.append(f"wrong body ({len(body)} bytes)")
            elif elapsed > INTERVAL:
                self.failures.append("timeout")
            else:
                self.latencies.append(elapsed)
                return
        except (OSError, http.client.HTTPException) as e:
            self.failures.append("timeout" if "timed out" in str(e) else type(e).__name__)
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def run_pair(url: str, digest: str, intervals: int) -> tuple[Scraper, Scraper]:
    """A then B, OFFSET apart, every INTERVAL, for `intervals` intervals."""
    a, b = Scraper(url, digest), Scraper(url, digest)
    t0 = time.monotonic() + 0.1
    threads = []
    for k in range(intervals):
        for scraper, at in ((a, t0 + k * INTERVAL), (b, t0 + k * INTERVAL + OFFSET)):
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t = threading.Thread(target=scraper.scrape, daemon=True)
            t.start()
            threads.append(t)
    for t in threads:
        t.join(timeout=INTERVAL + 5)
    a.close()
    b.close()
    return a, b


def wait_idle(port: int) -> None:
    """Lets the exporter finish collections still queued from the previous target."""
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if exporter_state(port)[1] == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("the HA exporter stand-in did not go idle within 60 s")


def run(procs: Procs, tmp: Path, proxy_bin: Path, rounds: int, intervals: int, names: list[str] | None = None) -> dict:
    """Runs the scenario on `names` (default all of HA_TARGETS); per target the raw rounds and a
    summary."""
    names = names or HA_TARGETS
    digest = hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    port = start_exporter(procs, tmp)
    proxies = {"proxy": (proxy_bin, {}), "proxy-nocoalesce": (proxy_bin, {"PROXY_COALESCE": "false"})}
    targets = start_targets(procs, tmp, port, [], proxies, names)
    print(
        f"== HA: 2 scrapers {OFFSET:g} s apart every {INTERVAL:g} s; exporter serialises collections of "
        f"{COLLECTION:g} s; {rounds} round(s) x {intervals} intervals per target",
        flush=True,
    )
    raw: dict[str, list[dict]] = {}
    for rnd in range(rounds):
        for name in names:
            wait_idle(port)
            before = exporter_state(port)[0]
            a, b = run_pair(targets[name].url, digest, intervals)
            collections = exporter_state(port)[0] - before
            r = {
                "collections_per_interval": collections / intervals,
                "a_latency_s": a.latencies,
                "b_latency_s": b.latencies,
                "a_failures": a.failures,
                "b_failures": b.failures,
            }
            raw.setdefault(name, []).append(r)
            b_p50 = statistics.median(b.latencies) if b.latencies else float("nan")  # printed as nan
            print(
                f"  round {rnd + 1} {name:<17} collections/interval {r['collections_per_interval']:.2f}  "
                f"B p50 {b_p50 * 1000:6.0f} ms  failures A {len(a.failures)} B {len(b.failures)}",
                flush=True,
            )
    wait_idle(port)
    return {"raw": raw, "summary": summarise(raw), "intervals": intervals, "rounds": rounds}


def summarise(raw: dict[str, list[dict]]) -> dict:
    summary = {}
    for name, rounds in raw.items():
        b_lat = [x for r in rounds for x in r["b_latency_s"]]
        a_lat = [x for r in rounds for x in r["a_latency_s"]]
        scrapes = sum(len(r["a_latency_s"]) + len(r["a_failures"]) + len(r["b_latency_s"]) + len(r["b_failures"]) for r in rounds)
        failures = [f for r in rounds for f in r["a_failures"] + r["b_failures"]]
        summary[name] = {
            "collections_per_interval": statistics.median(r["collections_per_interval"] for r in rounds),
            "a_p50_ms": statistics.median(a_lat) * 1000 if a_lat else None,
            "b_p50_ms": statistics.median(b_lat) * 1000 if b_lat else None,
            "b_max_ms": max(b_lat) * 1000 if b_lat else None,
            "scrapes": scrapes,
            "failures": len(failures),
            "failure_kinds": sorted(set(failures)),
        }
    return summary


def table(results: dict) -> str:
    s = results["summary"]
    lines = [
        f"Two scrapers {OFFSET:g} s apart every {INTERVAL:g} s (Prometheus timeout {INTERVAL:g} s, so the proxy's budget "
        f"is {INTERVAL - 0.5:g} s), exporter stand-in serialising {COLLECTION:g} s collections; "
        f"{results['rounds']} round(s) x {results['intervals']} intervals per target, medians over rounds.\n",
        "| target | collections per interval | scraper A p50 | scraper B (the second) p50 | B max | failed scrapes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in HA_TARGETS:
        if name not in s:
            continue
        r = s[name]
        kinds = f" ({', '.join(r['failure_kinds'])})" if r["failure_kinds"] else ""
        ms = lambda v: "none completed" if v is None else f"{v:.0f} ms"  # noqa: E731
        lines.append(
            f"| {label(name)} | {r['collections_per_interval']:.2f} | {ms(r['a_p50_ms'])} | {ms(r['b_p50_ms'])} "
            f"| {ms(r['b_max_ms'])} | {r['failures']} of {r['scrapes']}{kinds} |"
        )
    return "\n".join(lines) + "\n"


def check(results: dict) -> list[str]:
    """Smoke checks: the shared answer reached both scrapers with the right bytes, and coalescing
    made fewer collections than the pass-through proxies."""
    s = results["summary"]
    problems = []
    proxy = s.get("proxy", {})
    if proxy.get("failures"):
        problems.append(f"windows-exporter-proxy failed {proxy['failures']} HA scrapes: {proxy['failure_kinds']}")
    if "proxy" in s and "haproxy" in s and not proxy["collections_per_interval"] < s["haproxy"]["collections_per_interval"]:
        problems.append("coalescing did not save collections compared with HAProxy")
    return problems


def write_section(path: Path, results: dict, date: str, commit: str, command: str) -> None:
    block = "\n".join(
        [
            HA_MARK_START,
            "<!-- written by bench/run (bench/ha.py); edit outside the markers -->",
            f"Latest HA run: {date}, at {commit}. Command: `{command}`.\n",
            table(results),
            HA_MARK_END,
        ]
    )
    old = path.read_text()
    if HA_MARK_START in old and HA_MARK_END in old:
        new = old.split(HA_MARK_START)[0] + block + old.split(HA_MARK_END, 1)[1]
    else:
        new = old.rstrip() + "\n\n## HA pair against a serialising exporter\n\n" + block + "\n"
    path.write_text(new)


def scenario(procs: Procs, tmp: Path, smoke: bool) -> dict:
    """The HA scenario on a copy of this build; in smoke mode briefly, on the proxy and HAProxy
    only, and a failed check is an error."""
    bin_dir = tmp / "ha-bin"
    bin_dir.mkdir(exist_ok=True)
    binary = bin_dir / PROXY_BIN.name
    shutil.copy2(PROXY_BIN, binary)
    chown_for_servers(tmp)
    if smoke:
        results = run(procs, tmp, binary, rounds=1, intervals=2, names=["proxy", "haproxy"])
        problems = check(results)
        if problems:
            raise BenchError("HA scenario: " + "; ".join(problems))
    else:
        results = run(procs, tmp, binary, rounds=3, intervals=5)
    print(table(results))
    return results
