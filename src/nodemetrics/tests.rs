//! The mapping against each windows_exporter version band: the catalogues of names (every
//! HELP/TYPE line of a real exporter of that version) and scrapes built on them
//! (`tests/fixtures/nodemetrics/`, see its `make_scrapes.py` and `tests/fixtures/SOURCES.md`).

use super::*;

const BANDS: &[(&str, &str, &str)] = &[
    (
        "0.25.1",
        include_str!("../../tests/fixtures/nodemetrics/windows_exporter-0.25.1-catalog.prom"),
        include_str!("../../tests/fixtures/nodemetrics/windows_exporter-0.25.1-scrape.prom"),
    ),
    (
        "0.29.2",
        include_str!("../../tests/fixtures/nodemetrics/windows_exporter-0.29.2-catalog.prom"),
        include_str!("../../tests/fixtures/nodemetrics/windows_exporter-0.29.2-scrape.prom"),
    ),
    (
        "0.30.9",
        include_str!("../../tests/fixtures/nodemetrics/windows_exporter-0.30.9-catalog.prom"),
        include_str!("../../tests/fixtures/nodemetrics/windows_exporter-0.30.9-scrape.prom"),
    ),
    (
        "0.31.8",
        include_str!("../../tests/fixtures/nodemetrics/windows_exporter-0.31.8-catalog.prom"),
        include_str!("../../tests/fixtures/nodemetrics/windows_exporter-0.31.8-scrape.prom"),
    ),
    (
        "master-589ec15",
        include_str!("../../tests/fixtures/nodemetrics/windows_exporter-master-589ec15-catalog.prom"),
        include_str!("../../tests/fixtures/nodemetrics/windows_exporter-master-589ec15-scrape.prom"),
    ),
];

/// Families every supported version gives (with its default collectors plus memory, as the
/// catalogues were taken).
const EVERYWHERE: &[&str] = &[
    "node_cpu_seconds_total",
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
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
];

/// What a band adds to [`EVERYWHERE`]: the memory collector's split (not collected by 0.25's
/// end-to-end run).
fn expected_families(band: &str) -> Vec<&'static str> {
    let mut families = EVERYWHERE.to_vec();
    if band != "0.25.1" {
        families.extend(["node_memory_MemFree_bytes", "node_memory_Cached_bytes"]);
    }
    families.sort_unstable();
    families
}

fn catalogue_names(catalogue: &str) -> HashSet<&str> {
    catalogue.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect()
}

/// For each family, the index of the first source whose inputs are all in `names`.
fn resolve(names: &HashSet<&str>) -> Vec<(&'static str, usize)> {
    FAMILIES
        .iter()
        .filter_map(|f| {
            f.sources.iter().position(|s| s.inputs().iter().all(|i| names.contains(i))).map(|i| (f.name, i))
        })
        .collect()
}

fn observe(body: &str) -> Observer {
    observe_with(body, Arc::default())
}

/// An observer of `body` whose derived counters `guard` holds.
fn observe_with(body: &str, guard: Arc<Guard>) -> Observer {
    let mut observer = Observer::with_guard(guard);
    for line in body.lines() {
        observer.observe_line(line.as_bytes());
    }
    observer
}

fn rendered_families(text: &str) -> Vec<&str> {
    let mut names: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    names.sort_unstable();
    names
}

fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
}

#[test]
fn every_version_band_has_the_names_the_mapping_reads() {
    for (band, catalogue, _) in BANDS {
        let names = catalogue_names(catalogue);
        let mut mapped: Vec<&str> = resolve(&names).into_iter().map(|(f, _)| f).collect();
        mapped.sort_unstable();
        assert_eq!(mapped, expected_families(band), "{band}: a name the mapping reads is gone");
    }
}

