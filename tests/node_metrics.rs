//! `PROXY_NODE_METRICS`: a scraper of `/metrics` sees node_exporter-named families computed from
//! the same scrape, after the exporter's own (`append`) or instead of the `windows_*` families
//! they read (`only`), for every windows_exporter version band, in text and OpenMetrics.

mod support;

use support::{Client, FakeExporter, ProxyProcess, Scraped};

const TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const BANDS: [&str; 5] = ["0.25.1", "0.29.2", "0.30.9", "0.31.8", "master-589ec15"];

fn scrape_fixture(band: &str) -> bytes::Bytes {
    support::fixture(&format!("nodemetrics/windows_exporter-{band}-scrape.prom"))
}

async fn scrape(body: bytes::Bytes, content_type: &'static str, mode: &str, headers: &[(&str, &str)]) -> Scraped {
    let exporter = FakeExporter::serving(body, content_type).await;
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &exporter.port()),
        ("PROXY_NODE_METRICS", mode),
    ])
    .await;
    Client::connect(proxy.addr).await.get("/metrics", headers).await
}

/// What `promtool check metrics` (Debian's, so not on Windows) says about `text`, but for the camelCase names node_exporter
/// itself writes (`node_memory_MemTotal_bytes`): an empty string when it is clean.
#[cfg(unix)]
async fn promtool_check(text: &str) -> String {
    let said = support::prometheus::promtool_check_metrics(text).await;
    let problems: Vec<&str> =
        said.lines().filter(|l| !l.ends_with("should be written in 'snake_case' not 'camelCase'")).collect();
    problems.join("\n")
}

#[tokio::test]
async fn append_writes_node_families_after_the_exporters_own_body() {
    let body = scrape_fixture("0.31.8");
    let scraped = scrape(body.clone(), TEXT_0_0_4, "append", &[]).await;

    assert_eq!(scraped.status, 200);
    assert_eq!(scraped.headers["content-type"], TEXT_0_0_4);
    let text = scraped.text();
    let exporters = String::from_utf8(body.to_vec()).unwrap();
    let added = text.strip_prefix(&exporters).expect("the exporter's body comes first, unchanged");
    assert!(added.starts_with("# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n"), "{added}");
    for line in [
        "node_cpu_seconds_total{cpu=\"0,0\",mode=\"system\",os=\"windows\"} 270",
        "node_memory_MemTotal_bytes{os=\"windows\"} 17179398144",
        "node_filesystem_avail_bytes{device=\"C:\",fstype=\"NTFS\",mountpoint=\"C:\",os=\"windows\",volume=\"C:\"} 101089738752",
        "node_boot_time_seconds{os=\"windows\"} 1765082400.5",
    ] {
        assert!(added.lines().any(|l| l == line), "missing {line}:\n{added}");
    }
    assert!(
        added.lines().filter(|l| !l.starts_with('#')).all(|l| l.starts_with("node_") && l.contains("os=\"windows\""))
    );
    #[cfg(unix)]
    assert_eq!(promtool_check(added).await, "", "{added}");
}

#[tokio::test]
async fn every_version_band_gets_node_families_from_its_own_names() {
    for band in BANDS {
        let text = scrape(scrape_fixture(band), TEXT_0_0_4, "append", &[]).await.text();
        for line in [
            "node_memory_MemTotal_bytes{os=\"windows\"} 17179398144",
            "node_memory_MemAvailable_bytes{os=\"windows\"} 9663676416",
            "node_memory_SwapTotal_bytes{os=\"windows\"} 4294967296",
            "node_boot_time_seconds{os=\"windows\"} 1765082400.5",
            "node_cpu_seconds_total{cpu=\"0,1\",mode=\"system\",os=\"windows\"} 194.75",
        ] {
            assert_eq!(text.lines().filter(|l| *l == line).count(), 1, "{band}: {line}");
        }
    }
}

