"""The chart values operators of node agents expect (issue 23): tolerations like the community
charts', a mirrored registry, extra variables, coalescing, pod metadata, priority, the rollout; the
schema refusing bad values; contradictions failing at render; the scheduling check in the NOTES and
deploy/README; the mapping table from kube-rbac-proxy and exporter-toolkit settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import helm_python as helm
import importlib_resources
import pytest
import yaml

import kubehelpers as kh

NS = "monitoring"
README = kh.DEPLOY / "README.md"
NO_SCHEDULE = {"operator": "Exists", "effect": "NoSchedule"}


def daemonset(values: dict | None = None) -> dict:
    return kh.one(kh.helm_render(values), "DaemonSet")


def pod_spec(values: dict | None = None) -> dict:
    return daemonset(values)["spec"]["template"]["spec"]


def notes(values: dict | None = None) -> str:
    with helm.Chart.load(kh.CHART) as chart:
        return chart.render(values or {}, name=kh.RELEASE, namespace=NS)[f"{chart.name}/templates/NOTES.txt"]


def render_error(values: dict) -> str:
    with helm.Chart.load(kh.CHART) as chart:
        with pytest.raises(helm.HelmRenderError) as caught:
            chart.render(values, name=kh.RELEASE, namespace=NS)
    return str(caught.value)


# ---------------------------------------------------------------------------------------------
# Tolerations


def test_default_tolerations_are_every_noschedule_taint_like_the_community_charts() -> None:
    assert pod_spec()["tolerations"] == [NO_SCHEDULE]
    with helm.Chart.load(kh.CHART) as chart:
        assert chart.values["tolerations"] == [NO_SCHEDULE]


@pytest.mark.parametrize(
    "taint",
    [
        {"key": "os", "value": "windows", "effect": "NoSchedule"},
        {"key": "sku", "value": "Windows", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/os", "value": "windows", "effect": "NoSchedule"},
        {"key": "team", "value": "batch", "effect": "NoSchedule"},  # a pool's own taint: no pod before
        {"key": "kubernetes.azure.com/scalesetpriority", "value": "spot", "effect": "NoSchedule"},
        {"key": "dedicated", "effect": "NoSchedule"},
    ],
)
def test_default_tolerations_let_the_pod_onto_a_windows_node_with_any_noschedule_taint(taint: dict) -> None:
    for spec in (pod_spec(), kh.one(kh.kustomize(kh.KUBERNETES / "base"), "DaemonSet")["spec"]["template"]["spec"]):
        assert not kh.untolerated(spec["tolerations"], [taint]), f"{taint} keeps the proxy off the node"


def test_default_tolerations_leave_noexecute_taints_alone() -> None:
    assert kh.untolerated(pod_spec()["tolerations"], [{"key": "maintenance", "effect": "NoExecute"}])


def test_kustomize_base_has_the_same_tolerations() -> None:
    base = kh.one(kh.kustomize(kh.KUBERNETES / "base"), "DaemonSet")["spec"]["template"]["spec"]
    assert base["tolerations"] == [NO_SCHEDULE]


def test_tolerations_stay_overridable() -> None:
    mine = [{"key": "os", "operator": "Equal", "value": "windows", "effect": "NoSchedule"}]
    assert pod_spec({"tolerations": mine})["tolerations"] == mine
    assert "tolerations" not in pod_spec({"tolerations": []})


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        (NO_SCHEDULE, {"key": "a", "value": "b", "effect": "NoSchedule"}, True),
        (NO_SCHEDULE, {"key": "a", "value": "b", "effect": "NoExecute"}, False),
        ({"operator": "Exists"}, {"key": "a", "effect": "NoExecute"}, True),
        ({"key": "a", "operator": "Equal", "value": "b"}, {"key": "a", "value": "c", "effect": "NoSchedule"}, False),
        ({"key": "a", "operator": "Exists", "effect": "NoSchedule"}, {"key": "x", "effect": "NoSchedule"}, False),
        ({"key": "a", "value": "b", "effect": "NoSchedule"}, {"key": "a", "value": "b", "effect": "NoSchedule"}, True),
        ({"value": "b", "effect": "NoSchedule"}, {"key": "a", "value": "b", "effect": "NoSchedule"}, False),
    ],
)
def test_the_toleration_check_follows_kubernetes(toleration: dict, taint: dict, expected: bool) -> None:
    """kh.tolerates is what the contract checks trust; it must agree with Toleration.ToleratesTaint."""
    assert kh.tolerates(toleration, taint) is expected


# ---------------------------------------------------------------------------------------------
# Image and pull secrets


@pytest.mark.parametrize(
    ("values", "image"),
    [
        ({}, "ghcr.io/windows-exporter-proxy/windows-exporter-proxy:0.1.0"),
        ({"image": {"registry": "myacr.azurecr.io"}}, "myacr.azurecr.io/windows-exporter-proxy/windows-exporter-proxy:0.1.0"),
        ({"global": {"imageRegistry": "harbor.example.com/ghcr-proxy"}, "image": {"registry": "myacr.azurecr.io"}},
         "harbor.example.com/ghcr-proxy/windows-exporter-proxy/windows-exporter-proxy:0.1.0"),
        ({"image": {"registry": "", "repository": "registry.example.com:5000/team/wep", "tag": "1.2.3"}},
         "registry.example.com:5000/team/wep:1.2.3"),
        ({"image": {"registry": "localhost:5000", "repository": "wep", "digest": "sha256:" + "cd" * 32}},
         "localhost:5000/wep:0.1.0@sha256:" + "cd" * 32),
    ],
)
def test_image_registry_and_global_image_registry(values: dict, image: str) -> None:
    assert kh.proxy_container(daemonset(values))["image"] == image


def test_pull_secrets_from_global_and_local_each_once() -> None:
    values = {"global": {"imagePullSecrets": ["mirror", {"name": "regcred"}]}, "imagePullSecrets": [{"name": "regcred"}, {"name": "own"}]}
    assert pod_spec(values)["imagePullSecrets"] == [{"name": "mirror"}, {"name": "regcred"}, {"name": "own"}]
    assert "imagePullSecrets" not in pod_spec()


# ---------------------------------------------------------------------------------------------
# Variables


def test_env_extra_env_and_extra_env_from_render_after_the_charts_own() -> None:
    values = {
        "env": {"RUST_LOG": "debug", "PROXY_MAX_INFLIGHT": 3},
        "extraEnv": [{"name": "PROXY_LOG_FORMAT", "valueFrom": {"configMapKeyRef": {"name": "logging", "key": "format"}}}],
        "extraEnvFrom": [{"secretRef": {"name": "proxy-extra"}}, {"configMapRef": {"name": "proxy-more", "optional": True}, "prefix": "X_"}],
    }
    ds = daemonset(values)
    kh.validate(ds)
    container = kh.proxy_container(ds)
    names = [e["name"] for e in container["env"]]
    assert names == ["PROXY_HOSTIP", "PROXY_PORT", "PROXY_MAX_INFLIGHT", "RUST_LOG", "PROXY_LOG_FORMAT"], names
    env = kh.manifest_env(container)
    assert env["PROXY_MAX_INFLIGHT"] == "3" and env["RUST_LOG"] == "debug"
    assert env["PROXY_LOG_FORMAT"] == {"configMapKeyRef": {"name": "logging", "key": "format"}}
    assert container["envFrom"] == values["extraEnvFrom"]
    assert "envFrom" not in kh.proxy_container(daemonset())


def test_coalescing_values_reach_their_variables() -> None:
    env = kh.manifest_env(kh.proxy_container(daemonset({"proxy": {"coalesce": False}})))
    assert env["PROXY_COALESCE"] == "false" and "PROXY_COALESCE_MAX_BUFFER_BYTES" not in env
    env = kh.manifest_env(kh.proxy_container(daemonset({"proxy": {"coalesce": True, "coalesceMaxBufferBytes": 1073741824}})))
    assert env["PROXY_COALESCE"] == "true" and env["PROXY_COALESCE_MAX_BUFFER_BYTES"] == "1073741824"
    env = kh.manifest_env(kh.proxy_container(daemonset()))
    assert "PROXY_COALESCE" not in env, "unset: the binary's default (true) applies"


def test_the_binary_accepts_the_coalescing_values_as_rendered() -> None:
    kh.check_daemonset_against_binary(daemonset({"proxy": {"coalesce": False}}))
    kh.check_daemonset_against_binary(daemonset({"proxy": {"coalesceMaxBufferBytes": 262144}}))


# ---------------------------------------------------------------------------------------------
# Pod metadata, priority, rollout


def test_pod_annotations_labels_and_priority_class() -> None:
    ds = daemonset({"podAnnotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"},
                    "podLabels": {"team": "platform"}, "priorityClassName": "system-node-critical"})
    template = ds["spec"]["template"]
    assert template["metadata"]["annotations"] == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}
    assert template["metadata"]["labels"]["team"] == "platform"
    assert ds["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert template["spec"]["priorityClassName"] == "system-node-critical"
    assert "priorityClassName" not in pod_spec() and "annotations" not in daemonset()["spec"]["template"]["metadata"]


@pytest.mark.parametrize(
    ("strategy", "rendered"),
    [
        ({}, {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
        ({"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}, {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}),
        ({"rollingUpdate": {"maxUnavailable": "20%", "maxSurge": "0%"}},
         {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "20%", "maxSurge": "0%"}}),
        ({"type": "OnDelete"}, {"type": "OnDelete"}),
    ],
)
def test_update_strategy(strategy: dict, rendered: dict) -> None:
    ds = daemonset({"updateStrategy": strategy} if strategy else None)
    kh.validate(ds)
    assert ds["spec"]["updateStrategy"] == rendered


# ---------------------------------------------------------------------------------------------
# Contradictions fail the render, saying what to change.


CONTRADICTIONS = {
    "env sets PROXY_PORT": (
        {"env": {"PROXY_PORT": "9182"}},
        "env/extraEnv sets PROXY_PORT, which the chart already renders from proxy.port: set it there instead",
    ),
    "extraEnv sets PROXY_HOSTIP": (
        {"extraEnv": [{"name": "PROXY_HOSTIP", "value": "10.0.0.1"}]},
        "env/extraEnv sets PROXY_HOSTIP, which the chart already renders from the downward API (status.hostIP), always",
    ),
    "extraEnv sets a proxy value that is set": (
        {"proxy": {"maxInflight": 4}, "extraEnv": [{"name": "PROXY_MAX_INFLIGHT", "value": "8"}]},
        "env/extraEnv sets PROXY_MAX_INFLIGHT, which the chart already renders from proxy.maxInflight",
    ),
    "extraEnv sets coalescing that a value sets": (
        {"proxy": {"coalesce": True}, "extraEnv": [{"name": "PROXY_COALESCE", "value": "false"}]},
        "env/extraEnv sets PROXY_COALESCE, which the chart already renders from proxy.coalesce",
    ),
    "env sets PROXY_LISTEN next to listenPort": (
        {"listenPort": 9101, "env": {"PROXY_LISTEN": "0.0.0.0:9100"}},
        "env/extraEnv sets PROXY_LISTEN, which the chart already renders from listenPort and listenAddress",
    ),
    "env sets a TLS variable the tls values render": (
        {"tls": {"enabled": True}, "env": {"PROXY_TLS_CERT_FILE": "/x"}},
        "env/extraEnv sets PROXY_TLS_CERT_FILE, which the chart already renders from the tls, auth and exporter values",
    ),
    "extraEnv twice": (
        {"extraEnv": [{"name": "RUST_LOG", "value": "info"}, {"name": "RUST_LOG", "value": "debug"}]},
        "extraEnv lists RUST_LOG twice: Kubernetes keeps only the last one",
    ),
    "env and extraEnv": (
        {"env": {"RUST_LOG": "info"}, "extraEnv": [{"name": "RUST_LOG", "value": "debug"}]},
        "RUST_LOG is in both env and extraEnv: set it in one of them",
    ),
    "buffer bound without coalescing": (
        {"proxy": {"coalesce": False, "coalesceMaxBufferBytes": 4194304}},
        "proxy.coalesceMaxBufferBytes is set but proxy.coalesce is false",
    ),
    "no surge and no unavailable": (
        {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}},
        "updateStrategy.rollingUpdate: maxUnavailable and maxSurge are both 0, so a rollout could never replace a pod",
    ),
    "no surge and no unavailable, in percent": (
        {"updateStrategy": {"rollingUpdate": {"maxUnavailable": "0%", "maxSurge": "0%"}}},
        "maxUnavailable and maxSurge are both 0",
    ),
    "no unavailable and the default surge": (
        {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0}}},
        "maxUnavailable and maxSurge are both 0",
    ),
    "registry in front of a repository with a host": (
        {"image": {"repository": "myacr.azurecr.io/windows-exporter-proxy"}},
        'image.repository "myacr.azurecr.io/windows-exporter-proxy" starts with a registry host, and image.registry "ghcr.io" '
        "would be put in front of it",
    ),
    "global registry in front of a repository with a host": (
        {"global": {"imageRegistry": "mirror.example.com"}, "image": {"registry": "", "repository": "localhost:5000/wep"}},
        'image.repository "localhost:5000/wep" starts with a registry host, and global.imageRegistry "mirror.example.com"',
    ),
    "podLabels takes a selector label": (
        {"podLabels": {"app.kubernetes.io/name": "node-exporter"}},
        "podLabels sets app.kubernetes.io/name, a label the chart sets itself",
    ),
    "commonLabels takes a chart label": (
        {"commonLabels": {"app.kubernetes.io/component": "exporter"}},
        "commonLabels sets app.kubernetes.io/component, a label the chart sets itself",
    ),
    "podLabels and commonLabels": (
        {"podLabels": {"team": "a"}, "commonLabels": {"team": "b"}},
        "podLabels and commonLabels both set team: set it in one of them",
    ),
}


@pytest.mark.parametrize("case", CONTRADICTIONS)
def test_contradictions_fail_at_render(case: str) -> None:
    values, message = CONTRADICTIONS[case]
    assert message in render_error(values)


def test_what_is_not_a_contradiction_renders() -> None:
    """A variable a value models but leaves unset may come from extraEnv (valueFrom, say)."""
    env = kh.manifest_env(kh.proxy_container(daemonset({"extraEnv": [{"name": "RUST_LOG", "valueFrom": {"configMapKeyRef": {"name": "l", "key": "level"}}}]})))
    assert env["RUST_LOG"] == {"configMapKeyRef": {"name": "l", "key": "level"}}
    assert kh.proxy_container(daemonset({"image": {"registry": "", "repository": "localhost:5000/wep"}}))["image"] == "localhost:5000/wep:0.1.0"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"proxy": {"coalesce": "yes"}}, "at '/proxy/coalesce': got string, want null or boolean"),
        ({"proxy": {"coalesceMaxBufferBytes": 65536}}, "at '/proxy/coalesceMaxBufferBytes': minimum: got 65,536, want 262,144"),
        ({"proxy": {"coalesceMaxBufferBytes": 2**31}}, "at '/proxy/coalesceMaxBufferBytes': maximum"),
        ({"proxy": {"coalesceMaxBufferBytes": "2MiB"}}, "at '/proxy/coalesceMaxBufferBytes': got string, want null or integer"),
        ({"env": {"BAD NAME": "x"}}, "invalid propertyName 'BAD NAME'"),
        ({"env": {"A": {"valueFrom": {}}}}, "at '/env/A'"),
        ({"extraEnv": [{"value": "x"}]}, "at '/extraEnv/0': missing property 'name'"),
        ({"extraEnv": [{"name": "A", "value": 1}]}, "at '/extraEnv/0/value': got number, want string"),
        ({"extraEnv": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}, "at '/extraEnv/0'"),
        ({"extraEnv": [{"name": "A", "valueFrom": {"vaultRef": {}}}]}, "at '/extraEnv/0/valueFrom'"),
        ({"extraEnvFrom": [{"prefix": "X_"}]}, "at '/extraEnvFrom/0'"),
        ({"extraEnvFrom": [{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]}, "at '/extraEnvFrom/0'"),
        ({"image": {"registry": "https://ghcr.io"}}, "at '/image/registry'"),
        ({"image": {"registry": "ghcr.io/"}}, "at '/image/registry'"),
        ({"global": {"imageRegistry": "mirror example"}}, "at '/global/imageRegistry'"),
        ({"global": {"imagePullSecrets": [{"secret": "x"}]}}, "at '/global/imagePullSecrets/0'"),
        ({"global": {"imagePullSecrets": [""]}}, "at '/global/imagePullSecrets/0'"),
        ({"imagePullSecrets": [{"name": "Bad_Name"}]}, "at '/imagePullSecrets/0/name'"),
        ({"priorityClassName": "System Node Critical"}, "at '/priorityClassName'"),
        ({"podAnnotations": {"a": 1}}, "at '/podAnnotations/a': got number, want string"),
        ({"tolerations": [{"operator": "Exists", "value": "windows"}]}, "at '/tolerations/0/value'"),
        ({"tolerations": [{"operator": "Equal", "value": "windows"}]}, "at '/tolerations/0': missing property 'key'"),
        ({"tolerations": [{"key": "a", "effect": "NoSchedule", "tolerationSeconds": 60}]}, "at '/tolerations/0/effect'"),
        ({"tolerations": [{"operator": "In"}]}, "at '/tolerations/0/operator'"),
        ({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "150%"}}}, "at '/updateStrategy/rollingUpdate/maxSurge'"),
        ({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": -1}}}, "at '/updateStrategy/rollingUpdate/maxUnavailable'"),
        ({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}, "at '/updateStrategy/rollingUpdate': additional properties 'partition' not allowed"),
    ],
)
def test_schema_rejects_bad_values(values: dict, message: str) -> None:
    with helm.Chart.load(kh.CHART) as chart:
        with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
            chart.render(values, name=kh.RELEASE, namespace=NS)


# ---------------------------------------------------------------------------------------------
# The scheduling check: Windows nodes vs desired, scheduled and ready pods.


def scheduling_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith('echo "nodes: $(kubectl get nodes')]
    assert len(lines) == 1, f"expected one scheduling check line, found {lines}"
    return lines[0]


def test_notes_and_readme_carry_the_same_scheduling_check() -> None:
    line = scheduling_line(notes())
    assert "kubectl get nodes -l kubernetes.io/os=windows -o name | wc -l" in line
    assert f"kubectl -n {NS} get daemonset {kh.RELEASE} -o jsonpath=" in line
    assert line in README.read_text(), "deploy/README.md must show the NOTES' scheduling check for the defaults"


def test_scheduling_check_follows_the_node_selector_namespace_and_name() -> None:
    line = scheduling_line(notes({"nodeSelector": {"kubernetes.io/os": "windows", "agentpool": "win22"}, "fullnameOverride": "wep"}))
    assert "kubectl get nodes -l agentpool=win22,kubernetes.io/os=windows -o name" in line
    assert f"kubectl -n {NS} get daemonset wep -o jsonpath=" in line


def test_scheduling_check_reads_fields_the_daemonset_status_has() -> None:
    fields = re.findall(r"\{\.status\.(\w+)\}", scheduling_line(notes()))
    assert fields == ["desiredNumberScheduled", "currentNumberScheduled", "numberReady"], fields
    schema_dir = f"kubernetes-json-schema/v{kh.KUBE_VERSION}-local-strict"
    definitions = json.loads((importlib_resources.files("kubernetes_validate") / schema_dir / "_definitions.json").read_text())
    status = definitions["$defs"]["io.k8s.api.apps.v1.DaemonSetStatus"]["properties"]
    assert set(fields) <= set(status), sorted(status)


def test_scheduling_check_runs_in_sh(tmp_path: Path) -> None:
    """The line as printed, run by sh against a kubectl that answers like a cluster with three
    Windows nodes, one of them tainted out: the numbers come out where the text says."""
    calls = tmp_path / "calls"
    fake = tmp_path / "kubectl"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'case "$*" in\n'
        '  "get nodes "*) printf "node/akswin000000\\nnode/akswin000001\\nnode/akswin000002\\n" ;;\n'
        '  *"get daemonset "*) case "$*" in *"-o jsonpath={.status.desiredNumberScheduled}/{.status.currentNumberScheduled}/{.status.numberReady}") printf 2/2/1 ;; *) exit 3 ;; esac ;;\n'
        "  *) exit 2 ;;\n"
        "esac\n"
    )
    fake.chmod(0o755)
    result = subprocess.run(["sh", "-c", scheduling_line(notes())], capture_output=True, text=True, timeout=30, check=False,
                            env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["nodes:", "3", "desired/scheduled/ready:", "2/2/1"], result.stdout
    assert calls.read_text().splitlines() == [
        "get nodes -l kubernetes.io/os=windows -o name",
        f"-n {NS} get daemonset {kh.RELEASE} -o jsonpath={{.status.desiredNumberScheduled}}/{{.status.currentNumberScheduled}}/{{.status.numberReady}}",
    ]


# ---------------------------------------------------------------------------------------------
# deploy/README: where each kube-rbac-proxy flag and exporter-toolkit key went.


KUBE_RBAC_PROXY_FLAGS = [
    "--secure-listen-address", "--tls-cert-file", "--tls-private-key-file", "--tls-min-version", "--tls-cipher-suites",
    "--tls-reload-interval", "--client-ca-file", "--auth-token-audiences", "--allow-paths", "--ignore-paths",
    "--upstream", "--upstream-ca-file", "--upstream-client-cert-file", "--upstream-client-key-file", "--config-file",
    "--auth-header-fields-enabled", "--proxy-endpoints-port", "--oidc-issuer", "--kubeconfig", "--upstream-force-h2c",
]
WEB_CONFIG_KEYS = [
    "tls_server_config.cert_file", "tls_server_config.key_file", "tls_server_config.client_auth_type",
    "tls_server_config.client_ca_file", "tls_server_config.client_allowed_sans", "tls_server_config.min_version",
    "tls_server_config.max_version", "tls_server_config.cipher_suites", "tls_server_config.curve_preferences",
    "tls_server_config.prefer_server_cipher_suites", "http_server_config.http2", "http_server_config.headers",
    "basic_auth_users", "rate_limit",
]


def mapping_table() -> list[list[str]]:
    text = README.read_text()
    section = text.split("### Coming from kube-rbac-proxy or an exporter-toolkit web config", 1)
    assert len(section) == 2, "deploy/README.md lacks the mapping section"
    rows = []
    for line in section[1].split("\n## ", 1)[0].splitlines():
        if line.startswith("| `"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_mapping_table_names_every_setting_once() -> None:
    firsts = [re.findall(r"`([^`]+)`", row[0]) for row in mapping_table()]
    named = [name for cells in firsts for name in cells]
    for setting in KUBE_RBAC_PROXY_FLAGS + WEB_CONFIG_KEYS:
        assert named.count(setting) == 1, f"{setting} appears {named.count(setting)} times in the mapping table's first column"


def test_mapping_table_points_at_real_variables_and_values() -> None:
    variables = kh.help_variables(kh.binary_help())
    with helm.Chart.load(kh.CHART) as chart:
        values = chart.values
    for row in mapping_table():
        for variable in re.findall(r"`((?:PROXY|RUST)_[A-Z_]+)", " ".join(row[1:])):
            assert variable in variables, f"{row[0]}: {variable} is not a variable of the binary"
        for path in re.findall(r"`((?:tls|auth|exporter|proxy|networkPolicy|serviceMonitor|podMonitor)\.[A-Za-z.]+)", " ".join(row[1:])):
            node = values
            for part in path.split("."):
                assert isinstance(node, dict) and part in node, f"{row[0]}: {path} is not a chart value"
                node = node[part]
