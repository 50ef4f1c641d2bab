//! The filter stage (issue 21) as a scraper sees it, through the real binary: generated
//! expositions (both text formats, escapes and comments, written by the fake exporter in random
//! chunk sizes) come out exactly as a reference filter says, gzipped or not; the series cap fails
//! a scrape visibly and counts it; protobuf is never offered to the exporter; a bad setting
//! exits 64 naming it; and a real Prometheus stores exactly the kept series.

mod support;

use std::io::Read;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use regex::Regex;
use support::{Client, ExporterBody, FakeExporter, ProxyProcess, reply, run_to_exit, streaming_reply, within};

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// What Prometheus 3 sends, protobuf first.
const PROMETHEUS_ACCEPT: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

/// A small deterministic generator (xorshift64*), so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Info,
    Untyped,
}

/// One generated line: its text, its family (none for comments, blanks and `# EOF`), and for a
/// sample its name and unescaped labels.
struct Item {
    text: String,
    family: Option<usize>,
    sample: Option<(String, Vec<(String, String)>)>,
}

/// A generated exposition, with what the reference filter needs to know.
struct Exposition {
    items: Vec<Item>,
    /// Each family's name (as its `# TYPE` line would spell it) and kind.
    families: Vec<(String, Kind)>,
    openmetrics: bool,
}

/// Label values with everything that must be escaped or quoted: `\\`, `\"`, `\n`, and `}` `,`
/// `#` inside the quotes. Unescaped.
const VALUES: [&str; 9] = ["a", "a\"}", "x}y", "p,q", "#h", "back\\slash", "new\nline", "", "kubelet"];

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn generate(rng: &mut Rng) -> Exposition {
    let openmetrics = rng.chance(40);
    let mut items = Vec::new();
    let mut families = Vec::new();
    let comment = |rng: &mut Rng, items: &mut Vec<Item>| {
        if rng.chance(15) {
            items.push(Item { text: format!("# a comment {}\n", rng.below(100)), family: None, sample: None });
        }
        if !openmetrics && rng.chance(10) {
            items.push(Item { text: "\n".into(), family: None, sample: None });
        }
    };
    for index in 0..1 + rng.below(14) {
        let stem = *rng.pick(&["proc", "svc", "cpu", "c_net"]);
        let base = format!("gen_{stem}_{index}");
        let kinds: &[Kind] = if openmetrics {
            &[Kind::Counter, Kind::Gauge, Kind::Histogram, Kind::Summary, Kind::Info, Kind::Untyped]
        } else {
            &[Kind::Counter, Kind::Gauge, Kind::Histogram, Kind::Summary, Kind::Untyped]
        };
        let kind = *rng.pick(kinds);
        let family = if kind == Kind::Counter && !openmetrics { format!("{base}_total") } else { base.clone() };
        let id = families.len();
        families.push((family.clone(), kind));
        let word = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
            Kind::Info => "info",
            Kind::Untyped => "untyped",
        };
        let mut meta = Vec::new();
        if rng.chance(80) {
            meta.push(format!("# HELP {family} Help with \\\\ and \\n escapes {index}.\n"));
        }
        if kind != Kind::Untyped || rng.chance(30) {
            meta.push(format!("# TYPE {family} {word}\n"));
        }
        if openmetrics && rng.chance(20) {
            meta.push(format!("# UNIT {family} seconds\n"));
        }
        if rng.chance(30) {
            meta.reverse();
        }
        for line in meta {
            items.push(Item { text: line, family: Some(id), sample: None });
            comment(rng, &mut items);
        }
        let names: Vec<String> = match kind {
            Kind::Counter if openmetrics => vec![format!("{base}_total"), format!("{base}_created")],
            Kind::Counter => vec![format!("{base}_total")],
            Kind::Gauge | Kind::Untyped => vec![base.clone()],
            Kind::Histogram => vec![format!("{base}_bucket"), format!("{base}_sum"), format!("{base}_count")],
            Kind::Summary => vec![base.clone(), format!("{base}_sum"), format!("{base}_count")],
            Kind::Info => vec![format!("{base}_info")],
        };
        for _ in 0..1 + rng.below(4) {
            let zone = rng.pick(&VALUES).to_string();
            let mode = rng.pick(&VALUES).to_string();
            for name in &names {
                let mut labels = vec![("zone".to_owned(), zone.clone())];
                if rng.chance(50) {
                    labels.push(("mode".to_owned(), mode.clone()));
                }
                if name.ends_with("_bucket") {
                    labels.push(("le".to_owned(), "+Inf".to_owned()));
                }
                let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
                let mut text = format!("{name}{{{}}} {}", pairs.join(","), rng.below(1000));
                if rng.chance(20) {
                    text.push_str(" 1700000000000");
                }
                if openmetrics && name.ends_with("_total") && rng.chance(20) {
                    text.push_str(" # {trace_id=\"a}b#c\"} 1");
                }
                text.push('\n');
                items.push(Item { text, family: Some(id), sample: Some((name.clone(), labels)) });
            }
            comment(rng, &mut items);
        }
    }
    if openmetrics {
        items.push(Item { text: "# EOF\n".into(), family: None, sample: None });
    }
    Exposition { items, families, openmetrics }
}