#[tokio::test]
async fn only_leaves_out_the_windows_families_the_mapping_reads() {
    let scraped = scrape(scrape_fixture("0.31.8"), TEXT_0_0_4, "only", &[]).await;
    let text = scraped.text();

    for gone in ["windows_cpu_time_total", "windows_memory_available_bytes", "windows_logical_disk_size_bytes"] {
        assert!(!text.contains(gone), "{gone} is still there");
    }
    // Families the mapping does not read stay, HELP and TYPE with them.
    assert!(text.contains("# TYPE windows_cpu_clock_interrupts_total counter\n"));
    assert!(text.contains("windows_exporter_collector_success{collector=\"cpu\"} 1\n"));
    assert!(text.contains("node_cpu_seconds_total{cpu=\"0,0\",mode=\"idle\",os=\"windows\"} 5000.25\n"));
}

#[tokio::test]
async fn openmetrics_keeps_eof_last_and_names_counter_families_without_total() {
    let mut body = scrape_fixture("0.30.9").to_vec();
    body.extend_from_slice(b"# EOF\n");
    let scraped = scrape(body.into(), OPENMETRICS, "append", &[("accept", "application/openmetrics-text")]).await;

    assert_eq!(scraped.headers["content-type"], OPENMETRICS);
    let text = scraped.text();
    let last: Vec<&str> = text.lines().rev().take(2).collect();
    assert_eq!(last[0], "# EOF");
    assert!(last[1].starts_with("node_uname_info{") && last[1].contains("nodename=\"akswin000000\""), "{last:?}");
    assert_eq!(text.matches("# EOF").count(), 1);
    assert!(text.contains("# TYPE node_cpu_seconds counter\nnode_cpu_seconds_total{"), "{text}");
    assert!(text.contains("# TYPE node_network_receive_bytes counter\n"));
}

#[tokio::test]
async fn off_leaves_the_body_as_the_exporter_sent_it() {
    let body = scrape_fixture("0.31.8");
    let scraped = scrape(body.clone(), TEXT_0_0_4, "off", &[]).await;
    assert!(scraped.body == body);
}

/// A body whose derived counters (`system` = privileged - interrupt - dpc, and io_time = clock
/// minus boot minus idle) are `dip` seconds lower than with no dip, as when the exporter reads the
/// parts at slightly different moments.
fn derived_inputs(dip: f64) -> String {
    format!(
        "# TYPE windows_cpu_time_total counter\n\
         windows_cpu_time_total{{core=\"0,0\",mode=\"privileged\"}} 100\n\
         windows_cpu_time_total{{core=\"0,0\",mode=\"interrupt\"}} 10\n\
         windows_cpu_time_total{{core=\"0,0\",mode=\"dpc\"}} {}\n\
         # TYPE windows_logical_disk_idle_seconds_total counter\n\
         windows_logical_disk_idle_seconds_total{{volume=\"C:\"}} {}\n\
         # TYPE windows_time_current_timestamp_seconds gauge\n\
         windows_time_current_timestamp_seconds 1000\n\
         # TYPE windows_system_boot_time_timestamp gauge\n\
         windows_system_boot_time_timestamp 900\n",
        20.0 + dip,
        50.0 + dip,
    )
}

#[tokio::test]
async fn a_derived_counter_never_goes_backwards_between_scrapes() {
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let exporter = FakeExporter::start(move |_| {
        let dip = if served.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 { 0.0 } else { 0.003 };
        async move { support::reply(http::StatusCode::OK, &[("content-type", TEXT_0_0_4)], derived_inputs(dip)) }
    })
    .await;
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &exporter.port()),
        ("PROXY_NODE_METRICS", "append"),
    ])
    .await;
    let mut client = Client::connect(proxy.addr).await;
    let system = "node_cpu_seconds_total{cpu=\"0,0\",mode=\"system\",os=\"windows\"}";
    let io = "node_disk_io_time_seconds_total{device=\"C:\",os=\"windows\",volume=\"C:\"}";
    let value = |text: &str, series: &str| -> f64 {
        let line = text.lines().find_map(|l| l.strip_prefix(series)).unwrap_or_else(|| panic!("no {series}:\n{text}"));
        line.trim().parse().unwrap()
    };

    let first = client.get("/metrics", &[]).await.text();
    let second = client.get("/metrics", &[]).await.text();
    assert_eq!((value(&first, system), value(&first, io)), (70.0, 50.0), "{first}");
    assert!(second.contains("windows_cpu_time_total{core=\"0,0\",mode=\"dpc\"} 20.003\n"), "the dipped body");
    assert_eq!((value(&second, system), value(&second, io)), (70.0, 50.0), "{second}");
}
