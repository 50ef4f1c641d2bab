"""Tests for deploy/prometheus: config and rule syntax (promtool), recording-rule values
(promtool unit tests), the remote-write keep rules (Python model and a real Prometheus pair on
loopback), and the contract that every windows_* name we rely on is a documented
windows_exporter v0.31 family.

Run from the repo root: .venv/bin/pytest deploy/tests -k prometheus
"""

import http.server
import json
import pathlib
import re
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request

import pytest
import yaml

import helpers
from helpers import free_port, run, wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
CONFIG = PROM / "prometheus.yml"
RULES = sorted((PROM / "rules").glob("*.rules.yml"))
UNIT_TESTS = sorted((PROM / "tests").glob("*.test.yml"))
FAMILIES_FILE = PROM / "windows_exporter_metric_families.txt"
COMPAT_RULES = PROM / "rules" / "windows-node-exporter-compat.rules.yml"



@pytest.fixture(scope="module")
def promtool():
    return helpers.tool("promtool")


@pytest.fixture(scope="module")
def prometheus():
    return helpers.tool("prometheus")


# What each remote-write entry must forward, written out independently of the regexes.
NODE_COLLECTORS_KEPT_WHOLE = {"logical_disk", "memory", "os", "system"}
NODE_KEPT_EXTRA = {
    "windows_cpu_time_total",
    "windows_cpu_logical_processor",
    "windows_net_bytes_received_total",
    "windows_net_bytes_sent_total",
}
CONTAINER_KEPT = {
    "windows_container_cpu_usage_seconds_total",
    "windows_container_memory_usage_private_working_set_bytes",
    "windows_container_memory_usage_commit_bytes",
    "windows_container_storage_read_size_bytes_total",
    "windows_container_storage_write_size_bytes_total",
    "windows_container_network_receive_bytes_total",
    "windows_container_network_transmit_bytes_total",
}
COMPAT_KEPT = {
    "node_cpu_seconds_total",
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemFree_bytes",
    "node_memory_Cached_bytes",
    "node_memory_SwapTotal_bytes",
    "node_memory_SwapFree_bytes",
    "node_filesystem_size_bytes",
    "node_filesystem_avail_bytes",
    "node_filesystem_free_bytes",
    "node_disk_read_bytes_total",
    "node_disk_written_bytes_total",
    "node_disk_reads_completed_total",
    "node_disk_writes_completed_total",
    "node_disk_read_time_seconds_total",
    "node_disk_write_time_seconds_total",
    "node_disk_io_time_weighted_seconds_total",
    "node_disk_io_time_seconds_total",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_network_receive_packets_total",
    "node_network_transmit_packets_total",
    "node_network_receive_errs_total",
    "node_network_transmit_errs_total",
    "node_network_receive_drop_total",
    "node_network_transmit_drop_total",
    "node_boot_time_seconds",
    "node_time_seconds",
    "node_os_info",
    "node_uname_info",
    "instance:node_num_cpu:sum",
    "instance:node_cpu_utilisation:rate5m",
    "instance:node_memory_utilisation:ratio",
    "instance:node_network_receive_bytes_excluding_lo:rate5m",
    "instance:node_network_transmit_bytes_excluding_lo:rate5m",
    "instance:node_network_receive_drop_excluding_lo:rate5m",
    "instance:node_network_transmit_drop_excluding_lo:rate5m",
}
# Names from before v0.31 (renames table) and unrelated series: none may be forwarded by the
# node-compat entry, and the cs ones by no entry at all.
NEVER_KEPT = [
    "windows_cs_logical_processors",
    "windows_cs_physical_memory_bytes",
    "windows_cs_hostname",
    "windows_exporter_proxy_upstream_requests_total",
    "windows_service_state",
    "node_cpu_seconds_total",  # Linux node_exporter series carry no os="windows"
    "up",
    "go_goroutines",
]


def load_families():
    """{family: collector} from the documented list."""
    families = {}
    for line in FAMILIES_FILE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        collector, family = line.split()
        assert family not in families, f"{family} listed twice"
        families[family] = collector
    return families


def remote_writes():
    return {rw["name"]: rw for rw in yaml.safe_load(CONFIG.read_text())["remote_write"]}


def keeps(rw):
    """Prometheus relabel semantics for our keep-only entries: join source labels with the
    separator and fully match the regex (Prometheus anchors it as ^(?:regex)$)."""
    rules = rw["write_relabel_configs"]

    def kept(labels):
        for rule in rules:
            assert rule["action"] == "keep", "the model only handles keep rules"
            value = rule.get("separator", ";").join(labels.get(l, "") for l in rule["source_labels"])
            if re.fullmatch(rule["regex"], value) is None:
                return False
        return True

    return kept