impl Exposition {
    fn text(&self) -> String {
        self.items.iter().map(|item| item.text.as_str()).collect()
    }
}

/// The settings one proxy runs with, and the same rules written plainly for the reference.
struct Rules {
    vars: Vec<(&'static str, &'static str)>,
    keep: Option<Regex>,
    drop: Option<Regex>,
    series: fn(&str, &[(String, String)]) -> bool,
}

fn anchored(re: &str) -> Regex {
    Regex::new(&format!("^(?:{re})$")).unwrap()
}

/// The reference filter: whole-body, from the generator's own record of what each line is.
fn reference(exposition: &Exposition, rules: &Rules) -> (String, u64, u64) {
    let matches = |re: &Regex, (name, kind): &(String, Kind)| {
        let other = match name.strip_suffix("_total") {
            Some(bare) => bare.to_owned(),
            None => format!("{name}_total"),
        };
        re.is_match(name) || (*kind == Kind::Counter && re.is_match(&other))
    };
    let kept_family = |family: &(String, Kind)| {
        rules.keep.as_ref().is_none_or(|re| matches(re, family))
            && !rules.drop.as_ref().is_some_and(|re| matches(re, family))
    };
    let (mut out, mut kept, mut dropped) = (String::new(), 0, 0);
    for item in &exposition.items {
        let keep = match (item.family, &item.sample) {
            (None, _) => true,
            (Some(f), None) => kept_family(&exposition.families[f]),
            (Some(f), Some((name, labels))) => {
                let keep = kept_family(&exposition.families[f]) && !(rules.series)(name, labels);
                if keep {
                    kept += 1;
                } else {
                    dropped += 1;
                }
                keep
            }
        };
        if keep {
            out.push_str(&item.text);
        }
    }
    (out, kept, dropped)
}

fn label<'a>(labels: &'a [(String, String)], name: &str) -> &'a str {
    labels.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

fn no_series(_: &str, _: &[(String, String)]) -> bool {
    false
}

fn rules() -> Vec<Rules> {
    vec![
        Rules {
            vars: vec![("PROXY_METRIC_DROP", "gen_(proc|svc)_.+")],
            keep: None,
            drop: Some(anchored("gen_(proc|svc)_.+")),
            series: no_series,
        },
        Rules {
            // The 0.0.4 spelling of a counter selects the OpenMetrics family too.
            vars: vec![
                ("PROXY_METRIC_KEEP", "gen_cpu_.+|gen_c_net_[0-9]+_total"),
                ("PROXY_METRIC_DROP", "gen_cpu_1.*"),
            ],
            keep: Some(anchored("gen_cpu_.+|gen_c_net_[0-9]+_total")),
            drop: Some(anchored("gen_cpu_1.*")),
            series: no_series,
        },
        Rules {
            vars: vec![
                (
                    "PROXY_SERIES_DROP",
                    r#"{__name__=~"gen_svc_.+", zone="a\"}"}; {__name__=~"gen_proc_.+",zone=~'p,q|#h'}"#,
                ),
                ("PROXY_MAX_SERIES", "100000"),
            ],
            keep: None,
            drop: None,
            series: |name, labels| {
                (name.starts_with("gen_svc_") && label(labels, "zone") == "a\"}")
                    || (name.starts_with("gen_proc_") && ["p,q", "#h"].contains(&label(labels, "zone")))
            },
        },
    ]
}

