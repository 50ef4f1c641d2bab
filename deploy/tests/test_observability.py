"""Dashboards, alerts and the chart objects that ship them, checked offline.

- deploy/grafana/dashboards/*.json are generate.py's output (drift fails), structurally sound
  (unique ids, no overlapping grid positions, a datasource on every target, every variable
  defined, a unit on every panel, no hard-coded instance) and read only v0.31 names.
- deploy/prometheus/rules/windows-nodes.alerts.yml: promtool-clean; every alert has summary,
  description and a runbook entry in deploy/README.md; the promtool unit tests make each alert
  fire and stay silent, and fail when an alert can never fire.
- The chart's PrometheusRule and dashboard ConfigMaps carry exactly those files; the monitors
  scrape /proxy/metrics too; the values schema covers the new keys.

The same queries against a real Prometheus: test_cluster_prometheus.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import helm_python as helm
import pytest
import yaml

import kubehelpers as kh
import observability as ob

ALERTS = ob.RULES_DIR / "windows-nodes.alerts.yml"
ALERT_TESTS = kh.DEPLOY / "prometheus" / "tests" / "windows-nodes.alerts.test.yml"
COMPAT_RULES = ob.RULES_DIR / "windows-node-exporter-compat.rules.yml"
FAMILIES = kh.DEPLOY / "prometheus" / "windows_exporter_metric_families.txt"
README = kh.DEPLOY / "README.md"
DASHBOARDS = ob.load_dashboards()
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: run bash .ci/install")


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kw)


def alert_rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


# ---------------------------------------------------------------------------------------------
# Dashboards: generated, and structurally sound


def test_dashboards_are_the_generators_output() -> None:
    result = run([sys.executable, str(ob.GRAFANA / "generate.py"), "--check"])
    assert result.returncode == 0, f"run deploy/grafana/generate.py to regenerate:\n{result.stdout}{result.stderr}"
    assert set(DASHBOARDS) == {"nodes-linux-windows.json", "windows-node.json", "windows-exporter-proxy.json"}


@pytest.mark.parametrize("name", DASHBOARDS)
def test_panel_ids_and_titles_are_unique(name: str) -> None:
    ids = [p["id"] for p in ob.panels(DASHBOARDS[name])]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids), ids
    titles = [p["title"] for p in ob.data_panels(DASHBOARDS[name])]
    assert len(titles) == len(set(titles)), f"panel titles repeat: {sorted(t for t in titles if titles.count(t) > 1)}"
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("name", DASHBOARDS)
def test_grid_positions_do_not_overlap(name: str) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in ob.panels(DASHBOARDS[name]):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, (panel["title"], grid)
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[(x, y)]!r} at {(x, y)}"
                taken[(x, y)] = panel["title"]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_target_has_the_datasource_variable(name: str) -> None:
    dashboard = DASHBOARDS[name]
    (source,) = [v for v in ob.variables(dashboard) if v["type"] == "datasource"]
    assert source["name"] == "datasource" and source["query"] == "prometheus"
    reference = {"type": "prometheus", "uid": "${datasource}"}
    for panel in ob.data_panels(dashboard):
        assert panel["datasource"] == reference, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == reference, (panel["title"], target)
            assert target["expr"].strip() and target["refId"], (panel["title"], target)
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
    for variable in ob.variables(dashboard):
        if variable["type"] == "query":
            assert variable["datasource"] == reference, variable["name"]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_variable_resolves(name: str) -> None:
    """Each $name used in a query, a title or a variable is a variable defined before it (or a
    Grafana built-in); multi-value variables have an All value that Prometheus accepts."""
    dashboard = DASHBOARDS[name]
    defined: set[str] = set()
    for variable in ob.variables(dashboard):
        if variable["type"] == "query":
            used = ob.referenced_variables(ob.variable_query(variable)) - set(ob.BUILTINS)
            assert used <= defined - {"datasource"}, f"${variable['name']} uses {used - defined} before they are defined"
            assert re.fullmatch(r"label_values\(.+,\s*\w+\)", ob.variable_query(variable)), variable["name"]
        if variable["type"] == "custom":
            assert ob.custom_options(variable) and not variable.get("multi") and not variable.get("includeAll"), (
                "custom regex options must be single-select, or Grafana escapes them")
            assert variable["current"]["value"] in dict(ob.custom_options(variable)).values()
        if variable.get("includeAll"):
            assert variable.get("allValue") == ".*", variable["name"]
        defined.add(variable["name"])
    for panel in ob.panels(dashboard):
        texts = [panel["title"]] + [t["expr"] + t.get("legendFormat", "") for t in panel.get("targets", [])]
        for text in texts:
            unknown = ob.referenced_variables(text) - defined - set(ob.BUILTINS)
            assert not unknown, f"{panel['title']}: undefined variables {unknown}"
        for target in panel.get("targets", []):
            assert "$datasource" not in target["expr"]
            # the substituted query is still one expression (no leftover $)
            assert "$" not in ob.interpolate(target["expr"], dashboard, {
                v["name"]: ("$__all" if v.get("includeAll") else dict(ob.custom_options(v)).get("All", "x")
                            if v["type"] == "custom" else "x")
                for v in ob.variables(dashboard)}), target["expr"]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_panel_has_a_unit_and_no_hard_coded_instance(name: str) -> None:
    for panel in ob.data_panels(DASHBOARDS[name]):
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']} has no unit"
        assert panel["type"] in {"timeseries", "stat", "table"} and panel["options"], f"{panel['title']}: no options"
        for target in panel["targets"]:
            literal = re.findall(r'\b(instance|node|job|pod)\s*(=~|=|!=|!~)\s*"(?!\$)([^"]*)"', target["expr"])
            assert not literal, f"{panel['title']}: hard-coded {literal}"
            assert 'instance=~"$node"' in target["expr"] or 'instance="$node"' in target["expr"], (
                f"{panel['title']}: every query follows the node variable: {target['expr']}")


def test_dashboards_read_only_windows_exporter_v031_names() -> None:
    families = {line.split()[1] for line in FAMILIES.read_text().splitlines() if line.strip() and not line.startswith("#")}
    removed = {"windows_os_visible_memory_bytes", "windows_system_boot_time_timestamp_seconds",
               "windows_system_system_up_time", "windows_os_physical_memory_free_bytes"}
    for name, dashboard in DASHBOARDS.items():
        for panel in ob.data_panels(dashboard):
            for target in panel["targets"]:
                for metric in ob.metric_names(target["expr"]):
                    if metric.startswith("windows_") and not metric.startswith("windows_exporter_proxy_"):
                        assert metric in families, f"{name}/{panel['title']}: {metric} is not a v0.31 family"
                        assert metric not in removed and not metric.startswith("windows_cs_")


def test_cluster_dashboard_reads_the_same_node_series_for_both_systems() -> None:
    """Every query of the Linux-and-Windows dashboard reads node_* names only, each of which
    the recording rules also produce for Windows nodes (os="windows")."""
    recorded = {r["record"] for g in yaml.safe_load(COMPAT_RULES.read_text())["groups"] for r in g["rules"]}
    dashboard = DASHBOARDS["nodes-linux-windows.json"]
    for panel in ob.data_panels(dashboard):
        for target in panel["targets"]:
            names = ob.metric_names(target["expr"])
            assert names and names <= recorded, f"{panel['title']}: {names - recorded} has no Windows record"
            assert 'os=~"$os"' in target["expr"], panel["title"]
    assert {v["name"] for v in ob.variables(dashboard)} == {"datasource", "cluster", "os", "node"}


def test_proxy_dashboard_covers_every_proxy_metric() -> None:
    """The fleet dashboard shows each of the proxy's metrics, today's and the parallel features'."""
    read = {m for p in ob.data_panels(DASHBOARDS["windows-exporter-proxy.json"]) for t in p["targets"]
            for m in ob.metric_names(t["expr"])}
    today = {"windows_exporter_proxy_scrapes_total", "windows_exporter_proxy_upstream_response_seconds",
             "windows_exporter_proxy_streamed_bytes_total", "windows_exporter_proxy_inflight_scrapes",
             "windows_exporter_proxy_waiting_scrapes", "windows_exporter_proxy_client_connections",
             "windows_exporter_proxy_build_info"}
    assert today | ob.NEW_PROXY_METRICS <= read, (today | ob.NEW_PROXY_METRICS) - read


