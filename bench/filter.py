"""The filter scenario (issue 21, `bench/run --filter-only`): what the filter costs a scrape and
what it saves, side by side in one run on one large realistic scrape.

The body is examples/filter_bench's: the real windows_exporter 0.13 scrape (cs and service
collectors) followed by the process collector's 16 families (v0.31 names and labels, values
synthesised) for 600 processes, about 1.4 MB and 17,000 lines. The exporter stand-in (nginx)
serves it; in front of it, started alike (the wall-clock run's like-for-like settings):

- proxy: pass-through (no filter setting);
- filter-keep-all: PROXY_METRIC_KEEP=.+ (every line parsed and kept: the parsing cost);
- filter-drop: PROXY_METRIC_DROP=windows_(process|service)_.+;
- haproxy: the wall-clock run's HAProxy.

Reported: CPU per scrape (wrk, one connection, medians over rounds), user-space instructions per
scrape and per body byte (callgrind, the instructions module's N/2N method), the stage's own
throughput on one core (the example, taskset to one CPU) and RSS while a long body (the scrape
repeated to 512 MiB; 16 MiB with --smoke) streams through filter-keep-all.
"""

from __future__ import annotations

import hashlib
import re
import statistics
import subprocess
from pathlib import Path

import instructions
from exporter import start_upstream
from load import stream_rss, wrk
from paths import BENCHMARKS_MD, ROOT
from processes import BenchError, Procs, chown_for_servers
from targets import LIKE_FOR_LIKE, Target, start_targets
from urllib.request import urlopen

MARK_START = "<!-- bench:filter:start -->"
MARK_END = "<!-- bench:filter:end -->"
EXAMPLE = ROOT / "target" / "release" / "examples" / "filter_bench"
DROP = "windows_(process|service)_.+"
FILTERS = {
    "filter-keep-all": {"PROXY_METRIC_KEEP": ".+"},
    "filter-drop": {"PROXY_METRIC_DROP": DROP},
}
ORDER = ["direct", "proxy", "filter-keep-all", "filter-drop", "haproxy"]


def body_of(target: Target) -> bytes:
    with urlopen(target.url + "/metrics", timeout=30) as response:
        if response.status != 200:
            raise BenchError(f"{target.name}: /metrics answered {response.status}")
        return response.read()


