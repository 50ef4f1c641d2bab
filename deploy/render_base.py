"""Render the kustomize base and components from the Helm chart (the single source of truth).

deploy/kubernetes/base/ and the ServiceMonitor/PodMonitor components are the chart's output for
its default values (the monitors with only their `enabled` switch turned on). Run through
deploy/render-base; `--check` compares instead of writing and exits 1 with a diff on any drift.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

import helm_python as helm

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
}


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
    return out


def _flatten(values: dict, prefix: str = "") -> list[str]:
    """{"a": {"b": True}} -> ["a.b=true"], the `helm --set` spelling of the values used."""
    out: list[str] = []
    for key, value in values.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key}.")
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
