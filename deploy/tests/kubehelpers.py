"""Helpers for the Kubernetes and Helm tests (test_kubernetes.py, test_helm.py).

What any deploy test needs (tools, ports, waits) is in helpers.py. Everything here works
offline and talks to loopback only: Helm renders through the helm-python-sdk library, kustomize
through `kubectl kustomize`, and the contract checks start the real proxy binary on 127.0.0.1.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import os
import queue
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import importlib_resources
import jsonschema
import kubernetes_validate
import pytest
import yaml

import helpers

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "windows-exporter-proxy"
KUBERNETES = DEPLOY / "kubernetes"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
DOCKERFILE = REPO / "Dockerfile.windows"

sys.path.insert(0, str(DEPLOY))
import render_base  # noqa: E402  (deploy/render_base.py: the chart -> kustomize base renderer)

# Kubernetes version the manifests are validated against (the newest kubernetes-validate ships).
KUBE_VERSION = kubernetes_validate.utils.latest_version()
RELEASE = render_base.RELEASE
# The bound on every wait, shared with the other deploy tests (kh.WAIT_SECONDS).
WAIT_SECONDS = helpers.WAIT_SECONDS


# ---------------------------------------------------------------------------------------------
# Rendering


def docs_from_text(text: str) -> list[dict]:
    """Every non-empty YAML document in text."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def helm_render(values: dict | None = None, name: str = RELEASE, namespace: str = "monitoring") -> list[dict]:
    """The chart's objects (NOTES.txt excluded) for these values."""
    rendered = render_base.render_chart(values, name=name, namespace=namespace)
    return [doc for template, text in sorted(rendered.items()) if template != "NOTES.txt" for doc in docs_from_text(text)]


def kustomizations() -> list[Path]:
    """Every directory holding a kustomization.yaml (bases, overlays and components)."""
    return sorted(p.parent for p in KUBERNETES.rglob("kustomization.yaml"))


def is_component(directory: Path) -> bool:
    return yaml.safe_load((directory / "kustomization.yaml").read_text()).get("kind") == "Component"


