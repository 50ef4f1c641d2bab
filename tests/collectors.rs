//! The operator decides at the node what a scrape collects: `PROXY_COLLECT` is injected as
//! `collect[]`, a scraper's own `collect[]` is cut down to the allow list (400 when nothing is
//! left, and the exporter sees nothing), and `PROXY_SLOW_COLLECT` moves the expensive collectors
//! to `/metrics/slow`, which `/metrics` never runs. Against a fake windows_exporter that honours
//! `collect[]` and serialises collections (`tests/support/collecting_exporter.rs`).

mod support;

use http::StatusCode;
use support::collecting_exporter::{CollectingExporter, Slow, collect_params, collected};
use support::{Client, ProxyProcess, Scraped, metric, run_to_exit};

const ENABLED: &[&str] = &["cpu", "cs", "logical_disk", "memory", "net", "os", "process", "service"];
const SLOW: &[&str] = &["process", "service"];
const SCRAPES: &str = "windows_exporter_proxy_scrapes_total";
const WAITING: &str = "windows_exporter_proxy_waiting_scrapes";

async fn exporter(how: Slow) -> CollectingExporter {
    CollectingExporter::start(ENABLED, SLOW, how).await
}

async fn proxy(exporter: &CollectingExporter, vars: &[(&str, &str)]) -> ProxyProcess {
    let port = exporter.port();
    let mut all = vec![("PROXY_HOSTIP", "127.0.0.1"), ("PROXY_PORT", port.as_str())];
    all.extend_from_slice(vars);
    ProxyProcess::start(&all).await
}

async fn get(proxy: &ProxyProcess, path: &str) -> Scraped {
    Client::connect(proxy.addr).await.get(path, &[]).await
}

fn spawn_get(
    proxy: &ProxyProcess,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
) -> tokio::task::JoinHandle<Scraped> {
    let addr = proxy.addr;
    tokio::spawn(async move { Client::connect(addr).await.get(path, headers).await })
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn proxy_collect_is_sent_as_collect_parameters_in_order_after_the_other_parameters() {
    let mut exporter = exporter(Slow::Held).await;
    let proxy = proxy(&exporter, &[("PROXY_COLLECT", "os,cpu,memory")]).await;

    let scraped = get(&proxy, "/metrics?debug=1").await;
    assert_eq!(scraped.status, StatusCode::OK, "{}", scraped.text());
    assert_eq!(collected(&scraped.text()), names(&["os", "cpu", "memory"]));
    let seen = exporter.exporter.next_request().await;
    assert_eq!(seen.uri.query(), Some("debug=1&collect[]=os&collect[]=cpu&collect[]=memory"));
}

#[tokio::test]
async fn a_scrapers_collect_is_cut_down_to_the_allowed_ones_raw_or_percent_encoded() {
    let mut exporter = exporter(Slow::Held).await;
    let proxy = proxy(&exporter, &[("PROXY_COLLECT", "cpu,os"), ("PROXY_COLLECT_ALLOW", "cpu,os,memory")]).await;

    // As Prometheus sends `params: {collect[]: [...]}`: percent-encoded brackets.
    let scraped = get(&proxy, "/metrics?collect%5B%5D=memory&collect%5B%5D=process&collect[]=net&collect[]=cpu").await;
    assert_eq!(scraped.status, StatusCode::OK, "{}", scraped.text());
    assert_eq!(collected(&scraped.text()), names(&["memory", "cpu"]));
    let seen = exporter.exporter.next_request().await;
    assert_eq!(collect_params(seen.uri.query().unwrap()), names(&["memory", "cpu"]));
}

#[tokio::test]
async fn nothing_allowed_left_is_a_400_naming_the_allowed_collectors_and_the_exporter_sees_nothing() {
    let mut exporter = exporter(Slow::Held).await;
    let proxy = proxy(&exporter, &[("PROXY_COLLECT", "cpu,os")]).await;

    let refused = get(&proxy, "/metrics?collect%5B%5D=process&collect%5B%5D=memory").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.text().contains("allowed: cpu,os"), "{}", refused.text());
    // The next scrape is the first request the exporter sees.
    assert_eq!(get(&proxy, "/metrics").await.status, StatusCode::OK);
    let seen = exporter.exporter.next_request().await;
    assert_eq!(seen.uri.query(), Some("collect[]=cpu&collect[]=os"));
    let metrics = proxy
        .wait_for_metrics("the refusal counted", |m| {
            metric(m, &format!("{SCRAPES}{{outcome=\"refused\",status=\"400\",route=\"/metrics\"}}")) == 1.0
        })
        .await;
    assert_eq!(metric(&metrics, "windows_exporter_proxy_exporter_requests_total{route=\"/metrics\"}"), 1.0);
}

