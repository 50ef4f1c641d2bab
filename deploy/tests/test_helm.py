"""Helm chart (deploy/helm/windows-exporter-proxy) through a real Helm engine (helm-python-sdk,
Helm v4 as a library): lint, render with representative values, strict schema validation of the
output, values.schema.json rejections, the DaemonSet contract, NOTES.txt, packaging."""

from __future__ import annotations

import re
import socket
import tarfile
from pathlib import Path

import helm_python as helm
import pytest
import yaml

import kubehelpers as kh

ORIGINAL_LABELS = {"app": "prometheus-node-exporter", "release": "collection"}
MONITORS_ON = {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}

# Representative value sets: defaults, the operator objects, the original labels, everything set.
VALUE_SETS: dict[str, dict] = {
    "defaults": {},
    "monitors": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "interval": "30s",
                           "scrapeTimeout": "10s",
                           "metricRelabelings": [{"action": "drop", "sourceLabels": ["__name__"], "regex": "go_.*"}]},
        "podMonitor": {"enabled": True, "interval": "1m",
                       "relabelings": [{"action": "replace", "targetLabel": "cluster", "replacement": "prod"}]},
        "jobLabel": "windows-nodes",
    },
    "original-labels": {"podLabels": ORIGINAL_LABELS},
    "single-port": {"proxy": {"port": 9182}},
    # The documented value set for AKS's own windows_exporter (deploy/README.md).
    "aks-native": yaml.safe_load((kh.DEPLOY / "helm" / "values-aks-native.yaml").read_text()),
    "everything": {
        "fullnameOverride": "wep",
        "image": {"registry": "registry.example.com:5000", "repository": "team/wep", "tag": "0.1.0-ltsc2022",
                  "digest": "sha256:" + "ab" * 32, "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "listenPort": 9101,
        "listenAddress": "::",
        "proxy": {
            "port": 9200,
            "scrapeTimeoutSeconds": 15,
            "timeoutMarginSeconds": 0.25,
            "connectTimeoutSeconds": 1.5,
            "maxInflight": 4,
            "coalesce": True,
            "coalesceMaxBufferBytes": 4194304,
            "metricKeep": "windows_.+",
            "metricDrop": "windows_service_.+",
            "seriesDrop": ['{__name__=~"windows_process_.+",process!="kubelet"}', 'windows_cpu_time_total{mode="idle"}'],
            "maxSeries": 1000000,
            "maxConnections": 1000000,
            "headerReadTimeoutSeconds": 3,
            "idleTimeoutSeconds": 60,
            "maxHeaderBytes": 32768,
            "shutdownGraceSeconds": 25,
            "readyMaxAgeSeconds": 45,
            "logFormat": "json",
            "rustLog": "windows_exporter_proxy=debug",
        },
        "terminationGracePeriodSeconds": 40,
        "nodeSelector": {"kubernetes.io/os": "windows", "agentpool": "win22"},
        "tolerations": [
            {"key": "os", "operator": "Equal", "value": "windows", "effect": "NoSchedule"},
            {"key": "sku", "operator": "Equal", "value": "Windows", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/os", "operator": "Equal", "value": "windows", "effect": "NoSchedule"},
            {"operator": "Exists", "effect": "NoExecute"},
        ],
        "priorityClassName": "system-node-critical",
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "resources": {"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}},
        "probes": {"liveness": {"enabled": True, "periodSeconds": 20}, "readiness": {"enabled": True, "failureThreshold": 4}},
        "commonLabels": {"team": "platform"},
        "podLabels": ORIGINAL_LABELS,
        "podAnnotations": {"example.com/scrape": "false"},
        "serviceAccount": {"create": True, "name": "wep-sa", "annotations": {"example.com/owner": "platform"}},
        "service": {"enabled": True, "port": 9101, "labels": {"extra": "yes"}},
        "serviceMonitor": {"enabled": True},
        "podMonitor": {"enabled": True},
    },
    # What operators set on node agents (issue 23): a mirror, critical priority, a surge rollout,
    # coalescing, a variable no value models, pod annotations.
    "operators": {
        "global": {"imageRegistry": "mirror.example.com/ghcr", "imagePullSecrets": ["mirror-pull", {"name": "regcred"}]},
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "system-node-critical",
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "10%"}},
        "proxy": {"coalesce": True, "coalesceMaxBufferBytes": 4194304},
        "env": {"RUST_LOG": "windows_exporter_proxy=debug"},
        "extraEnvFrom": [{"configMapRef": {"name": "proxy-settings", "optional": True}}],
        "podAnnotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"},
        "podLabels": {"team": "platform"},
    },
}