def split_alternatives(regex):
    """Top-level alternatives of a regex (respects parentheses)."""
    parts, depth, current = [], 0, ""
    for ch in regex:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "|" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def name_alternatives(rw):
    """Metric-name alternatives of an entry's keep regex, without the os;(?:...) wrapper."""
    (rule,) = rw["write_relabel_configs"]
    regex = rule["regex"]
    if rule["source_labels"] != ["__name__"]:
        assert rule["source_labels"] == ["os", "__name__"]
        match = re.fullmatch(r"windows;\(\?:(.*)\)", regex)
        assert match, regex
        regex = match.group(1)
    return split_alternatives(regex)


def rule_exprs():
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield path.name, rule


# --------------------------------------------------------------------------- promtool


def test_promtool_is_debian_prometheus_2(promtool):
    out = run([promtool, "--version"])
    assert out.returncode == 0
    assert re.search(r"promtool, version 2\.\d+", out.stdout + out.stderr), out.stdout


def test_promtool_check_config(promtool, tmp_path):
    """promtool check config on the plain config, rule files included.

    Debian's prometheus package is built without Kubernetes service discovery
    (kubernetes_sd_configs is an unknown field there), so the scrape jobs' SD block is swapped
    for static_configs; everything else is checked as written. The Kubernetes block, the jobs run
    through a real Prometheus and their commented-out HTTPS settings are checked by
    deploy/tests/test_kubernetes.py; test_scrape_jobs_are_the_kubernetes_areas_jobs keeps the copy."""
    config = yaml.safe_load(CONFIG.read_text())
    assert [job["metrics_path"] for job in config["scrape_configs"]] == ["/metrics", "/proxy/metrics"]
    for job in config["scrape_configs"]:
        job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["127.0.0.1:9100"]}]
    shutil.copytree(PROM / "rules", tmp_path / "rules")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    out = run([promtool, "check", "config", str(tmp_path / "prometheus.yml")])
    assert out.returncode == 0, out.stdout + out.stderr
    # Recording rules and alerts alike: every file in rules/ is loaded.
    assert f"{len(list((PROM / 'rules').glob('*.yml')))} rule files found" in out.stdout + out.stderr


def test_scrape_jobs_are_the_kubernetes_areas_jobs():
    """The scrape jobs are owned by deploy/kubernetes (they match the chart's ServiceMonitor); the
    plain config carries an identical copy, comments (the commented-out HTTPS and credential
    settings) included."""
    theirs = (ROOT / "deploy" / "kubernetes" / "prometheus" / "scrape-config.yaml").read_text()
    ours = CONFIG.read_text()
    assert yaml.safe_load(ours)["scrape_configs"] == yaml.safe_load(theirs)["scrape_configs"]
    block = theirs[theirs.index("\nscrape_configs:\n"):].rstrip("\n") + "\n"
    assert block in ours, "copy the scrape_configs block of scrape-config.yaml into prometheus.yml verbatim"


def test_promtool_check_rules(promtool):
    out = run([promtool, "check", "rules", *map(str, RULES)])
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(RULES)


@pytest.mark.parametrize("unit", UNIT_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(promtool, unit):
    out = run([promtool, "test", "rules", str(unit)])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_unit_tests_catch_privileged_double_count(promtool, tmp_path):
    """The unit tests fail for the naive mapping privileged -> system (interrupt and DPC time
    then count twice): proof that they check values, not just syntax."""
    text = COMPAT_RULES.read_text()
    naive = re.sub(
        r'\s*- ignoring \(mode\) windows_cpu_time_total\{mode="interrupt"\}'
        r'\s*- ignoring \(mode\) windows_cpu_time_total\{mode="dpc"\},',
        ",",
        text,
    )
    assert naive != text
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "rules" / COMPAT_RULES.name).write_text(naive)
    unit = PROM / "tests" / "windows-node-exporter-compat.test.yml"
    (tmp_path / "tests" / unit.name).write_text(unit.read_text())
    out = run([promtool, "test", "rules", str(tmp_path / "tests" / unit.name)])
    assert out.returncode != 0
    assert 'mode="system"' in out.stdout + out.stderr


