//! Node names without a rule engine: a real Prometheus in agent mode scrapes a real Linux
//! node_exporter and two Windows nodes through proxies with `PROXY_NODE_METRICS=append` (one
//! exporter with v0.31.8 names, one with v0.25.1 names), and remote-writes everything to a
//! second real Prometheus that has no rule files. On that receiver:
//!
//! - every panel of the Linux-and-Windows dashboard returns the Linux node and both Windows
//!   nodes;
//! - kube-prometheus' node alert expressions (high CPU, memory, filesystem space) evaluate for
//!   the Windows nodes;
//! - every node family the proxy wrote equals, series for series and value for value, what the
//!   recording rules' expressions (rendered from the same table) give on the same stored
//!   windows_* samples.
// Not on Windows: runs Debian's prometheus and prometheus-node-exporter.
#![cfg(unix)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use support::prometheus::Prometheus;
use support::{FakeExporter, ProxyProcess, reply, within_for};
use windows_exporter_proxy::nodemetrics::table::{FAMILIES, promql};

type Series = Vec<(BTreeMap<String, String>, f64)>;

/// CPU seconds a core spends per scrape (one a second) in each mode: idle + user + privileged is
/// one second, and privileged includes interrupt and DPC time, as on a real node.
const CPU_PER_SCRAPE: [(&str, f64); 5] =
    [("idle", 0.625), ("user", 0.125), ("privileged", 0.25), ("interrupt", 0.0625), ("dpc", 0.03125)];

/// Seconds a volume is idle per scrape (one second of the node's clock).
const IDLE_PER_SCRAPE: f64 = 0.75;

/// The node's clocks, which advance a second per scrape.
const CLOCKS: [&str; 2] = ["windows_time_current_timestamp_seconds ", "windows_os_time "];

