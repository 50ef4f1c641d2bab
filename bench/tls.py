"""The TLS scenario: the proxy serving HTTPS beside HAProxy terminating TLS with the same
certificate and key, both in front of the same plain-HTTP exporter stand-in; its tables, checks
and its own section of BENCHMARKS.md.

Three cases: keep-alive at 1 and 16 connections (what Prometheus does: one handshake, many
scrapes) and a new connection per scrape (every scrape pays a full handshake: the worst case, and
what a scraper without keep-alive costs). Added latency is over scraping the exporter directly
over plain HTTP in the same way (keep-alive or not).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from load import wrk
from paths import BENCHMARKS_MD, ROOT
from processes import BenchError, Procs, chown_for_servers, free_port, http_get
from procfs import private_kib, rss_kib
from report import command, fmt_mib, summarise
from targets import LIKE_FOR_LIKE, Target, haproxy_conf

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
    path = BENCHMARKS_MD
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
