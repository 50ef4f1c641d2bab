"""Kustomize manifests (deploy/kubernetes): render, validate, contract with the binary and image,
relabelling checked in a real Prometheus, and the plain kubernetes_sd scrape job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

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
    assert tolerations[-1]["key"] == "workload" and len(tolerations) == 4
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
# The plain Prometheus scrape job, and the relabelling run through a real Prometheus.


def test_scrape_config_is_a_pod_role_job_relabelling_to_node_name() -> None:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "windows-exporter-proxy"
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod", "pod role lists NotReady pods too, so a down exporter shows up == 0"
    for selector in sd.get("selectors", []):
        assert selector["role"] == "pod"
    rules = job["relabel_configs"]
    for target in ("instance", "node"):
        assert {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": target} in rules
    assert not any(r.get("source_labels") == ["__meta_kubernetes_pod_ready"] for r in rules), "must not drop NotReady pods"


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
    scrape job's and the chart ServiceMonitor's relabelling; instance and node are the node name.

    Debian's Prometheus is built without kubernetes_sd, so a file_sd carrying the same
    __meta_kubernetes_* labels stands in for the discovery; the relabelling is Prometheus' own.
    """
    promtool, prometheus_binary = helpers.tool("promtool"), helpers.tool("prometheus")
    scrape_job = yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"][0]
    monitor = kh.one(kh.kustomize(kh.KUBERNETES / "overlays" / "servicemonitor"), "ServiceMonitor")
    monitor_rules = [kh.operator_to_prometheus_relabel(r) for r in monitor["spec"]["endpoints"][0]["relabelings"]]

    daemonset = kh.one(kh.kustomize(kh.KUBERNETES / "base"), "DaemonSet")
    env = {k: v for k, v in kh.manifest_env(kh.proxy_container(daemonset)).items() if isinstance(v, str)}
    with kh.FakeExporter() as exporter, kh.run_proxy(
        {**env, "PROXY_HOSTIP": "127.0.0.1", "PROXY_LISTEN": "127.0.0.1:0", "PROXY_PORT": str(exporter.port)}
    ) as proxy:
        address = f"127.0.0.1:{proxy.port}"
        plain_sd, monitor_sd = tmp_path / "plain.json", tmp_path / "monitor.json"
        plain_sd.write_text(json.dumps([
            _pod_target(address, "akswin000000"),
            _pod_target(address, "akswin000000", port_name="other"),  # dropped: not the metrics port
            _pod_target("127.0.0.1:1", "akswin000009", phase="Succeeded"),  # dropped: finished pod
        ]))
        monitor_sd.write_text(json.dumps([_pod_target(address, "akswin000001")]))
        plain_job = {k: v for k, v in scrape_job.items() if k != "kubernetes_sd_configs"}
        plain_job.update(scrape_interval="1s", scrape_timeout="1s", file_sd_configs=[{"files": [str(plain_sd)]}])
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                plain_job,
                {"job_name": "servicemonitor", "file_sd_configs": [{"files": [str(monitor_sd)]}], "relabel_configs": monitor_rules},
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        check = helpers.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr

        web = f"127.0.0.1:{helpers.free_port()}"
        log = tmp_path / "prometheus.log"
        with open(log, "w") as log_file:
            prometheus = subprocess.Popen(
                [prometheus_binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address={web}"],
                stdout=log_file, stderr=subprocess.STDOUT,
            )
        try:
            def up_series():
                query = urllib.parse.quote('up{job="windows-exporter-proxy"}')
                result = helpers.get_json(f"http://{web}/api/v1/query?query={query}")["data"]["result"]
                return result if len({r["metric"]["instance"] for r in result}) == 2 else None

            series = helpers.wait_for("both jobs' first scrape", up_series, [prometheus], log)
            by_instance = {r["metric"]["instance"]: r for r in series}
            assert set(by_instance) == {"akswin000000", "akswin000001"}, by_instance
            for instance, result in by_instance.items():
                assert result["value"][1] == "1", f"{instance} was not scraped: {result}"
                assert result["metric"]["node"] == instance
            assert by_instance["akswin000000"]["metric"]["pod"] == "windows-exporter-proxy-0000"
            assert by_instance["akswin000000"]["metric"]["namespace"] == "monitoring"

            targets = helpers.get_json(f"http://{web}/api/v1/targets?state=dropped")["data"]["droppedTargets"]
            assert len(targets) == 2, targets
            query = urllib.parse.quote('windows_cpu_time_total{instance="akswin000000"}')
            samples = helpers.get_json(f"http://{web}/api/v1/query?query={query}")["data"]["result"]
            assert samples and samples[0]["metric"]["mode"] == "idle", samples
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=kh.WAIT_SECONDS)


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
