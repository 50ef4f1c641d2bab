"""HTTPS, authenticated scrapes and the secured exporter hop in the Helm chart and the kustomize
components: rendered objects validated strictly (cert-manager's Certificate and the monitors
against deploy/tests/schemas), the values reaching the exact PROXY_* variables and mounts, the
RBAC of tokenreview, the NetworkPolicy, contradictory values refused at render with their
message, the kustomize components equal to the chart, and the DaemonSet contract with the real
binary in each mode."""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import ssl
import subprocess
import threading
import urllib.error
import urllib.request

import helm_python as helm
import pytest
import yaml

import kubehelpers as kh

NS = "monitoring"
FULL = kh.RELEASE
TLS_SECRET = f"{FULL}-tls"
SERVER_NAME = f"{FULL}.{NS}.svc"
DIR = "/etc/windows-exporter-proxy"
CERT_MANAGER = {"enabled": True, "issuerRef": {"name": "cluster-ca", "kind": "ClusterIssuer"}}
PROMETHEUS_SA = {"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": NS}

VALUE_SETS: dict[str, dict] = {
    "https": {"tls": {"enabled": True}, "serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
    "cert-manager": {
        "tls": {"enabled": True, "minVersion": "1.3", "certManager": {**CERT_MANAGER, "duration": "720h", "renewBefore": "240h",
                                                                     "extraDnsNames": ["metrics.example.com"]}},
        "serviceMonitor": {"enabled": True, "tlsConfig": {"serverName": "metrics.example.com"}},
    },
    "client-cert": {
        "tls": {"enabled": True, "certManager": CERT_MANAGER, "clientCA": {"secretName": TLS_SECRET}},
        "auth": {"methods": ["client-cert"], "clientAllowedNames": ["prometheus", "spiffe://cluster.local/ns/monitoring/sa/prometheus"]},
        "serviceMonitor": {"enabled": True, "tlsConfig": {"clientCertSecretName": "prometheus-client"}},
        "podMonitor": {"enabled": True, "tlsConfig": {"clientCertSecretName": "prometheus-client"}},
    },
    "basic": {
        "tls": {"enabled": True},
        "auth": {"methods": ["basic"], "basic": {"secretName": "scrapers-htpasswd"}},
        "serviceMonitor": {"enabled": True, "basicAuthSecretName": "prometheus-basic"},
        "podMonitor": {"enabled": True, "basicAuthSecretName": "prometheus-basic"},
    },
    "basic-plaintext": {
        "auth": {"methods": ["basic"], "basic": {"secretName": "scrapers-htpasswd", "key": "auth"}, "allowPlaintextCredentials": True},
        "serviceMonitor": {"enabled": True, "basicAuthSecretName": "prometheus-basic"},
    },
    "tokenreview": {
        "tls": {"enabled": True, "certManager": CERT_MANAGER},
        "auth": {"methods": ["tokenreview"], "tokenreview": {"scraperClusterRole": {"subjects": [PROMETHEUS_SA]}}},
        "serviceMonitor": {"enabled": True},
        "networkPolicy": {"enabled": True},
    },
    "tokenreview-podmonitor-token-secret": {
        "tls": {"enabled": True},
        "auth": {"methods": ["tokenreview"], "tokenreview": {"audiences": ["windows-exporter-proxy"],
                                                             "allowedUsers": ["system:serviceaccount:monitoring:scraper"],
                                                             "authDelegator": True}},
        "podMonitor": {"enabled": True, "authorizationSecret": {"name": "scraper-token"}},
    },
    "exporter-hop": {
        "exporter": {"scheme": "https", "tls": {"ca": {"configMapName": "windows-exporter-ca"}, "serverName": "windows-exporter.nodes.internal",
                                                "clientCertSecretName": "proxy-to-exporter"},
                     "basicAuth": {"username": "proxy", "passwordSecretName": "exporter-password"}},
    },
    "exporter-insecure": {"exporter": {"scheme": "https", "tls": {"insecureSkipVerify": True}}},
    "everything": {
        "tls": {"enabled": True, "minVersion": "1.2", "certManager": {**CERT_MANAGER, "privateKey": {"algorithm": "RSA", "size": 3072}},
                "clientCA": {"configMapName": "scraper-ca", "key": "bundle.pem"}},
        "auth": {"methods": ["client-cert", "basic", "tokenreview"], "clientAllowedNames": ["prometheus"],
                 "basic": {"secretName": "scrapers-htpasswd"},
                 "tokenreview": {"audiences": ["a", "b"], "allowedUsers": ["system:serviceaccount:monitoring:prometheus-k8s"],
                                 "scraperClusterRole": {"subjects": [PROMETHEUS_SA]}},
                 "forwardAuthorization": "false"},
        "exporter": {"scheme": "https", "tls": {"ca": {"secretName": "windows-exporter-ca"}, "clientCertSecretName": "proxy-to-exporter"},
                     "basicAuth": {"username": "proxy", "passwordSecretName": "exporter-password", "passwordKey": "pw"}},
        "networkPolicy": {"enabled": True, "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}},
                                                     "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]},
        "serviceMonitor": {"enabled": True, "tlsConfig": {"clientCertSecretName": "prometheus-client"}},
        "podMonitor": {"enabled": True, "basicAuthSecretName": "prometheus-basic"},
    },
}


def render(values: dict) -> list[dict]:
    return kh.helm_render(values, namespace=NS)


def endpoints(monitor: dict) -> list[dict]:
    """The /metrics endpoint. The monitors also scrape /proxy/metrics (and with the slow path
    /metrics/slow, on its own interval and timeout), with the same scheme, TLS and credentials
    (checked here), so the tests below look at /metrics only."""
    all_endpoints = monitor["spec"]["endpoints" if monitor["kind"] == "ServiceMonitor" else "podMetricsEndpoints"]
    scraped = [e for e in all_endpoints if e["path"] == "/metrics"]
    for other in all_endpoints:
        own = ("path", "interval", "scrapeTimeout") if other["path"] == "/metrics/slow" else ("path",)
        assert {k: v for k, v in other.items() if k not in own} == {k: v for k, v in scraped[0].items() if k not in own}
    return scraped


def kinds_expected(values: dict) -> set[str]:
    kinds = {"ServiceAccount", "Service", "DaemonSet"}
    if values.get("serviceMonitor", {}).get("enabled"):
        kinds.add("ServiceMonitor")
    if values.get("podMonitor", {}).get("enabled"):
        kinds.add("PodMonitor")
    if values.get("tls", {}).get("certManager", {}).get("enabled"):
        kinds.add("Certificate")
    if "tokenreview" in values.get("auth", {}).get("methods", []):
        kinds |= {"ClusterRoleBinding", "ClusterRole"}
    if values.get("networkPolicy", {}).get("enabled"):
        kinds.add("NetworkPolicy")
    return kinds


# ---------------------------------------------------------------------------------------------
# Every value set renders, lints, validates strictly and keeps the DaemonSet contract.


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_strict_clean(name: str) -> None:
    report = helm.lint(kh.CHART, VALUE_SETS[name], strict=True)
    assert not report["errors"] and not report["messages"], report


@pytest.mark.parametrize("name", VALUE_SETS)
def test_render_validates_strictly(name: str) -> None:
    objects = render(VALUE_SETS[name])
    for obj in objects:
        kh.validate(obj)
    assert {o["kind"] for o in objects} == kinds_expected(VALUE_SETS[name])


@pytest.mark.parametrize("name", VALUE_SETS)
def test_daemonset_contract(name: str) -> None:
    daemonset = kh.one(render(VALUE_SETS[name]), "DaemonSet")
    kh.check_daemonset_static(daemonset)
    kh.check_pod_security_restricted(daemonset)
    kh.check_daemonset_against_binary(daemonset)


def test_validation_catches_what_the_crds_refuse() -> None:
    """The strict schemas are not a rubber stamp: each broken object below is rejected."""
    objects = render(VALUE_SETS["everything"])
    certificate, monitor = kh.one(objects, "Certificate"), kh.one(objects, "ServiceMonitor")
    # (how the objects are broken, what the validation error must say)
    for mutate, message in (
        (lambda c, m: c["spec"].pop("issuerRef"), r"Certificate/.*: spec: 'issuerRef' is a required property"),
        (lambda c, m: c["spec"]["privateKey"].update(algorithm="DSA"), r"spec\.privateKey\.algorithm: 'DSA' is not one of"),
        (lambda c, m: c["spec"]["privateKey"].update(size=255), r"spec\.privateKey\.size: 255 is less than the minimum of 2048"),
        (lambda c, m: c["spec"].update(usages=["server-auth"]), r"spec\.usages\.0: 'server-auth' is not one of"),
        # a v1alpha2 field, gone in v1
        (lambda c, m: c["spec"].update(keyAlgorithm="ecdsa"), r"spec: Additional properties are not allowed \('keyAlgorithm' was unexpected\)"),
        (lambda c, m: endpoints(m)[0].update(bearerTokenSecret={"name": "x", "key": "token"}, authorization={"credentials": {"name": "x", "key": "t"}}, bearerTokenFile="/t"),
         r"ServiceMonitor/.*: spec\.endpoints\.0: Additional properties are not allowed \('bearerTokenSecret' was unexpected\)"),
        (lambda c, m: endpoints(m)[0]["tlsConfig"].update(ca={"secret": {"name": "a", "key": "ca.crt"}, "configMap": {"name": "b", "key": "ca.crt"}}),
         r"spec\.endpoints\.0\.tlsConfig\.ca: .* has too many properties"),
        (lambda c, m: endpoints(m)[0].update(basicAuth={"username": {"name": "a", "key": "u"}}, bearerTokenFile="/t"),
         r"spec\.endpoints\.0: .*the operator accepts at most one of basicAuth, authorization and bearer token"),
    ):
        c, m = copy.deepcopy(certificate), copy.deepcopy(monitor)
        mutate(c, m)
        with pytest.raises(AssertionError, match=message):
            kh.validate(c)
            kh.validate(m)
    pod_monitor = copy.deepcopy(kh.one(render(VALUE_SETS["https"]), "PodMonitor"))
    endpoints(pod_monitor)[0]["bearerTokenFile"] = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    with pytest.raises(AssertionError, match="bearerTokenFile"):
        kh.validate(pod_monitor)


# ---------------------------------------------------------------------------------------------
# Values -> variables, mounts and probes.


def test_everything_reaches_its_variable_and_mount() -> None:
    container = kh.proxy_container(daemonset := kh.one(render(VALUE_SETS["everything"]), "DaemonSet"))
    env = kh.manifest_env(container)
    assert {k: v for k, v in env.items() if k not in ("PROXY_HOSTIP", "PROXY_PORT")} == {
        "PROXY_TLS_CERT_FILE": f"{DIR}/tls/tls.crt",
        "PROXY_TLS_KEY_FILE": f"{DIR}/tls/tls.key",
        "PROXY_TLS_MIN_VERSION": "1.2",
        "PROXY_CLIENT_CA_FILE": f"{DIR}/client-ca/bundle.pem",
        "PROXY_AUTH": "client-cert,basic,tokenreview",
        "PROXY_CLIENT_ALLOWED_NAMES": "prometheus",
        "PROXY_BASIC_AUTH_FILE": f"{DIR}/basic-auth/htpasswd",
        "PROXY_TOKENREVIEW_AUDIENCES": "a,b",
        "PROXY_AUTHZ_USERS": "system:serviceaccount:monitoring:prometheus-k8s",
        "PROXY_FORWARD_AUTHORIZATION": "false",
        "PROXY_EXPORTER_SCHEME": "https",
        "PROXY_EXPORTER_CA_FILE": f"{DIR}/exporter-ca/ca.crt",
        "PROXY_EXPORTER_CLIENT_CERT_FILE": f"{DIR}/exporter-client-cert/tls.crt",
        "PROXY_EXPORTER_CLIENT_KEY_FILE": f"{DIR}/exporter-client-cert/tls.key",
        "PROXY_EXPORTER_BASIC_AUTH_USERNAME": "proxy",
        "PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE": f"{DIR}/exporter-basic-auth/pw",
    }
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "tls", "secret": {"secretName": TLS_SECRET}},
        {"name": "client-ca", "configMap": {"name": "scraper-ca"}},
        {"name": "basic-auth", "secret": {"secretName": "scrapers-htpasswd"}},
        {"name": "exporter-ca", "secret": {"secretName": "windows-exporter-ca"}},
        {"name": "exporter-client-cert", "secret": {"secretName": "proxy-to-exporter"}},
        {"name": "exporter-basic-auth", "secret": {"secretName": "exporter-password"}},
    ]
    assert container["volumeMounts"] == [
        {"name": v["name"], "mountPath": f"{DIR}/{v['name']}", "readOnly": True} for v in pod["volumes"]
    ]
    assert pod["automountServiceAccountToken"] is True


