"""The dashboards and rules against a real Prometheus scraping real Linux and Windows nodes.

Two Linux nodes are Debian's prometheus-node-exporter on 127.0.0.2 and 127.0.0.3; three Windows
nodes are the real proxy binary in front of a fake windows_exporter v0.31 (values made up for the
test, counters that move) and a fourth proxy whose exporter does not answer. Prometheus loads
deploy/prometheus/rules/*.yml and scrapes the proxies through the chart's ServiceMonitor
relabelling (file_sd stands in for Kubernetes discovery), so `instance` and `node` are node names.

Every query of every panel of every dashboard, variables substituted as Grafana does, is
evaluated through the HTTP API and must return series; on "Nodes: Linux and Windows" every panel
returns series for a Linux and a Windows node. The alert expressions pick the right nodes. The
cluster dashboard's preview PNG is drawn from these results (WEP_WRITE_PREVIEW=1 writes it to
deploy/grafana/ for the README).

Run: .venv/bin/pytest deploy/tests/test_cluster_prometheus.py
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

import observability as ob
import preview  # deploy/grafana/preview.py (on sys.path through observability)

pytestmark = pytest.mark.skipif(
    not (shutil.which("prometheus") and shutil.which("prometheus-node-exporter")),
    reason="prometheus or prometheus-node-exporter missing: run bash .ci/install",
)

CLUSTER_DASHBOARD = "nodes-linux-windows.json"
PREVIEW = ob.GRAFANA / "preview-nodes-linux-windows.png"
# With WEP_WRITE_PREVIEW=1 the test lets data accumulate this long before drawing the preview.
PREVIEW_SECONDS = 90


# Every test runs twice: as the chart's defaults scrape the nodes, and with the slow path (the
# service collector on /metrics/slow, as values-aks-native.yaml moves it): the dashboards and
# rules must work either way.
@pytest.fixture(scope="module", params=[None, ["service"]], ids=["plain", "slow-path"])
def cluster(request, tmp_path_factory):
    with ob.loopback_cluster(tmp_path_factory.mktemp("cluster"), slow=request.param) as running:
        running.slow_path = bool(request.param)
        yield running


def choose(dashboard: dict, cluster: ob.Cluster, **overrides: str) -> dict[str, list[str] | str]:
    """Variable values as a user opening the dashboard gets them: All where offered, else the
    first value the variable's query returns; overrides pick a custom option by its text."""
    chosen: dict[str, list[str] | str] = {}
    for variable in ob.variables(dashboard):
        name = variable["name"]
        if variable["type"] == "datasource":
            continue
        if variable["type"] == "custom":
            options = dict(ob.custom_options(variable))
            chosen[name] = options[overrides.get(name, variable["current"]["text"])]
        elif variable.get("includeAll"):
            chosen[name] = "$__all"
        else:
            values = cluster.label_values(ob.interpolate(ob.variable_query(variable), dashboard, chosen))
            assert values, f"{dashboard['title']}: variable ${name} has no values"
            chosen[name] = values[0]
    return chosen


def evaluate(cluster: ob.Cluster, dashboard: dict, chosen: dict) -> dict[str, list[dict]]:
    """Panel title -> every series its targets return."""
    out: dict[str, list[dict]] = {}
    for panel in ob.data_panels(dashboard):
        series: list[dict] = []
        for target in panel["targets"]:
            expr = ob.interpolate(target["expr"], dashboard, chosen)
            series += cluster.query(expr) if target.get("instant") else cluster.query_range(expr, seconds=20, step=ob.SCRAPE_SECONDS)
        out[panel["title"]] = series
    return out


def allowed_empty(panel: dict, exposed: set[str]) -> bool:
    """Only panels reading nothing but not-yet-exposed metrics of parallel features."""
    names = set().union(*(ob.metric_names(t["expr"]) for t in panel["targets"]))
    return names <= ob.NEW_PROXY_METRICS and not names & exposed


def empty_panels(cluster: ob.Cluster, dashboard: dict, chosen: dict, exposed: set[str]) -> list[str]:
    results = evaluate(cluster, dashboard, chosen)
    by_title = {p["title"]: p for p in ob.data_panels(dashboard)}
    return [title for title, series in results.items() if not series and not allowed_empty(by_title[title], exposed)]


