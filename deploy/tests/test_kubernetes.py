"""Kustomize manifests (deploy/kubernetes): render, validate, contract with the binary and image,
relabelling checked in a real Prometheus, and the plain kubernetes_sd scrape jobs (both paths,
the monitors' labels, the commented-out HTTPS and credential settings)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.parse
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import yaml

import helpers
import kubehelpers as kh

BUILDS = [d for d in kh.kustomizations() if not kh.is_component(d)]
COMPONENTS = [d for d in kh.kustomizations() if kh.is_component(d)]
SCRAPE_CONFIG = kh.KUBERNETES / "prometheus" / "scrape-config.yaml"


def rel(path: Path) -> str:
    return str(path.relative_to(kh.REPO))


def test_there_is_something_to_test() -> None:
    names = {rel(d) for d in BUILDS}
    assert {
        "deploy/kubernetes/base",
        "deploy/kubernetes/overlays/servicemonitor",
        "deploy/kubernetes/overlays/podmonitor",
        "deploy/kubernetes/overlays/original-labels",
        "deploy/kubernetes/overlays/example",
        "deploy/kubernetes/overlays/secure",
        "deploy/kubernetes/overlays/https-podmonitor",
        "deploy/kubernetes/overlays/slow-path",
    } <= names, names
    assert {rel(d) for d in COMPONENTS} == {
        "deploy/kubernetes/components/servicemonitor",
        "deploy/kubernetes/components/podmonitor",
        "deploy/kubernetes/components/tls",
        "deploy/kubernetes/components/cert-manager",
        "deploy/kubernetes/components/tokenreview",
        "deploy/kubernetes/components/networkpolicy",
        "deploy/kubernetes/components/prometheusrule",
        "deploy/kubernetes/components/grafana-dashboards",
        "deploy/kubernetes/components/filter",
        "deploy/kubernetes/components/slow-path",
    }


def test_yamllint_clean_over_deploy() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "--format", "parsable", "deploy"],
        cwd=kh.REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_files_match_the_chart() -> None:
    """deploy/kubernetes/base and the components are the chart's output; any drift fails."""
    result = subprocess.run(
        [str(kh.DEPLOY / "render-base"), "--check"],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, f"run deploy/render-base to regenerate:\n{result.stdout}{result.stderr}"
    for path in kh.render_base.expected_files():
        assert path.read_text().startswith("# GENERATED FILE - do not edit."), rel(path)


@pytest.mark.parametrize("directory", BUILDS, ids=rel)
def test_kustomization_renders_and_validates_strictly(directory: Path) -> None:
    objects = kh.kustomize(directory)
    kinds = sorted(o["kind"] for o in objects)
    assert {"ServiceAccount", "Service", "DaemonSet"} <= set(kinds), kinds
    for obj in objects:
        kh.validate(obj)
    account = kh.one(objects, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    daemonset = kh.one(objects, "DaemonSet")
    assert daemonset["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert kh.proxy_container(daemonset)["image"] == "ghcr.io/windows-exporter-proxy/windows-exporter-proxy:0.1.0"


def test_every_component_is_used_by_an_overlay() -> None:
    used = set()
    for directory in BUILDS:
        spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
        used |= {(directory / c).resolve() for c in spec.get("components", [])}
    assert {c.resolve() for c in COMPONENTS} <= used, "a component no overlay renders is untested"


@pytest.mark.parametrize("directory", BUILDS, ids=rel)
def test_daemonset_contract_static(directory: Path) -> None:
    daemonset = kh.one(kh.kustomize(directory), "DaemonSet")
    kh.check_daemonset_static(daemonset)
    kh.check_pod_security_restricted(daemonset)
    spec = daemonset["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("directory", BUILDS, ids=rel)
def test_daemonset_contract_with_binary(directory: Path) -> None:
    kh.check_daemonset_against_binary(kh.one(kh.kustomize(directory), "DaemonSet"))


def test_daemonset_contract_with_dockerfile() -> None:
    kh.check_daemonset_against_dockerfile(kh.one(kh.kustomize(kh.KUBERNETES / "base"), "DaemonSet"))


def test_service_selects_the_pods_and_keeps_not_ready_ones() -> None:
    objects = kh.kustomize(kh.KUBERNETES / "base")
    service, daemonset = kh.one(objects, "Service"), kh.one(objects, "DaemonSet")
    pod_labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["clusterIP"] == "None"
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics" and port["targetPort"] == "metrics"


@pytest.mark.parametrize("overlay", ["servicemonitor", "podmonitor"])
def test_monitors_select_the_pods_and_relabel_to_node_name(overlay: str) -> None:
    objects = kh.kustomize(kh.KUBERNETES / "overlays" / overlay)
    kind = {"servicemonitor": "ServiceMonitor", "podmonitor": "PodMonitor"}[overlay]
    monitor = kh.one(objects, kind)
    kh.check_monitor_relabelling(monitor)
    selected = kh.one(objects, "Service" if kind == "ServiceMonitor" else "DaemonSet")
    labels = selected["metadata"]["labels"] if kind == "ServiceMonitor" else selected["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_example_overlay_adds_to_the_base() -> None:
    objects = kh.kustomize(kh.KUBERNETES / "overlays" / "example")
    assert {o["metadata"].get("namespace") for o in objects} == {"monitoring"}
    tolerations = kh.one(objects, "DaemonSet")["spec"]["template"]["spec"]["tolerations"]
    base = kh.one(kh.kustomize(kh.KUBERNETES / "base"), "DaemonSet")["spec"]["template"]["spec"]["tolerations"]
    assert tolerations[-1]["key"] == "workload" and len(tolerations) == len(base) + 1
    assert tolerations[:-1] == base
    assert kh.one(objects, "PodMonitor")["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_original_labels_overlay_labels_pods_only() -> None:
    """The node-exporter Service selects pods by these labels; our own Service must not carry them,
    or the node-exporter ServiceMonitor would find every Windows node twice."""
    objects = kh.kustomize(kh.KUBERNETES / "overlays" / "original-labels")
    daemonset, service = kh.one(objects, "DaemonSet"), kh.one(objects, "Service")
    original = {"app": "prometheus-node-exporter", "release": "collection"}
    assert original.items() <= daemonset["spec"]["template"]["metadata"]["labels"].items()
    assert not set(original) & set(service["metadata"]["labels"])
    assert not set(original) & set(daemonset["spec"]["selector"]["matchLabels"]), "selector is immutable: keep it"
    assert kh.proxy_container(daemonset)["ports"][0]["containerPort"] == 9100, "node-exporter's Service targets 9100"


def test_original_labels_overlay_equals_the_chart_with_pod_labels() -> None:
    """The Helm way (one value) and the kustomize overlay give the same DaemonSet."""
    from_overlay = kh.one(kh.kustomize(kh.KUBERNETES / "overlays" / "original-labels"), "DaemonSet")
    from_chart = kh.one(kh.helm_render({"podLabels": {"app": "prometheus-node-exporter", "release": "collection"}}), "DaemonSet")
    assert json.loads(json.dumps(from_overlay)) == json.loads(json.dumps(from_chart))


# ---------------------------------------------------------------------------------------------
# The plain Prometheus scrape jobs, and the relabelling run through a real Prometheus.

RULE_FILES = sorted((kh.DEPLOY / "prometheus" / "rules").glob("*.yml"))
PATHS = ["/metrics", "/proxy/metrics"]
# The HTTPS and credential settings scrape-config.yaml carries commented out, by the proxy mode
# that needs them (deploy/README.md, "Kubernetes: HTTPS and authenticated scrapes").
HTTPS_SETTINGS = {"scheme", "tls_config", "ca_file", "server_name"}
SECURE_MODES = {
    "https": HTTPS_SETTINGS,
    "client-cert": HTTPS_SETTINGS | {"cert_file", "key_file"},
    "tokenreview": HTTPS_SETTINGS | {"authorization", "credentials_file"},
    "basic": HTTPS_SETTINGS | {"basic_auth", "username", "password_file"},
}
# A commented-out setting of the first job: `    # key: value`, or `    #   key: value` inside
# tls_config and the credentials. Explanations are trailing comments or prose that never starts
# with `word:`, so only settings match.
COMMENTED_SETTING = re.compile(r"^(    )# ((?:  )?([a-z_]+):.*)$", re.M)


def servicemonitor() -> dict:
    return kh.one(kh.kustomize(kh.KUBERNETES / "overlays" / "servicemonitor"), "ServiceMonitor")


def servicemonitor_jobs(sd_file: Path) -> list[dict]:
    """The chart ServiceMonitor's endpoints as Prometheus jobs, named as the operator names them."""
    monitor = servicemonitor()
    return [
        {"job_name": f"serviceMonitor/monitoring/{monitor['metadata']['name']}/{index}",
         "metrics_path": endpoint["path"], "scheme": endpoint["scheme"],
         "file_sd_configs": [{"files": [str(sd_file)]}],
         "relabel_configs": [kh.operator_to_prometheus_relabel(r) for r in endpoint["relabelings"]]}
        for index, endpoint in enumerate(monitor["spec"]["endpoints"])
    ]


def uncommented(text: str, settings: set[str]) -> str:
    return COMMENTED_SETTING.sub(lambda m: m[1] + m[2] if m[3] in settings else m[0], text)


def plain_config(sd_file: Path, settings: set[str] = frozenset(), extra_jobs: list[dict] = (),
                 rule_files: list[Path] = ()) -> str:
    """A prometheus.yml around scrape-config.yaml's text with only what this machine needs changed:
    kubernetes_sd (Debian's Prometheus is built without it) swapped for a file_sd carrying the same
    __meta_kubernetes_* labels, 1 s intervals, the commented-out `settings` uncommented. Prometheus
    parses the rest as shipped, the YAML merge key that makes the second job included."""
    text = uncommented(SCRAPE_CONFIG.read_text(), settings)
    text, swapped = re.subn(r"^    kubernetes_sd_configs:\n(?:      .*\n)+",
                            f"    file_sd_configs:\n      - files: [{json.dumps(str(sd_file))}]\n", text, flags=re.M)
    assert swapped == 1, "the first job's kubernetes_sd_configs block is not where the test expects it"
    for key, shipped in (("scrape_interval", "30s"), ("scrape_timeout", "10s")):
        text, replaced = re.subn(rf"^    {key}: {shipped}$", f"    {key}: 1s", text, flags=re.M)
        assert replaced == 1, key
    head = yaml.safe_dump({"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                           "rule_files": [str(p) for p in rule_files]}, sort_keys=False)
    jobs = "".join("  " + line + "\n" for line in yaml.safe_dump(list(extra_jobs)).splitlines()) if extra_jobs else ""
    return head + text + jobs


@contextmanager
def running_prometheus(tmp_path: Path, config_text: str) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """Debian's Prometheus on 127.0.0.1 with this configuration, promtool-checked first (files
    included); yields (address, process, log) once it is ready."""
    promtool, prometheus_binary = helpers.tool("promtool"), helpers.tool("prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(config_text)
    check = helpers.run([promtool, "check", "config", str(config)], timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    web = f"127.0.0.1:{helpers.free_port()}"
    log = tmp_path / "prometheus.log"
    with open(log, "w") as log_file:
        prometheus = subprocess.Popen(
            [prometheus_binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address={web}"],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        helpers.wait_for("Prometheus ready", lambda: helpers.get_text(f"http://{web}/-/ready"), [prometheus], log)
        yield web, prometheus, log
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=kh.WAIT_SECONDS)


def query(web: str, promql: str) -> list[dict]:
    return helpers.get_json(f"http://{web}/api/v1/query?query={urllib.parse.quote(promql)}")["data"]["result"]


def scraped_targets(web: str, count: int, prometheus: subprocess.Popen, log: Path) -> list[dict]:
    """The active targets once `count` of them have been scraped at least once."""
    def scraped():
        active = helpers.get_json(f"http://{web}/api/v1/targets?state=active")["data"]["activeTargets"]
        done = [t for t in active if t["health"] != "unknown"]
        return done if len(done) == count else None

    return helpers.wait_for(f"{count} targets scraped", scraped, [prometheus], log)


def test_scrape_config_scrapes_both_paths_with_the_monitors_relabelling() -> None:
    """One job per path, as the ServiceMonitor has one endpoint per path; the two differ only in
    name and path; pod role; every relabeling of the monitor's endpoints is one of the jobs' rules."""
    jobs = yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"]
    endpoints = servicemonitor()["spec"]["endpoints"]
    assert [j["metrics_path"] for j in jobs] == [e["path"] for e in endpoints] == PATHS
    first, second = jobs
    assert first["job_name"] == "windows-exporter-proxy" and second["job_name"] != first["job_name"]
    same = lambda job: {k: v for k, v in job.items() if k not in ("job_name", "metrics_path")}  # noqa: E731
    assert same(first) == same(second), "the jobs differ in name and path only"
    (sd,) = first["kubernetes_sd_configs"]
    assert sd["role"] == "pod", "pod role lists NotReady pods too, so a down exporter shows up == 0"
    for selector in sd.get("selectors", []):
        assert selector["role"] == "pod"
    rules = [{"action": "replace", **r} for r in first["relabel_configs"]]
    for target in ("instance", "node"):
        assert {"action": "replace", "source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": target} in rules
    for endpoint in endpoints:
        for relabeling in endpoint["relabelings"]:
            assert kh.operator_to_prometheus_relabel(relabeling) in rules, f"the plain jobs lack the monitor's {relabeling}"
    assert not any(r.get("source_labels") == ["__meta_kubernetes_pod_ready"] for r in rules), "must not drop NotReady pods"


def test_the_slow_path_component_copies_the_secured_metrics_endpoint(tmp_path: Path) -> None:
    """Listed after tls and tokenreview, the slow-path component's /metrics/slow endpoint is the
    /metrics endpoint (https, its TLS settings, its credentials) with its own path and timing."""
    components = [os.path.relpath(kh.KUBERNETES / "components" / c, tmp_path)
                  for c in ("servicemonitor", "podmonitor", "tls", "tokenreview", "slow-path")]
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(kh.KUBERNETES / "base", tmp_path)], "components": components}))
    result = subprocess.run(["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    objects = kh.docs_from_text(result.stdout)
    for kind, key in (("ServiceMonitor", "endpoints"), ("PodMonitor", "podMetricsEndpoints")):
        monitor = kh.one(objects, kind)
        kh.validate(monitor)
        first, slow = monitor["spec"][key][0], monitor["spec"][key][-1]
        assert [e["path"] for e in monitor["spec"][key]] == ["/metrics", "/proxy/metrics", "/metrics/slow"]
        assert first["scheme"] == "https" and "tlsConfig" in first
        assert slow == {**first, "path": "/metrics/slow", "interval": "120s", "scrapeTimeout": "60s"}
    env = kh.manifest_env(kh.proxy_container(kh.one(objects, "DaemonSet")))
    assert env["PROXY_SLOW_COLLECT"] == "process,service" and env["PROXY_AUTH"] == "tokenreview"


def test_the_commented_out_slow_job_is_the_monitors_slow_endpoint() -> None:
    """Uncommented, the plain config's /metrics/slow job is the /metrics job with another name,
    path, interval and timeout: those of the monitors' /metrics/slow endpoint."""
    text = SCRAPE_CONFIG.read_text()
    block = re.search(r"^  # - <<: \*windows-exporter-proxy\n(?:  #   .*\n)+", text, re.M)
    assert block, "the commented-out /metrics/slow job"
    uncommented = text.replace(block.group(0), re.sub(r"^  # ", "  ", block.group(0), flags=re.M))
    jobs = yaml.safe_load(uncommented)["scrape_configs"]
    assert [j["metrics_path"] for j in jobs] == ["/metrics", "/metrics/slow", "/proxy/metrics"]
    first, slow = jobs[0], jobs[1]
    changed = ("job_name", "metrics_path", "scrape_interval", "scrape_timeout")
    assert {k: v for k, v in slow.items() if k not in changed} == {k: v for k, v in first.items() if k not in changed}
    monitor = kh.one(kh.helm_render({"serviceMonitor": {"enabled": True}, "collectors": {"slow": ["process", "service"]}}),
                     "ServiceMonitor")
    endpoint = monitor["spec"]["endpoints"][2]
    assert endpoint["path"] == slow["metrics_path"] == "/metrics/slow"
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == (slow["scrape_interval"], slow["scrape_timeout"])
    assert slow["job_name"] == "windows-exporter-proxy-slow"
    assert (first["sample_limit"], first["label_limit"]) == (monitor["spec"]["sampleLimit"], monitor["spec"]["labelLimit"])


def _pod_target(address: str, node: str, port_name: str = "metrics", phase: str = "Running") -> dict:
    """A file_sd group standing in for what kubernetes_sd role=pod discovers for one pod."""
    return {
        "targets": [address],
        "labels": {
            "__meta_kubernetes_namespace": "monitoring",
            "__meta_kubernetes_pod_name": f"windows-exporter-proxy-{node[-4:]}",
            "__meta_kubernetes_pod_node_name": node,
            "__meta_kubernetes_pod_ip": "10.240.0.99",
            "__meta_kubernetes_pod_phase": phase,
            "__meta_kubernetes_pod_ready": "false",
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": "windows-exporter-proxy",
            "__meta_kubernetes_pod_container_port_name": port_name,
        },
    }


def test_relabelling_in_a_real_prometheus(tmp_path: Path) -> None:
    """Prometheus scrapes the real proxy (in front of a fake windows_exporter) through the plain
    scrape jobs and through the chart ServiceMonitor's two endpoints: both give the same series,
    per path, with instance and node = node name (the plain jobs add namespace and pod, which the
    operator adds on its own). The shipped rules run on the plain jobs' series: the proxy-down
    alert selects only the /proxy/metrics target, the exporter-unreachable alert reads the proxy's
    own series.

    Debian's Prometheus is built without kubernetes_sd, so a file_sd carrying the same
    __meta_kubernetes_* labels stands in for the discovery; the relabelling is Prometheus' own.
    """
    daemonset = kh.one(kh.kustomize(kh.KUBERNETES / "base"), "DaemonSet")
    env = {k: v for k, v in kh.manifest_env(kh.proxy_container(daemonset)).items() if isinstance(v, str)}
    env |= {"PROXY_HOSTIP": "127.0.0.1", "PROXY_LISTEN": "127.0.0.1:0"}
    with kh.FakeExporter() as exporter, kh.run_proxy({**env, "PROXY_PORT": str(exporter.port)}) as proxy, \
            kh.run_proxy({**env, "PROXY_PORT": str(kh.closed_port())}) as proxy_without_exporter:
        address = f"127.0.0.1:{proxy.port}"
        plain_sd, monitor_sd = tmp_path / "plain.json", tmp_path / "monitor.json"
        plain_sd.write_text(json.dumps([
            _pod_target(address, "akswin000000"),
            _pod_target(address, "akswin000000", port_name="other"),  # dropped: not the metrics port
            _pod_target("127.0.0.1:1", "akswin000009", phase="Succeeded"),  # dropped: finished pod
            _pod_target(f"127.0.0.1:{kh.closed_port()}", "akswin000002"),  # the pod does not answer
            _pod_target(f"127.0.0.1:{proxy_without_exporter.port}", "akswin000003"),  # its exporter does not
        ]))
        monitor_sd.write_text(json.dumps([_pod_target(address, "akswin000001")]))
        config = plain_config(plain_sd, extra_jobs=servicemonitor_jobs(monitor_sd), rule_files=RULE_FILES)
        with running_prometheus(tmp_path, config) as (web, prometheus, log):
            # Three pods through the plain jobs, one through the ServiceMonitor: one target per path each.
            targets = scraped_targets(web, 3 * 2 + 2, prometheus, log)
            assert {t["scrapePool"] for t in targets} == {
                "windows-exporter-proxy", "windows-exporter-proxy-self",
                "serviceMonitor/monitoring/windows-exporter-proxy/0", "serviceMonitor/monitoring/windows-exporter-proxy/1"}
            up = {(r["metric"]["instance"], r["metric"]["metrics_path"]): r for r in query(web, "up")}
            assert set(up) == {(n, p) for n in ("akswin000000", "akswin000001", "akswin000002", "akswin000003") for p in PATHS}

            for path in PATHS:
                plain, monitor = up[("akswin000000", path)]["metric"], up[("akswin000001", path)]["metric"]
                assert up[("akswin000000", path)]["value"][1] == up[("akswin000001", path)]["value"][1] == "1"
                assert plain == {"__name__": "up", "job": "windows-exporter-proxy", "instance": "akswin000000",
                                 "node": "akswin000000", "namespace": "monitoring", "pod": "windows-exporter-proxy-0000",
                                 "metrics_path": path}
                as_monitor = {k: v.replace("akswin000000", "akswin000001") for k, v in plain.items() if k not in ("namespace", "pod")}
                assert as_monitor == monitor, "the plain jobs and the ServiceMonitor label a path's target alike"
            assert up[("akswin000002", "/proxy/metrics")]["value"][1] == up[("akswin000003", "/metrics")]["value"][1] == "0"
            assert up[("akswin000003", "/proxy/metrics")]["value"][1] == "1"

            dropped = helpers.get_json(f"http://{web}/api/v1/targets?state=dropped")["data"]["droppedTargets"]
            assert len(dropped) == 2 * 2, dropped
            samples = query(web, 'windows_cpu_time_total{instance="akswin000000"}')
            assert samples and {s["metric"]["metrics_path"] for s in samples} == {"/metrics"}, samples
            # The proxy counts a scrape once it has served one: its first /proxy/metrics may predate that.
            samples = helpers.wait_for("the proxy's own series", lambda: query(
                web, 'windows_exporter_proxy_scrapes_total{instance="akswin000000",job="windows-exporter-proxy"}'), [prometheus], log)
            assert {s["metric"]["metrics_path"] for s in samples} == {"/proxy/metrics"}, samples

            # Every metrics_path the rules select on is a path the plain jobs scrape.
            selected = {m for p in RULE_FILES for m in re.findall(r'metrics_path\s*=\s*"([^"]*)"', p.read_text())}
            assert selected and selected <= set(PATHS), selected

            def alerts():
                found = helpers.get_json(f"http://{web}/api/v1/alerts")["data"]["alerts"]
                by_name = {}
                for alert in found:
                    by_name.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
                wanted = ("WindowsExporterProxyTargetDown", "WindowsExporterProxyExporterUnreachable")
                return by_name if all(name in by_name for name in wanted) else None

            fired = helpers.wait_for("the proxy alerts on the plain jobs' series (pending)", alerts, [prometheus], log)
            assert fired["WindowsExporterProxyTargetDown"] == [{
                "alertname": "WindowsExporterProxyTargetDown", "severity": "warning", "job": "windows-exporter-proxy",
                "instance": "akswin000002", "node": "akswin000002", "namespace": "monitoring",
                "pod": "windows-exporter-proxy-0002", "metrics_path": "/proxy/metrics",
            }], "one alert for the pod that does not answer, from its /proxy/metrics target only"
            assert fired["WindowsExporterProxyExporterUnreachable"] == [{
                "alertname": "WindowsExporterProxyExporterUnreachable", "severity": "warning",
                "instance": "akswin000003", "node": "akswin000003", "namespace": "monitoring",
            }]


def test_scrape_config_carries_the_https_and_credential_settings_commented_out() -> None:
    """Each setting a mode needs is there once, commented out; uncommented, both jobs get it, and
    the server name is one the chart's Certificate holds."""
    text = SCRAPE_CONFIG.read_text()
    commented = [m[3] for m in COMMENTED_SETTING.finditer(text)]
    assert sorted(commented) == sorted(set().union(*SECURE_MODES.values())), commented
    shipped = yaml.safe_load(text)["scrape_configs"]
    assert not {"scheme", "tls_config", "authorization", "basic_auth"} & set(shipped[0]), "shipped commented out"
    for job in yaml.safe_load(uncommented(text, set(commented)))["scrape_configs"]:
        assert job["scheme"] == "https"
        assert set(job["tls_config"]) == {"ca_file", "server_name", "cert_file", "key_file"}
        assert job["authorization"] == {"credentials_file": "/var/run/secrets/kubernetes.io/serviceaccount/token"}
        assert set(job["basic_auth"]) == {"username", "password_file"}
        server_name = job["tls_config"]["server_name"]
    objects = kh.helm_render({"tls": {"enabled": True, "certManager": {"enabled": True, "issuerRef": {"name": "cluster-ca"}}}})
    assert server_name in kh.one(objects, "Certificate")["spec"]["dnsNames"]


# mode -> what Prometheus' targets API says for both jobs: up, or the proxy's status code. The
# proxy takes client-cert, basic and tokenreview; tokenreview's API server does not answer here,
# so a scrape that sent a token gets 503 (the review itself is tests/prometheus_auth.rs' part).
SECURE_SCRAPE = {"https": "401", "client-cert": "up", "basic": "up", "tokenreview": "503"}


@pytest.mark.parametrize("mode", SECURE_SCRAPE)
def test_scrape_config_https_and_credentials_in_a_real_prometheus(mode: str, tmp_path: Path) -> None:
    """The jobs with one mode's settings uncommented (files moved under tmp_path, as a Prometheus
    pod's Secret mounts would hold them) scrape the real proxy over HTTPS, both paths: promtool
    accepts every key, the merged second job gets them too, and the proxy sees what they send."""
    pki = kh.Pki(tmp_path / "pki")
    objects = kh.helm_render({"tls": {"enabled": True, "certManager": {"enabled": True, "issuerRef": {"name": "cluster-ca"}}}})
    serving = pki.issue("proxy", [f"DNS:{n}" for n in kh.one(objects, "Certificate")["spec"]["dnsNames"]], "serverAuth")
    client = pki.issue("prometheus", ["DNS:prometheus"], "clientAuth")
    text = uncommented(SCRAPE_CONFIG.read_text(), SECURE_MODES[mode])
    job = yaml.safe_load(text)["scrape_configs"][0]
    password = "plain-job-secret"
    contents = {"ca_file": pki.ca.read_bytes(), "cert_file": client[0].read_bytes(), "key_file": client[1].read_bytes(),
                "credentials_file": b"a-service-account-token", "password_file": password.encode()}
    files = {}
    for section in ("tls_config", "authorization", "basic_auth"):
        for key, value in (job.get(section) or {}).items():
            if key in contents:
                files[value] = tmp_path / "prometheus-pod" / value.lstrip("/")
                files[value].parent.mkdir(parents=True, exist_ok=True)
                files[value].write_bytes(contents[key])
    htpasswd = helpers.run(["htpasswd", "-nbBC", "10", job.get("basic_auth", {}).get("username", "prometheus"), password])
    assert htpasswd.returncode == 0, htpasswd.stderr
    (tmp_path / "htpasswd").write_text(htpasswd.stdout)
    kube_token = tmp_path / "kube-token"
    kube_token.write_text("the-proxys-own-token")
    env = {"PROXY_HOSTIP": "127.0.0.1", "PROXY_LISTEN": "127.0.0.1:0",
           "PROXY_TLS_CERT_FILE": str(serving[0]), "PROXY_TLS_KEY_FILE": str(serving[1]),
           "PROXY_CLIENT_CA_FILE": str(pki.ca), "PROXY_AUTH": "client-cert,basic,tokenreview",
           "PROXY_BASIC_AUTH_FILE": str(tmp_path / "htpasswd"),
           "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(kh.closed_port()),
           "PROXY_KUBE_TOKEN_FILE": str(kube_token), "PROXY_KUBE_CA_FILE": str(pki.ca)}
    with kh.FakeExporter() as exporter, kh.run_proxy({**env, "PROXY_PORT": str(exporter.port)}, https=True) as proxy:
        sd = tmp_path / "pods.json"
        sd.write_text(json.dumps([_pod_target(f"127.0.0.1:{proxy.port}", "akswin000000")]))
        config = plain_config(sd, SECURE_MODES[mode])
        for shipped, local in files.items():
            assert config.count(f" {shipped}") == 1, shipped
            config = config.replace(f" {shipped}", f" {local}")
        with running_prometheus(tmp_path, config) as (web, prometheus, log):
            targets = scraped_targets(web, 2, prometheus, log)
    by_path = {t["labels"]["metrics_path"]: t for t in targets}
    assert set(by_path) == set(PATHS)
    for path, target in by_path.items():
        assert target["scrapeUrl"].startswith("https://"), target["scrapeUrl"]
        if SECURE_SCRAPE[mode] == "up":
            assert target["health"] == "up", f"{mode} {path}: {target['lastError']}"
        else:
            assert target["health"] == "down" and f"HTTP status {SECURE_SCRAPE[mode]}" in target["lastError"], (
                f"{mode} {path}: {target['health']} {target['lastError']!r}")


# ---------------------------------------------------------------------------------------------
# The contract checks can fail: each broken DaemonSet below must be rejected.


def _broken(mutate) -> dict:
    daemonset = kh.one(kh.kustomize(kh.KUBERNETES / "base"), "DaemonSet")
    mutate(daemonset["spec"]["template"]["spec"], kh.proxy_container(daemonset))
    return daemonset


# case -> (how the DaemonSet is broken, what the check's message must say)
BROKEN_FOR_BINARY = {
    "unknown variable": (lambda pod, c: c["env"].append({"name": "PROXY_PORTT", "value": "9182"}),
                         r"the DaemonSet sets \['PROXY_PORTT'\], which the binary does not read"),
    "port not the listen port": (lambda pod, c: c["ports"][0].update(containerPort=8080),
                                 r"containerPort metrics=8080 but the proxy listens on 0\.0\.0\.0:9100"),
    "bad value": (lambda pod, c: c["env"].append({"name": "PROXY_MAX_INFLIGHT", "value": "many"}),
                  r'exit 64\).*\nPROXY_MAX_INFLIGHT="many" is not valid'),
    "probe path not served": (lambda pod, c: c["livenessProbe"]["httpGet"].update(path="/healthz"),
                              r"liveness path answered 404 .*/healthz.*, not 200 ok"),
    "readiness path not served": (lambda pod, c: c["readinessProbe"]["httpGet"].update(path="/readyz"),
                                  r"readiness path answered 404 .*/readyz.*: not a path the proxy serves"),
    "grace too short": (lambda pod, c: pod.update(terminationGracePeriodSeconds=20),
                        r"terminationGracePeriodSeconds 20 must exceed the drain grace 20"),
}

BROKEN_FOR_POD_SECURITY = {
    "linux-only field": (lambda pod, c: c["securityContext"].update(allowPrivilegeEscalation=False),
                         r"containers\[\*\]\.securityContext\.allowPrivilegeEscalation is set, which the API server rejects"),
    "seccomp on windows": (lambda pod, c: pod["securityContext"].update(seccompProfile={"type": "RuntimeDefault"}),
                           r"spec\.securityContext\.seccompProfile is set, which the API server rejects"),
    "hostprocess": (lambda pod, c: pod["securityContext"]["windowsOptions"].update(hostProcess=True),
                    r"HostProcess breaks Pod Security baseline"),
    "host network": (lambda pod, c: pod.update(hostNetwork=True), r"spec\.hostNetwork breaks Pod Security baseline"),
    "root": (lambda pod, c: (pod["securityContext"].pop("runAsNonRoot"), c["securityContext"].pop("runAsNonRoot")),
             r"restricted requires runAsNonRoot: true"),
    "hostpath": (lambda pod, c: pod.update(volumes=[{"name": "h", "hostPath": {"path": "C:\\"}}]),
                 r"volume h uses \{'hostPath'\}, not allowed by restricted"),
}


@pytest.mark.parametrize("case", BROKEN_FOR_BINARY)
def test_binary_contract_rejects(case: str) -> None:
    mutate, message = BROKEN_FOR_BINARY[case]
    with pytest.raises(AssertionError, match=message):
        kh.check_daemonset_against_binary(_broken(mutate))


@pytest.mark.parametrize("case", BROKEN_FOR_POD_SECURITY)
def test_pod_security_check_rejects(case: str) -> None:
    mutate, message = BROKEN_FOR_POD_SECURITY[case]
    with pytest.raises(AssertionError, match=message):
        kh.check_pod_security_restricted(_broken(mutate))