def test_exporter_hop_values() -> None:
    env = kh.manifest_env(kh.proxy_container(kh.one(render(VALUE_SETS["exporter-hop"]), "DaemonSet")))
    assert env["PROXY_EXPORTER_CA_FILE"] == f"{DIR}/exporter-ca/ca.crt"
    assert env["PROXY_EXPORTER_SERVER_NAME"] == "windows-exporter.nodes.internal"
    assert "PROXY_EXPORTER_INSECURE_SKIP_VERIFY" not in env and "PROXY_AUTH" not in env
    env = kh.manifest_env(kh.proxy_container(kh.one(render(VALUE_SETS["exporter-insecure"]), "DaemonSet")))
    assert env["PROXY_EXPORTER_INSECURE_SKIP_VERIFY"] == "true" and "PROXY_EXPORTER_CA_FILE" not in env


def test_one_secret_named_twice_is_mounted_once() -> None:
    """The client CA taken from the serving Secret (cert-manager's ca.crt) shares its mount."""
    daemonset = kh.one(render(VALUE_SETS["client-cert"]), "DaemonSet")
    env = kh.manifest_env(kh.proxy_container(daemonset))
    assert env["PROXY_CLIENT_CA_FILE"] == f"{DIR}/tls/ca.crt"
    assert [v["name"] for v in daemonset["spec"]["template"]["spec"]["volumes"]] == ["tls"]


