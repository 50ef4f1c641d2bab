#!/usr/bin/env python3
"""Side-by-side benchmark: windows-exporter-proxy, nginx (the original container's configuration),
HAProxy, and the exporter scraped directly.

One run starts, on 127.0.0.1 only: a static upstream (nginx serving files: a real windows_exporter
scrape, a multi-MiB body built from it, and a 512 MiB body read from disk, never held in memory),
then per payload a fresh set of proxies in front of it. wrk drives each target in turn, interleaved
round-robin over several rounds so drift hits every target alike. Reported as medians over rounds:
throughput as a ratio to direct, added p50/p99 latency over direct (per round, same round's
direct), idle and peak RSS (VmRSS/VmHWM summed over master and workers), CPU seconds per 1,000
scrapes (utime+stime deltas), and RSS growth while one 512 MiB body streams through.

Full mode rewrites the results section of BENCHMARKS.md and bench/results.png; --smoke runs one
short round, checks every component answers 200 with the right body, writes only to bench/out,
and exits non-zero on any failure.

This file is the command line (`bench/run --help`); the rest of bench/ is one module per concept:
paths (where things are), processes (starting, waiting for and stopping servers), procfs (memory
and CPU readings), exporter (the static exporter stand-in), targets (the proxy, HAProxy, nginx
with the original configuration, extra proxy builds), load (wrk runs and the large-body stream),
report (tables, checks and the results section of BENCHMARKS.md), chart (bench/results.png), tls
(the TLS scenario), ha (the HA scenario, with ha_exporter.py), filter (the filter scenario) and
instructions (instructions per scrape under callgrind).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import filter as filter_scenario
import ha
import instructions
import tls
from chart import chart
from exporter import build_payloads, start_upstream
from load import stream_rss, wrk
from paths import BENCH, BENCHMARKS_MD, OUT, PROXY_BIN, ROOT
from processes import BenchError, Procs, chown_for_servers
from procfs import private_kib, rss_kib
from report import command, fmt_mib, machine, summarise, tables, targets_check, write_benchmarks_md
from targets import LIKE_FOR_LIKE, MAIN_TARGETS, check_body, copy_binaries, start_targets


def ha_main(args) -> int:
    """`--ha-only`: the HA scenario alone, recorded in BENCHMARKS.md unless --smoke/--no-write."""
    if args.smoke:
        args.no_write = True
    for tool in ("nginx", "haproxy"):
        if not shutil.which(tool):
            raise BenchError(f"{tool} not found (bash .ci/install)")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="wep-bench-ha-"))
    os.chmod(tmp, 0o755)
    try:
        results = ha.scenario(procs, tmp, args.smoke)
    except BenchError as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "ha.json").write_text(json.dumps(results, indent=1, default=str))
    if not args.no_write:
        m = machine()
        ha.write_section(BENCHMARKS_MD, results, time.strftime("%Y-%m-%d %H:%M %Z"), m["commit"], command())
        print("updated BENCHMARKS.md (HA section)")
    return 0


def filter_main(args) -> int:
    """`--filter-only`: the filter scenario alone, recorded in BENCHMARKS.md unless --smoke/--no-write."""
    if args.smoke:
        args.no_write = True
    for tool in ("nginx", "haproxy", "wrk", "curl", "valgrind", "taskset"):
        if not shutil.which(tool):
            raise BenchError(f"{tool} not found (bash .ci/install)")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="wep-bench-filter-"))
    os.chmod(tmp, 0o755)
    rounds, duration = (1, 1.0) if args.smoke else (args.rounds, args.duration)
    scrapes = 1 if args.smoke else args.instructions_scrapes
    try:
        results = filter_scenario.scenario(procs, tmp, PROXY_BIN, args.smoke, rounds, duration, scrapes)
    except BenchError as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "filter.json").write_text(json.dumps(results, indent=1, default=str))
    print(filter_scenario.table(results))
    if not args.no_write:
        m = machine()
        filter_scenario.write_section(results, time.strftime("%Y-%m-%d %H:%M %Z"), m["commit"], command())
        print("updated BENCHMARKS.md (filter section)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="one 1 s round, small payloads; CI keep-alive check")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--conns", default="1,16")
    ap.add_argument("--payloads", default=None, help="comma list of scrape,large (default both)")
    ap.add_argument("--targets", default="direct,proxy,haproxy,nginx,proxy-inflight2")
    ap.add_argument("--extra-proxy", action="append", default=[], metavar="NAME=BINARY[;VAR=VALUE...]",
                    help="another proxy build (and environment) to compare in the same interleaved run")  # fmt: skip
    ap.add_argument("--no-build", action="store_true", help="use target/release as it is")
    ap.add_argument("--no-stream", action="store_true", help="skip the 512 MiB stream")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md / bench/results.png")
    ap.add_argument("--no-ha", action="store_true", help="skip the HA scenario (bench/ha.py)")
    ap.add_argument("--ha-only", action="store_true", help="run only the HA scenario (bench/ha.py) and record it")
    ap.add_argument("--filter-only", action="store_true",
                    help="only the filter scenario (bench/filter.py: pass-through, keep-all, dropping process and service, HAProxy)")  # fmt: skip
    ap.add_argument("--no-tls", action="store_true", help="skip the TLS scenario")
    ap.add_argument("--tls-only", action="store_true", help="only the TLS scenario (writes only its BENCHMARKS.md section)")
    ap.add_argument("--no-instructions", action="store_true", help="skip the instruction count (callgrind)")
    ap.add_argument("--instructions-only", action="store_true",
                    help="only the instruction count per scrape under callgrind (writes only its BENCHMARKS.md section)")
    ap.add_argument("--instructions-scrapes", type=int, default=instructions.SCRAPES, metavar="N",
                    help=f"count N and 2N scrapes per target (default {instructions.SCRAPES}; 1 in --smoke)")  # fmt: skip
    args = ap.parse_args()
    if args.ha_only:
        return ha_main(args)
    if args.filter_only:
        return filter_main(args)

    if args.smoke:
        args.rounds, args.duration, args.no_write = 1, 1.0, True
        args.instructions_scrapes = instructions.SMOKE_SCRAPES
    if args.instructions_only:
        args.no_stream, args.no_ha, args.no_tls, args.no_instructions = True, True, True, False
    if args.tls_only:
        args.no_instructions = True
    for tool in ("nginx", "haproxy", "wrk", "curl", *(() if args.no_instructions else ("valgrind",))):
        if not shutil.which(tool):
            raise BenchError(f"{tool} not found (bash .ci/install)")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    if not PROXY_BIN.exists():
        raise BenchError(f"{PROXY_BIN} missing: cargo build --release")

    want = args.targets.split(",")
    proxies: dict[str, tuple[Path, dict]] = {
        "proxy": (PROXY_BIN, dict(LIKE_FOR_LIKE)),
        "proxy-inflight2": (PROXY_BIN, {"PROXY_COALESCE": "false"}),
    }
    for spec in args.extra_proxy:
        name, _, rest = spec.partition("=")
        binary, *settings = rest.split(";")
        env = dict(LIKE_FOR_LIKE) | dict(kv.split("=", 1) for kv in settings)
        proxies[name] = (Path(binary).resolve(), env)
        want.append(name)
    extra_names = [name for name in proxies if name not in ("proxy", "proxy-inflight2")]
    conns_list = [int(c) for c in args.conns.split(",")]

    OUT.mkdir(exist_ok=True)
    procs = Procs()

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # also when started in the background with INT ignored
    tmp = Path(tempfile.mkdtemp(prefix="wep-bench-"))
    os.chmod(tmp, 0o755)
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "rounds": args.rounds,
        "duration": args.duration,
        "machine": machine(),
        "load": {},
        "idle_rss_kib": {},
        "stream": {},
    }
    t0 = time.monotonic()
    try:
        payloads = build_payloads(tmp, args.smoke, only_scrape=args.instructions_only)
        results["payloads"] = {k: {"bytes": v["bytes"]} for k, v in payloads.items()}
        proxies = copy_binaries(tmp, proxies)
        chown_for_servers(tmp)
        ports, up_pids = start_upstream(procs, tmp, payloads)
        load_payloads = args.payloads.split(",") if args.payloads else [p for p in ("scrape", "large") if p in payloads]
        if args.tls_only or args.instructions_only:
            load_payloads, args.no_stream = [], True
        for pname in load_payloads:
            started_at = len(procs.started)
            targets = start_targets(procs, tmp, ports[pname], up_pids, proxies, want)
            time.sleep(0.3)
            for t in targets.values():
                results["idle_rss_kib"].setdefault(t.name, {"start": rss_kib(t.pids), "start_private": private_kib(t.pids)})
                check_body(t, payloads[pname])
            print(f"== {pname}: {payloads[pname]['bytes']:,} bytes; targets: {', '.join(targets)}", flush=True)
            if not args.smoke:  # warm-up: pools, page cache, allocator arenas
                for conns in conns_list:
                    for t in targets.values():
                        wrk(t, conns, 1)
            raw = results["load"].setdefault(pname, {})
            for rnd in range(args.rounds):
                for conns in conns_list:
                    for t in targets.values():
                        if t.name == "proxy-inflight2" and conns == 1:
                            continue  # same as "proxy" at one connection
                        r = wrk(t, conns, args.duration)
                        raw.setdefault(str(conns), {}).setdefault(t.name, []).append(r)
                        print(f"  round {rnd + 1} c={conns:<2} {t.name:<16} {r['rps']:9.0f} req/s  "
                              f"p50 {r['p50_us']:6d} us  p99 {r['p99_us']:6d} us  cpu/1000 {r['cpu_s_per_1000']:.3f} s  "
                              f"peak {fmt_mib(r['peak_rss_kib'])} MiB  errors {r['errors']}", flush=True)  # fmt: skip
                        if r["errors"]:
                            msg = f"{t.name}: {r['errors']} errors/non-2xx answers at {conns} connections: {r}"
                            if args.smoke:
                                raise BenchError(msg)
                            print(f"  WARNING {msg}", flush=True)
            time.sleep(0.5)
            for t in targets.values():
                results["idle_rss_kib"][t.name].setdefault("after_load", rss_kib(t.pids))
            for p in procs.started[started_at:]:
                procs.stop(p)
            del procs.started[started_at:]
        if not args.no_stream:
            targets = start_targets(procs, tmp, ports["stream"], up_pids, proxies, [t for t in want if t in MAIN_TARGETS])
            time.sleep(0.3)
            for t in targets.values():
                results["stream"][t.name] = st = stream_rss(t, payloads["stream"])
                print(f"== stream {payloads['stream']['bytes'] >> 20} MiB via {t.name:<8}: RSS {fmt_mib(st['before_kib'])} -> "
                      f"{fmt_mib(st['peak_kib'])} MiB (+{fmt_mib(st['growth_kib'])}), {st['mib_per_s']:.0f} MiB/s", flush=True)  # fmt: skip
        if not args.no_ha and not args.tls_only:
            results["ha"] = ha.scenario(procs, tmp, args.smoke)
        if not args.no_tls:
            tls.run_tls_scenario(procs, tmp, ports["scrape"], up_pids, proxies["proxy"][0], payloads["scrape"], args, results)
        if not args.no_instructions:
            results["instructions"] = instructions.run(procs, tmp, ports["scrape"], proxies, extra_names,
                                                       payloads["scrape"]["path"].read_bytes(), args.smoke,
                                                       args.instructions_scrapes)  # fmt: skip
    except BenchError as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    if "tls" in results:
        tls_text, tls_check = tls.tls_tables(results), tls.tls_checks(results)
        print(tls_text)
        for name, ok, detail in tls_check:
            print(f"  [{'ok  ' if ok else 'MISS'}] {name}: {detail}")
        if not args.no_write:
            tls.write_tls_section(results, tls_text, tls_check)
            print("updated the TLS section of BENCHMARKS.md")
    if "instructions" in results:
        print(instructions.table(results["instructions"]))
        if not args.no_write:
            instructions.write_section(results["instructions"], results["date"], results["machine"]["commit"])
            print("updated the instructions section of BENCHMARKS.md")
    if args.instructions_only:
        (OUT / "results-instructions.json").write_text(json.dumps(results, indent=1, default=str))
        print(f"bench: done in {time.monotonic() - t0:.0f} s")
        return 0
    if args.tls_only:
        (OUT / "results-tls.json").write_text(json.dumps(results, indent=1, default=str))
        print(f"bench: done in {time.monotonic() - t0:.0f} s")
        return 0
    results["summary"] = summarise(results, results["payloads"])
    text = tables(results)
    checks = targets_check(results)
    print(text)
    for name, ok, detail in checks:
        print(f"  [{'ok  ' if ok else 'MISS'}] {name}: {detail}")
    (OUT / "results.json").write_text(json.dumps(results, indent=1, default=str))
    chart(results, OUT / "results.png")
    if not args.no_write:
        shutil.copy(OUT / "results.png", BENCH / "results.png")
        write_benchmarks_md(results, text, checks)
        if "ha" in results:
            ha.write_section(BENCHMARKS_MD, results["ha"], results["date"], results["machine"]["commit"], command())
        print("updated BENCHMARKS.md and bench/results.png")
    print(f"bench: done in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