/// A fake exporter serving whatever body is current, in random chunk sizes.
async fn chunking_exporter(current: Arc<Mutex<(Bytes, &'static str, u64)>>) -> FakeExporter {
    FakeExporter::start(move |_| {
        let (body, content_type, seed) = current.lock().unwrap().clone();
        async move {
            let (mut sender, response) = streaming_reply(&[("content-type", content_type)]);
            tokio::spawn(async move {
                let mut rng = Rng(seed | 1);
                let mut rest = body;
                while !rest.is_empty() {
                    let size = if rng.chance(70) { 1 + rng.below(40) } else { 1 + rng.below(3000) };
                    let piece = rest.split_to(size.min(rest.len()));
                    if sender.send_data(piece).await.is_err() {
                        return;
                    }
                }
            });
            let response: http::Response<ExporterBody> = response;
            response
        }
    })
    .await
}

fn gunzip(data: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(data).read_to_string(&mut text).expect("a whole gzip stream");
    text
}

#[tokio::test]
async fn generated_expositions_come_out_as_the_reference_filter_says() {
    let current = Arc::new(Mutex::new((Bytes::new(), TEXT, 1)));
    let mut exporter = chunking_exporter(current.clone()).await;
    let rules = rules();
    let mut proxies = Vec::new();
    for rule in &rules {
        let mut vars = vec![("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &*exporter.port().leak())];
        vars.extend(rule.vars.iter().copied());
        proxies.push(ProxyProcess::start(&vars).await);
    }
    let mut totals = vec![(0, 0); rules.len()];
    let mut rng = Rng(0x5eed_2100_0000_0001);
    for case in 0..60u64 {
        let exposition = generate(&mut rng);
        let content_type = if exposition.openmetrics { OPENMETRICS } else { TEXT };
        *current.lock().unwrap() = (Bytes::from(exposition.text()), content_type, rng.next());
        for (i, (rule, proxy)) in rules.iter().zip(&proxies).enumerate() {
            let (expected, kept, dropped) = reference(&exposition, rule);
            totals[i].0 += kept;
            totals[i].1 += dropped;
            let gzip = case % 2 == 1;
            let mut headers = vec![("accept", PROMETHEUS_ACCEPT)];
            if gzip {
                headers.push(("accept-encoding", "gzip"));
            }
            let scraped = Client::connect(proxy.addr).await.get("/metrics", &headers).await;
            assert_eq!(scraped.status, StatusCode::OK);
            assert_eq!(scraped.headers.get("content-type").unwrap(), content_type);
            assert!(scraped.headers.get("content-length").is_none());
            let text = if gzip {
                assert_eq!(scraped.headers.get("content-encoding").unwrap(), "gzip", "case {case}");
                gunzip(&scraped.body)
            } else {
                assert!(scraped.headers.get("content-encoding").is_none(), "case {case}");
                scraped.text()
            };
            assert_eq!(text, expected, "case {case}, rules {:?}, input:\n{}", rule.vars, exposition.text());
            if exposition.openmetrics {
                assert!(text.ends_with("# EOF\n"), "case {case}: OpenMetrics keeps # EOF, last");
            }
            // The exporter is offered text only, uncompressed: the filter reads lines.
            let seen = exporter.next_request().await;
            let accept = seen.headers.get("accept").unwrap().to_str().unwrap();
            assert!(!accept.contains("protobuf") && accept.contains("text/plain"), "{accept}");
            assert_eq!(seen.headers.get("accept-encoding").unwrap(), "identity");
        }
    }
    for ((kept, dropped), proxy) in totals.iter().zip(&proxies) {
        assert!(*kept > 0 && *dropped > 0, "every rule both keeps and drops: {totals:?}");
        let kept_series = "windows_exporter_proxy_filtered_samples_total{action=\"kept\"}";
        let dropped_series = "windows_exporter_proxy_filtered_samples_total{action=\"dropped\"}";
        proxy
            .wait_for_metrics("the filter's counts", |m| {
                support::metric(m, kept_series) == *kept as f64 && support::metric(m, dropped_series) == *dropped as f64
            })
            .await;
    }
}

/// Reads a streamed response to its end or first error.
async fn read_until_error(response: http::Response<hyper::body::Incoming>) -> (usize, bool) {
    let mut body = response.into_body();
    let mut read = 0;
    loop {
        match within("the next body frame", body.frame()).await {
            None => return (read, false),
            Some(Err(_)) => return (read, true),
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
        }
    }
}

#[tokio::test]
async fn more_series_than_the_cap_fail_the_scrape_and_exactly_the_cap_does_not() {
    let sample = support::windows_sample();
    let samples = String::from_utf8_lossy(&sample).lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
    let exporter = FakeExporter::serving(sample.clone(), TEXT).await;
    let port = exporter.port();
    let at_limit = samples.to_string();
    let proxy =
        ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &port), ("PROXY_MAX_SERIES", &at_limit)])
            .await;
    let scraped = Client::connect(proxy.addr).await.get("/metrics", &[]).await;
    assert_eq!(scraped.body, sample, "exactly the limit passes whole");

    let below = (samples - 1).to_string();
    let mut proxy =
        ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &port), ("PROXY_MAX_SERIES", &below)])
            .await;
    for gzip in [false, true] {
        let headers: &[(&str, &str)] = if gzip { &[("accept-encoding", "gzip")] } else { &[] };
        let response = Client::connect(proxy.addr).await.send(Method::GET, "/metrics", headers).await.expect("headers");
        assert_eq!(response.status(), StatusCode::OK);
        let (read, failed) = read_until_error(response).await;
        assert!(
            failed,
            "gzip {gzip}: the scrape ended cleanly after {read} bytes; a scraper would store a truncated scrape"
        );
    }
    let line = proxy
        .wait_for_log("the cap's log line", |l| l["message"] == "scrape failed mid-body; scraper connection aborted")
        .await;
    assert_eq!(line["outcome"], "series_limit");
    let error = line["error"].as_str().unwrap();
    assert_eq!(error, format!("PROXY_MAX_SERIES={below} exceeded: {samples} series after filtering"));
    proxy
        .wait_for_metrics("both failures counted", |m| {
            support::metric(
                m,
                "windows_exporter_proxy_scrapes_total{outcome=\"series_limit\",status=\"200\",route=\"/metrics\"}",
            ) == 2.0
        })
        .await;
}