@pytest.mark.parametrize("name", ["defaults", *VALUE_SETS])
def test_secrets_are_directories_probes_follow_tls_token_only_for_tokenreview(name: str) -> None:
    values = VALUE_SETS.get(name, {})
    daemonset = kh.one(render(values), "DaemonSet")
    pod, container = daemonset["spec"]["template"]["spec"], kh.proxy_container(daemonset)
    tls = values.get("tls", {}).get("enabled", False)
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"].get("scheme", "HTTP") == ("HTTPS" if tls else "HTTP"), container[probe]
    assert pod["automountServiceAccountToken"] is ("tokenreview" in values.get("auth", {}).get("methods", []))
    mounts = container.get("volumeMounts", [])
    assert {m["name"] for m in mounts} == {v["name"] for v in pod.get("volumes", [])}
    for mount in mounts:
        assert set(mount) == {"name", "mountPath", "readOnly"} and mount["readOnly"] is True, mount
    account = kh.one(render(values), "ServiceAccount")
    assert account["automountServiceAccountToken"] is False, "pods opt in; the ServiceAccount stays closed"


def test_defaults_render_none_of_it() -> None:
    objects = render({})
    assert {o["kind"] for o in objects} == {"ServiceAccount", "Service", "DaemonSet"}
    daemonset = kh.one(objects, "DaemonSet")
    assert "volumes" not in daemonset["spec"]["template"]["spec"]
    assert list(kh.manifest_env(kh.proxy_container(daemonset))) == ["PROXY_HOSTIP", "PROXY_PORT"]


# ---------------------------------------------------------------------------------------------
# The monitors: https, the CA and name of the proxy's certificate, the credential.


def test_monitors_verify_the_certificate_cert_manager_issues() -> None:
    for name in ("cert-manager", "client-cert", "tokenreview", "everything"):
        objects = render(VALUE_SETS[name])
        certificate = kh.one(objects, "Certificate")
        assert certificate["spec"]["secretName"] == TLS_SECRET
        assert certificate["spec"]["issuerRef"] == {"name": "cluster-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
        assert "server auth" in certificate["spec"]["usages"]
        volumes = kh.one(objects, "DaemonSet")["spec"]["template"]["spec"]["volumes"]
        assert {"name": "tls", "secret": {"secretName": TLS_SECRET}} in volumes
        for monitor in [o for o in objects if o["kind"] in ("ServiceMonitor", "PodMonitor")]:
            for endpoint in endpoints(monitor):
                assert endpoint["scheme"] == "https"
                tls = endpoint["tlsConfig"]
                assert tls["ca"] == {"secret": {"name": TLS_SECRET, "key": "ca.crt"}}
                assert tls["serverName"] in certificate["spec"]["dnsNames"], (tls["serverName"], certificate["spec"]["dnsNames"])


def test_certificate_names_and_key() -> None:
    spec = kh.one(render(VALUE_SETS["cert-manager"]), "Certificate")["spec"]
    assert spec["dnsNames"] == [FULL, f"{FULL}.{NS}", SERVER_NAME, f"{SERVER_NAME}.cluster.local", "metrics.example.com"]
    assert spec["commonName"] == SERVER_NAME
    assert spec["privateKey"] == {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}
    assert (spec["duration"], spec["renewBefore"]) == ("720h", "240h")


def test_default_server_name_and_plain_http_without_tls() -> None:
    (endpoint,) = endpoints(kh.one(render(VALUE_SETS["https"]), "ServiceMonitor"))
    assert endpoint["tlsConfig"] == {"ca": {"secret": {"name": TLS_SECRET, "key": "ca.crt"}}, "serverName": SERVER_NAME}
    (endpoint,) = endpoints(kh.one(render(VALUE_SETS["basic-plaintext"]), "ServiceMonitor"))
    assert endpoint["scheme"] == "http" and "tlsConfig" not in endpoint


def test_each_method_gets_its_credential_on_the_monitors() -> None:
    cert = {"secret": {"name": "prometheus-client", "key": "tls.crt"}}
    for kind in ("ServiceMonitor", "PodMonitor"):
        (endpoint,) = endpoints(kh.one(render(VALUE_SETS["client-cert"]), kind))
        assert endpoint["tlsConfig"]["cert"] == cert
        assert endpoint["tlsConfig"]["keySecret"] == {"name": "prometheus-client", "key": "tls.key"}
        assert not {"basicAuth", "authorization", "bearerTokenFile"} & set(endpoint)
        (endpoint,) = endpoints(kh.one(render(VALUE_SETS["basic"]), kind))
        assert endpoint["basicAuth"] == {"username": {"name": "prometheus-basic", "key": "username"},
                                         "password": {"name": "prometheus-basic", "key": "password"}}
    (endpoint,) = endpoints(kh.one(render(VALUE_SETS["tokenreview"]), "ServiceMonitor"))
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    (endpoint,) = endpoints(kh.one(render(VALUE_SETS["tokenreview-podmonitor-token-secret"]), "PodMonitor"))
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"name": "scraper-token", "key": "token"}}
    assert "bearerTokenFile" not in endpoint