def scenario(procs: Procs, tmp: Path, binary: Path, smoke: bool, rounds: int, duration: float, scrapes: int) -> dict:
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "filter_bench"], cwd=ROOT, check=True)
    www = tmp / "www"
    for name in ("filter", "filter-stream"):
        (www / name).mkdir(parents=True, exist_ok=True)
    path = www / "filter" / "metrics"
    subprocess.run([str(EXAMPLE), "--write", str(path)], check=True)
    body = path.read_bytes()
    stream_path = www / "filter-stream" / "metrics"
    stream_bytes = (16 if smoke else 512) * 1024 * 1024
    with open(stream_path, "wb") as out:
        left = stream_bytes
        while left:
            piece = body[: min(left, len(body))]
            out.write(piece)
            left -= len(piece)
    payloads = {
        "filter": {"path": path, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()},
        "filter-stream": {"path": stream_path, "bytes": stream_bytes},
    }
    chown_for_servers(tmp)
    ports, up_pids = start_upstream(procs, tmp, payloads)
    proxies = {"proxy": (binary, dict(LIKE_FOR_LIKE))}
    proxies |= {name: (binary, dict(LIKE_FOR_LIKE) | env) for name, env in FILTERS.items()}
    targets = start_targets(procs, tmp, ports["filter"], up_pids, proxies, ORDER)
    results: dict = {"bytes": len(body), "lines": body.count(b"\n"), "targets": {}, "digests": {}}
    for name in ORDER:
        got = body_of(targets[name])
        if name == "filter-drop":
            if b"windows_process_" in got or b"windows_service_" in got or not got:
                raise BenchError("filter-drop: the body still has process/service series")
        elif got != body:
            raise BenchError(f"{name}: the body differs from the exporter's ({len(got)} bytes)")
        results["digests"][name] = hashlib.sha256(got).hexdigest()
        results["targets"][name] = {"bytes_out": len(got)}
    print(f"== filter: {len(body):,} bytes, {results['lines']:,} lines; targets: {', '.join(ORDER)}", flush=True)
    runs: dict[str, list[dict]] = {name: [] for name in ORDER}
    for rnd in range(rounds):
        for name in ORDER:
            r = wrk(targets[name], 1, duration)
            if r["errors"]:
                raise BenchError(f"{name}: {r['errors']} errors in the filter scenario")
            runs[name].append(r)
            print(f"  round {rnd + 1} {name:<16} {r['rps']:8.0f} req/s  cpu/scrape {r['cpu_s_per_1000']:.3f} ms", flush=True)
    for name in ORDER:
        t = results["targets"][name]
        t["rps"] = statistics.median(r["rps"] for r in runs[name])
        t["cpu_ms_per_scrape"] = statistics.median(r["cpu_s_per_1000"] for r in runs[name])
    stream_targets = start_targets(procs, tmp, ports["filter-stream"], up_pids, {"filter-keep-all": proxies["filter-keep-all"]},
                                   ["filter-keep-all"])  # fmt: skip
    results["stream_mib"] = stream_bytes >> 20
    results["stream"] = stream_rss(stream_targets["filter-keep-all"], payloads["filter-stream"])
    st = results["stream"]
    print(f"== stream {stream_bytes >> 20} MiB via filter-keep-all: RSS {st['before_kib']} -> {st['peak_kib']} KiB, "
          f"{st['mib_per_s']:.0f} MiB/s", flush=True)  # fmt: skip
    specs = {name: ("proxy", *proxies[name]) for name in ("proxy", *FILTERS)} | {"haproxy": ("haproxy", None, {})}
    n = scrapes
    print(f"== filter instructions (callgrind): {n} and {2 * n} scrapes per target", flush=True)
    for name, spec in specs.items():
        digest = results["digests"][name]
        once = instructions.count(procs, tmp, f"filter-{name}", spec, ports["filter"], n, digest)
        twice = instructions.count(procs, tmp, f"filter-{name}", spec, ports["filter"], 2 * n, digest)
        per = (twice - once) / n
        results["targets"][name]["instructions"] = per
        print(f"  {name:<16} {per:14,.0f} instructions per scrape, {per / len(body):.2f} per byte", flush=True)
    one_core = subprocess.run(["taskset", "-c", "0", str(EXAMPLE), "--seconds", "0.5" if smoke else "2", "--stream-mib", "0"],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
    results["stage"] = {}
    for line in one_core.splitlines():
        m = re.match(r"^(keep-all|drop-process-service|series-drop|keep-all gzip-proxy|drop-process-service gzip-proxy|"
                     r"keep-all gzip-exporter|drop-process-service gzip-exporter)\s+(\d+)\s+([\d.]+)", line)  # fmt: skip
        if m:
            results["stage"][m.group(1)] = {"mb_per_s": int(m.group(2)), "ms": float(m.group(3))}
    results["stage_output"] = one_core
    return results


def table(results: dict) -> str:
    lines = [
        f"Body: {results['bytes']:,} bytes, {results['lines']:,} lines (real 0.13 cs+service scrape + 600 processes).",
        "",
        "| target | bytes to the scraper | CPU per scrape | instructions per scrape | per body byte | scrapes/s (1 conn) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ORDER:
        t = results["targets"][name]
        instr = t.get("instructions")
        cells = [f"{instr:,.0f}", f"{instr / results['bytes']:.2f}"] if instr else ["(not counted)", ""]
        lines.append(f"| {name} | {t['bytes_out']:,} | {t['cpu_ms_per_scrape']:.3f} ms | {cells[0]} | {cells[1]} | {t['rps']:.0f} |")
    lines += ["", "The stage alone on one core (examples/filter_bench, taskset -c 0):", "",
              "| mode | MB/s | ms per scrape |", "|---|---:|---:|"]  # fmt: skip
    for mode, s in results["stage"].items():
        lines.append(f"| {mode} | {s['mb_per_s']:,} | {s['ms']:.3f} |")
    st = results["stream"]
    lines += ["", f"Stream of {results['stream_mib']} MiB through filter-keep-all: RSS {st['before_kib']:,} KiB before, "
              f"peak {st['peak_kib']:,} KiB (+{st['growth_kib']:,}), {st['mib_per_s']:.0f} MiB/s."]  # fmt: skip
    return "\n".join(lines)


def write_section(results: dict, date: str, commit: str, command: str) -> None:
    block = f"{MARK_START}\n_Generated {date}, commit {commit}, `{command}`._\n\n{table(results)}\n{MARK_END}"
    old = BENCHMARKS_MD.read_text()
    if MARK_START in old and MARK_END in old:
        new = old.split(MARK_START)[0] + block + old.split(MARK_END, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(new)
