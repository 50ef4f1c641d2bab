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
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
SAMPLE = BENCH / "fixtures" / "windows_exporter-0.13-cs-service.prom"
PROXY_BIN = ROOT / "target" / "release" / "windows-exporter-proxy"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = 4
MARK_START = "<!-- bench:results:start -->"
MARK_END = "<!-- bench:results:end -->"

# Fixed display order; "proxy" is run with PROXY_MAX_INFLIGHT=16 so 16 wrk connections are not
# queued behind the default limit of 2; "proxy-inflight2" is the shipped default, for honesty.
# wrk's connections send identical scrapes, which the proxy would coalesce by default (HAProxy and
# nginx cannot): the pass-through and TLS scenarios run it with PROXY_COALESCE=false so every
# request reaches the exporter, like for like; the HA scenario measures coalescing.
LIKE_FOR_LIKE = {"PROXY_MAX_INFLIGHT": "16", "PROXY_COALESCE": "false"}
MAIN_TARGETS = ["direct", "proxy", "haproxy", "nginx"]


class BenchError(Exception):
    """A component failed to start, answered wrongly, or a measurement could not be taken."""


# ---------------------------------------------------------------- processes


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


# ---------------------------------------------------------------- /proc sampling


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


# ---------------------------------------------------------------- environment


def build_payloads(tmp: Path, smoke: bool) -> dict[str, dict]:
    sample = SAMPLE.read_bytes()
    www = tmp / "www"
    payloads: dict[str, dict] = {}

    def put(name: str, data: bytes | None = None, size: int | None = None) -> None:
        d = www / name
        d.mkdir(parents=True)
        f = d / "metrics"
        if data is not None:
            f.write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()
        else:
            h = hashlib.sha256()
            with open(f, "wb") as out:
                left = size
                while left:
                    chunk = sample[: min(left, len(sample))]
                    out.write(chunk)
                    h.update(chunk)
                    left -= len(chunk)
            digest = h.hexdigest()
        payloads[name] = {"path": f, "bytes": f.stat().st_size, "sha256": digest}

    put("scrape", sample)
    if not smoke:
        put("large", sample * 16)
    put("stream", size=(16 if smoke else 512) * 1024 * 1024)
    return payloads


def upstream_conf(tmp: Path, ports: dict[str, int]) -> str:
    servers = "\n".join(
        f"""    server {{
        listen 127.0.0.1:{port};
        location = /health {{ return 200 'ok'; }}
        location / {{ root {tmp}/www/{name}; }}
    }}"""
        for name, port in ports.items()
    )
    return f"""# Static stand-in for windows_exporter: serves files, keep-alive, sendfile.
daemon off;
worker_processes auto;
pid {tmp}/upstream.pid;
error_log {tmp}/upstream-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    types {{ }}
    default_type "text/plain; version=0.0.4; charset=utf-8";
{temp_paths(tmp, "upstream")}
{servers}
}}
"""


