"""Helpers for the dashboard and alert tests (test_observability.py, test_cluster_prometheus.py).

- Reading the generated dashboards: panels, targets, variables, and Grafana's interpolation of
  variables into PromQL (the rules of Grafana's Prometheus data source).
- A small loopback cluster for a real Prometheus: Debian's prometheus-node-exporter as Linux nodes,
  the real proxy binary in front of a fake windows_exporter v0.31 as Windows nodes, and Prometheus
  with the project's rules, scraping them through the chart's own relabelling (file_sd stands in
  for kubernetes_sd, which Debian's Prometheus lacks).

Everything listens on 127.0.0.x; every wait has a deadline and polls a socket, an HTTP API or a
log line, never a bare sleep.
"""

from __future__ import annotations

import json
import math
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import yaml

import kubehelpers as kh

GRAFANA = kh.DEPLOY / "grafana"
sys.path.insert(0, str(GRAFANA))  # deploy/grafana: generate.py (the dashboards), preview.py (the PNG)
DASHBOARDS = GRAFANA / "dashboards"
RULES_DIR = kh.DEPLOY / "prometheus" / "rules"
WAIT_SECONDS = 60

# Grafana's built-in variables the dashboards use, with the values the tests substitute. The test
# Prometheus scrapes every 2 s, so 10 s windows hold several samples (Grafana computes
# $__rate_interval as max(4 x scrape interval, $__interval + scrape interval)).
SCRAPE_SECONDS = 2
BUILTINS = {"__rate_interval": "10s", "__interval": "2s", "__range": "60s"}

# Metric names of features that land in parallel with the dashboards (coalescing, authentication,
# TLS, port discovery, close reasons). A panel that reads only these may be empty while the real
# binary does not expose them yet; the check turns strict by itself once it does.
NEW_PROXY_METRICS = {
    "windows_exporter_proxy_exporter_requests_total",
    "windows_exporter_proxy_coalesced_scrapes_total",
    "windows_exporter_proxy_auth_decisions_total",
    "windows_exporter_proxy_tls_certificate_expiry_timestamp_seconds",
    "windows_exporter_proxy_tls_handshake_failures_total",
    "windows_exporter_proxy_tls_reload_failures_total",
    "windows_exporter_proxy_exporter_port",
    "windows_exporter_proxy_connections_closed_total",
}


# ---------------------------------------------------------------------------------------------
# Dashboards


def load_dashboards() -> dict[str, dict]:
    """File name -> dashboard JSON, as committed."""
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict) -> list[dict]:
    """Every panel, rows included, with panels nested in collapsed rows flattened in."""
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels") or [])
    return out


def data_panels(dashboard: dict) -> list[dict]:
    return [p for p in panels(dashboard) if p["type"] != "row"]


def variables(dashboard: dict) -> list[dict]:
    return dashboard.get("templating", {}).get("list", [])


def variable_query(variable: dict) -> str:
    query = variable.get("query")
    return query["query"] if isinstance(query, dict) else query


VARIABLE_REFERENCE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def referenced_variables(text: str) -> set[str]:
    return {a or b for a, b in VARIABLE_REFERENCE.findall(text)}


def custom_options(variable: dict) -> list[tuple[str, str]]:
    """(text, value) pairs of a custom variable ("Text : value" or "value", comma separated)."""
    out = []
    for item in re.findall(r"(?:\\,|[^,])+", variable["query"]):
        text, sep, value = item.partition(" : ")
        out.append((text.strip(), value.strip() if sep else text.strip()))
    return out


def regex_escape(value: str) -> str:
    """Grafana's prometheusSpecialRegexEscape: what it does to multi-value variable values."""
    return re.sub(r"[\\^$*+?.()|{}\[\]]", lambda m: "\\\\" + m.group(0), value)