@pytest.fixture(scope="module")
def exposed(cluster) -> set[str]:
    """What the real binary exposes now (so the allowed-empty list shrinks by itself)."""
    names = ob.exposed_proxy_metrics(cluster.proxy_urls[cluster.windows_nodes[0]])
    assert "windows_exporter_proxy_scrapes_total" in names or "windows_exporter_proxy_build_info" in names, names
    return names


@pytest.fixture(scope="module")
def settled(cluster, exposed) -> dict[str, dict]:
    """Waits until every dashboard's panels return series (rates need a few scrapes and rule
    evaluations); returns the chosen variable values per dashboard."""
    dashboards = ob.load_dashboards()
    last: object = None
    chosen: dict[str, dict] = {}

    def condition():
        nonlocal last, chosen
        try:
            chosen = {name: choose(d, cluster) for name, d in dashboards.items()}
        except AssertionError as error:  # a variable without values yet: not scraped yet
            last = error
            return False
        last = {name: empty_panels(cluster, d, chosen[name], exposed) for name, d in dashboards.items()}
        if any(last.values()):
            return False
        # Rates need two scrapes of each node, and the targets start one by one: wait until the
        # cluster dashboard has every node in every panel.
        every_node = set(cluster.linux_nodes + cluster.windows_nodes)
        results = evaluate(cluster, dashboards[CLUSTER_DASHBOARD], chosen[CLUSTER_DASHBOARD])
        last = {title: sorted(every_node - {s["metric"].get("instance") for s in series})
                for title, series in results.items()}
        return not any(last.values())

    ob.wait_for("every panel to return series", condition, timeout=90,
                on_fail=lambda: f"panels without series (or nodes): {last}\n{cluster.prometheus.tail()}")
    return chosen


def test_the_rules_load_and_evaluate_without_errors(cluster, settled) -> None:
    groups = cluster.api("rules")["groups"]
    files = {Path(g["file"]).name for g in groups}
    assert files == {p.name for p in ob.RULES_DIR.glob("*.yml")}, files
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{group['name']}/{rule['name']}: {rule.get('lastError')}"


def test_relabelling_gives_node_names(cluster, settled) -> None:
    up = cluster.query("up")
    by_job = {}
    for series in up:
        labels = series["metric"]
        assert labels["instance"] == labels["node"], labels
        by_job.setdefault(labels.get("metrics_path", "node-exporter"), set()).add(labels["instance"])
    windows = set(cluster.windows_nodes + cluster.unreachable_windows_nodes)
    slow = {"/metrics/slow": windows} if cluster.slow_path else {}
    assert by_job == {"/metrics": windows, "/proxy/metrics": windows, **slow, "node-exporter": set(cluster.linux_nodes)}, by_job
    down = {s["metric"]["instance"] for s in up if s["value"][1] == "0"}
    assert down == set(cluster.unreachable_windows_nodes), down


@pytest.mark.parametrize("name", sorted(p.name for p in ob.DASHBOARDS.glob("*.json")))
def test_every_variable_resolves_to_values(cluster, settled, name: str) -> None:
    dashboard = ob.load_dashboards()[name]
    chosen = settled[name]
    for variable in ob.variables(dashboard):
        if variable["type"] != "query":
            continue
        values = cluster.label_values(ob.interpolate(ob.variable_query(variable), dashboard, chosen))
        assert values, f"${variable['name']}: {ob.variable_query(variable)} returns nothing"
        if variable["name"] == "cluster":
            assert values == ["loopback"]
    if name == "windows-node.json":
        node_values = cluster.label_values(ob.interpolate(ob.variable_query(ob.variables(dashboard)[-1]), dashboard, chosen))
        assert node_values == cluster.windows_nodes, "the Windows node picker lists the Windows nodes with data"


@pytest.mark.parametrize("name", sorted(p.name for p in ob.DASHBOARDS.glob("*.json")))
def test_every_panel_returns_series(cluster, settled, exposed, name: str) -> None:
    dashboard = ob.load_dashboards()[name]
    assert empty_panels(cluster, dashboard, settled[name], exposed) == []


