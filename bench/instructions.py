"""Instructions per scrape: what one scrape costs a target in user-space instructions, counted by
valgrind's callgrind, which unlike wall-clock time does not move with the machine's load.

Each target runs under `valgrind --tool=callgrind` in front of the exporter stand-in (the real
sample, not under valgrind), and a client makes N sequential scrapes over one keep-alive
connection, checking every body; the target is stopped and its count read. Then a fresh target
does the same with 2N scrapes. (count(2N) - count(N)) / N is one scrape: start-up, the readiness
probe and shutdown are in both counts and cancel out. The count is every thread's (and for nginx
every process's: master and workers) user-space instructions; time in the kernel is not in it.

Targets: windows-exporter-proxy with its defaults and with PROXY_COALESCE=false, every
--extra-proxy build with the environment it has in the wall-clock run, HAProxy (the bench's
configuration with `nbthread 1`) and nginx (the original configuration, worker_processes auto).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from paths import BENCHMARKS_MD
from processes import BenchError, Procs, chown_for_servers, free_port
from report import MARK_END, command
from targets import haproxy_conf, nginx_original_conf

INSTR_MARK_START = "<!-- bench:instructions:start -->"
INSTR_MARK_END = "<!-- bench:instructions:end -->"
SCRAPES = 200  # N: the count is of N and of 2N scrapes
SMOKE_SCRAPES = 1
# --smoke: one single-process and one multi-process target; HAProxy takes seconds to start under callgrind.
SMOKE_TARGETS = ["proxy", "nginx"]
LABELS = {
    "proxy": "windows-exporter-proxy, defaults",
    "proxy-nocoalesce": "windows-exporter-proxy, PROXY_COALESCE=false",
    "haproxy": "HAProxy, nbthread 1",
    "nginx": "nginx, original config (worker_processes auto)",
}


def label(name: str) -> str:
    return LABELS.get(name, name)


def start_server(procs: Procs, tmp: Path, name: str, spec: tuple, up_port: int, out: str) -> tuple[subprocess.Popen, int]:
    """Starts target `name` under callgrind, writing its counts to `out` (one file per process),
    and returns it with its port once it has answered /health once."""
    kind, binary, env = spec
    port = free_port()
    if kind == "proxy":
        argv = [str(binary)]
        env = {"PROXY_HOSTIP": "127.0.0.1", "PROXY_PORT": str(up_port), "PROXY_LISTEN": f"127.0.0.1:{port}",
               "RUST_LOG": "warn", **env}  # fmt: skip
    elif kind == "haproxy":
        conf = tmp / f"instructions-haproxy-{port}.cfg"
        text = haproxy_conf(port, up_port)
        if "\nglobal\n" not in text:
            raise BenchError("haproxy.cfg.template has no global section; update instructions.start_server")
        conf.write_text(text.replace("\nglobal\n", "\nglobal\n    nbthread 1\n", 1))
        argv = ["haproxy", "-db", "-f", str(conf)]
    elif kind == "nginx":
        conf = tmp / f"nginx-{port}.conf"
        conf.write_text(nginx_original_conf(tmp, port, up_port))
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / f"nginx-{port}-temp" / sub).mkdir(parents=True, exist_ok=True)
        argv = ["nginx", "-p", str(tmp), "-c", str(conf)]
    else:
        raise BenchError(f"unknown target kind {kind}")
    chown_for_servers(tmp)
    log = tmp / f"instructions-{name}-{port}.log"
    valgrind = ["valgrind", "--tool=callgrind", "--quiet", f"--callgrind-out-file={out}.%p"]
    p = procs.spawn(valgrind + argv, env=env, log=log)
    wait_health(name, p, port, log)
    return p, port


def wait_health(name: str, proc: subprocess.Popen, port: int, log: Path, timeout: float = 120.0) -> None:
    """Exactly one answered /health (a refused connection never reaches the target), so that both
    runs of a target count the same start-up."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise BenchError(f"{name} under callgrind exited with {proc.returncode}\n{log.read_text(errors='replace')[-2000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("GET", "/health")
            status = conn.getresponse().status
            if status != 200:
                raise BenchError(f"{name} under callgrind: /health answered {status}")
            return
        except ConnectionRefusedError:
            time.sleep(0.1)
        finally:
            conn.close()
    raise BenchError(f"{name} under callgrind did not listen within {timeout:.0f} s")


def expected(sample: bytes, env: dict) -> Callable[[bytes], bool]:
    """What a target must answer: the sample byte for byte or, for a proxy with
    PROXY_NODE_METRICS=append, the sample followed by node_exporter-named families only."""
    digest = hashlib.sha256(sample).hexdigest()
    if env.get("PROXY_NODE_METRICS") != "append":
        return lambda body: hashlib.sha256(body).hexdigest() == digest

    def appended(body: bytes) -> bool:
        added = body[len(sample):].decode("utf-8", "replace").splitlines()
        return (hashlib.sha256(body[: len(sample)]).hexdigest() == digest and bool(added)
                and all(line.startswith(("# HELP node_", "# TYPE node_", "node_")) for line in added))  # fmt: skip

    return appended


def scrape(name: str, port: int, scrapes: int, check: Callable[[bytes], bool]) -> None:
    """`scrapes` sequential scrapes over one kept-alive connection, each checked."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.connect()
        sock = conn.sock
        for i in range(scrapes):
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            body = response.read()
            if response.status != 200 or not check(body):
                raise BenchError(f"{name} under callgrind: scrape {i + 1} answered {response.status} with {len(body)} bytes")
            if conn.sock is not sock or response.will_close:
                raise BenchError(f"{name} under callgrind did not keep the connection alive (scrape {i + 1})")
    finally:
        conn.close()


def stop(procs: Procs, name: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """SIGTERM to the target's main process only (nginx's master stops its workers), then waits:
    callgrind writes its counts as each process exits."""
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{name} under callgrind did not exit within {timeout:.0f} s of SIGTERM") from None
    finally:
        procs.stop(proc)
        procs.started.remove(proc)


def read_count(out: str) -> int:
    """The summed instruction count (event Ir) of every process that wrote `out`.PID."""
    directory, prefix = Path(out).parent, Path(out).name + "."
    total, files = 0, 0
    for f in directory.iterdir():
        if not f.name.startswith(prefix):
            continue
        m = re.search(r"^(?:summary|totals): (\d+)", f.read_text(errors="replace"), re.M)
        if not m:
            raise BenchError(f"{f.name}: no instruction total in callgrind's output")
        total, files = total + int(m.group(1)), files + 1
    if not files:
        raise BenchError(f"callgrind wrote no counts for {Path(out).name}")
    return total


def count(procs: Procs, tmp: Path, name: str, spec: tuple, up_port: int, scrapes: int, sample: bytes) -> int:
    out_dir = tmp / "callgrind"
    out_dir.mkdir(exist_ok=True)
    out = str(out_dir / f"{name}-{scrapes}")
    p, port = start_server(procs, tmp, name, spec, up_port, out)
    scrape(name, port, scrapes, expected(sample, spec[2]))
    stop(procs, name, p)
    return read_count(out)


def run(procs: Procs, tmp: Path, up_port: int, proxies: dict[str, tuple[Path, dict]], extra: list[str],
        sample: bytes, smoke: bool, scrapes: int | None = None) -> dict:  # fmt: skip
    """Counts every target (in smoke mode, this build's defaults and nginx, with N = 1) and
    returns {"scrapes": N, "bytes": payload size, "targets": {name: counts}}."""
    if not shutil.which("valgrind"):
        raise BenchError("valgrind not found (bash .ci/install)")
    n = scrapes or (SMOKE_SCRAPES if smoke else SCRAPES)
    binary = proxies["proxy"][0]
    specs: dict[str, tuple] = {
        "proxy": ("proxy", binary, {}),
        "proxy-nocoalesce": ("proxy", binary, {"PROXY_COALESCE": "false"}),
        **{name: ("proxy", *proxies[name]) for name in extra},
        "haproxy": ("haproxy", None, {}),
        "nginx": ("nginx", None, {}),
    }
    if smoke:
        specs = {k: v for k, v in specs.items() if k in SMOKE_TARGETS}
    print(f"== instructions per scrape (callgrind): {len(sample):,} bytes, {n} and {2 * n} scrapes per target, "
          f"one keep-alive connection; targets: {', '.join(specs)}", flush=True)  # fmt: skip
    results: dict = {"scrapes": n, "bytes": len(sample), "targets": {}}
    t0 = time.monotonic()
    for name, spec in specs.items():
        once = count(procs, tmp, name, spec, up_port, n, sample)
        twice = count(procs, tmp, name, spec, up_port, 2 * n, sample)
        per = (twice - once) / n
        r = {"count_n": once, "count_2n": twice, "per_scrape": per, "fixed": once - n * per,
             "env": " ".join(f"{k}={v}" for k, v in spec[2].items())}  # fmt: skip
        results["targets"][name] = r
        print(f"  {name:<17} {per:14,.0f} instructions per scrape   start-up and shutdown {r['fixed']:14,.0f}", flush=True)
        if per <= 0:
            raise BenchError(f"{name}: {2 * n} scrapes counted {twice:,} instructions, not more than {n} scrapes' {once:,}")
    print(f"  counted in {time.monotonic() - t0:.0f} s", flush=True)
    return results


def valgrind_version() -> str:
    try:
        return subprocess.run(["valgrind", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "valgrind (unknown version)"


def table(results: dict) -> str:
    n, size = results["scrapes"], results["bytes"]
    lines = [
        f"{size:,}-byte scrape (the real sample), {n} and then {2 * n} sequential scrapes over one keep-alive "
        f"connection, each in a fresh process under `valgrind --tool=callgrind`; per scrape = (count({2 * n}) - "
        f"count({n})) / {n}. User-space instructions of every thread (nginx: master and workers); the "
        "kernel's share (send, receive, copies) is not in it.\n",
        "| target | instructions per scrape | per payload byte | start-up and shutdown | environment |",
        "|---|---:|---:|---:|---|",
    ]
    for name, r in results["targets"].items():
        lines.append(f"| {label(name)} | {r['per_scrape']:,.0f} | {r['per_scrape'] / size:.2f} | {r['fixed']:,.0f} "
                     f"| {('`' + r['env'] + '`') if r['env'] else '-'} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_section(results: dict, date: str, commit: str) -> None:
    """The section between its markers in BENCHMARKS.md; the first time, right after the latest
    wall-clock results."""
    path = BENCHMARKS_MD
    block = "\n".join([
        INSTR_MARK_START,
        "<!-- written by bench/run (bench/instructions.py); edit outside the markers -->",
        f"Latest instruction count: {date}, at {commit}. Command: `{command()}`. {valgrind_version()}.\n",
        table(results),
        INSTR_MARK_END,
    ])  # fmt: skip
    old = path.read_text()
    if INSTR_MARK_START in old and INSTR_MARK_END in old:
        new = old.split(INSTR_MARK_START)[0] + block + old.split(INSTR_MARK_END, 1)[1]
    elif MARK_END in old:
        head, tail = old.split(MARK_END, 1)
        new = head + MARK_END + "\n\n## Instructions per scrape\n\n" + block + tail
    else:
        new = old.rstrip() + "\n\n## Instructions per scrape\n\n" + block + "\n"
    path.write_text(new)