def temp_paths(tmp: Path, name: str) -> str:
    return "\n".join(
        f"    {kind}_temp_path {tmp}/{name}-temp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )


def nginx_original_conf(tmp: Path, listen: int, up_port: int) -> str:
    template = (BENCH / "nginx-original.conf.template").read_text()
    conf = string.Template(template).safe_substitute(PROXY_HOSTIP="127.0.0.1", PROXY_PORT=str(up_port))
    if "listen 9100;" not in conf or "\nhttp {\n" not in conf:
        raise BenchError("nginx-original.conf.template changed shape; update nginx_original_conf")
    conf = conf.replace("listen 9100;", f"listen 127.0.0.1:{listen};  # bench: was 9100")
    conf = conf.replace(
        "\nhttp {\n",
        "\nhttp {\n"
        f"{temp_paths(tmp, f'nginx-{listen}')}  # bench\n"
        f"    access_log {tmp}/nginx-{listen}-access.log;  # bench: same default format, run's dir\n",
    )
    return (
        f"daemon off;  # bench\npid {tmp}/nginx-{listen}.pid;  # bench\n"
        f"error_log {tmp}/nginx-{listen}-error.log warn;  # bench\n" + conf
    )


def haproxy_conf(listen: int, up_port: int) -> str:
    template = (BENCH / "haproxy.cfg.template").read_text()
    return string.Template(template).substitute(
        LISTEN=f"127.0.0.1:{listen}", PROXY_HOSTIP="127.0.0.1", PROXY_PORT=str(up_port)
    )


class Target:
    """One thing wrk can hit: its URL and the processes whose CPU and memory count."""

    def __init__(self, name: str, url: str, proc: subprocess.Popen | None, pids: list[int]) -> None:
        self.name, self.url, self.proc, self.pids = name, url, proc, pids


def start_upstream(procs: Procs, tmp: Path, payloads: dict) -> tuple[dict[str, int], list[int]]:
    ports = {name: free_port() for name in payloads}
    conf = tmp / "upstream.conf"
    conf.write_text(upstream_conf(tmp, ports))
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / "upstream-temp" / kind).mkdir(parents=True, exist_ok=True)
    log = tmp / "upstream.log"
    p = procs.spawn(["nginx", "-p", str(tmp), "-c", str(conf)], log=log)
    for name, port in ports.items():
        wait_ready("upstream nginx", p, f"http://127.0.0.1:{port}/health", log)
    time.sleep(0.2)
    return ports, pids_of(p.pid)


def start_targets(
    procs: Procs, tmp: Path, up_port: int, up_pids: list[int], proxies: dict[str, tuple[Path, dict]], want: list[str]
) -> dict[str, Target]:
    targets: dict[str, Target] = {"direct": Target("direct", f"http://127.0.0.1:{up_port}", None, up_pids)}
    for name, (binary, env) in proxies.items():
        if name not in want:
            continue
        port = free_port()
        log = tmp / f"{name}-{port}.log"
        p = procs.spawn(
            [str(binary)],
            env={
                "PROXY_HOSTIP": "127.0.0.1",
                "PROXY_PORT": str(up_port),
                "PROXY_LISTEN": f"127.0.0.1:{port}",
                "RUST_LOG": "warn",
                **env,
            },
            log=log,
        )
        wait_ready(name, p, f"http://127.0.0.1:{port}/health", log)
        targets[name] = Target(name, f"http://127.0.0.1:{port}", p, [p.pid])
    if "haproxy" in want:
        port = free_port()
        conf = tmp / f"haproxy-{port}.cfg"
        conf.write_text(haproxy_conf(port, up_port))
        log = tmp / f"haproxy-{port}.log"
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(conf)], capture_output=True, text=True)
        if check.returncode != 0:
            raise BenchError(f"haproxy config invalid: {check.stdout}{check.stderr}")
        p = procs.spawn(["haproxy", "-db", "-f", str(conf)], log=log)
        wait_ready("haproxy", p, f"http://127.0.0.1:{port}/health", log)
        targets["haproxy"] = Target("haproxy", f"http://127.0.0.1:{port}", p, [p.pid])
    if "nginx" in want:
        port = free_port()
        conf = tmp / f"nginx-{port}.conf"
        conf.write_text(nginx_original_conf(tmp, port, up_port))
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / f"nginx-{port}-temp" / kind).mkdir(parents=True, exist_ok=True)
        chown_for_servers(tmp)
        log = tmp / f"nginx-{port}.log"
        p = procs.spawn(["nginx", "-p", str(tmp), "-c", str(conf)], log=log)
        wait_ready("nginx", p, f"http://127.0.0.1:{port}/health", log)
        time.sleep(0.2)  # workers forked
        targets["nginx"] = Target("nginx", f"http://127.0.0.1:{port}", p, pids_of(p.pid))
    return targets