def test_lint_strict_clean() -> None:
    report = helm.lint(kh.CHART, strict=True)
    assert report["total_charts_linted"] == 1
    assert not report["errors"] and not report["messages"], report


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_strict_clean_with_values(name: str) -> None:
    report = helm.lint(kh.CHART, VALUE_SETS[name], strict=True)
    assert not report["errors"] and not report["messages"], report


@pytest.mark.parametrize("name", VALUE_SETS)
def test_render_validates_strictly(name: str) -> None:
    objects = kh.helm_render(VALUE_SETS[name])
    assert objects
    for obj in objects:
        kh.validate(obj)
    kinds = sorted(o["kind"] for o in objects)
    expected = {"ServiceAccount", "Service", "DaemonSet"}
    if VALUE_SETS[name].get("serviceMonitor", {}).get("enabled"):
        expected.add("ServiceMonitor")
    if VALUE_SETS[name].get("podMonitor", {}).get("enabled"):
        expected.add("PodMonitor")
    assert set(kinds) == expected and len(kinds) == len(expected), kinds


@pytest.mark.parametrize("name", VALUE_SETS)
def test_daemonset_contract(name: str) -> None:
    daemonset = kh.one(kh.helm_render(VALUE_SETS[name]), "DaemonSet")
    kh.check_daemonset_static(daemonset)
    kh.check_pod_security_restricted(daemonset)
    kh.check_daemonset_against_binary(daemonset)


def test_daemonset_contract_with_dockerfile() -> None:
    kh.check_daemonset_against_dockerfile(kh.one(kh.helm_render(), "DaemonSet"))


def test_defaults_render_only_non_default_proxy_variables() -> None:
    env = kh.manifest_env(kh.proxy_container(kh.one(kh.helm_render(), "DaemonSet")))
    assert list(env) == ["PROXY_HOSTIP", "PROXY_PORT"], env
    assert env["PROXY_PORT"] == "19100,19182,9182"


@pytest.mark.parametrize(
    ("port", "rendered"),
    [(9182, "9182"), ([9182], "9182"), ([19100, 19182], "19100,19182"), ([9182, 19182, 19100], "9182,19182,19100")],
)
def test_proxy_port_renders_one_port_or_the_list_in_order(port, rendered) -> None:
    env = kh.manifest_env(kh.proxy_container(kh.one(kh.helm_render({"proxy": {"port": port}}), "DaemonSet")))
    assert env["PROXY_PORT"] == rendered


def test_aks_native_values_render_both_aks_ports() -> None:
    env = kh.manifest_env(kh.proxy_container(kh.one(kh.helm_render(VALUE_SETS["aks-native"]), "DaemonSet")))
    assert env["PROXY_PORT"] == "19100,19182"