# ---------------------------------------------------------------------------------------------
# tokenreview RBAC, NetworkPolicy.


def test_tokenreview_rbac() -> None:
    objects = render(VALUE_SETS["tokenreview"])
    bindings = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRoleBinding"}
    delegator = bindings[f"{FULL}-auth-delegator"]
    assert delegator["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"}
    account = kh.one(objects, "ServiceAccount")
    assert delegator["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NS}]
    assert kh.one(objects, "DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    role = kh.one(objects, "ClusterRole")
    (rule,) = role["rules"]
    assert rule["verbs"] == ["get"] and set(rule) == {"nonResourceURLs", "verbs"}, "a scraper needs get on URLs, nothing else"
    scraped = {e["path"] for e in endpoints(kh.one(objects, "ServiceMonitor"))}
    assert scraped <= set(rule["nonResourceURLs"]) == {"/metrics", "/metrics/slow", "/proxy/metrics"}, "every path the monitor scrapes is granted"
    with_slow = render(kh.render_base.merged([VALUE_SETS["tokenreview"], {"collectors": {"slow": ["process", "service"]}}]))
    monitor = kh.one(with_slow, "ServiceMonitor")
    endpoints(monitor)  # the same scheme, TLS and credentials on every endpoint
    scraped = {e["path"] for e in monitor["spec"]["endpoints"]}
    assert "/metrics/slow" in scraped and scraped <= set(kh.one(with_slow, "ClusterRole")["rules"][0]["nonResourceURLs"])
    scraper = bindings[f"{FULL}-scraper"]
    assert scraper["roleRef"]["name"] == role["metadata"]["name"] and scraper["subjects"] == [PROMETHEUS_SA]


def test_tokenreview_rbac_parts_can_be_left_out() -> None:
    values = copy.deepcopy(VALUE_SETS["tokenreview"])
    values["auth"]["tokenreview"] = {"authDelegator": False, "scraperClusterRole": {"create": False}}
    assert not [o for o in render(values) if o["kind"].startswith("Cluster")]


def test_network_policy_admits_only_prometheus_to_the_metrics_port() -> None:
    objects = render(VALUE_SETS["tokenreview"])
    policy, daemonset = kh.one(objects, "NetworkPolicy"), kh.one(objects, "DaemonSet")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= daemonset["spec"]["template"]["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"], "egress (to the exporter, the API server) stays open"
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert rule["from"] == [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    assert {p["name"] for p in kh.proxy_container(daemonset)["ports"]} >= {"metrics"}


# ---------------------------------------------------------------------------------------------
# Contradictions fail the render, saying what to change.


def with_(*parts: dict) -> dict:
    out: dict = {}
    for part in parts:
        out = kh.render_base.merged([out, part])
    return out


TLS_ON = {"tls": {"enabled": True}}
CONTRADICTIONS = {
    "tls settings without tls": (
        {"tls": {"minVersion": "1.3"}},
        "tls.secretName or tls.minVersion is set but tls.enabled is false: the proxy serves plain HTTP",
    ),
    "cert-manager without tls": (
        {"tls": {"certManager": CERT_MANAGER}},
        "tls.certManager.enabled needs tls.enabled: the Certificate's Secret is only mounted when the proxy serves HTTPS",
    ),
    "cert-manager without issuer": (
        with_(TLS_ON, {"tls": {"certManager": {"enabled": True}}}),
        "tls.certManager.enabled needs tls.certManager.issuerRef.name: the Issuer or ClusterIssuer that signs the proxy's certificate",
    ),
    "client-cert without tls": (
        {"auth": {"methods": ["client-cert"]}, "tls": {"clientCA": {"secretName": "ca"}}},
        "auth.methods client-cert needs tls.enabled: a client certificate is only presented in a TLS handshake",
    ),
    "client-cert without client CA": (
        with_(TLS_ON, {"auth": {"methods": ["client-cert"]}}),
        "auth.methods client-cert needs tls.clientCA.secretName or tls.clientCA.configMapName (PROXY_CLIENT_CA_FILE)",
    ),
    "client CA twice": (
        with_(TLS_ON, {"auth": {"methods": ["client-cert"]}, "tls": {"clientCA": {"secretName": "a", "configMapName": "b"}}}),
        "tls.clientCA: set secretName or configMapName, not both",
    ),
    "client CA without client-cert": (
        with_(TLS_ON, {"tls": {"clientCA": {"secretName": "ca"}}}),
        "tls.clientCA is set but auth.methods does not list client-cert",
    ),
    "allowed names without client-cert": (
        {"auth": {"clientAllowedNames": ["prometheus"]}},
        "auth.clientAllowedNames is set but auth.methods does not list client-cert",
    ),
    "tokenreview without tls": (
        {"auth": {"methods": ["tokenreview"]}, "serviceMonitor": {"enabled": True}},
        "auth.methods tokenreview without tls.enabled would send credentials in clear text: enable tls, "
        "or set auth.allowPlaintextCredentials=true (PROXY_ALLOW_PLAINTEXT_CREDENTIALS)",
    ),
    "basic without tls": (
        {"auth": {"methods": ["basic"], "basic": {"secretName": "h"}}},
        "auth.methods basic without tls.enabled would send credentials in clear text",
    ),
    "basic without htpasswd": (
        with_(TLS_ON, {"auth": {"methods": ["basic"]}}),
        "auth.methods basic needs auth.basic.secretName: the Secret holding the htpasswd file (PROXY_BASIC_AUTH_FILE)",
    ),
    "htpasswd without basic": (
        {"auth": {"basic": {"secretName": "h"}}},
        "auth.basic.secretName is set but auth.methods does not list basic",
    ),
    "tokenreview settings without tokenreview": (
        {"auth": {"tokenreview": {"audiences": ["x"]}}},
        "auth.tokenreview.audiences or allowedUsers is set but auth.methods does not list tokenreview",
    ),
    "scraper subjects without the role": (
        {"auth": {"tokenreview": {"scraperClusterRole": {"create": False, "subjects": [PROMETHEUS_SA]}}}},
        "auth.tokenreview.scraperClusterRole.subjects needs scraperClusterRole.create",
    ),
    "podmonitor with tokenreview": (
        with_(TLS_ON, {"auth": {"methods": ["tokenreview"]}, "podMonitor": {"enabled": True}}),
        "podMonitor with auth.methods tokenreview: a PodMonitor cannot send Prometheus' own service-account token "
        "(PodMetricsEndpoint has no bearerTokenFile)",
    ),
    "monitor without an accepted credential": (
        with_(TLS_ON, {"auth": {"methods": ["basic"], "basic": {"secretName": "h"}}, "serviceMonitor": {"enabled": True}}),
        "serviceMonitor.enabled: the ServiceMonitor presents no credential that auth.methods [basic] accepts",
    ),
    "monitor credential for an unlisted method only": (
        with_(TLS_ON, {"auth": {"methods": ["client-cert"], "clientAllowedNames": ["p"]}, "tls": {"clientCA": {"secretName": "ca"}},
                       "podMonitor": {"enabled": True, "basicAuthSecretName": "b"}}),
        "podMonitor.enabled: the PodMonitor presents no credential that auth.methods [client-cert] accepts",
    ),
    "two authorization headers": (
        with_(TLS_ON, {"serviceMonitor": {"enabled": True, "basicAuthSecretName": "b", "authorizationSecret": {"name": "t"}}}),
        "serviceMonitor: set basicAuthSecretName or authorizationSecret.name, not both: a scrape carries one Authorization header",
    ),
    "monitor tls without tls": (
        {"serviceMonitor": {"enabled": True, "tlsConfig": {"clientCertSecretName": "c"}}},
        "serviceMonitor.tlsConfig is set but tls.enabled is false: the proxy serves plain HTTP",
    ),
    "server name not in the certificate": (
        with_(TLS_ON, {"tls": {"certManager": CERT_MANAGER}, "serviceMonitor": {"enabled": True, "tlsConfig": {"serverName": "wep.example"}}}),
        'serviceMonitor.tlsConfig.serverName "wep.example" is not a name in the proxy\'s certificate',
    ),
    "https exporter without a CA": (
        {"exporter": {"scheme": "https"}},
        "exporter.scheme https needs exporter.tls.ca.secretName or exporter.tls.ca.configMapName "
        "(PROXY_EXPORTER_CA_FILE, the only CA trusted), or exporter.tls.insecureSkipVerify=true",
    ),
    "exporter CA twice": (
        {"exporter": {"scheme": "https", "tls": {"ca": {"secretName": "a", "configMapName": "b"}}}},
        "exporter.tls.ca: set secretName or configMapName, not both",
    ),
    "exporter tls over http": (
        {"exporter": {"tls": {"clientCertSecretName": "c"}}},
        "exporter.tls is set but exporter.scheme is http",
    ),
    "exporter username without password": (
        {"exporter": {"basicAuth": {"username": "proxy"}}},
        "exporter.basicAuth needs both username and passwordSecretName",
    ),
    "exporter password without username": (
        {"exporter": {"basicAuth": {"passwordSecretName": "p"}}},
        "exporter.basicAuth needs both username and passwordSecretName",
    ),
    "network policy admitting nobody": (
        {"networkPolicy": {"enabled": True, "from": []}},
        "networkPolicy.enabled with an empty networkPolicy.from would admit no scraper at all",
    ),
}


@pytest.mark.parametrize("case", CONTRADICTIONS)
def test_contradictions_fail_at_render(case: str) -> None:
    values, message = CONTRADICTIONS[case]
    with helm.Chart.load(kh.CHART) as chart:
        with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
            chart.render(values, name=kh.RELEASE, namespace=NS)


def test_plaintext_credentials_are_allowed_when_asked() -> None:
    env = kh.manifest_env(kh.proxy_container(kh.one(render(VALUE_SETS["basic-plaintext"]), "DaemonSet")))
    assert env["PROXY_ALLOW_PLAINTEXT_CREDENTIALS"] == "true" and env["PROXY_BASIC_AUTH_FILE"] == f"{DIR}/basic-auth/auth"
    assert "PROXY_TLS_CERT_FILE" not in env


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"auth": {"methods": ["oauth"]}}, "at '/auth/methods/0'"),
        ({"auth": {"methods": ["basic", "basic"]}}, "at '/auth/methods'"),
        ({"auth": {"clientAllowedNames": ["a,b"]}}, "at '/auth/clientAllowedNames/0'"),
        ({"tls": {"minVersion": "1.1"}}, "at '/tls/minVersion'"),
        ({"tls": {"minVersion": 1.3}}, "at '/tls/minVersion'"),
        ({"tls": {"mountPath": "/tls"}}, "at '/tls': additional properties 'mountPath' not allowed"),
        ({"tls": {"secretName": "Not_A_Name"}}, "at '/tls/secretName'"),
        ({"tls": {"certManager": {"privateKey": {"algorithm": "DSA"}}}}, "at '/tls/certManager/privateKey/algorithm'"),
        ({"tls": {"certManager": {"duration": "90 days"}}}, "at '/tls/certManager/duration'"),
        ({"tls": {"certManager": {"privateKey": {"algorithm": "ECDSA", "size": 2048}}}}, "at '/tls/certManager/privateKey/size'"),
        ({"exporter": {"scheme": "ftp"}}, "at '/exporter/scheme'"),
        ({"exporter": {"basicAuth": {"username": "a:b"}}}, "at '/exporter/basicAuth/username'"),
        ({"auth": {"forwardAuthorization": "maybe"}}, "at '/auth/forwardAuthorization'"),
        ({"auth": {"tokenreview": {"scraperClusterRole": {"subjects": [{"kind": "ServiceAccount", "name": "p"}]}}}},
         "at '/auth/tokenreview/scraperClusterRole/subjects/0'"),
        ({"networkPolicy": {"from": [{"pods": {}}]}}, "at '/networkPolicy/from/0'"),
        ({"serviceMonitor": {"tlsConfig": {"caFile": "/etc/ca.crt"}}}, "at '/serviceMonitor/tlsConfig': additional properties 'caFile' not allowed"),
    ],
)
def test_schema_rejects_bad_security_values(values: dict, message: str) -> None:
    with helm.Chart.load(kh.CHART) as chart:
        with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
            chart.render(values, name=kh.RELEASE, namespace=NS)