#[tokio::test]
async fn without_filter_settings_nothing_about_the_exchange_changes() {
    let body = support::gzip(b"# TYPE a gauge\na 1\n");
    let exporter_body = body.clone();
    let mut exporter = FakeExporter::start(move |_| {
        let body = exporter_body.clone();
        async move { reply(StatusCode::OK, &[("content-type", TEXT), ("content-encoding", "gzip")], body) }
    })
    .await;
    let proxy = ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &exporter.port())]).await;
    let scraped = Client::connect(proxy.addr)
        .await
        .get("/metrics", &[("accept", PROMETHEUS_ACCEPT), ("accept-encoding", "gzip")])
        .await;
    assert_eq!(scraped.body, body);
    assert_eq!(scraped.headers.get("content-length").unwrap(), &body.len().to_string());
    let seen = exporter.next_request().await;
    assert_eq!(seen.headers.get("accept").unwrap(), PROMETHEUS_ACCEPT);
    assert_eq!(seen.headers.get("accept-encoding").unwrap(), "gzip");
}

#[tokio::test]
async fn an_exporter_that_gzips_anyway_is_decoded_and_filtered() {
    let body = support::gzip(b"# TYPE a gauge\na 1\n# TYPE b gauge\nb 2\n");
    let mut exporter = FakeExporter::start(move |_| {
        let body = body.clone();
        async move { reply(StatusCode::OK, &[("content-type", TEXT), ("content-encoding", "gzip")], body) }
    })
    .await;
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &exporter.port()),
        ("PROXY_METRIC_DROP", "b"),
    ])
    .await;
    let scraped = Client::connect(proxy.addr).await.get("/metrics", &[]).await;
    assert_eq!(scraped.text(), "# TYPE a gauge\na 1\n");
    assert!(scraped.headers.get("content-encoding").is_none());
    exporter.next_request().await;
}