def test_a_rendered_port_list_finds_the_exporter_on_its_second_port() -> None:
    """The list as the chart writes it is what the binary reads: with nothing on the first port and
    the exporter on the second, /ready names the second and /metrics passes through."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        absent = free.getsockname()[1]
    with kh.FakeExporter() as exporter:
        env = kh.manifest_env(
            kh.proxy_container(kh.one(kh.helm_render({"proxy": {"port": [absent, exporter.port]}}), "DaemonSet"))
        )
        assert env["PROXY_PORT"] == f"{absent},{exporter.port}"
        literal = {k: v for k, v in env.items() if isinstance(v, str)}
        with kh.run_proxy({**literal, "PROXY_HOSTIP": "127.0.0.1", "PROXY_LISTEN": "127.0.0.1:0"}) as proxy:
            status, body = proxy.get("/ready")
            assert status == 200 and f"127.0.0.1:{exporter.port}".encode() in body, (status, body)
            status, body = proxy.get("/metrics")
            assert status == 200 and b"windows_cpu_time_total" in body, (status, body[:200])


def test_every_proxy_value_reaches_its_variable() -> None:
    """Each key of the `proxy:` block ends up as the right variable with the exact value,
    numbers printed as the binary parses them (no 1e+06)."""
    container = kh.proxy_container(kh.one(kh.helm_render(VALUE_SETS["everything"]), "DaemonSet"))
    env = kh.manifest_env(container)
    assert env == {
        "PROXY_HOSTIP": {"fieldRef": {"fieldPath": "status.hostIP"}},
        "PROXY_PORT": "9200",
        "PROXY_LISTEN": "[::]:9101",
        "PROXY_SCRAPE_TIMEOUT_SECONDS": "15",
        "PROXY_TIMEOUT_MARGIN_SECONDS": "0.25",
        "PROXY_CONNECT_TIMEOUT_SECONDS": "1.5",
        "PROXY_MAX_INFLIGHT": "4",
        "PROXY_COALESCE": "true",
        "PROXY_COALESCE_MAX_BUFFER_BYTES": "4194304",
        "PROXY_METRIC_KEEP": "windows_.+",
        "PROXY_METRIC_DROP": "windows_service_.+",
        "PROXY_SERIES_DROP": '{__name__=~"windows_process_.+",process!="kubelet"}; windows_cpu_time_total{mode="idle"}',
        "PROXY_MAX_SERIES": "1000000",
        "PROXY_MAX_CONNECTIONS": "1000000",
        "PROXY_HEADER_READ_TIMEOUT_SECONDS": "3",
        "PROXY_IDLE_TIMEOUT_SECONDS": "60",
        "PROXY_MAX_HEADER_BYTES": "32768",
        "PROXY_SHUTDOWN_GRACE_SECONDS": "25",
        "PROXY_READY_MAX_AGE_SECONDS": "45",
        "PROXY_LOG_FORMAT": "json",
        "RUST_LOG": "windows_exporter_proxy=debug",
    }
    assert container["ports"] == [{"name": "metrics", "containerPort": 9101, "protocol": "TCP"}]
    assert container["image"] == "registry.example.com:5000/team/wep:0.1.0-ltsc2022@sha256:" + "ab" * 32


def test_every_values_key_is_in_the_schema() -> None:
    """values.yaml and values.schema.json describe the same keys (additionalProperties is false)."""
    with helm.Chart.load(kh.CHART) as chart:
        values, schema = chart.values, chart.schema

    def walk(value: dict, node: dict, path: str) -> None:
        props = node.get("properties", {})
        for key, sub in value.items():
            assert key in props or isinstance(node.get("additionalProperties"), dict), f"{path}{key} not in the schema"
            if isinstance(sub, dict) and key in props and props[key].get("properties"):
                walk(sub, props[key], f"{path}{key}.")

    assert schema and schema.get("additionalProperties") is False
    walk(values, schema, "")
    chart_proxy_keys = set(schema["properties"]["proxy"]["properties"])
    assert len(chart_proxy_keys) == 19, chart_proxy_keys


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"listenPort": 0}, "at '/listenPort': minimum: got 0, want 1"),
        ({"listenPort": "9100"}, "at '/listenPort': got string, want integer"),
        ({"proxy": {"port": 65536}}, "at '/proxy/port': maximum"),
        ({"proxy": {"port": "abc"}}, "at '/proxy/port': got string, want integer"),
        ({"proxy": {"port": []}}, "at '/proxy/port': minItems"),
        ({"proxy": {"port": [19182, 9182, 19182]}}, "at '/proxy/port': items at 0 and 2 are equal"),
        ({"proxy": {"port": [19100, 0]}}, "at '/proxy/port/1': minimum: got 0, want 1"),
        ({"proxy": {"port": ["19100,9182"]}}, "at '/proxy/port/0': got string, want integer"),
        ({"proxy": {"maxInflight": 0}}, "at '/proxy/maxInflight': minimum"),
        ({"proxy": {"maxHeaderBytes": 4096}}, "at '/proxy/maxHeaderBytes': minimum: got 4,096, want 8,192"),
        ({"proxy": {"scrapeTimeoutSeconds": 0}}, "at '/proxy/scrapeTimeoutSeconds'"),
        ({"proxy": {"logFormat": "xml"}}, "at '/proxy/logFormat'"),
        ({"proxy": {"hostIP": "10.0.0.1"}}, "at '/proxy': additional properties 'hostIP' not allowed"),
        ({"bogus": True}, "at '': additional properties 'bogus' not allowed"),
        ({"nodeSelector": {"kubernetes.io/os": "linux"}}, "value must be 'windows'"),
        ({"image": {"digest": "latest"}}, "at '/image/digest'"),
        ({"podLabels": {"release": 1}}, "at '/podLabels/release': got number, want string"),
        ({"serviceMonitor": {"interval": "30 seconds"}}, "at '/serviceMonitor/interval'"),
        ({"updateStrategy": {"type": "Recreate"}}, "at '/updateStrategy/type'"),
        ({"collectors": {"fast": ["cpu", "Logical_Disk"]}}, "at '/collectors/fast/1'"),
        ({"collectors": {"slow": ["process", "process"]}}, "at '/collectors/slow': items at 0 and 1 are equal"),
        ({"collectors": {"allow": "cpu,os"}}, "at '/collectors/allow': got string, want array"),
        ({"serviceMonitor": {"sampleLimit": -1}}, "at '/serviceMonitor/sampleLimit': minimum"),
        ({"podMonitor": {"slowInterval": ""}}, "at '/podMonitor/slowInterval'"),
    ],
)
def test_schema_rejects_bad_values_with_a_clear_message(values: dict, message: str) -> None:
    with helm.Chart.load(kh.CHART) as chart:
        with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
            chart.render(values, name=kh.RELEASE, namespace="monitoring")
    report = helm.lint(kh.CHART, values, strict=True)
    assert any(message in error for error in report["errors"]), report


SLOW_PATH = {"collectors": {"fast": ["cpu", "logical_disk", "os"], "slow": ["process", "service"]}}


def test_collectors_reach_their_variables() -> None:
    values = {"collectors": {**SLOW_PATH["collectors"], "allow": ["cpu", "logical_disk", "os", "memory", "process", "service"]}}
    env = kh.manifest_env(kh.proxy_container(kh.one(kh.helm_render(values), "DaemonSet")))
    assert env["PROXY_COLLECT"] == "cpu,logical_disk,os"
    assert env["PROXY_SLOW_COLLECT"] == "process,service"
    assert env["PROXY_COLLECT_ALLOW"] == "cpu,logical_disk,os,memory,process,service"


def test_aks_native_values_move_process_and_service_to_the_slow_path() -> None:
    objects = kh.helm_render({**VALUE_SETS["aks-native"], "serviceMonitor": {"enabled": True}})
    env = kh.manifest_env(kh.proxy_container(kh.one(objects, "DaemonSet")))
    assert env["PROXY_SLOW_COLLECT"] == "process,service" and "PROXY_COLLECT" not in env, env
    assert [e["path"] for e in kh.one(objects, "ServiceMonitor")["spec"]["endpoints"]][-1] == "/metrics/slow"


@pytest.mark.parametrize("slow", [False, True])
def test_monitors_get_the_slow_endpoint_and_the_limits(slow: bool) -> None:
    values = {**MONITORS_ON, **(SLOW_PATH if slow else {})}
    objects = kh.helm_render(values)
    for kind, key in (("ServiceMonitor", "endpoints"), ("PodMonitor", "podMetricsEndpoints")):
        monitor = kh.one(objects, kind)
        kh.validate(monitor)
        assert (monitor["spec"]["sampleLimit"], monitor["spec"]["labelLimit"]) == (50000, 30)
        endpoints = monitor["spec"][key]
        paths = [e["path"] for e in endpoints]
        assert paths == ["/metrics", "/proxy/metrics", *(["/metrics/slow"] if slow else [])], paths
        for endpoint in endpoints[:2]:
            assert "interval" not in endpoint and "scrapeTimeout" not in endpoint
        if slow:
            assert (endpoints[2]["interval"], endpoints[2]["scrapeTimeout"]) == ("120s", "60s")
            # The same relabelling: metrics_path tells the three targets apart.
            assert endpoints[2]["relabelings"] == endpoints[0]["relabelings"]


def test_a_sample_limit_of_zero_renders_no_limit() -> None:
    monitor = kh.one(kh.helm_render({"serviceMonitor": {"enabled": True, "sampleLimit": 0, "labelLimit": 0}}),
                     "ServiceMonitor")
    assert "sampleLimit" not in monitor["spec"] and "labelLimit" not in monitor["spec"]


@pytest.mark.parametrize(
    ("collectors", "message"),
    [
        ({"fast": ["cpu", "process"], "slow": ["process"]}, "process is in both collectors.fast and collectors.slow"),
        ({"fast": ["cpu", "os"], "allow": ["cpu"]}, "collectors.allow leaves out os"),
        ({"slow": ["process"], "allow": ["cpu"]}, "collectors.allow leaves out process"),
        ({"slow": ["process"], "allow": ["process"]}, "collectors.allow names only collectors.slow collectors"),
    ],
)
def test_contradictory_collectors_fail_the_render(collectors: dict, message: str) -> None:
    with helm.Chart.load(kh.CHART) as chart:
        with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
            chart.render({"collectors": collectors}, name=kh.RELEASE)


def test_grace_not_below_termination_grace_fails_render() -> None:
    with helm.Chart.load(kh.CHART) as chart:
        with pytest.raises(
            helm.HelmRenderError,
            match=re.escape("proxy.shutdownGraceSeconds (30) must be below terminationGracePeriodSeconds (30)"),
        ):
            chart.render({"proxy": {"shutdownGraceSeconds": 30}}, name=kh.RELEASE)


def test_service_monitor_needs_the_service() -> None:
    with helm.Chart.load(kh.CHART) as chart:
        with pytest.raises(helm.HelmRenderError, match="serviceMonitor.enabled needs service.enabled"):
            chart.render({"serviceMonitor": {"enabled": True}, "service": {"enabled": False}}, name=kh.RELEASE)


def test_monitors_relabel_to_node_name_and_set_job() -> None:
    objects = kh.helm_render(VALUE_SETS["monitors"])
    for kind in ("ServiceMonitor", "PodMonitor"):
        monitor = kh.one(objects, kind)
        kh.check_monitor_relabelling(monitor)
        endpoints = monitor["spec"]["endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"]
        assert {"action": "replace", "targetLabel": "job", "replacement": "windows-nodes"} in endpoints[0]["relabelings"]
    pod_monitor = kh.one(objects, "PodMonitor")
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["relabelings"][-1]["targetLabel"] == "cluster"
    service_monitor = kh.one(objects, "ServiceMonitor")
    assert service_monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_original_labels_are_one_value_away() -> None:
    objects = kh.helm_render({"podLabels": ORIGINAL_LABELS})
    daemonset, service = kh.one(objects, "DaemonSet"), kh.one(objects, "Service")
    assert ORIGINAL_LABELS.items() <= daemonset["spec"]["template"]["metadata"]["labels"].items()
    assert not set(ORIGINAL_LABELS) & set(service["metadata"]["labels"])


def test_readiness_probe_can_be_disabled() -> None:
    container = kh.proxy_container(kh.one(kh.helm_render({"probes": {"readiness": {"enabled": False}}}), "DaemonSet"))
    assert "readinessProbe" not in container and container["livenessProbe"]["httpGet"]["path"] == "/health"


@pytest.mark.parametrize("name", ["defaults", "monitors"])
def test_notes_tell_how_to_check_metrics(name: str) -> None:
    with helm.Chart.load(kh.CHART) as chart:
        notes = chart.render(VALUE_SETS[name], name=kh.RELEASE, namespace="monitoring")[
            f"{chart.name}/templates/NOTES.txt"
        ]
    assert "kubectl -n monitoring port-forward" in notes
    assert "curl -s http://127.0.0.1:9100/metrics" in notes
    assert "rollout status daemonset/windows-exporter-proxy" in notes
    if name == "monitors":
        assert 'up{job="windows-nodes",metrics_path="/metrics"}' in notes
    else:
        assert "No ServiceMonitor or PodMonitor was created" in notes


def test_package_and_render_the_archive(tmp_path: Path) -> None:
    archive = Path(helm.package(kh.CHART, destination=tmp_path))
    assert archive.name == "windows-exporter-proxy-0.1.0.tgz" and archive.exists()
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    for member in ("Chart.yaml", "values.yaml", "values.schema.json", "templates/daemonset.yaml", "templates/NOTES.txt"):
        assert f"windows-exporter-proxy/{member}" in names, sorted(names)
    assert helm.digest(archive).startswith("sha256:")
    with helm.Chart.load(archive) as packaged:
        assert packaged.version == "0.1.0" and packaged.metadata["appVersion"] == "0.1.0"
        rendered = packaged.render({}, name=kh.RELEASE, namespace="monitoring")
    from_dir = kh.render_base.render_chart({}, namespace="monitoring")
    assert {k.split("/templates/")[1]: v for k, v in rendered.items()} == from_dir