#[tokio::test]
async fn an_unknown_collector_gets_the_exporters_own_400() {
    let exporter = exporter(Slow::Held).await;
    let proxy = proxy(&exporter, &[("PROXY_COLLECT", "cpu,textfile")]).await;

    let scraped = get(&proxy, "/metrics").await;
    assert_eq!(scraped.status, StatusCode::BAD_REQUEST);
    assert!(scraped.text().starts_with("Couldn't create filtered metrics handler"), "{}", scraped.text());
    assert!(scraped.text().ends_with("unknown collector textfile"), "{}", scraped.text());
}

#[tokio::test]
async fn the_slow_route_runs_only_the_slow_collectors_and_metrics_never_does() {
    let exporter = exporter(Slow::Take(std::time::Duration::ZERO)).await;
    let proxy = proxy(&exporter, &[("PROXY_COLLECT", "cpu,os"), ("PROXY_SLOW_COLLECT", "process,service")]).await;

    let slow = get(&proxy, "/metrics/slow").await;
    assert_eq!(slow.status, StatusCode::OK, "{}", slow.text());
    assert_eq!(collected(&slow.text()), names(SLOW));
    let narrowed = get(&proxy, "/metrics/slow?collect[]=service&collect[]=cpu").await;
    assert_eq!(collected(&narrowed.text()), names(&["service"]));
    let fast = get(&proxy, "/metrics").await;
    assert_eq!(collected(&fast.text()), names(&["cpu", "os"]));
    // process is allowed (PROXY_COLLECT plus PROXY_SLOW_COLLECT), but never on /metrics.
    let refused = get(&proxy, "/metrics?collect[]=process").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.text().contains("allowed: cpu,os"), "{}", refused.text());

    let metrics = proxy
        .wait_for_metrics("both routes counted", |m| {
            metric(m, &format!("{SCRAPES}{{outcome=\"ok\",status=\"200\",route=\"/metrics/slow\"}}")) == 2.0
                && metric(m, &format!("{SCRAPES}{{outcome=\"ok\",status=\"200\",route=\"/metrics\"}}")) == 1.0
        })
        .await;
    assert_eq!(metric(&metrics, "windows_exporter_proxy_exporter_requests_total{route=\"/metrics/slow\"}"), 2.0);
    assert_eq!(metric(&metrics, "windows_exporter_proxy_exporter_requests_total{route=\"/metrics\"}"), 1.0);
}

#[tokio::test]
async fn without_proxy_slow_collect_the_slow_route_is_not_found() {
    let mut exporter = exporter(Slow::Held).await;
    let proxy = proxy(&exporter, &[("PROXY_COLLECT", "cpu")]).await;
    assert_eq!(get(&proxy, "/metrics/slow").await.status, StatusCode::NOT_FOUND);
    assert!(exporter.exporter.pending_requests().is_empty());
}