# ---------------------------------------------------------------------------------------------
# The kustomize components are the chart: each overlay equals the chart with the same values.


KUSTOMIZE_SHORT_NAME = {"tlsConfig": {"serverName": FULL}}
OVERLAY_VALUES = {
    "secure": {
        "tls": {"enabled": True, "certManager": CERT_MANAGER},
        "auth": {"methods": ["tokenreview"], "tokenreview": {"scraperClusterRole": {"subjects": [PROMETHEUS_SA]}}},
        "serviceMonitor": {"enabled": True, **KUSTOMIZE_SHORT_NAME},
        "networkPolicy": {"enabled": True},
    },
    "https-podmonitor": {
        "tls": {"enabled": True, "certManager": CERT_MANAGER},
        "podMonitor": {"enabled": True, **KUSTOMIZE_SHORT_NAME},
    },
}
NAMESPACED = {"ServiceAccount", "Service", "DaemonSet", "ServiceMonitor", "PodMonitor", "Certificate", "NetworkPolicy"}


def comparable(objects: list[dict]) -> dict[tuple[str, str], dict]:
    """Objects keyed by kind/name, with the differences that do not matter evened out: env order
    (kustomize puts patched-in variables first) and the namespace kustomize sets."""
    out = {}
    for obj in json.loads(json.dumps(objects)):
        if obj["kind"] in NAMESPACED:
            obj["metadata"]["namespace"] = NS
        if obj["kind"] == "DaemonSet":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                container["env"] = sorted(container["env"], key=lambda e: e["name"])
        out[(obj["kind"], obj["metadata"]["name"])] = obj
    return out