def test_sumologic_values_match_plain_config():
    """sumologic-values.yaml is generated from prometheus.yml and rules/; it must be current,
    and carry the same keep rules and rule groups."""
    out = run([shutil.which("python3") or "python3", str(PROM / "render_sumologic_values.py"), "--check"])
    assert out.returncode == 0, out.stdout + out.stderr
    values = yaml.safe_load((PROM / "sumologic-values.yaml").read_text())["kube-prometheus-stack"]
    sumo = {rw["name"]: rw for rw in values["prometheus"]["prometheusSpec"]["additionalRemoteWrite"]}
    plain = remote_writes()
    assert sumo.keys() == plain.keys()
    for name, rw in plain.items():
        assert sumo[name]["url"].startswith("http://$(METADATA_METRICS_SVC).$(NAMESPACE).svc.cluster.local.:9888/prometheus.metrics.")
        assert urllib.parse.urlsplit(sumo[name]["url"]).path == urllib.parse.urlsplit(rw["url"]).path
        (plain_rule,) = rw["write_relabel_configs"]
        (sumo_rule,) = sumo[name]["writeRelabelConfigs"]
        assert sumo_rule == {
            "action": plain_rule["action"],
            "sourceLabels": plain_rule["source_labels"],
            "regex": plain_rule["regex"],
        }
    groups = [g for p in RULES for g in yaml.safe_load(p.read_text())["groups"]]
    assert values["additionalPrometheusRulesMap"]["windows-exporter-proxy"]["groups"] == groups


def test_sumologic_v4_and_v5_take_node_series_from_the_proxy():
    """v3 is marked legacy; v4 remote-writes the same entries with no rule groups (the node_*
    series come from PROXY_NODE_METRICS=append); v5's collector selects the proxy's ServiceMonitor
    by the label values-sumologic.yaml gives it; the proxy keeps exactly the windows_* families the
    windows-node and windows-container entries forward."""
    assert "LEGACY" in (PROM / "sumologic-values.yaml").read_text().split("\n", 3)[2]
    v4 = yaml.safe_load((PROM / "sumologic-v4-values.yaml").read_text())
    assert v4["sumologic"]["metrics"]["collector"]["otelcol"]["enabled"] is False
    assert v4["sumologic"]["metrics"]["remoteWriteProxy"]["enabled"] is True
    kps = v4["kube-prometheus-stack"]
    assert "additionalPrometheusRulesMap" not in kps and kps["prometheus"]["enabled"] is True
    assert kps["prometheusOperator"]["enabled"] is True
    v3 = yaml.safe_load((PROM / "sumologic-values.yaml").read_text())["kube-prometheus-stack"]
    assert kps["prometheus"]["prometheusSpec"] == v3["prometheus"]["prometheusSpec"]

    proxy = yaml.safe_load((ROOT / "deploy" / "helm" / "values-sumologic.yaml").read_text())
    assert proxy["proxy"]["nodeMetrics"] == "append" and proxy["serviceMonitor"]["enabled"] is True
    v5 = yaml.safe_load((PROM / "sumologic-v5-values.yaml").read_text())
    otelcol = v5["sumologic"]["metrics"]["collector"]["otelcol"]
    assert otelcol == {"enabled": True}
    assert list(proxy["serviceMonitor"]["labels"]) == ["release"]
    assert "kube-prometheus-stack" not in v5

    families = load_families()
    keep = re.compile(f"^(?:{proxy['env']['PROXY_METRIC_KEEP']})$")
    rws = remote_writes()
    forwarded = keeps(rws["windows-node"]), keeps(rws["windows-container"])
    for family in sorted(set(families) | set(NEVER_KEPT)):
        assert bool(keep.match(family)) == any(k({"__name__": family}) for k in forwarded), family


# --------------------------------------------------------------------------- contract


def test_families_list_has_its_source_and_the_collectors_we_use():
    header = FAMILIES_FILE.read_text()
    assert "v0.31" in header and "prometheus-community/windows_exporter" in header
    collectors = set(load_families().values())
    assert {"cpu", "memory", "logical_disk", "net", "os", "system", "container"} <= collectors
    # The removed names must not sneak back in.
    for removed in ["windows_cs_logical_processors", "windows_os_visible_memory_bytes",
                    "windows_system_system_up_time", "windows_system_boot_time_timestamp_seconds",
                    "windows_os_physical_memory_free_bytes", "windows_os_processes"]:
        assert removed not in load_families()


@pytest.mark.parametrize("entry", ["windows-node", "windows-container"])
def test_keep_regex_alternatives_are_documented_families(entry):
    """Each alternative is a literal documented family or a documented prefix followed by .*,
    and matches at least one documented family."""
    families = load_families()
    for alt in name_alternatives(remote_writes()[entry]):
        assert re.fullmatch(r"windows_[a-z0-9_]+(_\.\*)?", alt), f"{entry}: unexpected regex form {alt!r}"
        if alt.endswith(".*"):
            matched = [f for f in families if re.fullmatch(alt, f)]
            assert matched, f"{entry}: {alt!r} matches no documented windows_exporter v0.31 family"
        else:
            assert alt in families, f"{entry}: {alt!r} is not a documented windows_exporter v0.31 family"