#[tokio::test]
async fn bad_filter_settings_exit_64_naming_them() {
    for (name, value, says) in [
        ("PROXY_SERIES_DROP", "up; windows_cpu_time_total{mode=}", "selector \"windows_cpu_time_total{mode=}\""),
        ("PROXY_METRIC_KEEP", "windows_(cpu", "not a regular expression"),
        ("PROXY_METRIC_DROP", "a)", "not a regular expression"),
        ("PROXY_MAX_SERIES", "many", "not a whole number"),
    ] {
        let output = run_to_exit(&[], &[("PROXY_HOSTIP", "127.0.0.1"), (name, value)]).await;
        assert_eq!(output.status.code(), Some(64), "{name}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with(&format!("{name}={value:?} is not valid: ")), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

/// A real Prometheus: through a filtering proxy it stores exactly the kept series, and a scrape
/// over the cap is a failed scrape (`up == 0`), not a short one.
#[cfg(unix)]
#[tokio::test]
async fn prometheus_stores_exactly_the_kept_series_and_sees_the_cap_as_down() {
    use std::time::Duration;

    use support::prometheus::Prometheus;

    let exporter = FakeExporter::serving(support::windows_sample(), TEXT).await;
    let port = exporter.port();
    let filtered = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &port),
        ("PROXY_METRIC_DROP", "windows_service_.+"),
        ("PROXY_SERIES_DROP", r#"windows_cs_logical_processors"#),
    ])
    .await;
    let capped =
        ProxyProcess::start(&[("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", &port), ("PROXY_MAX_SERIES", "10")]).await;
    let config = [
        "global: {scrape_interval: 1s, scrape_timeout: 1s}".to_owned(),
        "scrape_configs:".to_owned(),
        format!("- {{job_name: filtered, static_configs: [{{targets: ['{}']}}]}}", filtered.addr),
        format!("- {{job_name: capped, static_configs: [{{targets: ['{}']}}]}}", capped.addr),
        format!("- {{job_name: direct, static_configs: [{{targets: ['{}']}}]}}", exporter.addr),
    ]
    .join("\n");
    let mut prometheus = Prometheus::start("filter", &config);
    let expected = r#"count({job="direct",__name__!~"windows_service_.+|windows_cs_logical_processors|up|scrape_.+"})"#;
    let stored = r#"count({job="filtered",__name__!~"up|scrape_.+"})"#;
    let (direct, proxied) = within("Prometheus to scrape every target", async {
        loop {
            let scraped = prometheus.query("scrape_samples_scraped").await;
            let up = prometheus.query("up").await;
            if scraped.len() == 3 && up.len() == 3 {
                let direct = prometheus.query(expected).await;
                let proxied = prometheus.query(stored).await;
                if let (Some(d), Some(p)) = (direct.first(), proxied.first()) {
                    return (d.1, p.1);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let up = prometheus.query("up").await;
    let kept_by_name = prometheus.query(r#"count({job="filtered",__name__=~"windows_service_.+"})"#).await;
    drop(prometheus);
    assert!(direct > 10.0, "{direct}");
    assert_eq!(proxied, direct, "the filtered target stores exactly the kept series");
    assert!(kept_by_name.is_empty(), "{kept_by_name:?}");
    let up_of = |job: &str| up.iter().find(|(j, _)| j == job).map(|(_, v)| *v);
    assert_eq!(up_of("filtered"), Some(1.0));
    assert_eq!(up_of("capped"), Some(0.0), "over the cap is a failed scrape: {up:?}");
}

/// `promtool check metrics` finds nothing wrong with what the filter leaves (the sample's own
/// lint problem, a counter without `_total`, is one of the families dropped).
#[cfg(unix)]
#[tokio::test]
async fn promtool_finds_the_filtered_output_clean() {
    let exporter = FakeExporter::serving(support::windows_sample(), TEXT).await;
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &exporter.port()),
        ("PROXY_METRIC_DROP", "windows_service_.+|process_start_time_seconds"),
    ])
    .await;
    let text = Client::connect(proxy.addr).await.get("/metrics", &[]).await.text();
    assert!(text.contains("windows_cs_") && !text.contains("windows_service_"), "{text}");
    let said = support::prometheus::promtool_check_metrics(&text).await;
    assert!(said.trim().is_empty(), "{said}");
}

/// Under coalescing the filter runs once per shared exporter body, before it fans out: a scraper
/// that joins a filtered request in flight gets the same filtered bytes, the exporter sees one
/// request, and the samples are counted once.
#[tokio::test]
async fn coalesced_scrapes_share_one_filtered_body_counted_once() {
    let mut held = support::HeldScrape::start().await;
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &held.exporter.port()),
        ("PROXY_METRIC_DROP", "slow_collector_done"),
    ])
    .await;
    let mut early = Client::connect(proxy.addr).await.send(Method::GET, "/metrics", &[]).await.expect("headers");
    held.started().await;
    let first = within("the first filtered chunk", early.body_mut().frame()).await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), support::HeldScrape::FIRST);
    let addr = proxy.addr;
    let late = tokio::spawn(async move { Client::connect(addr).await.get("/metrics", &[]).await });
    proxy
        .wait_for_metrics("the late scraper joined", |m| {
            support::metric(m, "windows_exporter_proxy_coalesced_scrapes_total{route=\"/metrics\"}") == 1.0
        })
        .await;
    held.release();
    let late = within("the late scrape", late).await.unwrap();
    assert_eq!(late.body, support::HeldScrape::FIRST, "the joiner got the filtered body from byte 0");
    let early_rest = within("the early body", early.into_body().collect()).await.unwrap().to_bytes();
    assert!(early_rest.is_empty(), "{early_rest:?}");
    assert!(held.exporter.pending_requests().len() == 1, "one exporter request for both scrapes");
    let kept = "windows_exporter_proxy_filtered_samples_total{action=\"kept\"}";
    let dropped = "windows_exporter_proxy_filtered_samples_total{action=\"dropped\"}";
    let metrics = proxy.wait_for_metrics("the shared body counted", |m| support::metric(m, dropped) >= 1.0).await;
    assert_eq!((support::metric(&metrics, kept), support::metric(&metrics, dropped)), (1.0, 1.0));
}