@pytest.mark.parametrize("overlay", OVERLAY_VALUES)
def test_overlay_equals_the_chart(overlay: str) -> None:
    from_kustomize = comparable(kh.kustomize(kh.KUBERNETES / "overlays" / overlay))
    from_chart = comparable(render(OVERLAY_VALUES[overlay]))
    assert sorted(from_kustomize) == sorted(from_chart)
    for key, obj in from_chart.items():
        assert from_kustomize[key] == obj, f"{key}: kustomize and the chart differ"


def test_components_follow_the_namespace() -> None:
    """Rendered for "default", the RBAC subject follows the kustomization's namespace."""
    objects = kh.kustomize(kh.KUBERNETES / "overlays" / "secure")
    delegator = [o for o in objects if o["metadata"]["name"] == f"{FULL}-auth-delegator"]
    assert delegator[0]["subjects"][0]["namespace"] == NS


# ---------------------------------------------------------------------------------------------
# The README's web-config.yml works in a real exporter-toolkit server.


def readme_block(after: str, language: str) -> str:
    text = (kh.DEPLOY / "README.md").read_text()
    assert after in text, f"deploy/README.md has no {after!r}"
    return text.split(after, 1)[1].split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_readme_web_config_works_in_exporter_toolkit(tmp_path) -> None:
    """The web-config.yml of "windows_exporter behind TLS and basic auth on the VM", with its
    Windows paths moved to test files and the hash made by the README's own command, served by
    Debian's prometheus-node-exporter (exporter-toolkit, as windows_exporter): TLS with the client
    certificate and the password gets in; without either it does not.

    node-exporter 1.5's toolkit predates `client_allowed_sans` (windows_exporter v0.31's has it),
    so that one key is removed here and is not covered by this run.
    """
    assert shutil.which("prometheus-node-exporter"), "prometheus-node-exporter is missing (bash .ci/install)"
    config = yaml.safe_load(readme_block("**2. web-config.yml**", "yaml"))
    command = re.search(r"#\s*(htpasswd [^(]*)", readme_block("**2. web-config.yml**", "yaml")).group(1).strip()
    assert command.startswith("htpasswd -nbBC 10"), command
    hashed = subprocess.run(["bash", "-c", command], env={"PASSWORD": "s3cret", "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=kh.WAIT_SECONDS, check=True).stdout
    assert hashed.startswith("$2y$10$"), hashed
    pki = kh.Pki(tmp_path / "pki")
    server = pki.issue("exporter", ["IP:127.0.0.1"], "serverAuth")
    (allowed,) = config["tls_server_config"].pop("client_allowed_sans")
    client = pki.issue(allowed, [f"DNS:{allowed}"], "clientAuth")
    files = {"cert_file": server[0], "key_file": server[1], "client_ca_file": pki.ca}
    for key, path in files.items():
        assert config["tls_server_config"][key].startswith("C:\\ProgramData\\windows_exporter\\"), config
        config["tls_server_config"][key] = str(path)
    (user,) = config["basic_auth_users"]
    config["basic_auth_users"][user] = hashed
    (tmp_path / "web-config.yml").write_text(yaml.safe_dump(config))

    port = kh.closed_port()
    log = tmp_path / "node-exporter.log"
    with open(log, "w") as out:
        exporter = subprocess.Popen(
            ["prometheus-node-exporter", f"--web.config.file={tmp_path / 'web-config.yml'}", f"--web.listen-address=127.0.0.1:{port}",
             "--collector.disable-defaults", "--collector.time"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        kh.wait_for_log(log, "Listening on", exporter)

        def scrape(with_cert: bool, password: str | None) -> int | str:
            context = ssl.create_default_context(cafile=str(pki.ca))
            if with_cert:
                context.load_cert_chain(*client)
            request = urllib.request.Request(f"https://127.0.0.1:{port}/metrics")
            if password is not None:
                request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
            try:
                with urllib.request.urlopen(request, context=context, timeout=kh.WAIT_SECONDS) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code
            except (ssl.SSLError, ConnectionError, urllib.error.URLError) as error:
                return type(error).__name__

        assert scrape(True, "s3cret") == 200, log.read_text()
        assert scrape(True, None) == 401
        assert scrape(True, "wrong") == 401
        assert scrape(False, "s3cret") not in (200, 401), "the handshake must require the client certificate"
    finally:
        exporter.terminate()
        exporter.wait(timeout=kh.WAIT_SECONDS)


def test_readme_msi_line_passes_the_web_config() -> None:
    line = readme_block("**3. The MSI**", "powershell")
    web_config_path = readme_block("**2. web-config.yml**", "yaml")
    assert 'EXTRA_FLAGS="--web.config.file=C:\\ProgramData\\windows_exporter\\web-config.yml"' in line
    assert "ADDLOCAL=FirewallException" in line and "REMOTE_ADDR=" in line
    assert "C:\\ProgramData\\windows_exporter\\" in web_config_path


def test_notes_follow_tls_and_auth() -> None:
    def notes(values: dict) -> str:
        with helm.Chart.load(kh.CHART) as chart:
            return chart.render(values, name=kh.RELEASE, namespace=NS)[f"{chart.name}/templates/NOTES.txt"]

    https = notes(VALUE_SETS["https"])
    assert "curl -sk https://127.0.0.1:9100/ready" in https and "http://127.0.0.1" not in https
    token = notes(VALUE_SETS["tokenreview"])
    assert "need credentials (auth.methods tokenreview); without them: 401" in token
    assert 'Authorization: Bearer $(kubectl -n monitoring create token' in token
    assert "https://<node IP>:<port>/metrics" in notes(VALUE_SETS["exporter-hop"])
    assert "https://<node IP>:9182/metrics" in notes({**VALUE_SETS["exporter-hop"], "proxy": {"port": 9182}})


# ---------------------------------------------------------------------------------------------
# A real Prometheus scrapes with the monitors' settings a target holding the certificate the
# chart's Certificate describes.


def operator_endpoint_to_scrape_config(endpoint: dict, secrets: dict[tuple[str, str], str], files) -> dict:
    """What the prometheus-operator makes of one endpoint's scheme, TLS and credentials: each
    Secret key becomes a file (`files(name, key)` writes `secrets[(name, key)]`)."""
    job: dict = {"scheme": endpoint["scheme"], "metrics_path": endpoint["path"]}
    tls = endpoint.get("tlsConfig")
    if tls:
        config: dict = {}
        if "ca" in tls:
            ref = tls["ca"]["secret"]
            config["ca_file"] = files(ref["name"], ref["key"])
        if "serverName" in tls:
            config["server_name"] = tls["serverName"]
        if tls.get("insecureSkipVerify"):
            config["insecure_skip_verify"] = True
        if "cert" in tls:
            config["cert_file"] = files(tls["cert"]["secret"]["name"], tls["cert"]["secret"]["key"])
            config["key_file"] = files(tls["keySecret"]["name"], tls["keySecret"]["key"])
        job["tls_config"] = config
    if "bearerTokenFile" in endpoint:
        job["authorization"] = {"credentials_file": files("<prometheus pod>", endpoint["bearerTokenFile"])}
    if "authorization" in endpoint:
        ref = endpoint["authorization"]["credentials"]
        job["authorization"] = {"type": endpoint["authorization"]["type"], "credentials_file": files(ref["name"], ref["key"])}
    if "basicAuth" in endpoint:
        b = endpoint["basicAuth"]
        job["basic_auth"] = {"username": secrets[(b["username"]["name"], b["username"]["key"])],
                             "password_file": files(b["password"]["name"], b["password"]["key"])}
    return job


def test_prometheus_scrapes_with_the_monitors_tls_and_credentials(tmp_path) -> None:
    """The ServiceMonitor (tokenreview) and PodMonitor (client-cert) settings, turned into
    Prometheus' scrape configuration as the operator does, against TLS targets holding a
    certificate with the chart's Certificate's dnsNames from the CA in the chart's Secret: up.
    Each wrong variant (another CA, a name the certificate lacks, no client certificate) is down
    with its reason in the targets API. The targets stand in for the proxy (a binary that serves
    TLS is tested by the tls and auth suites); what is checked here is that the chart's names,
    CA and credentials fit together."""
    assert shutil.which("prometheus"), "prometheus is missing (bash .ci/install)"
    pki, other = kh.Pki(tmp_path / "pki"), kh.Pki(tmp_path / "other-pki")
    token = "prometheus-service-account-token"

    token_objects = render(VALUE_SETS["tokenreview"])
    dns_names = kh.one(token_objects, "Certificate")["spec"]["dnsNames"]
    serving = pki.issue("proxy", [f"DNS:{n}" for n in dns_names], "serverAuth")
    impostor = other.issue("impostor", [f"DNS:{n}" for n in dns_names], "serverAuth")
    scraper = pki.issue("prometheus", ["DNS:prometheus"], "clientAuth")
    secrets = {
        (TLS_SECRET, "ca.crt"): pki.ca.read_text(),
        ("prometheus-client", "tls.crt"): scraper[0].read_text(),
        ("prometheus-client", "tls.key"): scraper[1].read_text(),
        ("<prometheus pod>", "/var/run/secrets/kubernetes.io/serviceaccount/token"): token,
    }

    def files(name: str, key: str) -> str:
        path = tmp_path / "secrets" / re.sub(r"[^\w.-]", "_", f"{name}-{key}")
        path.parent.mkdir(exist_ok=True)
        path.write_text(secrets[(name, key)])
        return str(path)

    def server(cert: tuple, client_ca=None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*cert)
        if client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(client_ca)
        return context

    (service_endpoint,) = endpoints(kh.one(token_objects, "ServiceMonitor"))
    (pod_endpoint,) = endpoints(kh.one(render(VALUE_SETS["client-cert"]), "PodMonitor"))
    wrong_name = copy.deepcopy(service_endpoint)
    wrong_name["tlsConfig"]["serverName"] = "windows-exporter-proxy.elsewhere.svc"
    no_client_cert = copy.deepcopy(pod_endpoint)
    del no_client_cert["tlsConfig"]["cert"], no_client_cert["tlsConfig"]["keySecret"]

    with kh.FakeExporter(server(serving), authorization=f"Bearer {token}") as token_target, \
            kh.FakeExporter(server(impostor)) as impostor_target, \
            kh.FakeExporter(server(serving, client_ca=pki.ca)) as client_cert_target:
        jobs = {
            "servicemonitor-tokenreview": (service_endpoint, token_target, None),
            "podmonitor-client-cert": (pod_endpoint, client_cert_target, None),
            "another-ca": (service_endpoint, impostor_target, "certificate signed by unknown authority"),
            "name-not-in-certificate": (wrong_name, token_target, "not windows-exporter-proxy.elsewhere.svc"),
            # TLS 1.3: the server's "certificate required" alert races Go's first write of the
            # request, so Go reports either the alert or the reset that follows it.
            "no-client-certificate": (
                no_client_cert, client_cert_target, ("tls: certificate required", "connection reset by peer")
            ),
        }
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{target.port}"]}],
                 **operator_endpoint_to_scrape_config(endpoint, secrets, files)}
                for name, (endpoint, target, _) in jobs.items()
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        check = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                               capture_output=True, text=True, timeout=60, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        web = f"127.0.0.1:{kh.closed_port()}"
        log = tmp_path / "prometheus.log"
        with open(log, "w") as out:
            prometheus = subprocess.Popen(
                ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address={web}"], stdout=out, stderr=subprocess.STDOUT)
        try:
            kh.wait_for_log(log, "Server is ready to receive web requests", prometheus)
            targets = wait_for_every_target_scraped(web, set(jobs), prometheus, log)
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=kh.WAIT_SECONDS)
    for name, (_, _, reason) in jobs.items():
        target = targets[name]
        if reason is None:
            assert target["health"] == "up", f"{name}: {target['lastError']}"
        else:
            reasons = reason if isinstance(reason, tuple) else (reason,)
            assert target["health"] == "down" and any(r in target["lastError"] for r in reasons), (
                f"{name}: {target['health']} {target['lastError']!r}"
            )


def wait_for_every_target_scraped(web: str, jobs: set[str], prometheus: subprocess.Popen, log) -> dict[str, dict]:
    """job -> its active target, once each has been scraped at least once (WAIT_SECONDS at most)."""
    deadline = threading_deadline()
    last: dict = {}
    while not deadline.is_set():
        assert prometheus.poll() is None, log.read_text()[-3000:]
        with urllib.request.urlopen(f"http://{web}/api/v1/targets?state=active", timeout=kh.WAIT_SECONDS) as response:
            active = json.load(response)["data"]["activeTargets"]
        last = {t["labels"]["job"]: t for t in active if t["health"] != "unknown"}
        if set(last) == jobs:
            return last
        deadline.wait(0.1)
    raise AssertionError(f"not every job scraped within {kh.WAIT_SECONDS} s: {sorted(last)}\n{log.read_text()[-3000:]}")


def threading_deadline() -> threading.Event:
    """An event set WAIT_SECONDS from now."""
    event = threading.Event()
    timer = threading.Timer(kh.WAIT_SECONDS, event.set)
    timer.daemon = True
    timer.start()
    return event


def test_readme_values_render() -> None:
    """The values in "HTTPS and authenticated scrapes" and the VM section render and validate."""
    https = yaml.safe_load(readme_block("### 1. The proxy's certificate", "yaml"))
    tokenreview = yaml.safe_load(readme_block("### 2. The kube-prometheus way", "yaml"))
    client_cert = yaml.safe_load(readme_block("### 3. Client certificates", "yaml"))
    exporter = yaml.safe_load(readme_block("**6. The chart:**", "yaml"))
    for values, kinds in (
        (https, {"Certificate", "ServiceMonitor"}),
        (with_(https, tokenreview), {"Certificate", "ServiceMonitor", "ClusterRole", "ClusterRoleBinding", "NetworkPolicy"}),
        (client_cert, {"Certificate", "ServiceMonitor"}),
        (exporter, set()),
    ):
        objects = render(values)
        for obj in objects:
            kh.validate(obj)
        assert {o["kind"] for o in objects} == {"ServiceAccount", "Service", "DaemonSet"} | kinds
    (endpoint,) = endpoints(kh.one(render(https), "ServiceMonitor"))
    shown = yaml.safe_load(readme_block("must be one of them or the render fails", "yaml"))["endpoints"][0]
    assert {k: endpoint[k] for k in shown} == shown, "the README shows the ServiceMonitor the chart renders"