# ---------------------------------------------------------------------------------------------
# Alerts


@needs_promtool
def test_alerts_pass_promtool_check_rules() -> None:
    result = run(["promtool", "check", "rules", str(ALERTS)])
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_the_issue_asks_for_these_alerts() -> None:
    assert {r["alert"] for r in alert_rules()} == {
        "WindowsExporterProxyExporterUnreachable",  # the proxy cannot reach its node's exporter
        "WindowsVolumeAlmostFull",  # volumes running out of space: threshold
        "WindowsVolumeFillingUp",  # ... and fill prediction
        "WindowsExporterProxyScrapeErrorsHigh",  # failed-scrape ratio
        "WindowsExporterProxyTargetDown",  # a proxy target down
        "WindowsExporterProxyCertificateExpiresSoon",  # certificate expiry
        "WindowsExporterProxyCertificateReloadFailing",
        "WindowsExporterProxyFileReloadFailing",  # client CA, htpasswd, the hop's files (issue 19)
        "WindowsExporterProxyAuthUnavailable",
    }


def github_anchors(markdown: str) -> set[str]:
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, re.M):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return anchors


def test_every_alert_has_summary_description_and_a_runbook_entry() -> None:
    anchors = github_anchors(README.read_text())
    for rule in alert_rules():
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        anchor = annotations["runbook_url"].rsplit("#", 1)[1]
        assert annotations["runbook_url"].startswith(
            "https://github.com/windows-exporter-proxy/windows-exporter-proxy/blob/main/deploy/README.md#")
        assert anchor == rule["alert"].lower() and anchor in anchors, f"deploy/README.md has no heading for {rule['alert']}"


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    """Each alert (each severity) appears in an expected firing set, and each alert name is also
    evaluated where nothing may fire."""
    unit = yaml.safe_load(ALERT_TESTS.read_text())
    assert unit["rule_files"] == [f"../rules/{ALERTS.name}"]
    fires, silent = set(), set()
    for case in unit["tests"]:
        for check in case["alert_rule_test"]:
            if check["exp_alerts"]:
                fires |= {(check["alertname"], a["exp_labels"]["severity"]) for a in check["exp_alerts"]}
            else:
                silent.add(check["alertname"])
    rules = {(r["alert"], r["labels"]["severity"]) for r in alert_rules()}
    assert fires == rules, rules ^ fires
    assert silent == {name for name, _ in rules}