/// The series cap on a shared exporter body: once a second scraper has joined, the body is
/// driven by a task and reaches both scrapers through the coalescing buffer. Both connections
/// are aborted and both scrapes count as `series_limit`, not as a broken exporter body.
#[tokio::test]
async fn the_cap_on_a_shared_body_fails_every_scraper_of_it_as_series_limit() {
    let mut held = support::HeldScrape::start().await;
    let mut proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", &held.exporter.port()),
        ("PROXY_MAX_SERIES", "1"),
    ])
    .await;
    let mut early = Client::connect(proxy.addr).await.send(Method::GET, "/metrics", &[]).await.expect("headers");
    held.started().await;
    let first = within("the first chunk", early.body_mut().frame()).await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), support::HeldScrape::FIRST, "one series: within the cap");
    let addr = proxy.addr;
    let late = tokio::spawn(async move { Client::connect(addr).await.send(Method::GET, "/metrics", &[]).await });
    proxy
        .wait_for_metrics("the late scraper joined", |m| {
            support::metric(m, "windows_exporter_proxy_coalesced_scrapes_total{route=\"/metrics\"}") == 1.0
        })
        .await;
    held.release();
    let (_, early_failed) = read_until_error(early).await;
    let late = within("the late scrape's headers", late).await.unwrap().expect("headers");
    let (_, late_failed) = read_until_error(late).await;
    assert!(early_failed && late_failed, "a scraper's body ended cleanly: it would store a truncated scrape");
    let line = proxy
        .wait_for_log("the cap's log line", |l| l["message"] == "scrape failed mid-body; scraper connection aborted")
        .await;
    assert_eq!(line["outcome"], "series_limit");
    assert_eq!(line["error"], "PROXY_MAX_SERIES=1 exceeded: 2 series after filtering");
    proxy
        .wait_for_metrics("both failures counted as the cap's", |m| {
            support::metric(
                m,
                "windows_exporter_proxy_scrapes_total{outcome=\"series_limit\",status=\"200\",route=\"/metrics\"}",
            ) == 2.0
        })
        .await;
}
