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