@needs_promtool
@pytest.mark.parametrize("alert", sorted({r["alert"] for r in alert_rules()}))
def test_unit_tests_fail_when_an_alert_can_never_fire(alert: str, tmp_path) -> None:
    """Proof that the unit tests check firing: the same tests against rules where this one
    alert's expression never matches must fail."""
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                rule["expr"] = "vector(1) == 0"
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "rules" / ALERTS.name).write_text(yaml.safe_dump(rules))
    (tmp_path / "tests" / ALERT_TESTS.name).write_text(ALERT_TESTS.read_text())
    result = run(["promtool", "test", "rules", str(tmp_path / "tests" / ALERT_TESTS.name)])
    assert result.returncode != 0 and f"alertname: {alert}" in result.stdout + result.stderr, result.stdout


# ---------------------------------------------------------------------------------------------
# The chart and the kustomize components


def test_chart_prometheus_rules_are_the_rule_files() -> None:
    objects = kh.helm_render({"prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"},
                                                 "annotations": {"team": "platform"}}})
    rules = [o for o in objects if o["kind"] == "PrometheusRule"]
    files = sorted(ob.RULES_DIR.glob("*.yml"))
    assert len(rules) == len(files) == 3
    by_groups = {json.dumps(r["spec"]["groups"], sort_keys=True): r for r in rules}
    for path in files:
        rule = by_groups.get(json.dumps(yaml.safe_load(path.read_text())["groups"], sort_keys=True))
        assert rule, f"no PrometheusRule carries {path.name} unchanged"
        kh.validate(rule)
        assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert rule["metadata"]["annotations"] == {"team": "platform"}
    assert {r["metadata"]["name"] for r in rules} == {
        "windows-exporter-proxy-node-exporter-compat-rules",
        "windows-exporter-proxy-kubernetes-mixin-v031-rules",
        "windows-exporter-proxy-nodes-alerts",
    }
    assert not [o for o in kh.helm_render() if o["kind"] == "PrometheusRule"], "off by default"