#[tokio::test]
async fn a_fast_scrape_does_not_queue_behind_a_slow_one_that_has_not_started() {
    let mut exporter = exporter(Slow::Held).await;
    let proxy = proxy(
        &exporter,
        &[("PROXY_MAX_INFLIGHT", "1"), ("PROXY_COLLECT", "cpu,os"), ("PROXY_SLOW_COLLECT", "process,service")],
    )
    .await;

    // A held /metrics/slow narrowed to process occupies the one slot and the exporter's lock.
    let first = spawn_get(&proxy, "/metrics/slow?collect[]=process", &[]);
    assert_eq!(exporter.next_started().await, names(&["process"]));
    // A second slow scrape and then a fast one wait for the slot.
    let slow = spawn_get(&proxy, "/metrics/slow", &[]);
    proxy.wait_for_metrics("the slow scrape to wait", |m| metric(m, WAITING) == 1.0).await;
    let fast = spawn_get(&proxy, "/metrics", &[]);
    proxy.wait_for_metrics("both to wait", |m| metric(m, WAITING) == 2.0).await;

    exporter.release();
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    // The fast one, which came later, goes first.
    assert_eq!(exporter.next_started().await, names(&["cpu", "os"]));
    assert_eq!(collected(&fast.await.unwrap().text()), names(&["cpu", "os"]));
    assert_eq!(exporter.next_started().await, names(SLOW));
    exporter.release();
    assert_eq!(collected(&slow.await.unwrap().text()), names(SLOW));
}

