"""Reporting the plain-HTTP run: the machine it ran on, medians over rounds, the Markdown tables,
the project's targets (held or not), and the results section of BENCHMARKS.md between its
markers."""

from __future__ import annotations

import os
import platform
import re
import shlex
import statistics
import subprocess
import sys

from paths import BENCHMARKS_MD, PROXY_BIN, ROOT
from targets import MAIN_TARGETS

MARK_START = "<!-- bench:results:start -->"
MARK_END = "<!-- bench:results:end -->"


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")

def machine() -> dict:
    def first_line(argv: list[str]) -> str:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"^Model name:\s*(.*)$", lscpu, re.M)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True, text=True)
    return {
        "cpu": model.group(1).strip() if model else platform.processor(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "nginx": first_line(["nginx", "-v"]),
        "haproxy": first_line(["haproxy", "-v"]),
        "wrk": first_line(["wrk", "-v"]).split("Copyright")[0].strip(),
        "rustc": first_line(["rustc", "--version"]),
        "proxy": first_line([str(PROXY_BIN), "--version"]),
        "commit": commit.stdout.strip() + (" (src modified)" if dirty.stdout.strip() else ""),
    }


def summarise(raw: dict, payloads: dict) -> dict:
    """Medians over rounds, ratios and added latencies computed per round against that round's direct."""
    summary: dict = {}
    for pname, by_conns in raw["load"].items():
        for conns, by_target in by_conns.items():
            direct = by_target.get("direct", [])
            for tname, rounds in by_target.items():
                pairs = list(zip(rounds, direct))
                summary.setdefault(pname, {}).setdefault(conns, {})[tname] = {
                    "rps": median([r["rps"] for r in rounds]),
                    "ratio": median([r["rps"] / d["rps"] for r, d in pairs]),
                    "p50_us": median([r["p50_us"] for r in rounds]),
                    "p99_us": median([r["p99_us"] for r in rounds]),
                    "added_p50_us": median([r["p50_us"] - d["p50_us"] for r, d in pairs]),
                    "added_p99_us": median([r["p99_us"] - d["p99_us"] for r, d in pairs]),
                    "cpu_s_per_1000": median([r["cpu_s_per_1000"] for r in rounds]),
                    "peak_rss_kib": max(r["peak_rss_kib"] for r in rounds),
                    "errors": sum(r["errors"] for r in rounds),
                    "rounds": len(rounds),
                }
    return summary


def fmt_mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def tables(results: dict) -> str:
    s, idle, stream, payloads = results["summary"], results["idle_rss_kib"], results["stream"], results["payloads"]
    lines = []
    for pname, by_conns in s.items():
        size = payloads[pname]["bytes"]
        for conns, by_target in by_conns.items():
            lines.append(f"\n**{pname}** ({size:,} bytes), **{conns} connection{'s' if conns != '1' else ''}**\n")
            lines.append("| target | req/s | ratio to direct | p50 us | added p50 us | p99 us | added p99 us "
                         "| CPU s / 1000 scrapes | peak RSS MiB | errors |")  # fmt: skip
            lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for tname in order(by_target):
                r = by_target[tname]
                added = (lambda k: "-" if tname == "direct" else f"{r[k]:+.0f}")  # noqa: E731
                lines.append(
                    f"| {label(tname)} | {r['rps']:.0f} | {r['ratio']:.2f} | {r['p50_us']:.0f} | {added('added_p50_us')} "
                    f"| {r['p99_us']:.0f} | {added('added_p99_us')} | {r['cpu_s_per_1000']:.3f} "
                    f"| {fmt_mib(r['peak_rss_kib'])} | {r['errors']} |"
                )
    lines.append("\n**Memory** (MiB; nginx is master + workers; direct is the upstream nginx)\n")
    lines.append("| target | idle RSS at start | of it private (RssAnon) | RSS idle after load "
                 "| 512 MiB stream: RSS before | peak | growth | stream MiB/s |")  # fmt: skip
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for tname in order(idle):
        st = stream.get(tname)
        private = idle[tname].get("start_private")
        lines.append(
            f"| {label(tname)} | {fmt_mib(idle[tname]['start'])} | {fmt_mib(private) if private is not None else '-'} "
            f"| {fmt_mib(idle[tname]['after_load'])} | "
            + (f"{fmt_mib(st['before_kib'])} | {fmt_mib(st['peak_kib'])} | {fmt_mib(st['growth_kib'])} | {st['mib_per_s']:.0f} |"
               if st else "- | - | - | - |")
        )  # fmt: skip
    return "\n".join(lines) + "\n"


def label(tname: str) -> str:
    return {
        "direct": "direct (no proxy)",
        "proxy": "windows-exporter-proxy",
        "proxy-inflight2": "windows-exporter-proxy, default PROXY_MAX_INFLIGHT=2",
        "nginx": "nginx, original config",
        "haproxy": "HAProxy",
    }.get(tname, tname)


def order(d: dict) -> list[str]:
    known = MAIN_TARGETS + ["proxy-inflight2"]
    return [t for t in known if t in d] + sorted(t for t in d if t not in known)


def targets_check(results: dict) -> list[tuple[str, bool, str]]:
    s, idle, stream = results["summary"], results["idle_rss_kib"], results["stream"]
    checks = []
    scrape = s.get("scrape", {})
    for conns in ("1", "16"):
        row = scrape.get(conns, {})
        if "proxy" in row and "haproxy" in row:
            p, h = row["proxy"], row["haproxy"]
            checks.append((f"throughput at {conns} conn >= HAProxy", p["ratio"] >= h["ratio"],
                           f"{p['ratio']:.2f} vs {h['ratio']:.2f}"))  # fmt: skip
    if "proxy" in scrape.get("1", {}) and "haproxy" in scrape.get("1", {}):
        p, h = scrape["1"]["proxy"], scrape["1"]["haproxy"]
        checks.append(("added p50 at 1 conn <= HAProxy", p["added_p50_us"] <= h["added_p50_us"],
                       f"{p['added_p50_us']:+.0f} vs {h['added_p50_us']:+.0f} us"))  # fmt: skip
    if "proxy" in scrape.get("16", {}) and "haproxy" in scrape.get("16", {}):
        p, h = scrape["16"]["proxy"], scrape["16"]["haproxy"]
        checks.append(("p99 at 16 conns <= HAProxy", p["p99_us"] <= h["p99_us"],
                       f"{p['p99_us']:.0f} vs {h['p99_us']:.0f} us"))  # fmt: skip
    if "proxy" in idle:
        checks.append(("idle RSS <= 4 MiB", idle["proxy"]["start"] <= 4096, f"{fmt_mib(idle['proxy']['start'])} MiB"))
    peak16 = [s[p]["16"]["proxy"]["peak_rss_kib"] for p in s if "proxy" in s[p].get("16", {})]
    if peak16:
        checks.append(("peak RSS at 16 conns <= 10 MiB", max(peak16) <= 10240, f"{fmt_mib(max(peak16))} MiB"))
    if "proxy" in stream:
        g = stream["proxy"]["growth_kib"]
        checks.append(("512 MiB body raises RSS < 8 MiB", g < 8192, f"+{fmt_mib(g)} MiB"))
    return checks


def command() -> str:
    """The command line this run was started with, as the sections record it."""
    return shlex.join(["bench/run", *sys.argv[1:]])


def write_benchmarks_md(results: dict, text: str, checks: list) -> None:
    path = BENCHMARKS_MD
    m = results["machine"]
    section = [
        MARK_START,
        "<!-- written by bench/run; edit outside the markers -->",
        f"Latest full run: {results['date']}, {results['rounds']} rounds x {results['duration']} s per "
        f"target and case, round-robin. Command: `{command()}`.\n",
        f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; {m['nginx']}; {m['haproxy']}; "
        f"{m['wrk']}; {m['rustc']}; {m['proxy']} at {m['commit']}.\n",
        "![benchmark chart](bench/results.png)\n",
        "Targets (windows-exporter-proxy, scrape payload unless noted):\n",
        "| target | holds | measured |",
        "|---|---|---|",
        *[f"| {name} | {'yes' if ok else '**no**'} | {detail} |" for name, ok, detail in checks],
        text,
        MARK_END,
    ]
    block = "\n".join(section)
    if path.exists():
        old = path.read_text()
        if MARK_START in old and MARK_END in old:
            new = old.split(MARK_START)[0] + block + old.split(MARK_END, 1)[1]
        else:
            new = old.rstrip() + "\n\n" + block + "\n"
    else:
        new = "# Benchmarks\n\n" + block + "\n"
    path.write_text(new)
