"""Grafana dashboards for Windows nodes behind windows-exporter-proxy, as code.

Three dashboards, written to deploy/grafana/dashboards/*.json with grafana-foundation-sdk
(Grafana's own dashboards-as-code library, PyPI `grafana-foundation-sdk`):

- nodes-linux-windows.json  "Nodes: Linux and Windows": the whole cluster, one query per panel
  for both systems through the node_* series (node_exporter on Linux, the recording rules in
  deploy/prometheus/rules/windows-node-exporter-compat.rules.yml on Windows).
- windows-node.json         "Windows node": one node in depth on windows_exporter v0.31 names.
- windows-exporter-proxy.json "windows-exporter-proxy": the proxy across the fleet.

Every query fits the chart's relabelling (`instance` and `node` are the node name); the
datasource is a variable and no instance is hard-coded. The Helm chart and the kustomize
component ship these files as they are (deploy/helm/windows-exporter-proxy/files/dashboards is a
link to deploy/grafana/dashboards).

Usage (from the repository root, with the project venv):
    .venv/bin/python deploy/grafana/generate.py          # write the JSON files
    .venv/bin/python deploy/grafana/generate.py --check  # exit 1 with a diff if they drifted
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DataTransformerConfig,
    GridPos,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["windows", "windows-exporter-proxy"]

# Linux node_exporter reports pseudo filesystems and container mounts; Windows volumes have no
# fstype label (so the negative matcher keeps them). HarddiskVolumeN are Windows volumes without
# a drive letter (recovery, EFI), full by design; the volume alerts skip them too.
FILESYSTEMS = 'fstype!~"tmpfs|ramfs|squashfs|overlay|nsfs|autofs|devtmpfs|fuse.*",mountpoint!~"/run.*|/var/lib/kubelet/.*|HarddiskVolume.*"'
# Virtual interfaces of container networking on Linux; Windows has no loopback adapter.
NETWORK_DEVICES = 'device!~"lo|veth.*|docker.*|cni.*|cali.*|flannel.*|vxlan.*|ifb.*|tunl.*|azv.*"'
# Partitions and device-mapper/loop devices would count a disk's I/O twice on Linux; "_Total"
# would on Windows if an exporter reported it.
DISK_DEVICES = 'device!~"dm-.*|loop.*|ram.*|zram.*|sr.*|(sd|vd|xvd)[a-z]+[0-9]+|nvme[0-9]+n[0-9]+p[0-9]+|_Total"'


# ---------------------------------------------------------------------------------------------
# Panels


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False, fmt: str | None = None) -> prom.Dataquery:
    query = prom.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        query = query.legend_format(legend)
    if instant:
        query = query.instant()
    else:
        query = query.range()
    if fmt == "table":
        query = query.format("table")
    return query


def with_targets(panel, queries: list[tuple[str, str]], **kw):
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(target(expr, legend, ref=chr(ord("A") + index), **kw))
    return panel


def graph(title: str, unit: str, queries: list[tuple[str, str]], description: str = "", **limits) -> timeseries.Panel:
    """A time series panel; queries are (expr, legend) pairs."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .fill_opacity(10)
        .legend(cb.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.TABLE)
                .placement(common.LegendPlacement.BOTTOM).calcs(["lastNotNull", "max"]))
        .tooltip(cb.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
    )
    if "min" in limits:
        panel = panel.min(limits["min"])
    if "max" in limits:
        panel = panel.max(limits["max"])
    return with_targets(panel, queries)


def single(title: str, unit: str, queries: list[tuple[str, str]], description: str = "") -> stat.Panel:
    """A stat panel showing the last value of each series."""
    panel = (
        stat.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .graph_mode(common.BigValueGraphMode.NONE)
    )
    return with_targets(panel, queries, instant=True)


def listing(title: str, unit: str, queries: list[tuple[str, str]], hide: list[str], rename: dict[str, str],
            description: str = "") -> table.Panel:
    """A table of instant query results, one row per series; hide/rename columns."""
    panel = (
        table.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
        .show_header(True).cell_height(common.TableCellHeight.SM)
        .with_transformation(DataTransformerConfig(id_val="organize", options={
            "excludeByName": {name: True for name in ["Time", *hide]},
            "renameByName": rename,
        }))
    )
    return with_targets(panel, queries, instant=True, fmt="table")


# ---------------------------------------------------------------------------------------------
# Variables


def datasource_variable() -> db.DatasourceVariable:
    return db.DatasourceVariable("datasource").label("Data source").type("prometheus")