#[tokio::test]
async fn a_fast_scrape_behind_a_running_slow_collection_waits_within_its_deadline_and_is_measured() {
    let mut exporter = exporter(Slow::Held).await;
    let proxy = proxy(
        &exporter,
        &[("PROXY_MAX_INFLIGHT", "3"), ("PROXY_COLLECT", "cpu,os"), ("PROXY_SLOW_COLLECT", "process,service")],
    )
    .await;

    let slow = spawn_get(&proxy, "/metrics/slow", &[]);
    assert_eq!(exporter.next_started().await, names(SLOW));
    // A free slot, but the exporter is collecting: the fast scrape waits in the proxy.
    let fast = spawn_get(&proxy, "/metrics", &[]);
    proxy.wait_for_metrics("the fast scrape to wait", |m| metric(m, WAITING) == 1.0).await;
    // One whose deadline passes there gets 504 and is never sent.
    let late = spawn_get(&proxy, "/metrics?collect[]=cpu", &[("x-prometheus-scrape-timeout-seconds", "1")]);
    let late = late.await.unwrap();
    assert_eq!(late.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(late.text().contains("/metrics/slow collection"), "{}", late.text());
    assert!(exporter.started_so_far().is_empty(), "nothing is sent while the slow collection runs");

    exporter.release();
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    assert_eq!(exporter.next_started().await, names(&["cpu", "os"]));
    assert_eq!(fast.await.unwrap().status, StatusCode::OK);
    let metrics = proxy
        .wait_for_metrics("both waits measured", |m| metric(m, "windows_exporter_proxy_slow_wait_seconds_count") == 2.0)
        .await;
    assert_eq!(metric(&metrics, &format!("{SCRAPES}{{outcome=\"timeout\",status=\"504\",route=\"/metrics\"}}")), 1.0);
}

#[tokio::test]
async fn identical_scrapes_coalesce_per_route() {
    let mut exporter = exporter(Slow::Held).await;
    let proxy = proxy(&exporter, &[("PROXY_COLLECT", "cpu,os"), ("PROXY_SLOW_COLLECT", "process,service")]).await;

    let slow: Vec<_> = (0..3).map(|_| spawn_get(&proxy, "/metrics/slow", &[])).collect();
    assert_eq!(exporter.next_started().await, names(SLOW));
    proxy
        .wait_for_metrics("two slow scrapes to join the first", |m| {
            metric(m, "windows_exporter_proxy_coalesced_scrapes_total{route=\"/metrics/slow\"}") == 2.0
        })
        .await;
    exporter.release();
    for scrape in slow {
        assert_eq!(collected(&scrape.await.unwrap().text()), names(SLOW));
    }
    // A fast scrape is never served from a slow one's request.
    assert_eq!(collected(&get(&proxy, "/metrics").await.text()), names(&["cpu", "os"]));
    let metrics = proxy
        .wait_for_metrics("the fast scrape counted", |m| {
            metric(m, &format!("{SCRAPES}{{outcome=\"ok\",status=\"200\",route=\"/metrics\"}}")) == 1.0
        })
        .await;
    assert_eq!(metric(&metrics, "windows_exporter_proxy_exporter_requests_total{route=\"/metrics/slow\"}"), 1.0);
    assert_eq!(metric(&metrics, "windows_exporter_proxy_coalesced_scrapes_total{route=\"/metrics\"}"), 0.0);
}

#[tokio::test]
async fn without_proxy_collect_the_enabled_set_is_learned_once_and_metrics_never_runs_a_slow_collector() {
    let mut exporter = exporter(Slow::Held).await;
    let proxy = proxy(&exporter, &[("PROXY_SLOW_COLLECT", "process,service")]).await;

    let first = spawn_get(&proxy, "/metrics", &[]);
    // The learning: one full collection, a slow collection of its own.
    assert_eq!(exporter.next_started().await, names(ENABLED));
    exporter.release();
    let fast: Vec<String> = names(&["cpu", "cs", "logical_disk", "memory", "net", "os"]);
    assert_eq!(exporter.next_started().await, fast);
    let first = first.await.unwrap();
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(collected(&first.text()), fast);
    // Known from now on.
    assert_eq!(collected(&get(&proxy, "/metrics").await.text()), fast);
    assert_eq!(exporter.next_started().await, fast);
    let metrics = proxy
        .wait_for_metrics("the learning counted", |m| {
            metric(m, "windows_exporter_proxy_collector_set_learnings_total{outcome=\"ok\"}") == 1.0
        })
        .await;
    assert_eq!(metric(&metrics, "windows_exporter_proxy_collector_set_learnings_total{outcome=\"failed\"}"), 0.0);
    let requests = exporter.exporter.pending_requests();
    let queries: Vec<_> = requests.iter().map(|r| r.uri.query().map(str::to_owned)).collect();
    assert_eq!(queries.len(), 3, "{queries:?}");
    assert_eq!(queries[0], None, "the learning");
    for query in &queries[1..] {
        let sent = collect_params(query.as_deref().unwrap());
        assert!(!sent.iter().any(|c| SLOW.contains(&c.as_str())), "{sent:?}");
    }
}

#[tokio::test]
async fn bad_collector_settings_exit_64_naming_the_variable() {
    for (vars, expected) in [
        (
            vec![("PROXY_COLLECT", "cpu,Memory")],
            "PROXY_COLLECT=\"cpu,Memory\" is not valid: \"Memory\" is not a collector name",
        ),
        (vec![("PROXY_SLOW_COLLECT", "process,")], "PROXY_SLOW_COLLECT=\"process,\" is not valid: an empty item"),
        (vec![("PROXY_COLLECT", "cpu,os,cpu")], "PROXY_COLLECT=\"cpu,os,cpu\" is not valid: cpu is listed twice"),
        (
            vec![("PROXY_COLLECT", "cpu,os"), ("PROXY_SLOW_COLLECT", "process"), ("PROXY_COLLECT_ALLOW", "cpu,os")],
            "PROXY_COLLECT_ALLOW=\"cpu,os\" is not valid: leaves out process",
        ),
        (
            vec![("PROXY_COLLECT", "cpu,process"), ("PROXY_SLOW_COLLECT", "process")],
            "PROXY_SLOW_COLLECT=\"process\" is not valid: process also in PROXY_COLLECT",
        ),
    ] {
        let mut all = vec![("PROXY_HOSTIP", "10.0.0.4")];
        all.extend(vars);
        let output = run_to_exit(&[], &all).await;
        assert_eq!(output.status.code(), Some(64), "{all:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.lines().any(|l| l.starts_with(expected)), "{all:?}: {stderr}");
    }
}

/// `/metrics/slow` is authenticated like `/metrics`: the SubjectAccessReview asks for its own path
/// (the chart's ClusterRole grants it), and a refused scrape never reaches the exporter.
#[cfg(unix)] // the fake API server's certificate comes from the openssl CLI, as in tests/auth.rs
#[tokio::test]
async fn the_slow_route_is_authenticated_like_metrics() {
    use support::kube_api::{FakeKubeApi, Review, Script};
    let mut exporter = exporter(Slow::Take(std::time::Duration::ZERO)).await;
    let mut api = FakeKubeApi::start().await;
    let proxy = api.proxy(&exporter.exporter, &[("PROXY_SLOW_COLLECT", "process,service")]).await;

    assert_eq!(get(&proxy, "/metrics/slow").await.status, StatusCode::UNAUTHORIZED);
    let bearer = format!("Bearer {}", Script::GOOD);
    let scraped = Client::connect(proxy.addr).await.get("/metrics/slow", &[("authorization", &bearer)]).await;
    assert_eq!(scraped.status, StatusCode::OK, "{}", scraped.text());
    assert_eq!(collected(&scraped.text()), names(SLOW));
    let _token = api.next_review().await;
    match api.next_review().await {
        Review::Access { review, .. } => {
            let path = review.spec.non_resource_attributes.and_then(|a| a.path);
            assert_eq!(path.as_deref(), Some("/metrics/slow"));
        }
        other => panic!("expected a SubjectAccessReview, got {other:?}"),
    }
    assert_eq!(exporter.next_started().await, names(SLOW), "only the allowed scrape reached the exporter");
    assert!(exporter.started_so_far().is_empty());
}

#[tokio::test]
async fn a_failed_learning_is_remembered_so_the_exporter_is_not_sent_a_full_collection_per_scrape() {
    // An exporter whose full collection fails: 500 without collect[].
    let mut exporter = support::FakeExporter::start(|request: http::Request<hyper::body::Incoming>| async move {
        match request.uri().query() {
            None => support::reply(StatusCode::INTERNAL_SERVER_ERROR, &[], "collection failed"),
            Some(_) => support::reply(StatusCode::OK, &[("content-type", "text/plain; version=0.0.4")], "up 1\n"),
        }
    })
    .await;
    let port = exporter.port();
    let proxy = ProxyProcess::start(&[
        ("PROXY_HOSTIP", "127.0.0.1"),
        ("PROXY_PORT", port.as_str()),
        ("PROXY_SLOW_COLLECT", "process,service"),
    ])
    .await;

    for _ in 0..3 {
        let scraped = get(&proxy, "/metrics").await;
        assert_eq!(scraped.status, StatusCode::BAD_GATEWAY, "{}", scraped.text());
        assert!(scraped.text().contains("could not learn the exporter's enabled collectors"), "{}", scraped.text());
    }
    // A scraper's own collect[] needs no learning and still works.
    assert_eq!(get(&proxy, "/metrics?collect[]=cpu").await.status, StatusCode::OK);
    let seen: Vec<_> = [exporter.next_request().await, exporter.next_request().await]
        .iter()
        .map(|r| r.uri.query().map(str::to_owned))
        .collect();
    assert_eq!(seen, [None, Some("collect[]=cpu".to_owned())], "one learning, then the scraper's own scrape");
    let metrics = proxy
        .wait_for_metrics("the failed learning counted", |m| {
            metric(m, "windows_exporter_proxy_collector_set_learnings_total{outcome=\"failed\"}") == 1.0
        })
        .await;
    assert_eq!(
        metric(&metrics, &format!("{SCRAPES}{{outcome=\"upstream_error\",status=\"502\",route=\"/metrics\"}}")),
        3.0
    );
}