def kustomize(directory: Path) -> list[dict]:
    """`kubectl kustomize directory` as objects; fails with kustomize's own message."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {directory.relative_to(REPO)} failed:\n{result.stderr}"
    return docs_from_text(result.stdout)


def one(objects: list[dict], kind: str) -> dict:
    """The single object of this kind."""
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


# ---------------------------------------------------------------------------------------------
# Validation


MONITOR_SCHEMAS = {
    "ServiceMonitor": SCHEMAS / "servicemonitor-monitoring-v1.json",
    "PodMonitor": SCHEMAS / "podmonitor-monitoring-v1.json",
    "PrometheusRule": SCHEMAS / "prometheusrule-monitoring-v1.json",
}
# (apiVersion, kind) -> our strict schema, for the CRDs kubernetes-validate does not know.
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", kind): path for kind, path in MONITOR_SCHEMAS.items()
} | {("cert-manager.io/v1", "Certificate"): SCHEMAS / "certificate-cert-manager-v1.json"}


def validate(obj: dict) -> None:
    """Strict schema validation: Kubernetes' own schemas for core kinds, ours for the CRDs.

    kubernetes-validate has no prometheus-operator or cert-manager schemas, so ServiceMonitor,
    PodMonitor, PrometheusRule and Certificate are checked against deploy/tests/schemas/*.json: a
    strict subset of the CRD (unknown fields fail).
    """
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    crd = CRD_SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")))
    if crd is not None:
        schema = json.loads(crd.read_text())
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, f"{where}: " + "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)
        return
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        raise AssertionError(f"{where}: {'.'.join(map(str, e.path))}: {e.message}") from None
    except kubernetes_validate.SchemaNotFoundError as e:
        raise AssertionError(f"{where}: no schema to validate against: {e.message}") from None


def linux_only_pod_fields() -> list[str]:
    """Pod fields the API server requires unset when spec.os.name is windows.

    Read from the Kubernetes OpenAPI description of PodSpec.os (the schemas kubernetes-validate
    ships), e.g. "spec.containers[*].securityContext.allowPrivilegeEscalation".
    """
    schema_dir = f"kubernetes-json-schema/v{KUBE_VERSION}-local-strict"
    definitions = json.loads((importlib_resources.files("kubernetes_validate") / schema_dir / "_definitions.json").read_text())
    description = definitions["$defs"]["io.k8s.api.core.v1.PodSpec"]["properties"]["os"]["description"]
    windows_part = description.split("If the OS field is set to windows", 1)[1]
    fields = re.findall(r"- (spec\.[\w.\[\]*]+)", windows_part)
    assert len(fields) > 10, f"could not read the Linux-only field list from: {description}"
    return fields


def lookup(pod_spec: dict, dotted: str) -> list:
    """Values at a path like "spec.containers[*].securityContext.privileged" (relative to a pod)."""
    current = [{"spec": pod_spec}]
    for part in dotted.split("."):
        many = part.endswith("[*]")
        key = part.removesuffix("[*]")
        nxt = []
        for node in current:
            if isinstance(node, dict) and key in node:
                nxt.extend(node[key] if many else [node[key]])
        current = nxt
    return current


# ---------------------------------------------------------------------------------------------
# The real binary


_binary_lock = threading.Lock()
_binary: Path | None = None


def proxy_binary() -> Path:
    """Builds the proxy with cargo (a no-op when fresh) and returns the executable.

    Fails loudly when it cannot be built: the contract tests are worthless without the binary.
    """
    global _binary
    with _binary_lock:
        if _binary is not None:
            return _binary
        result = subprocess.run(
            ["cargo", "build", "--bin", "windows-exporter-proxy", "--message-format=json-render-diagnostics"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        assert result.returncode == 0, f"cargo build failed, so the contract cannot be checked:\n{result.stderr[-4000:]}"
        executables = [
            json.loads(line)["executable"]
            for line in result.stdout.splitlines()
            if line.startswith("{") and json.loads(line).get("executable")
        ]
        assert executables, f"cargo build produced no executable:\n{result.stdout[-2000:]}"
        _binary = Path(executables[-1])
        return _binary


def binary_help() -> str:
    result = subprocess.run([str(proxy_binary()), "--help"], capture_output=True, text=True, timeout=WAIT_SECONDS, check=False)
    assert result.returncode == 0, f"--help exited {result.returncode}: {result.stderr}"
    return result.stdout


def help_variables(help_text: str) -> dict[str, str | None]:
    """Variable name -> default ("required" and "unset" -> None) as `--help` lists them."""
    out: dict[str, str | None] = {}
    for line in help_text.splitlines():
        match = re.match(r"^\s+((?:PROXY_[A-Z_]+)|RUST_LOG)\s+.*\((?:default (.+)|required|unset)\)\s*$", line)
        if match:
            out[match.group(1)] = match.group(2)
    assert "PROXY_HOSTIP" in out and "PROXY_PORT" in out and "PROXY_LISTEN" in out, f"unexpected --help:\n{help_text}"
    return out


ANSI = re.compile(r"\x1b\[[0-9;]*m")


class RunningProxy:
    """A started proxy; `address` is where it listens (from its "listening" log line)."""

    def __init__(self, process: subprocess.Popen, host: str, port: int, lines: list[str], https: bool = False):
        self.process = process
        self.host = host
        self.port = port
        self.lines = lines
        self.https = https

    def get(self, path: str, method: str = "GET") -> tuple[int, bytes]:
        """A request the way the kubelet probes: no credentials, and over HTTPS no verification."""
        if self.https:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            connection = http.client.HTTPSConnection(self.host, self.port, timeout=WAIT_SECONDS, context=context)
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=WAIT_SECONDS)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


@contextmanager
def run_proxy(env: dict[str, str], https: bool = False) -> Iterator[RunningProxy]:
    """Starts the binary with exactly `env` (plus PATH) and waits for its "listening" log line."""
    process = subprocess.Popen(
        [str(proxy_binary())],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    found: queue.Queue = queue.Queue()

    def reader() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = ANSI.sub("", raw.rstrip("\n"))
            lines.append(line)
            match = re.search(r'listening.*?listen"?[=:]\s*"?([^\s",}]+)', line)
            if match:
                found.put(match.group(1))
        found.put(None)

    threading.Thread(target=reader, daemon=True).start()
    try:
        try:
            address = found.get(timeout=WAIT_SECONDS)
        except queue.Empty:
            address = None
        if address is None:
            # The output ended (or never said "listening"): name the exit status, which the
            # process may report a moment after closing its output.
            try:
                process.wait(timeout=WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        assert address, f"proxy did not log 'listening' (exit {process.poll()}); output:\n" + "\n".join(lines)
        host, _, port = address.rpartition(":")
        yield RunningProxy(process, host.strip("[]"), int(port), lines, https)
    finally:
        process.kill()
        process.wait(timeout=WAIT_SECONDS)


class FakeExporter:
    """A windows_exporter stand-in on 127.0.0.1: /health and /metrics, like v0.31.

    With `tls` it serves HTTPS (requiring a client certificate when the context does), with
    `authorization` it answers 401 to any other Authorization header, as exporter-toolkit's
    web-config does on every path.
    """

    # Like every windows_exporter scrape, with windows_exporter_collector_success for the collector
    # that ran (the proxy learns the enabled collectors from it when only PROXY_SLOW_COLLECT is set).
    METRICS = (
        b'# HELP windows_cpu_time_total Time that processor spent in different modes\n# TYPE windows_cpu_time_total counter\n'
        b'windows_cpu_time_total{core="0,0",mode="idle"} 1234.5\n'
        b'# TYPE windows_exporter_collector_success gauge\nwindows_exporter_collector_success{collector="cpu"} 1\n'
    )

    def __init__(self, tls: ssl.SSLContext | None = None, authorization: str | None = None) -> None:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if authorization is not None and self.headers.get("Authorization") != authorization:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", "Basic")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, kind = {
                    "/health": (b'{"status":"ok"}', "application/json"),
                    "/metrics": (exporter.METRICS, "text/plain; version=0.0.4"),
                }.get(self.path.split("?")[0], (b"not found", "text/plain"))
                self.send_response(200 if body != b"not found" else 404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeExporter":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# Reading the DaemonSet


def proxy_container(daemonset: dict) -> dict:
    containers = daemonset["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"expected one container, found {[c['name'] for c in containers]}"
    return containers[0]


def manifest_env(container: dict) -> dict[str, str | dict]:
    """name -> literal value, or the valueFrom object."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def dockerfile_instructions() -> dict[str, list[str]]:
    """Instruction (upper case) -> its arguments, for the final stage of Dockerfile.windows."""
    assert DOCKERFILE.exists(), (
        f"{DOCKERFILE.relative_to(REPO)} is missing: the DaemonSet contract (USER ContainerUser, EXPOSE 9100, "
        "ENTRYPOINT the .exe) is checked against it"
    )
    text = re.sub(r"[\\`]\n", " ", DOCKERFILE.read_text())  # join continuation lines (\ or ` escape)
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            out = {}  # only the final stage is the image that runs
        out.setdefault(instruction.upper(), []).append(rest.strip())
    return out


# ---------------------------------------------------------------------------------------------
# Contract checks shared by the kustomize and Helm tests


WINDOWS_TAINTS = {("os", "windows"), ("sku", "Windows"), ("node.kubernetes.io/os", "windows")}


def tolerates(toleration: dict, taint: dict) -> bool:
    """Whether a toleration tolerates a taint, by Kubernetes' rules (core/v1 Toleration.ToleratesTaint):
    an empty effect matches every effect, an empty key with Exists every key, Exists any value."""
    if toleration.get("effect") and toleration["effect"] != taint["effect"]:
        return False
    if toleration.get("key") and toleration["key"] != taint["key"]:
        return False
    if not toleration.get("key") and toleration.get("operator") != "Exists":
        return False
    if toleration.get("operator") == "Exists":
        return True
    return toleration.get("value", "") == taint.get("value", "")


def untolerated(tolerations: list[dict], taints: list[dict]) -> list[dict]:
    """The taints no toleration in the list tolerates."""
    return [taint for taint in taints if not any(tolerates(t, taint) for t in tolerations)]


def check_daemonset_static(daemonset: dict) -> None:
    """What the DaemonSet must say, read from the manifest alone."""
    pod = daemonset["spec"]["template"]["spec"]
    container = proxy_container(daemonset)
    env = manifest_env(container)
    assert pod["nodeSelector"].get("kubernetes.io/os") == "windows", pod["nodeSelector"]
    assert pod.get("os", {}).get("name") == "windows", "spec.os.name must be windows (Pod Security exemptions)"
    taints = [{"key": key, "value": value, "effect": "NoSchedule"} for key, value in sorted(WINDOWS_TAINTS)]
    missing = untolerated(pod.get("tolerations", []), taints)
    assert not missing, f"missing tolerations for {missing}"
    assert env.get("PROXY_HOSTIP") == {"fieldRef": {"fieldPath": "status.hostIP"}}, env.get("PROXY_HOSTIP")
    assert "PROXY_PORT" in env, "PROXY_PORT must be explicit (it mirrors the nginx setup)"
    ports = {p["name"]: p for p in container["ports"]}
    assert "metrics" in ports and ports["metrics"].get("protocol", "TCP") == "TCP", container["ports"]
    assert not any("hostPort" in p for p in container["ports"]), "no hostPort: the pod is reached on its own IP"
    https = "PROXY_TLS_CERT_FILE" in env
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        expected = {"path": path, "port": "metrics"} | ({"scheme": "HTTPS"} if https else {})
        assert container[probe]["httpGet"] == expected, f"{probe} must be {expected} (HTTPS iff the proxy serves TLS)"
    assert container["resources"]["requests"] and container["resources"]["limits"], container["resources"]
    assert "command" not in container and "args" not in container, "the image's ENTRYPOINT (the .exe) must run as is"
    assert not pod.get("hostNetwork"), "hostNetwork must stay off"
    tokenreview = "tokenreview" in str(env.get("PROXY_AUTH", "")).split(",")
    assert pod.get("automountServiceAccountToken") is tokenreview, "the API token is mounted only for auth tokenreview"
    for mount in container.get("volumeMounts", []):
        assert "subPath" not in mount and "subPathExpr" not in mount, f"{mount['name']}: a subPath mount never sees Secret updates"
    for context in (pod.get("securityContext", {}), container.get("securityContext", {})):
        assert context.get("windowsOptions", {}).get("runAsUserName") == "ContainerUser", context
    strategy = daemonset["spec"]["updateStrategy"]
    assert strategy["type"] == "RollingUpdate" and "maxUnavailable" in strategy["rollingUpdate"], strategy


def check_pod_security_restricted(daemonset: dict) -> None:
    """Pod Security Standards "restricted" as it applies to a Windows pod (spec.os.name: windows).

    The restricted controls allowPrivilegeEscalation, seccompProfile and capabilities are Linux-only
    since Kubernetes 1.25 and skipped for Windows pods; the API server even rejects those fields
    on them (list read from the OpenAPI schema). What remains is checked here: baseline
    (no HostProcess, host namespaces, privileged, hostPath, hostPort) plus runAsNonRoot and the
    restricted volume types.
    """
    pod = daemonset["spec"]["template"]["spec"]
    assert pod.get("os", {}).get("name") == "windows"
    for field in linux_only_pod_fields():
        assert lookup(pod, field) == [], f"{field} is set, which the API server rejects for Windows pods"
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(field), f"spec.{field} breaks Pod Security baseline"
    containers = pod["containers"] + pod.get("initContainers", [])
    contexts = [pod.get("securityContext", {})] + [c.get("securityContext", {}) for c in containers]
    for context in contexts:
        assert not context.get("windowsOptions", {}).get("hostProcess"), "HostProcess breaks Pod Security baseline"
        assert context.get("windowsOptions", {}).get("runAsUserName", "").lower() != "containeradministrator"
    assert pod.get("securityContext", {}).get("runAsNonRoot") is True or all(
        c.get("securityContext", {}).get("runAsNonRoot") is True for c in containers
    ), "restricted requires runAsNonRoot: true"
    restricted_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        assert kinds <= restricted_volumes, f"volume {volume['name']} uses {kinds}, not allowed by restricted"
    for container in containers:
        assert not any("hostPort" in p for p in container.get("ports", [])), "hostPort breaks baseline"


def check_daemonset_against_binary(daemonset: dict) -> None:
    """The DaemonSet and the real binary agree: variable names, listen port, probe paths, values."""
    container = proxy_container(daemonset)
    pod = daemonset["spec"]["template"]["spec"]
    env = manifest_env(container)
    variables = help_variables(binary_help())

    needed = set(env) & SECURITY_VARIABLES
    if "tokenreview" in str(env.get("PROXY_AUTH", "")).split(","):
        needed |= {"PROXY_KUBE_TOKEN_FILE", "PROXY_KUBE_CA_FILE"}  # the contract run's stand-ins for the kubelet's mount
    assert_binary_reads(needed, variables)
    unknown = sorted(set(env) - set(variables))
    assert not unknown, f"the DaemonSet sets {unknown}, which the binary does not read (it reads {sorted(variables)})"

    listen = env.get("PROXY_LISTEN", variables["PROXY_LISTEN"])
    assert isinstance(listen, str), f"PROXY_LISTEN must be a literal, got {listen}"
    listen_host, _, listen_port_text = listen.rpartition(":")
    # The run below must replace the listen address with loopback, so check its host part here.
    ipaddress.ip_address(listen_host.removeprefix("[").removesuffix("]"))
    assert listen_host.startswith("[") == (":" in listen_host), f"PROXY_LISTEN={listen}: IPv6 needs brackets"
    listen_port = int(listen_port_text)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == listen_port, (
        f"containerPort metrics={ports['metrics']} but the proxy listens on {listen} "
        f"({'PROXY_LISTEN in the manifest' if 'PROXY_LISTEN' in env else 'the binary default from --help'})"
    )

    grace = float(env.get("PROXY_SHUTDOWN_GRACE_SECONDS", variables["PROXY_SHUTDOWN_GRACE_SECONDS"]))
    assert pod["terminationGracePeriodSeconds"] > grace, (
        f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} must exceed the drain grace {grace}"
    )

    literal = {name: value for name, value in env.items() if isinstance(value, str)}
    assert set(env) - set(literal) == {"PROXY_HOSTIP"}, f"only PROXY_HOSTIP may come from valueFrom: {env}"
    # Loopback only: the node IP becomes 127.0.0.1 and the listen socket 127.0.0.1 on a free port
    # (the port itself was compared with containerPort above).
    loopback = {"PROXY_HOSTIP": "127.0.0.1", "PROXY_LISTEN": "127.0.0.1:0"}
    https = "PROXY_TLS_CERT_FILE" in literal
    authenticated = bool(literal.get("PROXY_AUTH"))

    with tempfile.TemporaryDirectory(prefix="wep-contract-") as scratch:
        pod_files = PodFiles(Path(scratch), pod, container)
        literal = pod_files.materialize(literal)
        exporter_tls, exporter_authorization = pod_files.exporter_side(literal)

        # 1. Exactly the manifest's values: the binary accepts them all (it exits 64 on a bad one)
        #    and serves both probe paths the way the kubelet asks (over HTTPS when the probes say
        #    so, without credentials, without verifying); nothing needs to listen on PROXY_PORT.
        with run_proxy({**literal, **loopback}, https=https) as proxy:
            status, body = proxy.get(container["livenessProbe"]["httpGet"]["path"])
            assert (status, body.strip()) == (200, b"ok"), f"liveness path answered {status} {body!r}, not 200 ok"
            status, body = proxy.get(container["readinessProbe"]["httpGet"]["path"])
            assert status in (200, 503), f"readiness path answered {status} {body!r}: not a path the proxy serves"

        # 2. With windows_exporter answering on PROXY_PORT (over TLS and with credentials when the
        #    manifest says so): ready; /metrics passes through, or is refused to a scraper without
        #    credentials when the proxy authenticates.
        with FakeExporter(exporter_tls, exporter_authorization) as exporter, run_proxy(
            {**literal, **loopback, "PROXY_PORT": str(exporter.port)}, https=https
        ) as proxy:
            status, body = proxy.get(container["livenessProbe"]["httpGet"]["path"])
            assert (status, body.strip()) == (200, b"ok"), f"liveness path answered {status} {body!r}, not 200 ok"
            status, body = proxy.get(container["readinessProbe"]["httpGet"]["path"])
            assert status == 200, f"readiness with a healthy exporter: {status} {body!r}"
            status, body = proxy.get("/metrics")
            if authenticated:
                assert status == 401, f"/metrics without credentials under PROXY_AUTH={literal['PROXY_AUTH']}: {status} {body!r}"
            else:
                assert status == 200 and b"windows_cpu_time_total" in body, (status, body[:200])


# Variables the chart renders for HTTPS, authentication and the exporter hop, and the
# kubelet-provided ones the contract run overrides. The binary must read every one of them: a
# manifest setting a variable the binary ignores fails the contract, naming it.
SECURITY_VARIABLES = {
    "PROXY_TLS_CERT_FILE", "PROXY_TLS_KEY_FILE", "PROXY_TLS_MIN_VERSION", "PROXY_CLIENT_CA_FILE", "PROXY_AUTH",
    "PROXY_CLIENT_ALLOWED_NAMES", "PROXY_BASIC_AUTH_FILE", "PROXY_TOKENREVIEW_AUDIENCES", "PROXY_AUTHZ_USERS",
    "PROXY_KUBE_API_URL", "PROXY_KUBE_TOKEN_FILE", "PROXY_KUBE_CA_FILE",
    "PROXY_ALLOW_PLAINTEXT_CREDENTIALS", "PROXY_FORWARD_AUTHORIZATION", "PROXY_EXPORTER_SCHEME",
    "PROXY_EXPORTER_CA_FILE", "PROXY_EXPORTER_SERVER_NAME", "PROXY_EXPORTER_INSECURE_SKIP_VERIFY",
    "PROXY_EXPORTER_CLIENT_CERT_FILE", "PROXY_EXPORTER_CLIENT_KEY_FILE", "PROXY_EXPORTER_BASIC_AUTH_USERNAME",
    "PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE",
}


def assert_binary_reads(names: set[str], variables: dict) -> None:
    missing = sorted(names - set(variables))
    assert not missing, f"the manifest sets {missing}, which the binary does not read (--help)"


def openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=WAIT_SECONDS, check=False)
    assert result.returncode == 0, f"openssl {' '.join(args)}: {result.stderr}"


class Pki:
    """A throwaway CA issuing ECDSA P-256 certificates with the openssl CLI (SEC1 keys, as
    cert-manager writes them by default)."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=contract-test-ca",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=directory)
        self.ca = directory / "ca.crt"

    def issue(self, name: str, sans: list[str], usage: str) -> tuple[Path, Path]:
        """(certificate, key) for `name` with these SANs ("DNS:x", "IP:y"); usage serverAuth or clientAuth."""
        openssl("ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", f"{name}.key", cwd=self.directory)
        openssl("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}", "-out", f"{name}.csr", cwd=self.directory)
        (self.directory / f"{name}.ext").write_text(f"subjectAltName={','.join(sans)}\nextendedKeyUsage={usage}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
                "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=self.directory)
        return self.directory / f"{name}.crt", self.directory / f"{name}.key"


class PodFiles:
    """The files the pod's Secret/ConfigMap mounts hold, made for a run on this machine: each
    volumeMount becomes a directory under `root`, each variable naming a file in it gets what the
    variable expects (certificates from a test CA, an htpasswd line, a password)."""

    PASSWORD = "contract-secret"

    def __init__(self, root: Path, pod: dict, container: dict):
        self.root = root
        self.mounts = {m["mountPath"].rstrip("/"): root / "mounts" / m["name"] for m in container.get("volumeMounts", [])}
        volumes = {v["name"] for v in pod.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"volumeMount {mount['name']} has no volume"

    def local(self, value: str) -> Path | None:
        for mount_path, directory in self.mounts.items():
            if value.startswith(mount_path + "/"):
                return directory / value[len(mount_path) + 1:]
        return None

    def materialize(self, env: dict[str, str]) -> dict[str, str]:
        """env with the mounted paths moved under root and their files written."""
        out = dict(env)
        tokenreview = "tokenreview" in env.get("PROXY_AUTH", "").split(",")
        # An https exporter needs a certificate even with nothing mounted (insecure-skip-verify).
        exporter_tls = env.get("PROXY_EXPORTER_SCHEME") == "https"
        if not self.mounts and not tokenreview and not exporter_tls:
            return out
        self.pki = Pki(self.root / "pki")
        server = self.pki.issue("proxy", ["DNS:windows-exporter-proxy", "IP:127.0.0.1"], "serverAuth")
        exporter_name = env.get("PROXY_EXPORTER_SERVER_NAME")
        self.exporter = self.pki.issue(
            "exporter", ["IP:127.0.0.1"] + ([f"DNS:{exporter_name}"] if exporter_name else []), "serverAuth"
        )
        client = self.pki.issue("proxy-client", ["DNS:windows-exporter-proxy"], "clientAuth")
        contents = {
            "PROXY_TLS_CERT_FILE": server[0].read_bytes(),
            "PROXY_TLS_KEY_FILE": server[1].read_bytes(),
            "PROXY_CLIENT_CA_FILE": self.pki.ca.read_bytes(),
            "PROXY_BASIC_AUTH_FILE": self.htpasswd(),
            "PROXY_EXPORTER_CA_FILE": self.pki.ca.read_bytes(),
            "PROXY_EXPORTER_CLIENT_CERT_FILE": client[0].read_bytes(),
            "PROXY_EXPORTER_CLIENT_KEY_FILE": client[1].read_bytes(),
            "PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE": self.PASSWORD.encode(),
        }
        for name, value in env.items():
            path = self.local(value)
            if path is None:
                continue
            assert name in contents, f"{name}={value} is a file in a mounted volume, but the contract run does not know what it holds"
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                assert path.read_bytes() == contents[name], f"{name}: {value} would have to hold two different files"
            path.write_bytes(contents[name])
            out[name] = str(path)
        if tokenreview:
            # What the kubelet gives a pod with automountServiceAccountToken: the API server's
            # address and the projected token and CA (nothing listens there: probes and an
            # unauthenticated scrape must not need the API server).
            token = self.root / "serviceaccount" / "token"
            token.parent.mkdir(parents=True)
            token.write_text("contract-test-token")
            out |= {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(closed_port()),
                    "PROXY_KUBE_TOKEN_FILE": str(token), "PROXY_KUBE_CA_FILE": str(self.pki.ca)}
        return out

    def htpasswd(self) -> bytes:
        result = subprocess.run(["htpasswd", "-nbBC", "10", "prometheus", self.PASSWORD],
                                capture_output=True, timeout=WAIT_SECONDS, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def exporter_side(self, env: dict[str, str]) -> tuple[ssl.SSLContext | None, str | None]:
        """What the fake exporter must enforce to match the manifest's exporter settings."""
        context = None
        if env.get("PROXY_EXPORTER_SCHEME") == "https":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.exporter)
            if "PROXY_EXPORTER_CLIENT_CERT_FILE" in env:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(self.pki.ca)
        authorization = None
        if "PROXY_EXPORTER_BASIC_AUTH_USERNAME" in env:
            pair = f"{env['PROXY_EXPORTER_BASIC_AUTH_USERNAME']}:{self.PASSWORD}".encode()
            authorization = "Basic " + base64.b64encode(pair).decode()
        return context, authorization


def wait_for_log(log: Path, text: str, process: subprocess.Popen) -> None:
    """Waits until `text` appears in the file `log` written by `process` (WAIT_SECONDS at most)."""
    deadline = threading.Event()
    timer = threading.Timer(WAIT_SECONDS, deadline.set)
    timer.start()
    try:
        while not deadline.is_set():
            if text in log.read_text():
                return
            assert process.poll() is None, f"exited {process.returncode} before logging {text!r}:\n{log.read_text()}"
            deadline.wait(0.05)
        raise AssertionError(f"no {text!r} within {WAIT_SECONDS} s:\n{log.read_text()}")
    finally:
        timer.cancel()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_daemonset_against_dockerfile(daemonset: dict) -> None:
    """The DaemonSet and Dockerfile.windows agree: user, exposed port, entrypoint."""
    instructions = dockerfile_instructions()
    container = proxy_container(daemonset)
    users = instructions.get("USER", [])
    assert users and users[-1] == "ContainerUser", f"Dockerfile.windows final USER is {users}, expected ContainerUser"
    assert container["securityContext"]["windowsOptions"]["runAsUserName"] == users[-1]
    exposed = {int(p.split("/")[0]) for line in instructions.get("EXPOSE", []) for p in line.split()}
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
    assert port in exposed, f"containerPort {port} is not EXPOSEd by Dockerfile.windows ({sorted(exposed)})"
    entrypoint = instructions.get("ENTRYPOINT", [])
    assert entrypoint, "Dockerfile.windows has no ENTRYPOINT"
    exec_form = json.loads(entrypoint[-1])
    assert isinstance(exec_form, list) and exec_form[0].lower().endswith("windows-exporter-proxy.exe"), (
        f"ENTRYPOINT must be the exec form running windows-exporter-proxy.exe (no shell), got {entrypoint[-1]}"
    )


def check_monitor_relabelling(monitor: dict) -> None:
    """instance and node come from the node name, not the pod IP."""
    key = "endpoints" if monitor["kind"] == "ServiceMonitor" else "podMetricsEndpoints"
    for endpoint in monitor["spec"][key]:
        assert endpoint["port"] == "metrics"
        rules = endpoint.get("relabelings", [])
        for target in ("instance", "node"):
            assert any(
                r.get("sourceLabels") == ["__meta_kubernetes_pod_node_name"]
                and r.get("targetLabel") == target
                and r.get("action", "replace").lower() == "replace"
                for r in rules
            ), f"{monitor['kind']}: no relabeling sets {target} from __meta_kubernetes_pod_node_name: {rules}"


def operator_to_prometheus_relabel(rule: dict) -> dict:
    """A prometheus-operator RelabelConfig (camelCase) as a prometheus.yml relabel_config."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label", "separator": "separator",
             "regex": "regex", "modulus": "modulus", "replacement": "replacement", "action": "action"}
    unknown = set(rule) - set(names)
    assert not unknown, f"unknown relabeling fields {unknown}"
    return {names[k]: (v.lower() if k == "action" else v) for k, v in rule.items()}