def test_cluster_dashboard_every_panel_has_a_linux_and_a_windows_node(cluster, settled) -> None:
    dashboard = ob.load_dashboards()[CLUSTER_DASHBOARD]
    for title, series in evaluate(cluster, dashboard, settled[CLUSTER_DASHBOARD]).items():
        instances = {s["metric"].get("instance") for s in series}
        assert instances & set(cluster.linux_nodes), f"{title}: no Linux node in {sorted(map(str, instances))}"
        assert instances & set(cluster.windows_nodes), f"{title}: no Windows node in {sorted(map(str, instances))}"


@pytest.mark.parametrize("system", ["Linux", "Windows"])
def test_cluster_dashboard_os_variable_selects_one_system(cluster, settled, system: str) -> None:
    dashboard = ob.load_dashboards()[CLUSTER_DASHBOARD]
    chosen = choose(dashboard, cluster, os=system)
    wanted = set(cluster.linux_nodes if system == "Linux" else cluster.windows_nodes)
    node_values = cluster.label_values(ob.interpolate(ob.variable_query(ob.variables(dashboard)[-1]), dashboard, chosen))
    assert set(node_values) == wanted
    for title, series in evaluate(cluster, dashboard, chosen).items():
        instances = {s["metric"]["instance"] for s in series}
        assert instances == wanted, f"{title} with OS={system}: {sorted(instances)}"


def test_cluster_dashboard_node_table_names_each_os(cluster, settled) -> None:
    dashboard = ob.load_dashboards()[CLUSTER_DASHBOARD]
    series = evaluate(cluster, dashboard, settled[CLUSTER_DASHBOARD])["Nodes: OS and uptime"]
    got = {s["metric"]["instance"]: s["metric"]["os"] for s in series}
    assert got == {**{n: "linux" for n in cluster.linux_nodes}, **{n: "windows" for n in cluster.windows_nodes}}
    for s in series:
        assert float(s["value"][1]) > 0, s


def test_proxy_dashboard_names_the_node_whose_exporter_does_not_answer(cluster, settled) -> None:
    dashboard = ob.load_dashboards()["windows-exporter-proxy.json"]
    every_node = set(cluster.windows_nodes + cluster.unreachable_windows_nodes)

    def results_for_every_node():  # rates need two scrapes of each proxy, which start one by one
        results = evaluate(cluster, dashboard, settled["windows-exporter-proxy.json"])
        ratio_nodes = {s["metric"]["instance"] for s in results["Failed-scrape ratio per node"]}
        return results if ratio_nodes == every_node else None

    results = ob.wait_for("a failed-scrape ratio for every node", results_for_every_node)
    assert {s["metric"]["instance"] for s in results["Nodes whose exporter does not answer"]} == set(
        cluster.unreachable_windows_nodes)
    ratios = {s["metric"]["instance"]: float(s["values"][-1][1]) for s in results["Failed-scrape ratio per node"]}
    assert ratios[cluster.unreachable_windows_nodes[0]] == 1.0
    # Healthy nodes draw a line too ("or 0 * all scrapes"), at 0 unless a loaded machine made a
    # scrape time out.
    assert all(ratios[n] < 0.5 for n in cluster.windows_nodes), ratios


def test_windows_node_dashboard_lists_the_stopped_auto_start_service(cluster, settled) -> None:
    dashboard = ob.load_dashboards()["windows-node.json"]
    results = evaluate(cluster, dashboard, settled["windows-node.json"])
    assert [s["metric"]["name"] for s in results["Auto-start services not running"]] == ["wuauserv"]
    # Aggregated panels (CPU by mode, counts) drop instance; every other series is the chosen node.
    instances = {s["metric"]["instance"] for series in results.values() for s in series if "instance" in s["metric"]}
    assert instances == {settled["windows-node.json"]["node"]}