def test_chart_dashboard_configmaps_are_the_dashboards() -> None:
    objects = kh.helm_render({"grafanaDashboards": {"enabled": True}})
    maps = [o for o in objects if o["kind"] == "ConfigMap"]
    assert len(maps) == len(DASHBOARDS)
    for config_map in maps:
        kh.validate(config_map)
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "Windows"}
        ((key, text),) = config_map["data"].items()
        assert json.loads(text) == DASHBOARDS[key], key
        assert config_map["metadata"]["name"] == f"windows-exporter-proxy-dashboard-{key.removesuffix('.json')}"
    # Helm merges maps with the defaults: null removes a default key.
    custom = kh.helm_render({"grafanaDashboards": {"enabled": True, "label": {"grafana_dashboard": None, "dashboards": "windows"},
                                                   "folderAnnotation": {"grafana_folder": None}}})
    for config_map in (o for o in custom if o["kind"] == "ConfigMap"):
        assert config_map["metadata"]["labels"]["dashboards"] == "windows"
        assert "grafana_dashboard" not in config_map["metadata"]["labels"]
        assert "annotations" not in config_map["metadata"]
    assert not [o for o in kh.helm_render() if o["kind"] == "ConfigMap"], "off by default"


def test_chart_lints_with_rules_and_dashboards() -> None:
    values = {"prometheusRule": {"enabled": True}, "grafanaDashboards": {"enabled": True}, "serviceMonitor": {"enabled": True}}
    report = helm.lint(kh.CHART, values, strict=True)
    assert not report["errors"] and not report["messages"], report


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"prometheusRule": {"enabled": "yes"}}, "at '/prometheusRule/enabled': got string, want boolean"),
        ({"prometheusRule": {"labels": {"release": 1}}}, "at '/prometheusRule/labels/release'"),
        ({"prometheusRule": {"ruleSelector": {}}}, "additional properties 'ruleSelector' not allowed"),
        ({"grafanaDashboards": {"label": {"grafana_dashboard": None}}}, "at '/grafanaDashboards/label'"),
        ({"grafanaDashboards": {"label": {"grafana_dashboard": 1}}}, "at '/grafanaDashboards/label/grafana_dashboard'"),
        ({"grafanaDashboards": {"folderAnnotation": "Windows"}}, "at '/grafanaDashboards/folderAnnotation'"),
    ],
)
def test_schema_rejects_bad_rule_and_dashboard_values(values: dict, message: str) -> None:
    with helm.Chart.load(kh.CHART) as chart:
        with pytest.raises(helm.HelmValuesError) as raised:
            chart.render(values, name=kh.RELEASE, namespace="monitoring")
    assert message in str(raised.value), str(raised.value)


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PodMonitor"])
def test_monitors_scrape_the_proxys_own_metrics(kind: str) -> None:
    monitor = kh.one(kh.helm_render({"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}), kind)
    endpoints = monitor["spec"]["endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"]
    assert [e["path"] for e in endpoints] == ["/metrics", "/proxy/metrics"]
    kh.check_monitor_relabelling(monitor)
    for endpoint in endpoints:
        assert {"action": "replace", "sourceLabels": ["__metrics_path__"], "targetLabel": "metrics_path"} in endpoint["relabelings"]


def test_kube_prometheus_stack_overlay_has_everything() -> None:
    objects = kh.kustomize(kh.KUBERNETES / "overlays" / "kube-prometheus-stack")
    kinds = sorted(o["kind"] for o in objects)
    assert kinds.count("PrometheusRule") == 3 and kinds.count("ConfigMap") == 3 and "ServiceMonitor" in kinds, kinds
    for obj in objects:
        if obj["apiVersion"] == "monitoring.coreos.com/v1":
            assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack", obj["metadata"]["name"]