def test_compat_keep_names_are_exactly_the_recorded_series():
    recorded = {rule["record"] for name, rule in rule_exprs() if name == COMPAT_RULES.name}
    assert set(name_alternatives(remote_writes()["windows-node-compat"])) == recorded == COMPAT_KEPT
    for name, rule in rule_exprs():
        if name == COMPAT_RULES.name:
            assert rule.get("labels") == {"os": "windows"}, rule["record"]


# The catalogues of every supported windows_exporter version (all HELP/TYPE lines of its e2e run).
CATALOGUES = sorted((ROOT / "tests" / "fixtures" / "nodemetrics").glob("windows_exporter-*-catalog.prom"))


def catalogue_names(path):
    return {line.split()[2] for line in path.read_text(encoding="utf-8-sig").splitlines() if line.startswith("# TYPE ")}


def test_rules_only_read_documented_families():
    """Every rule file but the compat one reads v0.31 names only. The compat rules are generated
    from src/nodemetrics/table.rs and read each version band's own names, older ones as
    fallbacks: each must be in some supported version's metric list (the Rust tests check, per
    version, that every family still maps)."""
    families = load_families()
    assert len(CATALOGUES) == 5
    supported = set().union(*map(catalogue_names, CATALOGUES))
    for name, rule in rule_exprs():
        for metric in re.findall(r"\bwindows_[a-z0-9_]+", rule["expr"]):
            if name == COMPAT_RULES.name:
                assert metric in supported, f"{name}: {rule['record']} reads {metric}, in no supported version"
            else:
                assert metric in families, f"{name}: {rule['record']} reads {metric}, not a v0.31 family"


# --------------------------------------------------------------------------- keep rules, model


def test_keep_rules_model():
    """Run each entry's keep rule (anchored, as Prometheus does) over every documented family
    plus names that must be dropped, and compare with the expected sets written above."""
    families = load_families()
    rws = remote_writes()
    assert rws.keys() == {"windows-node", "windows-container", "windows-node-compat"}
    expected_node = {f for f, c in families.items() if c in NODE_COLLECTORS_KEPT_WHOLE} | NODE_KEPT_EXTRA
    names = sorted(set(families) | set(NEVER_KEPT))

    node = keeps(rws["windows-node"])
    container = keeps(rws["windows-container"])
    compat = keeps(rws["windows-node-compat"])
    assert {n for n in names if node({"__name__": n})} == expected_node
    assert {n for n in names if container({"__name__": n})} == CONTAINER_KEPT
    assert {n for n in names if compat({"__name__": n})} == set()
    assert {n for n in COMPAT_KEPT if compat({"__name__": n, "os": "windows"})} == COMPAT_KEPT
    for n in NEVER_KEPT:
        assert not any(k({"__name__": n, "os": "windows" if n.startswith("node_") else ""})
                       for k in (node, container)), n
    # Anchoring: a name that merely contains a kept name is not kept.
    assert not node({"__name__": "windows_cpu_time_total_extra"})
    assert not node({"__name__": "x_windows_memory_available_bytes"})
    assert not compat({"__name__": "node_cpu_seconds_total", "os": "windowsx"})


# --------------------------------------------------------------------------- keep rules, real Prometheus


def exposition(families, step):
    """A windows_exporter v0.31-like scrape: one series per documented family (the cpu time
    series for every mode) plus non-windows series. Counters grow with each scrape."""
    labels = {
        "cpu": '{core="0,0"}',
        "logical_disk": '{volume="C:"}',
        "net": '{nic="Microsoft Hyper-V Network Adapter"}',
        "service": '{name="kubelet"}',
        "exporter": '{collector="cpu"}',
        "container": '{container_id="containerd://abc",namespace="default",pod="web-0",container="web"}',
    }
    lines = []
    for family, collector in sorted(families.items()):
        value = 1000 + 10 * step if family.endswith("_total") else 42
        if family == "windows_cpu_time_total":
            for core in ("0,0", "0,1"):
                for mode in ("dpc", "idle", "interrupt", "privileged", "user"):
                    lines.append(f'{family}{{core="{core}",mode="{mode}"}} {value}')
            continue
        lines.append(f"{family}{labels.get(collector, '')} {value}")
    lines += ["go_goroutines 12", f"process_cpu_seconds_total {step}"]
    return ("\n".join(lines) + "\n").encode()