/// The band's scrape after `step` scrapes: CPU time grown by [`CPU_PER_SCRAPE`], the clock by a
/// second and idle time by [`IDLE_PER_SCRAPE`], every other counter by `step` percent, so rates
/// are not zero.
fn growing(band: &str, step: u64) -> String {
    let body = support::fixture(&format!("nodemetrics/windows_exporter-{band}-scrape.prom"));
    let body = String::from_utf8(body.to_vec()).unwrap();
    let step = step as f64;
    body.lines()
        .map(|line| match line.rsplit_once(' ') {
            Some((series, value)) if CLOCKS.iter().any(|clock| line.starts_with(clock)) => {
                format!("{series} {}", value.parse::<f64>().unwrap() + step)
            }
            Some((series, value)) if series.starts_with("windows_logical_disk_idle_seconds_total{") => {
                format!("{series} {}", value.parse::<f64>().unwrap() + IDLE_PER_SCRAPE * step)
            }
            Some((series, value))
                if !line.starts_with('#') && series.split('{').next().unwrap().ends_with("_total") =>
            {
                let value: f64 = value.parse().unwrap();
                let cpu = CPU_PER_SCRAPE.iter().find(|(mode, _)| {
                    series.starts_with("windows_cpu_time_total{") && series.contains(&format!("mode=\"{mode}\""))
                });
                match cpu {
                    Some((_, seconds)) => format!("{series} {}", value + seconds * step),
                    None => format!("{series} {}", value * (1.0 + step / 100.0)),
                }
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

async fn windows_node(band: &'static str, listen: &str) -> (FakeExporter, ProxyProcess) {
    let scrapes = Arc::new(AtomicU64::new(0));
    let exporter = FakeExporter::start(move |_| {
        let step = scrapes.fetch_add(1, Ordering::SeqCst);
        async move {
            reply(StatusCode::OK, &[("content-type", "text/plain; version=0.0.4; charset=utf-8")], growing(band, step))
        }
    })
    .await;
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &exporter.port()),
        ("PROXY_LISTEN", listen),
        ("PROXY_NODE_METRICS", "append"),
    ])
    .await;
    (exporter, proxy)
}

fn instances(series: &Series) -> BTreeSet<String> {
    series.iter().filter_map(|(labels, _)| labels.get("instance").cloned()).collect()
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[tokio::test]
async fn an_agent_and_a_receiver_without_rules_serve_the_dashboard_and_alerts_for_both_systems() {
    let (_new_exporter, new_proxy) = windows_node("0.31.8", "127.0.0.2:0").await;
    let (_old_exporter, old_proxy) = windows_node("0.25.1", "127.0.0.3:0").await;
    let node_exporter_addr = format!("127.0.0.1:{}", support::closed_port());
    let _node_exporter = tokio::process::Command::new("prometheus-node-exporter")
        .arg(format!("--web.listen-address={node_exporter_addr}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("Debian's prometheus-node-exporter is installed (bash .ci/install)");

    // kube-prometheus' recorded pod -> node map, which prometheus-adapter's CPU nodeQuery joins
    // on: each node's exporter pod (the targets carry namespace and pod, as a ServiceMonitor
    // gives them) on its node.
    let pods = FakeExporter::serving(
        bytes::Bytes::from_static(
            b"node_namespace_pod:kube_pod_info:{namespace=\"monitoring\",node=\"linux-0\",pod=\"node-exporter-0\"} 1\n\
              node_namespace_pod:kube_pod_info:{namespace=\"monitoring\",node=\"win-new\",pod=\"proxy-new\"} 1\n\
              node_namespace_pod:kube_pod_info:{namespace=\"monitoring\",node=\"win-old\",pod=\"proxy-old\"} 1\n",
        ),
        "text/plain; version=0.0.4; charset=utf-8",
    )
    .await;

    let mut receiver = Prometheus::start_with("receiver", "global: {}\n", &["--web.enable-remote-write-receiver"]);
    let agent_config = format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
         scrape_configs:\n\
         - {{job_name: node-exporter, static_configs: [{{targets: ['{node_exporter_addr}'], labels: {{namespace: monitoring, pod: node-exporter-0}}}}]}}\n\
         - {{job_name: windows-exporter-proxy, static_configs: [\n\
         \x20   {{targets: ['{}'], labels: {{namespace: monitoring, pod: proxy-new}}}},\n\
         \x20   {{targets: ['{}'], labels: {{namespace: monitoring, pod: proxy-old}}}}]}}\n\
         - {{job_name: kube-state, honor_labels: true, static_configs: [{{targets: ['{}']}}]}}\n\
         remote_write:\n\
         - url: http://{}/api/v1/write\n\
         \x20 queue_config: {{batch_send_deadline: 500ms, min_backoff: 100ms, max_backoff: 1s}}\n\
         \x20 metadata_config: {{send: false}}\n",
        new_proxy.addr, old_proxy.addr, pods.addr, receiver.web
    );
    let mut agent = Prometheus::start_with("agent", &agent_config, &["--enable-feature=agent"]);
    let linux = node_exporter_addr.clone();
    let windows = [new_proxy.addr.to_string(), old_proxy.addr.to_string()];
    let all: BTreeSet<String> = [linux.clone(), windows[0].clone(), windows[1].clone()].into();

    // Until the receiver holds 20 s of every node's series (so [1m] rates have points).
    let start = now();
    within_for(Duration::from_secs(120), "the receiver to hold every node's series", async {
        loop {
            agent.check_running();
            let at = now();
            if at - start > 20.0 {
                let got = receiver.query_at("count_over_time(node_boot_time_seconds[30s]) >= 10", at - 2.0).await;
                if got.is_some_and(|s| instances(&s) == all) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    let at = now() - 3.0;

    // Every panel of the Linux-and-Windows dashboard, its variables set to "All".
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/dashboards/nodes-linux-windows.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut panels = 0;
    let mut linux_missing = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$cluster", ".*")
                .replace("$node", ".*")
                .replace("$os", ".*")
                .replace("$__rate_interval", "1m");
            let result = receiver.query_at(&expr, at).await.expect("the receiver answers");
            let got = instances(&result);
            let title = panel["title"].as_str().unwrap();
            assert!(got.contains(&windows[0]) && got.contains(&windows[1]), "{title}: {got:?}\n{expr}");
            if !got.contains(&linux) {
                linux_missing.push(title.to_owned());
            }
            panels += 1;
        }
    }
    assert_eq!(panels, 10);
    // This machine's node_exporter sees no real disks or filesystems inside a container; the
    // CPU, memory, uptime and network panels must show it.
    for title in &linux_missing {
        assert!(title.starts_with("Disk"), "the Linux node is missing from {title}");
    }

    // kube-prometheus' node alert expressions (their job="node-exporter" selector left out),
    // without their thresholds: each gives a value for the Windows nodes.
    let cpu = receiver
        .query_at(
            r#"sum without (mode) (avg without (cpu) (rate(node_cpu_seconds_total{mode!~"idle|iowait"}[1m]))) * 100"#,
            at,
        )
        .await
        .unwrap();
    assert!(instances(&cpu).is_superset(&all), "NodeCPUHighUsage: {cpu:?}");
    assert!(cpu.iter().all(|(_, v)| (0.0..=100.0).contains(v)), "{cpu:?}");
    let memory = receiver
        .query_at(r#"100 - (node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes * 100)"#, at)
        .await
        .unwrap();
    assert!(instances(&memory).is_superset(&all), "NodeMemoryHighUtilization: {memory:?}");
    let windows_memory = 100.0 - 9663676416.0 / 17179398144.0 * 100.0;
    for (labels, value) in &memory {
        if labels.get("os").is_some_and(|os| os == "windows") {
            assert!((value - windows_memory).abs() < 1e-9, "{labels:?} {value}");
        }
    }
    let filesystem = receiver
        .query_at(
            r#"node_filesystem_avail_bytes{fstype!="",mountpoint!=""} / node_filesystem_size_bytes{fstype!="",mountpoint!=""} * 100 < 20"#,
            at,
        )
        .await
        .unwrap();
    // HarddiskVolume1 is 16.9 % free on the v0.31 node; v0.25.1 has no windows_logical_disk_info,
    // so no fstype, and fstype!="" leaves its volumes out.
    let windows_fs: Vec<_> = filesystem.iter().filter(|(l, _)| l.get("os").is_some_and(|os| os == "windows")).collect();
    assert_eq!(windows_fs.len(), 1, "NodeFilesystemAlmostOutOfSpace-style: {filesystem:?}");
    assert_eq!(windows_fs[0].0["instance"], windows[0]);
    assert_eq!(windows_fs[0].0["mountpoint"], "HarddiskVolume1");

    // NodeFilesystemAlmostOutOfSpace exactly as kube-prometheus writes it (threshold 20 instead
    // of 5 for the fixture, the Windows job beside node-exporter): windows_exporter has no
    // read-only state (windows_logical_disk_readonly is documented but never emitted, 0.26 to
    // master), so `and node_filesystem_readonly == 0` leaves every Windows volume out...
    let jobs = r#"job=~"node-exporter|windows-exporter-proxy""#;
    let almost_full = format!(
        "(\n  node_filesystem_avail_bytes{{{jobs},fstype!=\"\",mountpoint!=\"\"}} / \
         node_filesystem_size_bytes{{{jobs},fstype!=\"\",mountpoint!=\"\"}} * 100 < 20\n\
         and\n  node_filesystem_readonly{{{jobs},fstype!=\"\",mountpoint!=\"\"}} == 0\n)"
    );
    let as_written = receiver.query_at(&almost_full, at).await.unwrap();
    assert!(as_written.iter().all(|(l, _)| l["job"] == "node-exporter"), "{as_written:?}");
    // ... and the README's one-line fix, `unless ... == 1`, gives them, the Linux answer unchanged.
    let fixed = almost_full
        .replace("and\n  node_filesystem_readonly", "unless\n  node_filesystem_readonly")
        .replace("== 0\n)", "== 1\n)");
    let fixed = receiver.query_at(&fixed, at).await.unwrap();
    let linux_only =
        |series: &Series| -> Series { series.iter().filter(|(l, _)| l["job"] == "node-exporter").cloned().collect() };
    assert_eq!(linux_only(&fixed), as_written);
    let windows_fixed: Vec<_> = fixed.iter().filter(|(l, _)| l["job"] == "windows-exporter-proxy").collect();
    assert_eq!(windows_fixed.len(), 1, "{fixed:?}");
    assert_eq!(windows_fixed[0].0["mountpoint"], "HarddiskVolume1");

    // io_time: the volumes are idle 0.75 s of each second of the node's clock.
    let busy = receiver
        .query_at(
            r#"rate(node_disk_io_time_seconds_total{os="windows"}[10s]) / on (instance) group_left () rate(node_time_seconds{os="windows"}[10s])"#,
            at,
        )
        .await
        .unwrap();
    assert_eq!(busy.len(), 4, "two volumes on each Windows node: {busy:?}");
    assert!(busy.iter().all(|(_, v)| (v - (1.0 - IDLE_PER_SCRAPE)).abs() < 1e-9), "{busy:?}");

    // prometheus-adapter's node queries, as kube-prometheus configures them (its nodeQuery for
    // cpu and memory, <<.LabelMatchers>> and <<.GroupBy>> filled in as the adapter does for
    // "all nodes"; memory's job="node-exporter" widened to the Windows job, which is the change a
    // user makes; the windows_* `or` branches are left out: the node names answer for Windows).
    let cpu_node_query = r#"sum by (node) (
        1 - irate(
          node_cpu_seconds_total{mode="idle"}[60s]
        )
        * on(namespace, pod) group_left(node) (
          node_namespace_pod:kube_pod_info:{node=~"linux-0|win-new|win-old"}
        )
      )"#;
    let adapter_cpu = receiver.query_at(cpu_node_query, at).await.unwrap();
    let nodes: BTreeSet<&str> = adapter_cpu.iter().map(|(l, _)| l["node"].as_str()).collect();
    assert_eq!(nodes, ["linux-0", "win-new", "win-old"].into(), "{adapter_cpu:?}");
    // Each of the two Windows cores is busy 0.375 of a second per scrape: between 0 and 2.
    for (labels, value) in adapter_cpu.iter().filter(|(l, _)| l["node"].starts_with("win-")) {
        assert!(*value > 0.0 && *value < 2.0, "{labels:?} {value}");
    }
    let memory_node_query = format!(
        "sum by (instance) (\n\
           node_memory_MemTotal_bytes{{{jobs},instance=~\".+\"}}\n\
           -\n\
           node_memory_MemAvailable_bytes{{{jobs},instance=~\".+\"}}\n\
         )"
    );
    let adapter_memory = receiver.query_at(&memory_node_query, at).await.unwrap();
    assert_eq!(instances(&adapter_memory), all, "{adapter_memory:?}");
    for (labels, value) in adapter_memory.iter().filter(|(l, _)| windows.contains(&l["instance"])) {
        assert_eq!(*value, 17179398144.0 - 9663676416.0, "{labels:?}");
    }

    // Every family the proxies wrote equals the recording rules' expression on the same data.
    let mut compared = 0;
    for family in FAMILIES {
        let written = receiver.query_at(&format!("{}{{os=\"windows\"}}", family.name), at).await.unwrap();
        let rules: Vec<String> = family.sources.iter().map(promql).collect();
        let recorded = receiver.query_at(&rules.join("\nor on (job, instance)\n"), at).await.unwrap();
        let normal = |series: &Series, add_os: bool| -> BTreeMap<BTreeMap<String, String>, String> {
            series
                .iter()
                .filter(|(labels, _)| labels.get("job").is_some_and(|j| j == "windows-exporter-proxy"))
                .map(|(labels, value)| {
                    let mut labels = labels.clone();
                    if add_os {
                        labels.insert("os".into(), "windows".into());
                    }
                    (labels, format!("{value:e}"))
                })
                .collect()
        };
        assert!(!written.is_empty(), "{} was not written", family.name);
        assert_eq!(normal(&written, false), normal(&recorded, true), "{}", family.name);
        compared += written.len();
    }
    assert!(compared > 80, "{compared} series compared");
}
