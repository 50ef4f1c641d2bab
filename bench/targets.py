"""The targets wrk drives, each in front of the exporter stand-in: the exporter scraped directly,
windows-exporter-proxy (this build and any --extra-proxy build, each with its environment),
HAProxy as a knowledgeable operator would set it up (bench/haproxy.cfg.template), and nginx with
the original container's configuration (bench/nginx-original.conf.template)."""

from __future__ import annotations

import hashlib
import shutil
import string
import subprocess
import time
from pathlib import Path

from paths import BENCH
from processes import BenchError, Procs, chown_for_servers, free_port, http_get, wait_ready
from procfs import pids_of

# Fixed display order; "proxy" is run with PROXY_MAX_INFLIGHT=16 so 16 wrk connections are not
# queued behind the default limit of 2; "proxy-inflight2" is the shipped default, for honesty.
# wrk's connections send identical scrapes, which the proxy would coalesce by default (HAProxy and
# nginx cannot): the pass-through and TLS scenarios run it with PROXY_COALESCE=false so every
# request reaches the exporter, like for like; the HA scenario measures coalescing.
LIKE_FOR_LIKE = {"PROXY_MAX_INFLIGHT": "16", "PROXY_COALESCE": "false"}
MAIN_TARGETS = ["direct", "proxy", "haproxy", "nginx"]


def temp_paths(tmp: Path, name: str) -> str:
    """nginx's temp directories inside the run's directory (the exporter stand-in's and each nginx
    target's)."""
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

def check_body(target: Target, payload: dict) -> None:
    """One scrape through the target must be 200 with the exact bytes of the payload."""
    status, body = http_get(target.url + "/metrics", timeout=30)
    if status != 200:
        raise BenchError(f"{target.name}: /metrics answered {status}: {body[:200]!r}")
    if hashlib.sha256(body).hexdigest() != payload["sha256"]:
        raise BenchError(f"{target.name}: /metrics body differs from the payload ({len(body)} bytes)")