def query_variable(name: str, label: str, query: str, multi: bool, description: str) -> db.QueryVariable:
    variable = (
        db.QueryVariable(name).label(label).description(description).datasource(DATASOURCE)
        .query({"query": query, "refId": f"{name}-values"})
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        # allValue ".*" also matches series without the label (a cluster label is optional).
        variable = (variable.multi(True).include_all(True).all_value(".*")
                    .current(VariableOption(selected=True, text="All", value="$__all")))
    return variable


def cluster_variable(metric: str) -> db.QueryVariable:
    return query_variable(
        "cluster", "Cluster", f"label_values({metric}, cluster)", multi=True,
        description="The cluster label, if your Prometheus sets one (All also matches series without it).",
    )


# ---------------------------------------------------------------------------------------------
# Layout


@dataclass
class Section:
    """A row header followed by panels laid out left to right, (panel, width, height) each."""

    title: str
    panels: list[tuple[object, int, int]] = field(default_factory=list)


def assemble(title: str, uid: str, description: str, variables: list, sections: list[Section]) -> dict:
    """The dashboard as Grafana JSON: unique ids, explicit grid positions, no overlaps."""
    dashboard = (
        db.Dashboard(title).uid(uid).description(description).tags(TAGS).editable()
        .refresh("1m").time("now-3h", "now").timezone("browser")
        .tooltip(1)  # shared crosshair
        .timepicker(db.TimePicker().refresh_intervals(["30s", "1m", "5m", "15m", "1h"]))
    )
    for variable in variables:
        dashboard = dashboard.with_variable(variable)
    next_id, y = 1, 0
    for section in sections:
        dashboard = dashboard.with_row(db.Row(section.title).id(next_id).grid_pos(GridPos(h=1, w=24, x=0, y=y)))
        next_id, y = next_id + 1, y + 1
        x, row_height = 0, 0
        for panel, width, height in section.panels:
            if x + width > 24:
                x, y, row_height = 0, y + row_height, 0
            dashboard = dashboard.with_panel(panel.id(next_id).grid_pos(GridPos(h=height, w=width, x=x, y=y)))
            next_id, x, row_height = next_id + 1, x + width, max(row_height, height)
        y += row_height
    return json.loads(JSONEncoder(sort_keys=True, indent=2).encode(dashboard.build()))


# ---------------------------------------------------------------------------------------------
# 1. Nodes: Linux and Windows


def nodes_linux_windows() -> dict:
    # Linux node_exporter series carry no os label, the Windows records os="windows": the OS
    # variable's values are regexes that say so (custom, single-select, so Grafana passes them
    # unescaped). "|linux" also accepts Linux series that someone labelled os="linux".
    sel = 'cluster=~"$cluster",instance=~"$node",os=~"$os"'
    os_variable = (
        db.CustomVariable("os").label("OS").values("All : .*,Linux : |linux,Windows : windows")
        .description("Linux: node_exporter series (no os label). Windows: the node_* records with os=\"windows\".")
        .current(VariableOption(selected=True, text="All", value=".*"))
    )
    node_variable = query_variable(
        "node", "Node", 'label_values(node_boot_time_seconds{cluster=~"$cluster",os=~"$os"}, instance)', multi=True,
        description="Node name: instance is the node name for Windows nodes (the chart's relabelling) and, with "
                    "kube-prometheus-stack's node-exporter, for Linux nodes too.",
    )
    by_node = "cluster, instance"
    sections = [
        Section("Overview", [
            (listing(
                "Nodes: OS and uptime", "s",
                [(f'max by ({by_node}, os) (label_replace(time() - node_boot_time_seconds{{{sel}}}, "os", "linux", "os", ""))', "")],
                hide=[], rename={"instance": "node", "Value": "uptime"},
                description="Every node with its operating system and the time since it booted.",
            ), 24, 7),
        ]),
        Section("CPU", [
            (graph("CPU utilisation", "percentunit",
                   [(f'1 - avg by ({by_node}) (rate(node_cpu_seconds_total{{mode="idle",{sel}}}[$__rate_interval]))', "{{instance}}")],
                   description="Busy share of all CPUs of the node (1 - idle).", min=0, max=1), 24, 8),
        ]),
        Section("Memory", [
            (graph("Memory used", "percentunit",
                   [(f'1 - node_memory_MemAvailable_bytes{{{sel}}} / node_memory_MemTotal_bytes{{{sel}}}', "{{instance}}")],
                   description="1 - available / total. On Windows, available = standby + free + zero page lists.",
                   min=0, max=1), 12, 8),
            (graph("Memory available", "bytes",
                   [(f"node_memory_MemAvailable_bytes{{{sel}}}", "{{instance}}")], min=0), 12, 8),
        ]),
        Section("Disk space", [
            (graph("Disk space used per filesystem or volume", "percentunit",
                   [(f"1 - node_filesystem_avail_bytes{{{FILESYSTEMS},{sel}}} / node_filesystem_size_bytes{{{FILESYSTEMS},{sel}}}",
                     "{{instance}} {{mountpoint}}")],
                   description="Linux filesystems by mount point, Windows volumes by drive letter. Windows refreshes "
                               "volume sizes every 10-15 minutes.", min=0, max=1), 12, 8),
            (graph("Disk space free per filesystem or volume", "bytes",
                   [(f"node_filesystem_avail_bytes{{{FILESYSTEMS},{sel}}}", "{{instance}} {{mountpoint}}")], min=0), 12, 8),
        ]),
        Section("Disk I/O", [
            (graph("Disk read", "Bps",
                   [(f"sum by ({by_node}) (rate(node_disk_read_bytes_total{{{DISK_DEVICES},{sel}}}[$__rate_interval]))", "{{instance}}")],
                   description="Linux: whole disks. Windows: logical volumes (the logical_disk collector).", min=0), 12, 8),
            (graph("Disk written", "Bps",
                   [(f"sum by ({by_node}) (rate(node_disk_written_bytes_total{{{DISK_DEVICES},{sel}}}[$__rate_interval]))", "{{instance}}")],
                   min=0), 12, 8),
        ]),
        Section("Network", [
            (graph("Network received", "Bps",
                   [(f"sum by ({by_node}) (rate(node_network_receive_bytes_total{{{NETWORK_DEVICES},{sel}}}[$__rate_interval]))", "{{instance}}")],
                   description="All physical and virtual adapters except loopback and container veths.", min=0), 12, 8),
            (graph("Network transmitted", "Bps",
                   [(f"sum by ({by_node}) (rate(node_network_transmit_bytes_total{{{NETWORK_DEVICES},{sel}}}[$__rate_interval]))", "{{instance}}")],
                   min=0), 12, 8),
        ]),
    ]
    return assemble(
        "Nodes: Linux and Windows", "wep-nodes-linux-windows",
        "Linux and Windows nodes side by side: node_exporter on Linux, windows_exporter v0.31 through "
        "windows-exporter-proxy and its node_* recording rules on Windows.",
        [datasource_variable(), cluster_variable("node_boot_time_seconds"), os_variable, node_variable],
        sections,
    )


# ---------------------------------------------------------------------------------------------
# 2. Windows node


def windows_node() -> dict:
    node = 'cluster=~"$cluster",instance="$node"'
    node_variable = query_variable(
        "node", "Node", 'label_values(windows_os_info{cluster=~"$cluster"}, instance)', multi=False,
        description="Windows node name (instance, with the chart's relabelling).",
    )
    cpus = f'count(windows_cpu_time_total{{mode="idle",{node}}})'
    sections = [
        Section("Overview", [
            (single("Uptime", "s", [(f"time() - windows_system_boot_time_timestamp{{{node}}}", "")]), 6, 4),
            (single("Logical processors", "short", [(cpus, "")]), 6, 4),
            (single("Memory installed", "bytes", [(f"windows_memory_physical_total_bytes{{{node}}}", "")]), 6, 4),
            (listing("Operating system", "none", [(f"windows_os_info{{{node}}}", "")],
                     hide=["__name__", "Value", "job", "namespace", "pod", "metrics_path", "cluster"],
                     rename={"instance": "node"}), 6, 4),
        ]),
        Section("CPU", [
            (graph("CPU by mode", "percentunit",
                   [(f"sum by (mode) (rate(windows_cpu_time_total{{{node}}}[$__rate_interval])) / scalar({cpus})", "{{mode}}")],
                   description="Share of all logical processors per mode. privileged includes interrupt and dpc time.",
                   min=0), 24, 8),
        ]),
        Section("Memory", [
            (graph("Physical memory", "bytes", [
                (f"windows_memory_physical_total_bytes{{{node}}}", "total"),
                (f"windows_memory_physical_total_bytes{{{node}}} - windows_memory_available_bytes{{{node}}}", "used"),
                (f"windows_memory_available_bytes{{{node}}}", "available (standby + free + zero)"),
            ], min=0), 8, 8),
            (graph("Commit charge", "bytes", [
                (f"windows_memory_committed_bytes{{{node}}}", "committed"),
                (f"windows_memory_commit_limit{{{node}}}", "commit limit"),
            ], description="Committed virtual memory against the limit (physical memory + page files).", min=0), 8, 8),
            (graph("Page files", "bytes", [
                (f"windows_pagefile_limit_bytes{{{node}}}", "{{file}} size"),
                (f"windows_pagefile_limit_bytes{{{node}}} - windows_pagefile_free_bytes{{{node}}}", "{{file}} used"),
            ], description="The pagefile collector (not a windows_exporter default: add it to --collectors.enabled).",
                min=0), 8, 8),
        ]),
        Section("Logical disks", [
            (graph("Volume space used", "percentunit",
                   [(f"1 - windows_logical_disk_free_bytes{{{node}}} / windows_logical_disk_size_bytes{{{node}}}", "{{volume}}")],
                   description="Refreshed by Windows every 10-15 minutes.", min=0, max=1), 8, 8),
            (graph("Volume space free", "bytes",
                   [(f"windows_logical_disk_free_bytes{{{node}}}", "{{volume}}")], min=0), 8, 8),
            (graph("Volume I/O", "Bps", [
                (f"rate(windows_logical_disk_read_bytes_total{{{node}}}[$__rate_interval])", "{{volume}} read"),
                (f"rate(windows_logical_disk_write_bytes_total{{{node}}}[$__rate_interval])", "{{volume}} written"),
            ], min=0), 8, 8),
        ]),
        Section("Network", [
            (graph("Network per interface", "Bps", [
                (f"rate(windows_net_bytes_received_total{{{node}}}[$__rate_interval])", "{{nic}} received"),
                (f"rate(windows_net_bytes_sent_total{{{node}}}[$__rate_interval])", "{{nic}} sent"),
            ], min=0), 24, 8),
        ]),
        Section("Services", [
            (listing("Auto-start services not running", "none",
                     [(f'windows_service_start_mode{{start_mode="auto",{node}}} == 1 '
                       f'unless on (instance, name) windows_service_state{{state="running",{node}}} == 1', "")],
                     hide=["__name__", "Value", "job", "namespace", "pod", "metrics_path", "cluster", "start_mode"],
                     rename={"instance": "node", "name": "service"},
                     description="Services set to start automatically that are not running (the service collector)."),
             24, 6),
        ]),
        Section("windows_exporter", [
            (graph("Collector duration", "s",
                   [(f"windows_exporter_collector_duration_seconds{{{node}}}", "{{collector}}")], min=0), 8, 8),
            (graph("Collector failures", "short",
                   [(f"1 - windows_exporter_collector_success{{{node}}}", "{{collector}}")],
                   description="1 while the collector fails, 0 while it succeeds.", min=0, max=1), 8, 8),
            (graph("Collector timeouts", "short",
                   [(f"windows_exporter_collector_timeout{{{node}}}", "{{collector}}")],
                   description="1 while the collector exceeds the scrape's time budget.", min=0, max=1), 8, 8),
        ]),
        Section("windows-exporter-proxy", [
            (graph("Scrapes through the proxy by outcome", "reqps",
                   [(f"sum by (outcome, status) (rate(windows_exporter_proxy_scrapes_total{{{node}}}[$__rate_interval]))",
                     "{{outcome}} {{status}}")], min=0), 8, 8),
            (graph("Exporter response time", "s", [
                (f"histogram_quantile(0.5, sum by (le) (rate(windows_exporter_proxy_upstream_response_seconds_bucket{{{node}}}[$__rate_interval])))", "p50"),
                (f"histogram_quantile(0.9, sum by (le) (rate(windows_exporter_proxy_upstream_response_seconds_bucket{{{node}}}[$__rate_interval])))", "p90"),
            ], description="Time from the proxy's request to the exporter's response headers.", min=0), 8, 8),
            (graph("Targets up", "short",
                   [(f"up{{{node}}}", "{{metrics_path}}")],
                   description="/metrics: the exporter through the proxy. /proxy/metrics: the proxy itself.",
                   min=0, max=1), 8, 8),
        ]),
    ]
    return assemble(
        "Windows node", "wep-windows-node",
        "One Windows node in depth on windows_exporter v0.31 names, scraped through windows-exporter-proxy.",
        [datasource_variable(), cluster_variable("windows_os_info"), node_variable],
        sections,
    )


# ---------------------------------------------------------------------------------------------
# 3. windows-exporter-proxy


def windows_exporter_proxy() -> dict:
    sel = 'cluster=~"$cluster",instance=~"$node"'
    node_variable = query_variable(
        "node", "Node", 'label_values(windows_exporter_proxy_build_info{cluster=~"$cluster"}, instance)', multi=True,
        description="Node name of the proxy pod (instance, with the chart's relabelling).",
    )
    by = "cluster, instance"

    def per_node_rate(metric: str, matchers: str = "") -> str:
        inner = f"{matchers},{sel}" if matchers else sel
        return f"sum by ({by}) (rate({metric}{{{inner}}}[$__rate_interval]))"

    # Problem counters appear only once something happened; "or 0 * all scrapes" draws a 0 line
    # for every node instead of an empty panel.
    zero = f"0 * {per_node_rate('windows_exporter_proxy_scrapes_total')}"
    failed = per_node_rate("windows_exporter_proxy_scrapes_total", 'outcome!~"ok|client_gone"')
    all_scrapes = per_node_rate("windows_exporter_proxy_scrapes_total")
    sections = [
        Section("Overview", [
            (listing("Nodes whose exporter does not answer", "none", [(
                f'(sum by ({by}) (increase(windows_exporter_proxy_scrapes_total{{outcome=~"upstream_error|timeout",{sel}}}[5m])) > 0'
                f' unless sum by ({by}) (increase(windows_exporter_proxy_scrapes_total{{outcome="ok",{sel}}}[5m])) > 0)'
                f" or max by ({by}) (windows_exporter_proxy_exporter_port{{{sel}}}) == 0", "")],
                hide=["Value"], rename={"instance": "node"},
                description="Scrapes in the last 5 minutes got only 502/504 (or port discovery found no exporter): "
                            "alert WindowsExporterProxyExporterUnreachable."), 12, 6),
            (single("Proxies by version", "short",
                    [(f"count by (version) (windows_exporter_proxy_build_info{{{sel}}})", "{{version}}")]), 12, 6),
        ]),
        Section("Scrapes", [
            (graph("Scrapes by outcome and status", "reqps",
                   [(f"sum by (outcome, status) (rate(windows_exporter_proxy_scrapes_total{{{sel}}}[$__rate_interval]))",
                     "{{outcome}} {{status}}")], min=0), 12, 8),
            (graph("Failed-scrape ratio per node", "percentunit",
                   [(f"({failed} or {zero}) / {all_scrapes}", "{{instance}}")],
                   description="Everything but ok and client_gone: alert WindowsExporterProxyScrapeErrorsHigh above 10%.",
                   min=0, max=1), 12, 8),
            (graph("Exporter response time", "s", [
                (f"histogram_quantile(0.5, sum by (le) (rate(windows_exporter_proxy_upstream_response_seconds_bucket{{{sel}}}[$__rate_interval])))", "p50 all nodes"),
                (f"histogram_quantile(0.99, sum by (le) (rate(windows_exporter_proxy_upstream_response_seconds_bucket{{{sel}}}[$__rate_interval])))", "p99 all nodes"),
                (f"histogram_quantile(0.9, sum by ({by}, le) (rate(windows_exporter_proxy_upstream_response_seconds_bucket{{{sel}}}[$__rate_interval])))", "p90 {{instance}}"),
            ], description="Time to the exporter's response headers.", min=0), 12, 8),
            (graph("Streamed bytes", "Bps",
                   [(per_node_rate("windows_exporter_proxy_streamed_bytes_total"), "{{instance}}")], min=0), 12, 8),
        ]),
        Section("Load", [
            (graph("In-flight scrapes", "short",
                   [(f"max by ({by}) (windows_exporter_proxy_inflight_scrapes{{{sel}}})", "{{instance}}")],
                   description="Scrapes sent to the exporter at once (PROXY_MAX_INFLIGHT caps them).", min=0), 8, 8),
            (graph("Waiting scrapes", "short",
                   [(f"max by ({by}) (windows_exporter_proxy_waiting_scrapes{{{sel}}})", "{{instance}}")],
                   description="Scrapes waiting for an in-flight slot; they get 503 when their deadline passes.", min=0), 8, 8),
            (graph("Client connections", "short",
                   [(f"max by ({by}) (windows_exporter_proxy_client_connections{{{sel}}})", "{{instance}}")], min=0), 8, 8),
        ]),
        Section("Coalescing", [
            (graph("Exporter requests and coalesced scrapes", "reqps", [
                (per_node_rate("windows_exporter_proxy_exporter_requests_total"), "{{instance}} exporter requests"),
                (per_node_rate("windows_exporter_proxy_coalesced_scrapes_total"), "{{instance}} served from another scrape's request"),
            ], description="With HA Prometheus pairs, coalesced scrapes save the exporter a collection each.", min=0), 12, 8),
            (graph("Scrapes cut for lagging behind", "reqps",
                   [(per_node_rate("windows_exporter_proxy_scrapes_total", 'outcome="lagged"') + f" or {zero}",
                     "{{instance}}")],
                   description="A scraper that reads too slowly to follow a shared exporter response is cut off.",
                   min=0), 12, 8),
        ]),
        Section("Authentication and TLS", [
            (graph("Authentication decisions", "reqps",
                   [(f"sum by (method, outcome) (rate(windows_exporter_proxy_auth_decisions_total{{{sel}}}[$__rate_interval]))",
                     "{{method}} {{outcome}}")],
                   description="unavailable: the Kubernetes API did not answer (alert WindowsExporterProxyAuthUnavailable).",
                   min=0), 12, 8),
            (listing("Certificate expiry", "s",
                     [(f"windows_exporter_proxy_tls_certificate_expiry_timestamp_seconds{{{sel}}} - time()", "")],
                     hide=["job", "namespace", "pod", "metrics_path", "cluster"], rename={"instance": "node", "Value": "expires in"},
                     description="Alerts below 14 days (warning) and 3 days (critical)."), 12, 8),
            (graph("TLS handshake failures by reason", "ops",
                   [(f"sum by (reason) (rate(windows_exporter_proxy_tls_handshake_failures_total{{{sel}}}[$__rate_interval]))",
                     "{{reason}}")], min=0), 12, 8),
            (graph("Certificate reload failures", "short",
                   [(f"sum by ({by}) (increase(windows_exporter_proxy_tls_reload_failures_total{{{sel}}}[1h]))", "{{instance}}")],
                   description="A failed reload keeps the previous certificate serving.", min=0), 12, 8),
        ]),
        Section("Connections and exporter port", [
            (graph("Connections closed by reason", "ops",
                   [(f"sum by (reason) (rate(windows_exporter_proxy_connections_closed_total{{{sel}}}[$__rate_interval]))",
                     "{{reason}}")], min=0), 12, 8),
            (listing("Exporter port in use", "none",
                     [(f"max by ({by}) (windows_exporter_proxy_exporter_port{{{sel}}})", "")],
                     hide=[], rename={"instance": "node", "Value": "port"},
                     description="The windows_exporter port the proxy found (0: none answers)."), 12, 8),
        ]),
    ]
    return assemble(
        "windows-exporter-proxy", "wep-proxy",
        "windows-exporter-proxy across the fleet: scrape outcomes, exporter latency, load, and the "
        "coalescing, authentication and TLS figures.",
        [datasource_variable(), cluster_variable("windows_exporter_proxy_build_info"), node_variable],
        sections,
    )


# ---------------------------------------------------------------------------------------------

DASHBOARDS = {
    "nodes-linux-windows.json": nodes_linux_windows,
    "windows-node.json": windows_node,
    "windows-exporter-proxy.json": windows_exporter_proxy,
}


def rendered() -> dict[str, str]:
    """File name -> exact JSON text of every dashboard."""
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files on disk; exit 1 on any difference")
    args = parser.parse_args()
    drift = False
    expected = rendered()
    on_disk = {p.name for p in OUT.glob("*.json")} if OUT.exists() else set()
    for name, text in expected.items():
        path = OUT / name
        if args.check:
            current = path.read_text() if path.exists() else ""
            if current != text:
                drift = True
                sys.stdout.writelines(difflib.unified_diff(
                    current.splitlines(keepends=True), text.splitlines(keepends=True),
                    f"deploy/grafana/dashboards/{name} (on disk)", f"deploy/grafana/dashboards/{name} (generated)"))
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote deploy/grafana/dashboards/{name}")
    for stale in sorted(on_disk - set(expected)):
        drift = True
        print(f"deploy/grafana/dashboards/{stale} is not generated by generate.py: remove it", file=sys.stderr)
    if drift:
        print("generate.py: dashboards differ from the code; run deploy/grafana/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
