"""Render the kustomize base and components from the Helm chart (the single source of truth).

deploy/kubernetes/base/ and the ServiceMonitor, PodMonitor, PrometheusRule and Grafana dashboard
components are the chart's output for its default values (each component with only its `enabled`
switch turned on). The security components (tls, cert-manager, tokenreview, networkpolicy) hold
the chart's extra objects for their values and, for objects the base already has, patches: the
difference between the chart rendered without and with those values. Run through
deploy/render-base; `--check` compares instead of writing and exits 1 with a diff on any drift.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import sys
from pathlib import Path

import helm_python as helm
import yaml

DEPLOY = Path(__file__).resolve().parent
CHART = DEPLOY / "helm" / "windows-exporter-proxy"
KUBERNETES = DEPLOY / "kubernetes"
RELEASE = "windows-exporter-proxy"

HEADER = """\
# GENERATED FILE - do not edit. Rendered by deploy/render-base from the Helm chart
# deploy/helm/windows-exporter-proxy ({values}).
# Change the chart (or its values.yaml), then run deploy/render-base; the deploy tests fail on drift.
"""

# output file -> (values passed to the chart, templates taken from the output, in order)
OUTPUTS: dict[str, tuple[dict, list[str]]] = {
    "base/windows-exporter-proxy.yaml": (
        {},
        ["serviceaccount.yaml", "service.yaml", "daemonset.yaml"],
    ),
    "components/servicemonitor/servicemonitor.yaml": (
        {"serviceMonitor": {"enabled": True}},
        ["servicemonitor.yaml"],
    ),
    "components/podmonitor/podmonitor.yaml": (
        {"podMonitor": {"enabled": True}},
        ["podmonitor.yaml"],
    ),
    # The rules of deploy/prometheus/rules and the dashboards of deploy/grafana/dashboards, through
    # the chart's templates (which read them via the chart's files/ links).
    "components/prometheusrule/prometheusrule.yaml": (
        {"prometheusRule": {"enabled": True}},
        ["prometheusrule.yaml"],
    ),
    "components/grafana-dashboards/grafana-dashboards.yaml": (
        {"grafanaDashboards": {"enabled": True}},
        ["grafana-dashboards.yaml"],
    ),
}


# The Certificate is rendered for the namespace the README and the example overlays use: its
# dnsNames hold that namespace's Service names besides the short name windows-exporter-proxy, which
# the components' monitors verify, so it works in any namespace. Everything else is rendered like
# the base, for "default", which kustomize's namespace transformer rewrites (RBAC subjects included).
CERTIFICATE_NAMESPACE = "monitoring"
MONITORS_ON = {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}
SHORT_NAME = {"tlsConfig": {"serverName": RELEASE}}
TLS = {"tls": {"enabled": True}, "serviceMonitor": SHORT_NAME, "podMonitor": SHORT_NAME}
TOKENREVIEW = {"auth": {"methods": ["tokenreview"]}}
# The slow path as values-aks-native.yaml sets it (deploy/README.md, "The slow path").
SLOW = {"collectors": {"slow": ["process", "service"]}}
# The filter component: AKS's exporter without the service collector's families and with only the
# node agents' processes (deploy/README.md, "Dropping series on the node").
FILTER = {
    "proxy": {
        "metricDrop": "windows_service_.+",
        "seriesDrop": ['{__name__=~"windows_process_.+",process!~"kubelet|kube-proxy|containerd.*"}'],
    }
}

# output file -> (values without, values with the component; the kind patched). DaemonSets get a
# strategic-merge patch; the monitors, whose endpoint lists kustomize cannot merge (no schema for
# CRDs), a JSON patch replacing the endpoint list.
PATCHES: dict[str, tuple[dict, dict, str]] = {
    "components/tls/daemonset-patch.yaml": ({}, TLS, "DaemonSet"),
    "components/tls/servicemonitor-patch.yaml": (MONITORS_ON, [MONITORS_ON, TLS], "ServiceMonitor"),
    "components/tls/podmonitor-patch.yaml": (MONITORS_ON, [MONITORS_ON, TLS], "PodMonitor"),
    "components/tokenreview/daemonset-patch.yaml": (TLS, [TLS, TOKENREVIEW], "DaemonSet"),
    "components/slow-path/daemonset-patch.yaml": ({}, SLOW, "DaemonSet"),
    "components/filter/daemonset-patch.yaml": ({}, FILTER, "DaemonSet"),
    "components/tokenreview/servicemonitor-patch.yaml": (
        [{"serviceMonitor": {"enabled": True}}, TLS],
        [{"serviceMonitor": {"enabled": True}}, TLS, TOKENREVIEW],
        "ServiceMonitor",
    ),
}

# output file -> kind: the monitors' /metrics/slow endpoint (SLOW), as JSON patch operations that
# copy the monitor's first endpoint (/metrics, with whatever TLS and authentication an earlier
# component gave it) and change its path, interval and timeout, so the component composes with tls
# and tokenreview listed before it. Checked against the chart's own third endpoint.
SLOW_ENDPOINTS: dict[str, str] = {
    "components/slow-path/servicemonitor-patch.yaml": "ServiceMonitor",
    "components/slow-path/podmonitor-patch.yaml": "PodMonitor",
}

# output file -> (values, templates, namespace): whole objects a component adds.
COMPONENT_RESOURCES: dict[str, tuple[dict | list, list[str], str]] = {
    "components/cert-manager/certificate.yaml": (
        [{"tls": {"enabled": True}}, {"tls": {"certManager": {"enabled": True, "issuerRef": {"name": f"{RELEASE}-ca"}}}}],
        ["certificate.yaml"],
        CERTIFICATE_NAMESPACE,
    ),
    "components/tokenreview/rbac.yaml": ([{"tls": {"enabled": True}}, TOKENREVIEW], ["rbac.yaml"], "default"),
    "components/networkpolicy/networkpolicy.yaml": ({"networkPolicy": {"enabled": True}}, ["networkpolicy.yaml"], "default"),
}


def merged(values: dict | list) -> dict:
    """One values dict from a list of them, later ones winning (Helm's -f a.yaml -f b.yaml)."""
    out: dict = {}

    def merge(into: dict, extra: dict) -> None:
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = copy.deepcopy(value)

    for part in values if isinstance(values, list) else [values]:
        merge(out, part)
    return out


def strategic_patch(old, new, where: str = ""):
    """The strategic-merge patch taking `old` to `new`, for a change that only adds or changes
    fields: lists of named items (containers, env, volumes) merge by name, other lists are replaced."""
    if isinstance(old, dict) and isinstance(new, dict):
        removed = set(old) - set(new)
        if removed:
            raise SystemExit(f"render-base: {where} loses {sorted(removed)}; a patch here only adds")
        return {k: (v if k not in old else strategic_patch(old[k], v, f"{where}.{k}")) for k, v in new.items() if old.get(k) != v}
    named = all(isinstance(i, dict) and "name" in i for i in [*old, *new]) if isinstance(old, list) and isinstance(new, list) else False
    if named and old and not where.endswith("volumeMounts"):
        by_name = {i["name"]: i for i in old}
        if set(by_name) - {i["name"] for i in new}:
            raise SystemExit(f"render-base: {where} loses items; a patch here only adds")
        return [
            item if item["name"] not in by_name else {"name": item["name"], **strategic_patch(by_name[item["name"]], item, where)}
            for item in new
            if by_name.get(item["name"]) != item
        ]
    return new


def patch_text(without: dict | list, with_: dict | list, kind: str) -> str:
    old = _one(render_objects(merged(without)), kind)
    new = _one(render_objects(merged(with_)), kind)
    if kind == "DaemonSet":
        patch = strategic_patch(old, new)
        patch = {"apiVersion": new["apiVersion"], "kind": kind, "metadata": {"name": new["metadata"]["name"]}, **patch}
        return yaml.safe_dump(patch, sort_keys=False, width=120)
    key = "endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"
    assert {k: v for k, v in old["spec"].items() if k != key} == {k: v for k, v in new["spec"].items() if k != key}
    ops = [{"op": "replace", "path": f"/spec/{key}", "value": new["spec"][key]}]
    return yaml.safe_dump(ops, sort_keys=False, width=120)


def slow_endpoint_text(kind: str) -> str:
    key = "endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"
    old = _one(render_objects(MONITORS_ON), kind)["spec"][key]
    new = _one(render_objects(merged([MONITORS_ON, SLOW])), kind)["spec"][key]
    if new[:-1] != old or len(new) != len(old) + 1:
        raise SystemExit(f"render-base: {kind} with {SLOW} is not its endpoints plus one")
    slow, at = new[-1], len(old)
    changed = {k: v for k, v in slow.items() if old[0].get(k) != v}
    if set(old[0]) - set(slow) or set(changed) - {"path", "interval", "scrapeTimeout"}:
        raise SystemExit(f"render-base: {kind}'s /metrics/slow endpoint is not /metrics with another path and timing")
    ops = [{"op": "copy", "from": f"/spec/{key}/0", "path": f"/spec/{key}/-"}]
    ops += [{"op": "add", "path": f"/spec/{key}/{at}/{k}", "value": v} for k, v in changed.items()]
    return yaml.safe_dump(ops, sort_keys=False, width=120)


def render_objects(values: dict) -> list[dict]:
    rendered = render_chart(values)
    return [doc for name, text in sorted(rendered.items()) if name != "NOTES.txt" for doc in yaml.safe_load_all(text) if doc]


def _one(objects: list[dict], kind: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def render_chart(values: dict | None = None, name: str = RELEASE, namespace: str = "default") -> dict[str, str]:
    """Render the chart; returns template file name (e.g. "daemonset.yaml") -> manifest text."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values or {}, name=name, namespace=namespace)
    prefix = f"{chart_name()}/templates/"
    return {path.removeprefix(prefix): text for path, text in rendered.items()}


def chart_name() -> str:
    with helm.Chart.load(CHART) as chart:
        return chart.name


def expected_files() -> dict[Path, str]:
    """Every generated file's path and exact expected content."""
    out: dict[Path, str] = {}
    for rel, (values, templates) in OUTPUTS.items():
        rendered = render_chart(values)
        docs = []
        for template in templates:
            text = rendered[template].strip("\n")
            if not text.strip():
                raise SystemExit(f"render-base: {template} rendered empty with values {values}")
            docs.append(text + "\n")
        described = "default values" + "".join(f", --set {k}" for k in _flatten(values))
        out[KUBERNETES / rel] = HEADER.format(values=described) + "---\n".join(docs)
    for rel, (values, templates, namespace) in COMPONENT_RESOURCES.items():
        rendered = render_chart(merged(values), namespace=namespace)
        docs = [rendered[t].strip("\n") + "\n" for t in templates]
        if not all(d.strip() for d in docs):
            raise SystemExit(f"render-base: {templates} rendered empty with values {values}")
        described = _described(values) + ("" if namespace == "default" else f"  namespace {namespace}\n# ")
        out[KUBERNETES / rel] = HEADER.format(values=described) + "---\n".join(docs)
    for rel, kind in SLOW_ENDPOINTS.items():
        header = HEADER.format(
            values=f"a {kind} patch:\n#   the /metrics/slow endpoint that --set collectors.slow={{process,service}}\n"
            f"#   adds to the chart's {kind}, as a copy of its /metrics endpoint"
        )
        out[KUBERNETES / rel] = header + slow_endpoint_text(kind)
    for rel, (without, with_, kind) in PATCHES.items():
        before = _flatten(merged(without))
        added = ", ".join(f"--set {k}" for k in _flatten(merged(with_)) if k not in before)
        header = HEADER.format(values=f"a {kind} patch:\n#   what {added}\n#   changes in the chart's {kind}")
        out[KUBERNETES / rel] = header + patch_text(without, with_, kind)
    return out


def _described(values: dict | list) -> str:
    flat = _flatten(merged(values))
    return "".join(f"\n#   --set {k}" for k in flat) + "\n# "


def _flatten(values: dict, prefix: str = "") -> list[str]:
    """{"a": {"b": True}} -> ["a.b=true"], the `helm --set` spelling of the values used."""
    out: list[str] = []
    for key, value in values.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, list):
            out.append(f"{prefix}{key}={{{','.join(map(str, value))}}}")
        else:
            out.append(f"{prefix}{key}={str(value).lower() if isinstance(value, bool) else value}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files on disk; exit 1 on any difference")
    args = parser.parse_args()
    drift = False
    for path, text in expected_files().items():
        rel = path.relative_to(DEPLOY.parent)
        if args.check:
            current = path.read_text() if path.exists() else ""
            if current != text:
                drift = True
                sys.stdout.writelines(
                    difflib.unified_diff(
                        current.splitlines(keepends=True),
                        text.splitlines(keepends=True),
                        f"{rel} (on disk)",
                        f"{rel} (rendered from the chart)",
                    )
                )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {rel}")
    if drift:
        print("render-base: generated files differ from the chart; run deploy/render-base", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