def copy_binaries(tmp: Path, proxies: dict[str, tuple[Path, dict]]) -> dict[str, tuple[Path, dict]]:
    """Each proxy build, copied into the run's directory: as nobody, the checkout's target/ may
    be out of reach (a clone in a root-only directory)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    copies: dict[Path, Path] = {}
    for binary, _ in proxies.values():
        if binary not in copies:
            copies[binary] = bin_dir / f"{len(copies)}-{binary.name}"
            shutil.copy2(binary, copies[binary])
    return {name: (copies[binary], env) for name, (binary, env) in proxies.items()}


def chown_for_servers(tmp: Path) -> None:
    if not demote():
        return
    import pwd

    nobody = pwd.getpwnam("nobody")
    for dirpath, dirnames, filenames in os.walk(tmp):
        for n in [dirpath] + [os.path.join(dirpath, f) for f in dirnames + filenames]:
            os.chown(n, nobody.pw_uid, nobody.pw_gid)


def check_body(target: Target, payload: dict) -> None:
    """One scrape through the target must be 200 with the exact bytes of the payload."""
    status, body = http_get(target.url + "/metrics", timeout=30)
    if status != 200:
        raise BenchError(f"{target.name}: /metrics answered {status}: {body[:200]!r}")
    if hashlib.sha256(body).hexdigest() != payload["sha256"]:
        raise BenchError(f"{target.name}: /metrics body differs from the payload ({len(body)} bytes)")


# ---------------------------------------------------------------- measurements


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


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------- reporting


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


def chart(results: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not available: no chart", file=sys.stderr)
        return False
    s = results["summary"]
    names = [t for t in MAIN_TARGETS if t != "direct"]
    colours = {"proxy": "#2a7ab0", "haproxy": "#7a7a7a", "nginx": "#3c9a3c"}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    cases = [(p, c) for p in s for c in s[p]]

    def bars(ax, metric, title, scale=1.0, cases=cases):
        width = 0.8 / len(names)
        for i, t in enumerate(names):
            vals = [s[p][c].get(t, {}).get(metric, float("nan")) * scale for p, c in cases]
            ax.bar([x + i * width for x in range(len(cases))], vals, width, label=label(t), color=colours[t])
        ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(cases))])
        ax.set_xticklabels([f"{p}\n{c} conn" for p, c in cases], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)

    bars(axes[0][0], "ratio", "throughput / direct (higher is better)")
    bars(axes[0][1], "added_p50_us", "added p50 latency, us, log scale (lower is better)")
    bars(axes[0][2], "added_p99_us", "added p99 latency, us, log scale (lower is better)")
    for ax in (axes[0][1], axes[0][2]):
        ax.set_yscale("symlog", linthresh=100)
    bars(axes[1][0], "cpu_s_per_1000", "CPU s per 1,000 scrapes (lower is better)")
    bars(axes[1][1], "peak_rss_kib", "peak RSS under load, MiB (lower is better)", scale=1 / 1024)
    ax = axes[1][2]
    idle, stream = results["idle_rss_kib"], results["stream"]
    width = 0.8 / len(names)
    groups = ["idle RSS", "512 MiB stream\nRSS growth"]
    for i, t in enumerate(names):
        vals = [idle.get(t, {}).get("start", float("nan")) / 1024,
                stream.get(t, {}).get("growth_kib", float("nan")) / 1024]  # fmt: skip
        ax.bar([x + i * width for x in range(2)], vals, width, label=label(t), color=colours[t])
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(2)])
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_title("memory, MiB (lower is better)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9)
    m = results["machine"]
    fig.suptitle(f"windows-exporter-proxy vs HAProxy vs nginx (original config) - {m['cpu']}, {m['cores']} cores, "
                 f"median of {results['rounds']} rounds", fontsize=11)  # fmt: skip
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def command() -> str:
    """The command line this run was started with, as the sections record it."""
    return shlex.join(["bench/run", *sys.argv[1:]])


def write_benchmarks_md(results: dict, text: str, checks: list) -> None:
    path = ROOT / "BENCHMARKS.md"
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


# ---------------------------------------------------------------- HA scenario (bench/ha.py)


def ha_scenario(procs: Procs, tmp: Path, smoke: bool) -> dict:
    """The HA scenario; in smoke mode briefly, on the proxy and HAProxy only."""
    sys.path.insert(0, str(BENCH))
    import ha

    bin_dir = tmp / "ha-bin"
    bin_dir.mkdir(exist_ok=True)
    binary = bin_dir / PROXY_BIN.name
    shutil.copy2(PROXY_BIN, binary)
    chown_for_servers(tmp)
    if smoke:
        results = ha.run(sys.modules[__name__], procs, tmp, binary, rounds=1, intervals=2, names=["proxy", "haproxy"])
        problems = ha.check(results)
        if problems:
            raise BenchError("HA scenario: " + "; ".join(problems))
    else:
        results = ha.run(sys.modules[__name__], procs, tmp, binary, rounds=3, intervals=5)
    print(ha.table(results))
    return results


def ha_main(args) -> int:
    """`--ha-only`: the HA scenario alone, recorded in BENCHMARKS.md unless --smoke/--no-write."""
    sys.path.insert(0, str(BENCH))
    import ha

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
        results = ha_scenario(procs, tmp, args.smoke)
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
        ha.write_section(ROOT / "BENCHMARKS.md", results, time.strftime("%Y-%m-%d %H:%M %Z"), m["commit"], command())
        print("updated BENCHMARKS.md (HA section)")
    return 0
# ---------------------------------------------------------------- TLS scenario
# The proxy serving HTTPS beside HAProxy terminating TLS with the same certificate and key, both
# in front of the same plain-HTTP exporter. Three cases: keep-alive at 1 and 16 connections (what
# Prometheus does: one handshake, many scrapes) and a new connection per scrape (every scrape pays
# a full handshake: the worst case, and what a scraper without keep-alive costs). Added latency is
# over scraping the exporter directly over plain HTTP in the same way (keep-alive or not).

TLS_MARK_START = "<!-- bench:tls:start -->"
TLS_MARK_END = "<!-- bench:tls:end -->"
TLS_CASES = [("keep-alive", 1, ()), ("keep-alive", 16, ()), ("new connection", 1, ("-H", "Connection: close"))]
WINDOWS_EXE = ROOT / "target" / "x86_64-pc-windows-gnu" / "release" / "windows-exporter-proxy.exe"


def tls_files(tmp: Path) -> dict[str, Path]:
    """A CA and a P-256 leaf for 127.0.0.1 (what cert-manager issues by default for ECDSA), and
    HAProxy's combined PEM of the same certificate and key."""
    d = tmp / "tls"
    d.mkdir()

    def openssl(*args: str) -> None:
        r = subprocess.run(["openssl", *args], cwd=d, capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"openssl {' '.join(args)}: {r.stderr}")

    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    openssl("req", "-x509", "-new", "-key", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "tls.key")
    openssl("req", "-new", "-key", "tls.key", "-subj", "/CN=bench.test", "-out", "tls.csr")
    (d / "tls.ext").write_text("subjectAltName=DNS:bench.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "1", "-days", "2",
            "-extfile", "tls.ext", "-out", "tls.crt")  # fmt: skip
    (d / "haproxy.pem").write_bytes((d / "tls.crt").read_bytes() + (d / "tls.key").read_bytes())
    return {"ca": d / "ca.pem", "cert": d / "tls.crt", "key": d / "tls.key", "haproxy": d / "haproxy.pem"}