#[test]
fn each_band_reads_its_own_names() {
    let source_of = |band: &str, family: &str| {
        let (_, catalogue, _) = BANDS.iter().find(|(b, _, _)| *b == band).unwrap();
        let resolved = resolve(&catalogue_names(catalogue));
        let (_, index) = resolved.into_iter().find(|(f, _)| *f == family).unwrap();
        FAMILIES.iter().find(|f| f.name == family).unwrap().sources[index].inputs()
    };
    assert_eq!(source_of("0.25.1", "node_memory_MemTotal_bytes"), ["windows_cs_physical_memory_bytes"]);
    assert_eq!(source_of("0.30.9", "node_memory_MemTotal_bytes"), ["windows_memory_physical_total_bytes"]);
    assert_eq!(source_of("0.25.1", "node_boot_time_seconds"), ["windows_system_system_up_time"]);
    assert_eq!(source_of("0.29.2", "node_boot_time_seconds"), ["windows_system_system_up_time"]);
    assert_eq!(source_of("0.30.9", "node_boot_time_seconds"), ["windows_system_boot_time_timestamp"]);
    assert_eq!(source_of("master-589ec15", "node_boot_time_seconds"), ["windows_system_boot_time_timestamp"]);
    assert_eq!(source_of("0.29.2", "node_memory_SwapTotal_bytes"), ["windows_os_paging_limit_bytes"]);
    assert_eq!(source_of("0.31.8", "node_memory_SwapTotal_bytes"), ["windows_pagefile_limit_bytes"]);
    assert_eq!(source_of("0.31.8", "node_uname_info"), ["windows_os_hostname", "windows_os_info"]);
    assert_eq!(source_of("0.25.1", "node_uname_info"), ["windows_cs_hostname", "windows_os_info"]);
    assert_eq!(source_of("0.25.1", "node_filesystem_size_bytes"), ["windows_logical_disk_size_bytes"]);
    assert_eq!(
        source_of("0.29.2", "node_filesystem_size_bytes"),
        ["windows_logical_disk_size_bytes", "windows_logical_disk_info"]
    );
}

#[test]
fn every_name_the_table_reads_exists_in_some_supported_version() {
    let all: HashSet<&str> = BANDS.iter().flat_map(|(_, c, _)| catalogue_names(c)).collect();
    for name in inputs() {
        assert!(all.contains(name), "{name} is in no windows_exporter version's metric list");
    }
}

#[test]
fn each_band_renders_its_families_from_a_scrape() {
    for (band, _, scrape) in BANDS {
        let text = observe(scrape).render(Format::Text);
        assert_eq!(rendered_families(&text), expected_families(band), "{band}:\n{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.contains("os=\"windows\""), "{band}: {line}");
        }
    }
}

#[test]
fn cpu_modes_are_split_without_double_counting() {
    for (band, _, scrape) in BANDS {
        let text = observe(scrape).render(Format::Text);
        let get = |cpu: &str, mode: &str| -> f64 {
            sample(&text, &format!("node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{mode}\",os=\"windows\"}}"))
                .unwrap_or_else(|| panic!("{band}: {cpu} {mode}\n{text}"))
                .parse()
                .unwrap()
        };
        assert_eq!(get("0,0", "system"), 300.75 - 20.25 - 10.5, "{band}");
        assert_eq!(get("0,0", "irq"), 20.25);
        assert_eq!(get("0,0", "softirq"), 10.5);
        assert_eq!(get("0,1", "system"), 200.25 - 5.5);
        // Summed over modes: user + privileged + idle, the processor's whole time.
        let total: f64 = ["idle", "user", "system", "irq", "softirq"].iter().map(|m| get("0,1", m)).sum();
        assert_eq!(total, 5500.5 + 300.125 + 200.25);
        assert_eq!(text.matches("node_cpu_seconds_total{").count(), 10, "{band}");
    }
}