class Exporter(http.server.BaseHTTPRequestHandler):
    families = {}
    step = 0

    def do_GET(self):  # noqa: N802 (http.server API)
        Exporter.step += 1
        body = exposition(self.families, Exporter.step)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start_prometheus(prometheus, tmp, name, config, port, *extra):
    cfg = tmp / f"{name}.yml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    log = open(tmp / f"{name}.log", "w")
    proc = subprocess.Popen(
        [prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / name}",
         f"--web.listen-address=127.0.0.1:{port}", *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )
    return proc


def test_remote_write_end_to_end(prometheus, tmp_path):
    """A real Prometheus scrapes a fake v0.31 exporter on loopback, evaluates our recording
    rules and remote-writes with our write_relabel_configs into a second Prometheus (remote-write
    receiver). Each entry tags what it sends with rw_endpoint (appended after our keep rule), so
    the receiver shows exactly which series each entry forwarded."""
    families = load_families()
    Exporter.families = families
    exporter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()

    receiver_port, sender_port = free_port(), free_port()
    config = yaml.safe_load(CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(p) for p in RULES]
    config["scrape_configs"] = [{
        "job_name": "windows-exporter-proxy",
        "static_configs": [{"targets": [f"127.0.0.1:{exporter.server_address[1]}"],
                            "labels": {"node": "akswin000000"}}],
    }]
    for rw in config["remote_write"]:
        rw["url"] = f"http://127.0.0.1:{receiver_port}/api/v1/write"
        rw["write_relabel_configs"].append(
            {"action": "replace", "target_label": "rw_endpoint", "replacement": rw["name"]})
        rw["queue_config"] = {"batch_send_deadline": "500ms", "min_backoff": "100ms", "max_backoff": "1s"}
        rw["metadata_config"] = {"send": False}

    procs = []
    try:
        procs.append(start_prometheus(prometheus, tmp_path, "receiver", {"global": {}}, receiver_port,
                                      "--web.enable-remote-write-receiver"))
        wait_for("receiver ready", lambda: "Ready" in helpers.get_text(f"http://127.0.0.1:{receiver_port}/-/ready"), procs, timeout=90)
        procs.append(start_prometheus(prometheus, tmp_path, "sender", config, sender_port))
        wait_for("sender ready", lambda: "Ready" in helpers.get_text(f"http://127.0.0.1:{sender_port}/-/ready"), procs, timeout=90)

        def forwarded():
            query = urllib.parse.urlencode({"match[]": '{rw_endpoint!=""}'})
            data = json.loads(helpers.get_text(f"http://127.0.0.1:{receiver_port}/api/v1/series?{query}"))["data"]
            got = {}
            for series in data:
                got.setdefault(series["rw_endpoint"], set()).add(series["__name__"])
            return got

        expected = {
            "windows-node": {f for f, c in families.items() if c in NODE_COLLECTORS_KEPT_WHOLE} | NODE_KEPT_EXTRA,
            "windows-container": CONTAINER_KEPT,
            "windows-node-compat": COMPAT_KEPT,
        }

        def complete():
            got = forwarded()
            return all(expected[k] <= got.get(k, set()) for k in expected)

        wait_for("every expected series at the receiver", complete, procs, timeout=90)

        # Everything the sender appended so far has been sent by every queue: only then is
        # "nothing else arrived" meaningful.
        def metric(text, name):
            return [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith(name + "{") or line.startswith(name + " ")]

        appended = max(metric(helpers.get_text(f"http://127.0.0.1:{sender_port}/metrics"),
                              "prometheus_remote_storage_highest_timestamp_in_seconds"))

        def drained():
            sent = metric(helpers.get_text(f"http://127.0.0.1:{sender_port}/metrics"),
                          "prometheus_remote_storage_queue_highest_sent_timestamp_seconds")
            return len(sent) == 3 and min(sent) >= appended

        wait_for("remote-write queues drained", drained, procs, timeout=90)

        got = forwarded()
        assert got == expected
        # The recorded node-like series carry os="windows" and the scrape's labels.
        query = urllib.parse.urlencode({"match[]": 'node_cpu_seconds_total{rw_endpoint="windows-node-compat"}'})
        series = json.loads(helpers.get_text(f"http://127.0.0.1:{receiver_port}/api/v1/series?{query}"))["data"]
        assert {(s["cpu"], s["mode"]) for s in series} == {
            (c, m) for c in ("0,0", "0,1") for m in ("idle", "user", "irq", "softirq", "system")}
        assert all(s["os"] == "windows" and s["node"] == "akswin000000" for s in series)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        exporter.shutdown()
        exporter.server_close()
