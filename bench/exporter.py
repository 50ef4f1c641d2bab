"""The exporter stand-in: nginx serving files on loopback, one port per payload (a real
windows_exporter scrape, a multi-MiB body built from it, and a body of hundreds of MiB read from
disk, never held in memory), with keep-alive and sendfile, so the exporter costs next to nothing
and what a target adds shows."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from paths import SAMPLE
from processes import Procs, free_port, wait_ready
from procfs import pids_of
from targets import temp_paths


def build_payloads(tmp: Path, smoke: bool, only_scrape: bool = False) -> dict[str, dict]:
    """The payloads as files under tmp/www, each with its size and SHA-256: the real scrape, a
    large body of 16 of it (not in smoke mode) and the stream (16 MiB in smoke mode, else 512 MiB);
    `only_scrape`: the real scrape alone."""
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
    if only_scrape:
        return payloads
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