def https_get(url: str, ca: Path, timeout: float = 5.0) -> tuple[int, bytes]:
    import ssl

    context = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready_https(name: str, proc: subprocess.Popen, url: str, ca: Path, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            if https_get(url, ca, timeout=1.0)[0] == 200:
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    raise BenchError(f"{name} did not answer {url} over HTTPS within {timeout} s")


def start_tls_targets(procs: Procs, tmp: Path, up_port: int, up_pids: list[int], binary: Path, files: dict) -> dict:
    targets = {"direct": Target("direct", f"http://127.0.0.1:{up_port}", None, up_pids)}
    port = free_port()
    log = tmp / f"proxy-tls-{port}.log"
    p = procs.spawn(
        [str(binary)],
        env={
            "PROXY_HOSTIP": "127.0.0.1", "PROXY_PORT": str(up_port), "PROXY_LISTEN": f"127.0.0.1:{port}",
            **LIKE_FOR_LIKE, "RUST_LOG": "warn",
            "PROXY_TLS_CERT_FILE": str(files["cert"]), "PROXY_TLS_KEY_FILE": str(files["key"]),
        },
        log=log,
    )  # fmt: skip
    wait_ready_https("proxy-tls", p, f"https://127.0.0.1:{port}/health", files["ca"], log)
    targets["proxy-tls"] = Target("proxy-tls", f"https://127.0.0.1:{port}", p, [p.pid])
    port = free_port()
    conf = tmp / f"haproxy-tls-{port}.cfg"
    conf.write_text(haproxy_conf(port, up_port).replace(
        f"bind 127.0.0.1:{port}", f"bind 127.0.0.1:{port} ssl crt {files['haproxy']} alpn http/1.1"))  # fmt: skip
    log = tmp / f"haproxy-tls-{port}.log"
    check = subprocess.run(["haproxy", "-c", "-q", "-f", str(conf)], capture_output=True, text=True)
    if check.returncode != 0:
        raise BenchError(f"haproxy TLS config invalid: {check.stdout}{check.stderr}")
    p = procs.spawn(["haproxy", "-db", "-f", str(conf)], log=log)
    wait_ready_https("haproxy-tls", p, f"https://127.0.0.1:{port}/health", files["ca"], log)
    targets["haproxy-tls"] = Target("haproxy-tls", f"https://127.0.0.1:{port}", p, [p.pid])
    return targets


def run_tls_scenario(procs: Procs, tmp: Path, up_port: int, up_pids: list[int], binary: Path, payload: dict,
                     args: argparse.Namespace, results: dict) -> None:  # fmt: skip
    files = tls_files(tmp)
    chown_for_servers(tmp)
    started_at = len(procs.started)
    targets = start_tls_targets(procs, tmp, up_port, up_pids, binary, files)
    time.sleep(0.3)
    tls = results["tls"] = {"idle_rss_kib": {}, "idle_private_kib": {}, "load": {}}
    for t in targets.values():
        tls["idle_rss_kib"][t.name] = rss_kib(t.pids)
        tls["idle_private_kib"][t.name] = private_kib(t.pids)
        status, body = https_get(t.url + "/metrics", files["ca"]) if t.url.startswith("https") else http_get(t.url + "/metrics")
        if status != 200 or hashlib.sha256(body).hexdigest() != payload["sha256"]:
            raise BenchError(f"{t.name}: /metrics over TLS answered {status} with {len(body)} bytes, not the payload")
    print(f"== tls: scrape payload; targets: {', '.join(targets)}", flush=True)
    if not args.smoke:
        for _, conns, extra in TLS_CASES:
            for t in targets.values():
                wrk(t, conns, 1, extra)
    for rnd in range(args.rounds):
        for case, conns, extra in TLS_CASES:
            key = f"{case}, {conns}"
            for t in targets.values():
                r = wrk(t, conns, args.duration, extra)
                tls["load"].setdefault(key, {}).setdefault(t.name, []).append(r)
                print(f"  round {rnd + 1} {key:<17} {t.name:<12} {r['rps']:8.0f} req/s  p50 {r['p50_us']:6d} us  "
                      f"p99 {r['p99_us']:6d} us  cpu/1000 {r['cpu_s_per_1000']:.3f} s  errors {r['errors']}", flush=True)  # fmt: skip
                if r["errors"]:
                    msg = f"{t.name}: {r['errors']} errors/non-2xx answers ({key}): {r}"
                    if args.smoke:
                        raise BenchError(msg)
                    print(f"  WARNING {msg}", flush=True)
    time.sleep(0.5)
    for t in targets.values():
        tls["idle_rss_kib"][t.name + " after load"] = rss_kib(t.pids)
    for p in procs.started[started_at:]:
        procs.stop(p)
    del procs.started[started_at:]
    tls["summary"] = summarise({"load": {"tls": tls["load"]}}, {})["tls"]
    tls["exe_bytes"] = windows_exe_bytes()


def windows_exe_bytes() -> int | None:
    """The size of the Windows `.exe` in target/, or None when there is none or it is older than
    a source it is built from: bench/run does not cross-build it (scripts/test-windows does), and a
    size left over from an earlier commit would be reported as this one's."""
    try:
        exe = WINDOWS_EXE.stat()
    except FileNotFoundError:
        return None
    sources = [*(ROOT / "src").rglob("*.rs"), ROOT / "Cargo.toml", ROOT / "Cargo.lock", ROOT / ".cargo" / "config.toml"]
    stale = [p for p in sources if p.exists() and p.stat().st_mtime > exe.st_mtime]
    if stale:
        print(f"  .exe size not reported: {WINDOWS_EXE.name} is older than {stale[0].relative_to(ROOT)} "
              "(scripts/test-windows builds it)", flush=True)  # fmt: skip
        return None
    return exe.st_size


def tls_tables(results: dict) -> str:
    tls = results["tls"]
    lines = []
    for key, by_target in tls["summary"].items():
        lines.append(f"\n**TLS, {key.split(', ')[0]}, {key.split(', ')[1]} connection(s)** (scrape payload)\n")
        lines.append("| target | req/s | p50 us | added p50 us | p99 us | added p99 us | CPU s / 1000 scrapes | peak RSS MiB | errors |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for tname in ["direct", "proxy-tls", "haproxy-tls"]:
            r = by_target[tname]
            added = (lambda k: "-" if tname == "direct" else f"{r[k]:+.0f}")  # noqa: E731
            lines.append(f"| {TLS_LABELS[tname]} | {r['rps']:.0f} | {r['p50_us']:.0f} | {added('added_p50_us')} | {r['p99_us']:.0f} "
                         f"| {added('added_p99_us')} | {r['cpu_s_per_1000']:.3f} | {fmt_mib(r['peak_rss_kib'])} | {r['errors']} |")  # fmt: skip
    idle, private = tls["idle_rss_kib"], tls.get("idle_private_kib", {})
    lines.append("\n| target | idle RSS MiB at start | of it private (RssAnon) | after load |")
    lines.append("|---|---:|---:|---:|")
    for tname in ["proxy-tls", "haproxy-tls"]:
        mine = fmt_mib(private[tname]) if tname in private else "-"
        lines.append(f"| {TLS_LABELS[tname]} | {fmt_mib(idle[tname])} | {mine} | {fmt_mib(idle[tname + ' after load'])} |")
    if tls.get("exe_bytes"):
        lines.append(f"\nWindows `.exe` (release, x86_64-pc-windows-gnu, with TLS): {tls['exe_bytes']:,} bytes "
                     f"({tls['exe_bytes'] / 2**20:.2f} MiB).")  # fmt: skip
    return "\n".join(lines) + "\n"


TLS_LABELS = {"direct": "direct (plain HTTP)", "proxy-tls": "windows-exporter-proxy HTTPS", "haproxy-tls": "HAProxy TLS"}


def tls_checks(results: dict) -> list[tuple[str, bool, str]]:
    tls, checks = results["tls"], []
    for key, row in tls["summary"].items():
        p, h = row["proxy-tls"], row["haproxy-tls"]
        checks.append((f"TLS {key}: CPU per scrape <= HAProxy", p["cpu_s_per_1000"] <= h["cpu_s_per_1000"],
                       f"{p['cpu_s_per_1000']:.3f} vs {h['cpu_s_per_1000']:.3f} s / 1000"))  # fmt: skip
        checks.append((f"TLS {key}: added p50 <= HAProxy", p["added_p50_us"] <= h["added_p50_us"],
                       f"{p['added_p50_us']:+.0f} vs {h['added_p50_us']:+.0f} us"))  # fmt: skip
    idle = tls["idle_rss_kib"]["proxy-tls"]
    checks.append(("TLS idle RSS < 4 MiB", idle < 4096, f"{fmt_mib(idle)} MiB"))
    return checks


def write_tls_section(results: dict, text: str, checks: list) -> None:
    path = ROOT / "BENCHMARKS.md"
    m = results["machine"]
    block = "\n".join([
        TLS_MARK_START,
        "<!-- written by bench/run (the TLS scenario); edit outside the markers -->",
        f"Latest TLS run: {results['date']}, {results['rounds']} rounds x {results['duration']} s per target and case, "
        f"round-robin. Command: `{command()}`. {m['haproxy']}; {m['proxy']} at {m['commit']}.\n",
        "| target | holds | measured |",
        "|---|---|---|",
        *[f"| {name} | {'yes' if ok else '**no**'} | {detail} |" for name, ok, detail in checks],
        text,
        TLS_MARK_END,
    ])  # fmt: skip
    old = path.read_text()
    if TLS_MARK_START in old and TLS_MARK_END in old:
        new = old.split(TLS_MARK_START)[0] + block + old.split(TLS_MARK_END, 1)[1]
    else:
        new = old.rstrip() + "\n\n## TLS\n\n" + block + "\n"
    path.write_text(new)


# ---------------------------------------------------------------- main


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
    ap.add_argument("--no-tls", action="store_true", help="skip the TLS scenario")
    ap.add_argument("--tls-only", action="store_true", help="only the TLS scenario (writes only its BENCHMARKS.md section)")
    args = ap.parse_args()
    if args.ha_only:
        return ha_main(args)

    if args.smoke:
        args.rounds, args.duration, args.no_write = 1, 1.0, True
    for tool in ("nginx", "haproxy", "wrk", "curl"):
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
        payloads = build_payloads(tmp, args.smoke)
        results["payloads"] = {k: {"bytes": v["bytes"]} for k, v in payloads.items()}
        proxies = copy_binaries(tmp, proxies)
        chown_for_servers(tmp)
        ports, up_pids = start_upstream(procs, tmp, payloads)
        load_payloads = args.payloads.split(",") if args.payloads else [p for p in ("scrape", "large") if p in payloads]
        if args.tls_only:
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
            results["ha"] = ha_scenario(procs, tmp, args.smoke)
        if not args.no_tls:
            run_tls_scenario(procs, tmp, ports["scrape"], up_pids, proxies["proxy"][0], payloads["scrape"], args, results)
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
        tls_text, tls_check = tls_tables(results), tls_checks(results)
        print(tls_text)
        for name, ok, detail in tls_check:
            print(f"  [{'ok  ' if ok else 'MISS'}] {name}: {detail}")
        if not args.no_write:
            write_tls_section(results, tls_text, tls_check)
            print("updated the TLS section of BENCHMARKS.md")
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
            import ha

            ha.write_section(ROOT / "BENCHMARKS.md", results["ha"], results["date"], results["machine"]["commit"], command())
        print("updated BENCHMARKS.md and bench/results.png")
    print(f"bench: done in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