#[test]
fn memory_swap_filesystem_and_boot_values() {
    for (band, _, scrape) in BANDS {
        let text = observe(scrape).render(Format::Text);
        let has = |series: &str, value: &str| {
            assert_eq!(sample(&text, series), Some(value), "{band}: {series}\n{text}");
        };
        has(r#"node_memory_MemTotal_bytes{os="windows"}"#, "17179398144");
        has(r#"node_memory_MemAvailable_bytes{os="windows"}"#, "9663676416");
        has(r#"node_memory_SwapTotal_bytes{os="windows"}"#, "4294967296");
        has(r#"node_memory_SwapFree_bytes{os="windows"}"#, "3221225472");
        has(r#"node_boot_time_seconds{os="windows"}"#, "1765082400.5");
        has(r#"node_disk_io_time_weighted_seconds_total{device="C:",os="windows",volume="C:"}"#, "460.75");
        has(r#"node_disk_reads_completed_total{device="C:",os="windows",volume="C:"}"#, "250000");
        if *band != "0.25.1" {
            has(r#"node_memory_Cached_bytes{os="windows"}"#, &(7 * 1024u64.pow(3) + 256 * 1024u64.pow(2)).to_string());
            has(r#"node_memory_MemFree_bytes{os="windows"}"#, "2147483648");
            has(
                r#"node_filesystem_avail_bytes{device="C:",fstype="NTFS",mountpoint="C:",os="windows",volume="C:"}"#,
                "101089738752",
            );
        } else {
            has(r#"node_filesystem_avail_bytes{device="C:",mountpoint="C:",os="windows",volume="C:"}"#, "101089738752");
        }
        has(
            r#"node_network_receive_drop_total{device="Microsoft Hyper-V Network Adapter _2",nic="Microsoft Hyper-V Network Adapter _2",os="windows"}"#,
            "18",
        );
        let uname = text.lines().find(|l| l.starts_with("node_uname_info{")).unwrap();
        for label in [r#"nodename="akswin000000""#, r#"release="10.0.20348""#, r#"sysname="Windows""#] {
            assert!(uname.contains(label), "{band}: {uname}");
        }
        let os = text.lines().find(|l| l.starts_with("node_os_info{")).unwrap();
        assert!(os.contains(r#"id="windows""#) && os.contains(r#"name="Microsoft Windows Server 2022 Datacenter""#));
    }
}

#[test]
fn a_family_needs_all_its_inputs() {
    // privileged without interrupt: no system mode, the others stay.
    let text = observe("windows_cpu_time_total{core=\"0,0\",mode=\"privileged\"} 5\nwindows_cpu_time_total{core=\"0,0\",mode=\"idle\"} 7\n")
        .render(Format::Text);
    assert!(!text.contains("mode=\"system\""), "{text}");
    assert!(text.contains("node_cpu_seconds_total{cpu=\"0,0\",mode=\"idle\",os=\"windows\"} 7"), "{text}");
    // Three of Cached's four inputs: nothing.
    let text = observe(
        "windows_memory_standby_cache_core_bytes 1\nwindows_memory_standby_cache_normal_priority_bytes 2\nwindows_memory_standby_cache_reserve_bytes 3\n",
    )
    .render(Format::Text);
    assert_eq!(text, "");
    assert_eq!(observe("").render(Format::Text), "");
}

#[test]
fn old_and_new_names_in_one_scrape_are_not_counted_twice() {
    let (_, _, scrape) = BANDS[2]; // 0.30.9 has both boot time names and both memory totals.
    let text = observe(scrape).render(Format::Text);
    assert_eq!(text.matches("node_boot_time_seconds{").count(), 1);
    assert_eq!(text.matches("node_memory_MemTotal_bytes{").count(), 1);
}

#[test]
fn only_the_mapped_series_are_kept() {
    let (_, _, scrape) = BANDS[3];
    let observer = observe(scrape);
    let mapped_inputs =
        scrape.lines().filter(|l| !l.starts_with('#') && INPUTS.contains(l.split(['{', ' ']).next().unwrap()));
    assert_eq!(observer.kept(), mapped_inputs.count());
    assert!(observer.kept() < scrape.lines().filter(|l| !l.starts_with('#')).count());
}

#[test]
fn openmetrics_counters_drop_total_from_the_family_name() {
    let (_, _, scrape) = BANDS[3];
    let text = observe(scrape).render(Format::OpenMetrics);
    assert!(text.contains("# TYPE node_cpu_seconds counter\n"), "{text}");
    assert!(text.contains("# HELP node_cpu_seconds Seconds the CPUs spent in each mode.\n"));
    assert!(text.contains("\nnode_cpu_seconds_total{cpu=\"0,0\",mode=\"idle\",os=\"windows\"} 5000.25\n"));
    assert!(text.contains("# TYPE node_boot_time_seconds gauge\n"));
    assert!(!text.contains("# EOF"));
}

#[test]
fn escaped_label_values_are_written_back_as_they_came() {
    let text = observe("windows_net_bytes_received_total{nic=\"Intel(R) \\\"fast\\\" \\\\ adapter\"} 12\n")
        .render(Format::Text);
    assert!(
        text.contains(r#"node_network_receive_bytes_total{device="Intel(R) \"fast\" \\ adapter",nic="Intel(R) \"fast\" \\ adapter",os="windows"} 12"#),
        "{text}"
    );
}

#[test]
fn modes_parse_and_only_drops_the_inputs_in_either_spelling() {
    assert_eq!("off".parse(), Ok(Mode::Off));
    assert_eq!("append".parse(), Ok(Mode::Append));
    assert_eq!("only".parse(), Ok(Mode::Only));
    assert!("On".parse::<Mode>().is_err());
    assert!(Mode::Only.drops_family("windows_cpu_time_total"));
    assert!(Mode::Only.drops_family("windows_cpu_time"));
    assert!(Mode::Only.drops_family("windows_memory_available_bytes"));
    assert!(!Mode::Only.drops_family("windows_service_state"));
    assert!(!Mode::Append.drops_family("windows_cpu_time_total"));
}

#[test]
fn io_time_is_elapsed_since_boot_minus_idle_per_volume() {
    for (band, _, scrape) in BANDS {
        let text = observe(scrape).render(Format::Text);
        // The fixtures' clock is 1765094400.25 (time collector) or 1765094400 (os collector,
        // whole seconds), the boot 1765082400.5, C:'s idle 6000.5 and HarddiskVolume1's 6001.5.
        let (c, volume1) = if scrape.lines().any(|l| l.starts_with("windows_time_current_timestamp_seconds ")) {
            ("5999.25", "5998.25")
        } else {
            ("5999", "5998")
        };
        let series = |volume: &str| {
            format!("node_disk_io_time_seconds_total{{device=\"{volume}\",os=\"windows\",volume=\"{volume}\"}}")
        };
        assert_eq!(sample(&text, &series("C:")), Some(c), "{band}:\n{text}");
        assert_eq!(sample(&text, &series("HarddiskVolume1")), Some(volume1), "{band}");
    }
}

#[test]
fn a_derived_counter_that_dips_stays_level_and_plain_counters_pass() {
    let guard: Arc<Guard> = Arc::default();
    let first = "windows_cpu_time_total{core=\"0,0\",mode=\"privileged\"} 100\n\
        windows_cpu_time_total{core=\"0,0\",mode=\"interrupt\"} 10\n\
        windows_cpu_time_total{core=\"0,0\",mode=\"dpc\"} 20\n\
        windows_cpu_time_total{core=\"0,0\",mode=\"idle\"} 500\n\
        windows_logical_disk_idle_seconds_total{volume=\"C:\"} 50\n\
        windows_time_current_timestamp_seconds 1000\n\
        windows_system_boot_time_timestamp 900\n";
    // privileged read before the DPC time that grew meanwhile: system dips by 3 ms; the idle
    // time read after the clock: io_time dips by 2 ms; idle itself really went back (a plain
    // counter's reset is the exporter's to tell, and passes).
    let second = "windows_cpu_time_total{core=\"0,0\",mode=\"privileged\"} 100.002\n\
        windows_cpu_time_total{core=\"0,0\",mode=\"interrupt\"} 10\n\
        windows_cpu_time_total{core=\"0,0\",mode=\"dpc\"} 20.005\n\
        windows_cpu_time_total{core=\"0,0\",mode=\"idle\"} 1\n\
        windows_logical_disk_idle_seconds_total{volume=\"C:\"} 65.002\n\
        windows_time_current_timestamp_seconds 1015\n\
        windows_system_boot_time_timestamp 900\n";
    let system = "node_cpu_seconds_total{cpu=\"0,0\",mode=\"system\",os=\"windows\"}";
    let idle = "node_cpu_seconds_total{cpu=\"0,0\",mode=\"idle\",os=\"windows\"}";
    let io = "node_disk_io_time_seconds_total{device=\"C:\",os=\"windows\",volume=\"C:\"}";

    let text = observe_with(first, guard.clone()).render(Format::Text);
    assert_eq!((sample(&text, system), sample(&text, io), sample(&text, idle)), (Some("70"), Some("50"), Some("500")));
    let text = observe_with(second, guard.clone()).render(Format::Text);
    assert_eq!((sample(&text, system), sample(&text, io), sample(&text, idle)), (Some("70"), Some("50"), Some("1")));
    assert_eq!(guard.len(), 2, "only the derived series are remembered");
    // Without the guard's memory, the dip shows.
    let text = observe(second).render(Format::Text);
    let dipped: f64 = sample(&text, system).unwrap().parse().unwrap();
    assert!(dipped < 70.0, "{dipped}");
}