def test_preview_is_drawn_from_the_query_results(cluster, settled, tmp_path) -> None:
    """Draws the cluster dashboard's panels from this Prometheus (Grafana cannot run here)."""
    if os.environ.get("WEP_WRITE_PREVIEW") == "1" and not cluster.slow_path:
        ob.wait_for("data for the preview", lambda: time.time() - cluster.started > PREVIEW_SECONDS,
                    timeout=PREVIEW_SECONDS + 10)
    dashboard = ob.load_dashboards()[CLUSTER_DASHBOARD]
    chosen = settled[CLUSTER_DASHBOARD]
    seconds = time.time() - cluster.started
    results = {}
    for panel in ob.data_panels(dashboard):
        series = []
        for target in panel["targets"]:
            expr = ob.interpolate(target["expr"], dashboard, chosen)
            series += cluster.query(expr) if target.get("instant") else cluster.query_range(expr, seconds=seconds, step=ob.SCRAPE_SECONDS)
        results[panel["id"]] = series
    out = tmp_path / PREVIEW.name
    drawn = preview.draw(dashboard, results, out, linux_nodes=set(cluster.linux_nodes))
    assert out.stat().st_size > 10_000
    assert drawn == len(ob.data_panels(dashboard)), "every panel is in the preview"
    if os.environ.get("WEP_WRITE_PREVIEW") == "1" and not cluster.slow_path:
        shutil.copyfile(out, PREVIEW)
    assert PREVIEW.exists(), "run WEP_WRITE_PREVIEW=1 .venv/bin/pytest deploy/tests/test_cluster_prometheus.py -k preview"
    assert f"grafana/{PREVIEW.name}" in (ob.kh.DEPLOY / "README.md").read_text(), "deploy/README shows the preview"


def test_a_panel_on_a_removed_metric_name_is_caught(cluster, settled, exposed) -> None:
    """The check can fail: the same dashboard with one query on a name windows_exporter v0.31
    removed (what kube-prometheus-stack's Windows dashboards read) reports that panel empty."""
    dashboard = ob.load_dashboards()["windows-node.json"]
    panel = next(p for p in ob.data_panels(dashboard) if p["title"] == "Physical memory")
    for target in panel["targets"]:
        target["expr"] = target["expr"].replace("windows_memory_physical_total_bytes", "windows_os_visible_memory_bytes")
        target["expr"] = target["expr"].replace("windows_memory_available_bytes", "windows_os_physical_memory_free_bytes")
    assert empty_panels(cluster, dashboard, settled["windows-node.json"], exposed) == ["Physical memory"]
    waived = [p["title"] for d in ob.load_dashboards().values() for p in ob.data_panels(d) if allowed_empty(p, exposed)]
    print("panels allowed to be empty until their metrics land:", waived)


def test_alert_expressions_pick_the_right_nodes_on_real_data(cluster, settled) -> None:
    """The alert expressions (their `for` aside) on this cluster's data: the node without an
    exporter is unreachable and fails every scrape, no proxy is down, and the Windows node with
    18% free on a shrinking C: is predicted full within 4 hours."""
    rules = [r for g in yaml.safe_load((ob.RULES_DIR / "windows-nodes.alerts.yml").read_text())["groups"] for r in g["rules"]]

    def firing(alert: str, severity: str) -> set[tuple[str, str]]:
        (rule,) = [r for r in rules if r["alert"] == alert and r["labels"]["severity"] == severity]
        return {(s["metric"]["node"], s["metric"].get("volume", "")) for s in cluster.query(rule["expr"])}

    unreachable = {(n, "") for n in cluster.unreachable_windows_nodes}
    assert firing("WindowsExporterProxyExporterUnreachable", "warning") == unreachable
    assert firing("WindowsExporterProxyScrapeErrorsHigh", "warning") == unreachable
    assert firing("WindowsExporterProxyTargetDown", "warning") == set()
    assert firing("WindowsVolumeAlmostFull", "warning") == set()
    assert firing("WindowsVolumeFillingUp", "critical") == {("akswin000002", "C:")}


def test_with_the_slow_path_the_slow_series_come_from_their_own_endpoint(cluster, settled) -> None:
    """The panels above pass with the service collector's series arriving on /metrics/slow only
    (and everything else on /metrics only), as values-aks-native.yaml scrapes them."""
    if not cluster.slow_path:
        pytest.skip("the slow-path cluster only")
    paths = lambda name: {s["metric"]["metrics_path"] for s in cluster.query(name)}  # noqa: E731
    assert paths("windows_service_state") == paths("windows_service_start_mode") == {"/metrics/slow"}
    assert paths("windows_cpu_time_total") == paths("windows_logical_disk_free_bytes") == {"/metrics"}
    successes = {(s["metric"]["metrics_path"], s["metric"]["collector"]) for s in cluster.query("windows_exporter_collector_success")}
    assert {c for p, c in successes if p == "/metrics/slow"} == {"service"}, successes
    assert "service" not in {c for p, c in successes if p == "/metrics"}, successes