def interpolate(text: str, dashboard: dict, chosen: dict[str, list[str] | str]) -> str:
    """Substitutes variables as Grafana's Prometheus data source does.

    chosen maps a variable name to "$__all" or a list of values. Single-select variables without
    All are inserted as they are; multi-value or All variables are regex-escaped and joined as
    (a|b), or replaced by their allValue when All is chosen.
    """
    by_name = {v["name"]: v for v in variables(dashboard)}

    def value_of(name: str) -> str:
        if name in BUILTINS:
            return BUILTINS[name]
        variable = by_name[name]
        value = chosen[name]
        if variable["type"] == "datasource":
            raise AssertionError(f"${name} used inside a query")
        if not variable.get("multi") and not variable.get("includeAll"):
            assert isinstance(value, str), f"${name} is single-select"
            return value
        if value == "$__all":
            assert variable.get("allValue"), f"${name}: All without allValue"
            return variable["allValue"]
        values = [value] if isinstance(value, str) else value
        escaped = [regex_escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"

    return VARIABLE_REFERENCE.sub(lambda m: value_of(m.group(1) or m.group(2)), text)


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """Series names a PromQL expression reads (histogram suffixes folded into the family)."""
    names = {name.removesuffix("_bucket") for name in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", expr)}
    return names - PROMQL_WORDS


# ---------------------------------------------------------------------------------------------
# Processes on loopback


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(what: str, condition: Callable[[], object], timeout: float = WAIT_SECONDS, on_fail: Callable[[], str] = lambda: "") -> object:
    """Polls condition() until it returns something truthy; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = condition()
            if last:
                return last
        except (OSError, ValueError, KeyError) as error:
            last = error
        threading.Event().wait(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last}\n{on_fail()}")


class LoggedProcess:
    """A child process whose combined output is kept and can be waited on line by line."""

    def __init__(self, argv: list[str], name: str):
        self.name = name
        self.lines: list[str] = []
        self._new = threading.Condition()
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._new:
                self.lines.append(line.rstrip("\n"))
                self._new.notify_all()
        with self._new:
            self._new.notify_all()

    def wait_for_line(self, pattern: str, timeout: float = WAIT_SECONDS) -> re.Match:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._new:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                left = deadline - time.monotonic()
                assert self.process.poll() is None or seen < len(self.lines), (
                    f"{self.name} exited {self.process.returncode}:\n" + self.tail())
                assert left > 0, f"{self.name} did not log {pattern!r} within {timeout}s:\n" + self.tail()
                self._new.wait(min(left, 0.5))

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.lines[-lines:])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=20) as response:
        return response.read()


# ---------------------------------------------------------------------------------------------
# A fake windows_exporter v0.31


@dataclass
class WindowsNode:
    """What a fake exporter reports for one node. All values are made up for the tests."""

    name: str
    cpu_busy: float  # mean share of each CPU that is not idle
    memory_gib: int
    disk_free_share: float
    stopped_auto_service: str = "wuauserv"


class FakeWindowsExporter:
    """Serves windows_exporter v0.31 metric names on /metrics and /health.

    THE VALUES ARE MADE UP FOR THE TESTS (the real scrape in ../shared/samples/ has v0.13 names).
    Counters grow at a rate that varies slowly with time, so rate() moves and graphs have shape.
    """

    def __init__(self, host: str, node: WindowsNode):
        self.node = node
        self.started = time.time()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path, _, query = self.path.partition("?")
                # collect[] as windows_exporter reads it (Go's url.Values): none means all.
                collect = urllib.parse.parse_qs(query).get("collect[]")
                unknown = [c for c in collect or [] if c not in FAKE_COLLECTORS]
                if path == "/health":
                    body, kind, status = b'{"status":"ok"}', "application/json", 200
                elif path == "/metrics" and unknown:
                    body, kind, status = f"Couldn't create filtered metrics handler: unknown collector {unknown[0]}".encode(), "text/plain", 400
                elif path == "/metrics":
                    body, kind, status = exporter.exposition(collect), "text/plain; version=0.0.4; charset=utf-8", 200
                else:
                    body, kind, status = b"not found", "text/plain", 404
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.host, self.port = host, self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeWindowsExporter":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def exposition(self, collect: list[str] | None = None) -> bytes:
        n, t = self.node, time.time() - self.started
        wave = math.sin(t / 6.0)

        def counter(rate: float, period: float = 6.0) -> float:
            # integral of rate * (1 + 0.5 sin(s / period)) ds from 0 to t: monotonic, varying slope
            return 1000 + rate * (t + 0.5 * period * (1 - math.cos(t / period)))

        lines = [
            "# HELP windows_cpu_time_total Time that processor spent in different modes (dpc, idle, interrupt, privileged, user)",
            "# TYPE windows_cpu_time_total counter",
        ]
        for index, core in enumerate(("0,0", "0,1", "0,2", "0,3")):
            # Busy CPU-seconds so far at a busy share of cpu_busy * (1 +- 0.4); idle is the rest,
            # so the modes add up to one CPU-second per second as on a real node.
            period = 7.0 + index
            busy = n.cpu_busy * (t + 0.4 * period * (1 - math.cos(t / period)))
            modes = {"idle": t - busy, "user": busy * 0.6, "privileged": busy * 0.4, "interrupt": busy * 0.05, "dpc": busy * 0.05}
            for mode, seconds in modes.items():
                lines.append(f'windows_cpu_time_total{{core="{core}",mode="{mode}"}} {1000 + seconds:.3f}')
        total = n.memory_gib * 2**30
        available = total * (0.45 + 0.1 * wave)
        free_disk = 256 * 2**30 * n.disk_free_share * (1 - 0.02 * (t / 60.0))
        lines += [
            "# TYPE windows_memory_physical_total_bytes gauge",
            f"windows_memory_physical_total_bytes {total}",
            "# TYPE windows_memory_available_bytes gauge",
            f"windows_memory_available_bytes {available:.0f}",
            "# TYPE windows_memory_free_and_zero_page_list_bytes gauge",
            f"windows_memory_free_and_zero_page_list_bytes {available * 0.3:.0f}",
            "# TYPE windows_memory_committed_bytes gauge",
            f"windows_memory_committed_bytes {total * (0.6 - 0.1 * wave):.0f}",
            "# TYPE windows_memory_commit_limit gauge",
            f"windows_memory_commit_limit {total * 1.25:.0f}",
            "# TYPE windows_pagefile_limit_bytes gauge",
            f'windows_pagefile_limit_bytes{{file="C:\\\\pagefile.sys"}} {total * 0.25:.0f}',
            "# TYPE windows_pagefile_free_bytes gauge",
            f'windows_pagefile_free_bytes{{file="C:\\\\pagefile.sys"}} {total * 0.2:.0f}',
            "# TYPE windows_logical_disk_size_bytes gauge",
            f'windows_logical_disk_size_bytes{{volume="C:"}} {256 * 2**30}',
            f'windows_logical_disk_size_bytes{{volume="HarddiskVolume1"}} {500 * 2**20}',
            "# TYPE windows_logical_disk_free_bytes gauge",
            f'windows_logical_disk_free_bytes{{volume="C:"}} {free_disk:.0f}',
            f'windows_logical_disk_free_bytes{{volume="HarddiskVolume1"}} {50 * 2**20}',
            "# TYPE windows_logical_disk_read_bytes_total counter",
            f'windows_logical_disk_read_bytes_total{{volume="C:"}} {counter(3e6 * n.cpu_busy):.0f}',
            f'windows_logical_disk_read_bytes_total{{volume="HarddiskVolume1"}} 4096',
            "# TYPE windows_logical_disk_write_bytes_total counter",
            f'windows_logical_disk_write_bytes_total{{volume="C:"}} {counter(5e6 * n.cpu_busy, 9):.0f}',
            f'windows_logical_disk_write_bytes_total{{volume="HarddiskVolume1"}} 0',
            "# TYPE windows_net_bytes_received_total counter",
            f'windows_net_bytes_received_total{{nic="Microsoft Hyper-V Network Adapter"}} {counter(2e6 * n.cpu_busy):.0f}',
            "# TYPE windows_net_bytes_sent_total counter",
            f'windows_net_bytes_sent_total{{nic="Microsoft Hyper-V Network Adapter"}} {counter(1e6 * n.cpu_busy, 8):.0f}',
            "# TYPE windows_net_packets_received_discarded_total counter",
            f'windows_net_packets_received_discarded_total{{nic="Microsoft Hyper-V Network Adapter"}} 0',
            "# TYPE windows_net_packets_outbound_discarded_total counter",
            f'windows_net_packets_outbound_discarded_total{{nic="Microsoft Hyper-V Network Adapter"}} 0',
            "# TYPE windows_system_boot_time_timestamp gauge",
            f"windows_system_boot_time_timestamp {self.started - 86400 * (3 + len(n.name) % 5):.0f}",
            "# TYPE windows_os_info gauge",
            'windows_os_info{build_number="20348",major_version="10",minor_version="0",'
            'product="Microsoft Windows Server 2022 Datacenter",revision="2966",version="10.0.20348"} 1',
            "# TYPE windows_os_hostname gauge",
            f'windows_os_hostname{{domain="",fqdn="{n.name}",hostname="{n.name}"}} 1',
        ]
        services = {"kubelet": ("auto", True), "containerd": ("auto", True), n.stopped_auto_service: ("auto", False),
                    "Spooler": ("manual", False)}
        lines.append("# TYPE windows_service_state gauge")
        for name, (_, running) in services.items():
            for state in ("running", "stopped"):
                lines.append(f'windows_service_state{{name="{name.lower()}",state="{state}"}} {int((state == "running") == running)}')
        lines.append("# TYPE windows_service_start_mode gauge")
        for name, (mode, _) in services.items():
            for start_mode in ("auto", "manual", "disabled"):
                lines.append(f'windows_service_start_mode{{name="{name.lower()}",start_mode="{start_mode}"}} {int(start_mode == mode)}')
        collectors = FAKE_COLLECTORS
        lines.append("# TYPE windows_exporter_collector_duration_seconds gauge")
        lines += [f'windows_exporter_collector_duration_seconds{{collector="{c}"}} {0.01 + 0.002 * i + 0.005 * (1 + wave):.4f}'
                  for i, c in enumerate(collectors)]
        lines.append("# TYPE windows_exporter_collector_success gauge")
        lines += [f'windows_exporter_collector_success{{collector="{c}"}} 1' for c in collectors]
        lines.append("# TYPE windows_exporter_collector_timeout gauge")
        lines += [f'windows_exporter_collector_timeout{{collector="{c}"}} 0' for c in collectors]
        lines += ["# TYPE windows_exporter_build_info gauge",
                  'windows_exporter_build_info{branch="heads/tags/v0.31.3",goversion="go1.24.6",revision="0",tags="",version="0.31.3"} 1']
        if collect is not None:
            lines = [line for line in lines if collected_by(line) in (None, *collect)]
        return ("\n".join(lines) + "\n").encode()


FAKE_COLLECTORS = ["cpu", "logical_disk", "memory", "net", "os", "pagefile", "service", "system"]


def collected_by(line: str) -> str | None:
    """The fake's collector a line of its exposition belongs to; None for the exporter's own
    series that every scrape carries (build info) and the comments of the per-collector ones."""
    if line.startswith("#"):
        name = line.split()[2]
        return None if name.startswith("windows_exporter_") else collected_by(name)
    if line.startswith("windows_exporter_"):
        label = re.search(r'collector="([^"]+)"', line)
        return label.group(1) if label else None
    return next(c for c in sorted(FAKE_COLLECTORS, key=len, reverse=True) if line.startswith(f"windows_{c}_"))


# ---------------------------------------------------------------------------------------------
# The loopback cluster


def chart_service_monitor(slow: list[str] | None = None) -> dict:
    """The ServiceMonitor the chart renders (its relabelings are what the test Prometheus uses);
    with `slow`, the slow path's third endpoint, on twice the scrape interval here."""
    values: dict = {"serviceMonitor": {"enabled": True}}
    if slow:
        values["collectors"] = {"slow": slow}
        values["serviceMonitor"] |= {"slowInterval": f"{SCRAPE_SECONDS * 2}s", "slowScrapeTimeout": f"{SCRAPE_SECONDS * 2000 - 100}ms"}
    return kh.one(kh.helm_render(values), "ServiceMonitor")


def pod_target(address: str, node: str) -> dict:
    """A file_sd group carrying what kubernetes_sd (role endpoints/pod) gives for one proxy pod."""
    return {
        "targets": [address],
        "labels": {
            "cluster": "loopback",
            "__meta_kubernetes_namespace": "monitoring",
            "__meta_kubernetes_pod_name": f"windows-exporter-proxy-{node[-4:]}",
            "__meta_kubernetes_pod_node_name": node,
        },
    }


@dataclass
class Cluster:
    """A running loopback cluster and the Prometheus that scrapes it."""

    prometheus_url: str
    linux_nodes: list[str]
    windows_nodes: list[str]
    unreachable_windows_nodes: list[str]
    proxy_urls: dict[str, str]
    prometheus: LoggedProcess
    started: float = field(default_factory=time.time)
    # Whether the proxies run the slow path (set by the fixture that starts the cluster).
    slow_path: bool = False

    def api(self, path: str, **params: str) -> dict:
        url = f"{self.prometheus_url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            answer = json.loads(get(url))
        except urllib.error.HTTPError as error:
            answer = json.loads(error.read())
        assert answer.get("status") == "success", f"{path} {params}: {answer}"
        return answer["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def query_range(self, expr: str, seconds: float, step: float = 1.0) -> list[dict]:
        end = time.time()
        return self.api("query_range", query=expr, start=f"{end - seconds:.3f}", end=f"{end:.3f}", step=str(step))["result"]

    def label_values(self, expr: str) -> list[str]:
        """Grafana's label_values(selector, label) for a Prometheus data source."""
        match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", expr.strip())
        assert match, f"not a label_values() query: {expr}"
        selector, label = match.groups()
        return sorted(self.api(f"label/{label}/values", **{"match[]": selector}))


LINUX_COLLECTORS = ["cpu", "meminfo", "filesystem", "diskstats", "netdev", "stat", "uname"]


@contextmanager
def loopback_cluster(tmp: Path, slow: list[str] | None = None) -> Iterator[Cluster]:
    """Two Linux nodes (real node_exporter), three Windows nodes (real proxy + fake exporter) and
    a fourth Windows node whose exporter does not answer, all scraped by a real Prometheus that
    loads deploy/prometheus/rules/*.yml. With `slow`, the slow path: the proxies serve those
    collectors on /metrics/slow only (PROXY_SLOW_COLLECT), scraped as the monitor's third endpoint."""
    linux = {"aks-linux-000000": "127.0.0.2", "aks-linux-000001": "127.0.0.3"}
    windows = [
        WindowsNode("akswin000000", cpu_busy=0.35, memory_gib=16, disk_free_share=0.62),
        WindowsNode("akswin000001", cpu_busy=0.55, memory_gib=32, disk_free_share=0.41),
        WindowsNode("akswin000002", cpu_busy=0.2, memory_gib=16, disk_free_share=0.18),
    ]
    unreachable = "akswin000003"
    with ExitStack() as stack:
        linux_targets = []
        for index, (name, host) in enumerate(linux.items()):
            port = free_port(host)
            exporter = LoggedProcess(
                ["prometheus-node-exporter", f"--web.listen-address={host}:{port}", "--collector.disable-defaults",
                 *[f"--collector.{c}" for c in LINUX_COLLECTORS]],
                f"node_exporter {name}",
            )
            stack.callback(exporter.stop)
            exporter.wait_for_line(r'msg="Listening on"')
            linux_targets.append({"targets": [f"{host}:{port}"],
                                  "labels": {"cluster": "loopback", "__meta_kubernetes_pod_node_name": name}})

        proxies: dict[str, str] = {}
        env = {"RUST_LOG": "warn,windows_exporter_proxy=info", "PROXY_TIMEOUT_MARGIN_SECONDS": "0.1",
               "PROXY_HEADER_READ_TIMEOUT_SECONDS": "1", **({"PROXY_SLOW_COLLECT": ",".join(slow)} if slow else {})}
        for index, node in enumerate(windows):
            exporter = stack.enter_context(FakeWindowsExporter(f"127.0.0.{11 + index}", node))
            proxy = stack.enter_context(kh.run_proxy({
                **env, "PROXY_HOSTIP": exporter.host, "PROXY_PORT": str(exporter.port),
                "PROXY_LISTEN": f"127.0.0.{21 + index}:0"}))
            proxies[node.name] = f"{proxy.host}:{proxy.port}"
        closed_host = "127.0.0.14"
        proxy = stack.enter_context(kh.run_proxy({
            **env, "PROXY_HOSTIP": closed_host, "PROXY_PORT": str(free_port(closed_host)),
            "PROXY_LISTEN": "127.0.0.24:0", "PROXY_CONNECT_TIMEOUT_SECONDS": "0.5"}))
        proxies[unreachable] = f"{proxy.host}:{proxy.port}"
        # Something for the "Connections closed by reason" panel to show.
        provoke_header_timeouts(list(proxies.values()))

        (tmp / "linux.json").write_text(json.dumps(linux_targets))
        (tmp / "windows.json").write_text(json.dumps([pod_target(a, n) for n, a in proxies.items()]))
        monitor = chart_service_monitor(slow)
        jobs = []
        for index, endpoint in enumerate(monitor["spec"]["endpoints"]):
            jobs.append({
                # the job name prometheus-operator generates for this endpoint
                "job_name": f"serviceMonitor/monitoring/{monitor['metadata']['name']}/{index}",
                "metrics_path": endpoint["path"],
                **({"scrape_interval": endpoint["interval"]} if "interval" in endpoint else {}),
                **({"scrape_timeout": endpoint["scrapeTimeout"]} if "scrapeTimeout" in endpoint else {}),
                "file_sd_configs": [{"files": [str(tmp / "windows.json")]}],
                "relabel_configs": [kh.operator_to_prometheus_relabel(r) for r in endpoint["relabelings"]],
            })
        # kube-prometheus-stack's node-exporter ServiceMonitor sets instance (and we node) to the node name.
        node_name = ["__meta_kubernetes_pod_node_name"]
        jobs.append({
            "job_name": "node-exporter",
            "file_sd_configs": [{"files": [str(tmp / "linux.json")]}],
            "relabel_configs": [{"source_labels": node_name, "target_label": "instance"},
                                {"source_labels": node_name, "target_label": "node"}],
        })
        config = {
            # The proxies answer within the scrape timeout minus their margin (0.1 s here, so a
            # loaded test machine does not turn slow fake exporters into 504s).
            "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "scrape_timeout": f"{SCRAPE_SECONDS * 1000 - 100}ms",
                       "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in sorted(RULES_DIR.glob("*.yml"))],
            "scrape_configs": jobs,
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        check = subprocess.run(["promtool", "check", "config", str(tmp / "prometheus.yml")],
                               capture_output=True, text=True, timeout=60, check=False)
        assert check.returncode == 0, check.stdout + check.stderr

        web = f"127.0.0.1:{free_port('127.0.0.1')}"
        prometheus = LoggedProcess(
            ["prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address={web}"], "prometheus")
        stack.callback(prometheus.stop)
        prometheus.wait_for_line(r"Server is ready to receive web requests")
        yield Cluster(
            prometheus_url=f"http://{web}",
            linux_nodes=sorted(linux),
            windows_nodes=[n.name for n in windows],
            unreachable_windows_nodes=[unreachable],
            proxy_urls={n: f"http://{a}" for n, a in proxies.items()},
            prometheus=prometheus,
        )


def exposed_proxy_metrics(proxy_url: str) -> set[str]:
    """Series names the real proxy's /proxy/metrics declares (a `# TYPE` line, counters with
    their `_total` sample name) or has samples of: once a family is there, panels on it must show
    data, so the test must make it count something."""
    text = get(f"{proxy_url}/proxy/metrics").decode()
    names = {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )", text, re.M)}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)", text, re.M):
        names.add(name + "_total" if kind == "counter" and not name.endswith("_total") else name)
    return names


def provoke_header_timeouts(addresses: list[str], timeout: float = WAIT_SECONDS) -> None:
    """Opens a connection to each proxy and sends nothing, like a slowloris client, and waits
    until each proxy closes it: connections_closed_total{reason="header_timeout"} counts it."""
    sockets = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        sockets.append(socket.create_connection((host, int(port)), timeout=timeout))
    for sock in sockets:
        with sock:
            assert sock.recv(1) == b"", "the proxy sent something to a client that sent nothing"
