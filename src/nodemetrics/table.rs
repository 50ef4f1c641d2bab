//! The mapping from windows_exporter names to node_exporter names: the one source of truth.
//!
//! Each [`Family`] is a node_exporter family (name, type and HELP as node_exporter writes them)
//! with its [`Source`]s in order of preference, one per windows_exporter version band that
//! named the inputs differently. The scrape-time mapping ([`super::Observer`]) evaluates the
//! first source that yields a series in the scrape; the recording rules
//! (`deploy/prometheus/rules/windows-node-exporter-compat.rules.yml`) are rendered from the
//! same table by [`rules_yaml`] (`cargo run --example render_node_rules`), and a test checks that
//! the checked-in file is what the table renders, so the two cannot drift apart.
//!
//! The operations are the few that have an obvious meaning both here and in PromQL: a sum of
//! metrics with the same labels (optionally summed over some labels), a join with an info
//! metric, label copies, constant labels and removed labels; and the CPU mode split, written out
//! once in each form.

/// A family's type, as its `# TYPE` line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A counter; its name ends in `_total`.
    Counter,
    /// A gauge.
    Gauge,
}

impl Kind {
    /// The word in a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One node_exporter family and how to compute it.
#[derive(Debug)]
pub struct Family {
    /// The family's name in text format 0.0.4 (a counter's with `_total`).
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its `# HELP` text, as node_exporter writes it.
    pub help: &'static str,
    /// How to compute it, first choice first.
    pub sources: &'static [Source],
    /// Why these inputs mean this family; goes into the rules file as a comment.
    pub why: &'static str,
}

/// One way to compute a family from one version band's names.
#[derive(Debug)]
pub enum Source {
    /// `windows_cpu_time_total{core,mode}` split into node_exporter's modes, `core` -> `cpu`:
    /// idle -> idle, user -> user, interrupt -> irq, dpc -> softirq, and
    /// privileged - interrupt - dpc -> system (privileged already contains interrupt and DPC time).
    Cpu {
        /// The input counter.
        metric: &'static str,
    },
    /// Label arithmetic on one metric or a sum of metrics.
    Series(Series),
    /// Seconds a volume had I/O in flight, node_exporter's io_time: `now - boot - idle` per
    /// volume, `volume` -> `device`. The idle counter counts from when the volume's counters
    /// started (the boot, for a volume there at boot) and the elapsed time from the boot, so the
    /// value can be ahead of node_exporter's by a constant per volume; its rate is right.
    Busy {
        /// The volume's idle-time counter.
        idle: &'static str,
        /// The node's clock, read by the exporter in the same scrape.
        now: &'static str,
        /// The node's boot time, in the same clock.
        boot: &'static str,
    },
}

/// A metric, or a sum of metrics with the same labels, then a join and label edits.
#[derive(Debug)]
pub struct Series {
    /// The metrics added together (one, usually); series with the same labels are summed.
    pub sum: &'static [&'static str],
    /// Labels summed away, as PromQL's `sum without (...)`.
    pub without: &'static [&'static str],
    /// An info metric whose labels are added to each series with the same values of `on`.
    pub join: Option<Join>,
    /// `(to, from)`: label `to` gets the value of label `from` (when that is not empty), in order.
    pub copy: &'static [(&'static str, &'static str)],
    /// `(label, value)`: constant labels.
    pub set: &'static [(&'static str, &'static str)],
    /// Labels removed at the end.
    pub drop: &'static [&'static str],
}

/// A join with an info metric (value 1), as PromQL's `* on (...) group_left (...)`.
#[derive(Debug)]
pub struct Join {
    /// The info metric.
    pub metric: &'static str,
    /// Labels that must be equal (besides the target's own `job` and `instance`).
    pub on: &'static [&'static str],
    /// Labels taken from the info metric.
    pub bring: &'static [&'static str],
}

impl Source {
    /// Whether a series of this source is a difference of counters, read at slightly different
    /// moments, that can dip by a few milliseconds between scrapes (the guard holds it level).
    pub fn is_difference(&self, mode: Option<&str>) -> bool {
        match self {
            Source::Cpu { .. } => mode == Some("system"),
            Source::Busy { .. } => true,
            Source::Series(_) => false,
        }
    }

    /// Every metric this source reads: all must be in a scrape for it to yield anything.
    pub fn inputs(&self) -> Vec<&'static str> {
        match self {
            Source::Cpu { metric } => vec![metric],
            Source::Busy { idle, now, boot } => vec![idle, now, boot],
            Source::Series(series) => {
                let mut inputs = series.sum.to_vec();
                inputs.extend(series.join.as_ref().map(|join| join.metric));
                inputs
            }
        }
    }
}

const fn one(sum: &'static [&'static str]) -> Series {
    Series { sum, without: &[], join: None, copy: &[], set: &[], drop: &[] }
}

const VOLUME: &[(&str, &str)] = &[("mountpoint", "volume"), ("device", "volume")];
const NIC: &[(&str, &str)] = &[("device", "nic")];
const FSTYPE: Join = Join { metric: "windows_logical_disk_info", on: &["volume"], bring: &["filesystem"] };
const VOLUME_FSTYPE: &[(&str, &str)] = &[("mountpoint", "volume"), ("device", "volume"), ("fstype", "filesystem")];

/// A logical-disk gauge as a filesystem family: with `fstype` from `windows_logical_disk_info`
/// where the exporter has it (v0.29+), without it where it does not.
const fn filesystem(metric: &'static [&'static str]) -> [Source; 2] {
    [
        Source::Series(Series { join: Some(FSTYPE), copy: VOLUME_FSTYPE, drop: &["filesystem"], ..one(metric) }),
        Source::Series(Series { copy: VOLUME, ..one(metric) }),
    ]
}

const fn renamed(metric: &'static [&'static str], copy: &'static [(&'static str, &'static str)]) -> [Source; 1] {
    [Source::Series(Series { copy, ..one(metric) })]
}

/// The node's clock: the time collector (v0.30+; the only one in v0.31+, where it is not a
/// default collector), then the os collector's (whole seconds, before v0.31).
const NOW: [&str; 2] = ["windows_time_current_timestamp_seconds", "windows_os_time"];
/// The boot time, each version's name (see node_boot_time_seconds).
const BOOT: [&str; 3] = [
    "windows_system_boot_time_timestamp",
    "windows_system_boot_time_timestamp_seconds",
    "windows_system_system_up_time",
];

/// io_time from each pair of clock and boot-time names, the finer clock first.
const fn busy() -> [Source; 6] {
    const fn one(now: usize, boot: usize) -> Source {
        Source::Busy { idle: "windows_logical_disk_idle_seconds_total", now: NOW[now], boot: BOOT[boot] }
    }
    [one(0, 0), one(0, 1), one(0, 2), one(1, 0), one(1, 1), one(1, 2)]
}

const BUSY: [Source; 6] = busy();

const FS_SIZE: [Source; 2] = filesystem(&["windows_logical_disk_size_bytes"]);
const FS_FREE: [Source; 2] = filesystem(&["windows_logical_disk_free_bytes"]);

const HOSTNAME_FROM_OS_INFO: &[(&str, &str)] =
    &[("name", "product"), ("pretty_name", "product"), ("version_id", "version")];

/// The families, in the order they are written.
pub static FAMILIES: &[Family] = &[
    Family {
        name: "node_cpu_seconds_total",
        kind: Kind::Counter,
        help: "Seconds the CPUs spent in each mode.",
        sources: &[Source::Cpu { metric: "windows_cpu_time_total" }],
        why: "windows_cpu_time_total modes: idle, user, privileged, interrupt, dpc. \"privileged\"\n\
              already contains interrupt and DPC time, so mapping it straight to node_exporter's\n\
              \"system\" counts those twice (sum over modes would be > 1 CPU-second per second).\n\
              Mapping: idle->idle, user->user, interrupt->irq, dpc->softirq,\n\
              \x20        privileged - interrupt - dpc -> system.  core (\"group,index\") -> cpu.",
    },
    Family {
        name: "node_memory_MemTotal_bytes",
        kind: Kind::Gauge,
        help: "Memory information field MemTotal_bytes.",
        sources: &[
            Source::Series(one(&["windows_memory_physical_total_bytes"])),
            Source::Series(one(&["windows_cs_physical_memory_bytes"])),
        ],
        why: "v0.29+: memory collector; before: the cs collector (deleted in v0.31).",
    },
    Family {
        name: "node_memory_MemAvailable_bytes",
        kind: Kind::Gauge,
        help: "Memory information field MemAvailable_bytes.",
        sources: &[
            Source::Series(one(&["windows_memory_available_bytes"])),
            Source::Series(one(&["windows_os_physical_memory_free_bytes"])),
        ],
        why: "Available = standby (cache) + free + zero page lists: the MemAvailable meaning. The os\n\
              collector's FreePhysicalMemory (gone in v0.31) is the same Available counter.",
    },
    Family {
        name: "node_memory_MemFree_bytes",
        kind: Kind::Gauge,
        help: "Memory information field MemFree_bytes.",
        sources: &[Source::Series(one(&["windows_memory_free_and_zero_page_list_bytes"]))],
        why: "Free and zero page lists only (no cached data): the MemFree meaning.",
    },
    Family {
        name: "node_memory_Cached_bytes",
        kind: Kind::Gauge,
        help: "Memory information field Cached_bytes.",
        sources: &[Source::Series(Series {
            sum: &[
                "windows_memory_standby_cache_core_bytes",
                "windows_memory_standby_cache_normal_priority_bytes",
                "windows_memory_standby_cache_reserve_bytes",
                "windows_memory_modified_page_list_bytes",
            ],
            without: &[],
            join: None,
            copy: &[],
            set: &[],
            drop: &[],
        })],
        why: "File data held in memory: the standby lists plus the modified list, what Task Manager\n\
              calls \"Cached\". There is no Buffers or Slab split on Windows: not recorded.",
    },
    Family {
        name: "node_memory_SwapTotal_bytes",
        kind: Kind::Gauge,
        help: "Memory information field SwapTotal_bytes.",
        sources: &[
            Source::Series(Series { without: &["file"], ..one(&["windows_pagefile_limit_bytes"]) }),
            Source::Series(one(&["windows_os_paging_limit_bytes"])),
        ],
        why: "The page files, summed over files (pagefile collector, v0.30+; before: the os collector).",
    },
    Family {
        name: "node_memory_SwapFree_bytes",
        kind: Kind::Gauge,
        help: "Memory information field SwapFree_bytes.",
        sources: &[
            Source::Series(Series { without: &["file"], ..one(&["windows_pagefile_free_bytes"]) }),
            Source::Series(one(&["windows_os_paging_free_bytes"])),
        ],
        why: "Free space in the page files, summed over files.",
    },
    Family {
        name: "node_filesystem_size_bytes",
        kind: Kind::Gauge,
        help: "Filesystem size in bytes.",
        sources: &FS_SIZE,
        why: "volume (\"C:\", \"HarddiskVolume1\") -> mountpoint and device; fstype from\n\
              windows_logical_disk_info's filesystem (v0.29+). size/free refresh every 10-15 minutes.",
    },
    Family {
        name: "node_filesystem_avail_bytes",
        kind: Kind::Gauge,
        help: "Filesystem space available to non-root users in bytes.",
        sources: &FS_FREE,
        why: "Windows reports free space without per-user quota, so avail == free.",
    },
    Family {
        name: "node_filesystem_free_bytes",
        kind: Kind::Gauge,
        help: "Filesystem free space in bytes.",
        sources: &FS_FREE,
        why: "The same free space.",
    },
    Family {
        name: "node_disk_read_bytes_total",
        kind: Kind::Counter,
        help: "The total number of bytes read successfully.",
        sources: &renamed(&["windows_logical_disk_read_bytes_total"], &[("device", "volume")]),
        why: "Per logical volume (logical_disk, a default collector), volume -> device.",
    },
    Family {
        name: "node_disk_written_bytes_total",
        kind: Kind::Counter,
        help: "The total number of bytes written successfully.",
        sources: &renamed(&["windows_logical_disk_write_bytes_total"], &[("device", "volume")]),
        why: "Per logical volume, volume -> device.",
    },
    Family {
        name: "node_disk_reads_completed_total",
        kind: Kind::Counter,
        help: "The total number of reads completed successfully.",
        sources: &renamed(&["windows_logical_disk_reads_total"], &[("device", "volume")]),
        why: "Read operations per volume, volume -> device.",
    },
    Family {
        name: "node_disk_writes_completed_total",
        kind: Kind::Counter,
        help: "The total number of writes completed successfully.",
        sources: &renamed(&["windows_logical_disk_writes_total"], &[("device", "volume")]),
        why: "Write operations per volume, volume -> device.",
    },
    Family {
        name: "node_disk_read_time_seconds_total",
        kind: Kind::Counter,
        help: "The total number of seconds spent by all reads.",
        sources: &renamed(&["windows_logical_disk_read_seconds_total"], &[("device", "volume")]),
        why: "% Disk Read Time's counter: the time of every read request added up (it can pass one\n\
              second per second with requests in parallel), as node_exporter's read_time.",
    },
    Family {
        name: "node_disk_write_time_seconds_total",
        kind: Kind::Counter,
        help: "This is the total number of seconds spent by all writes.",
        sources: &renamed(&["windows_logical_disk_write_seconds_total"], &[("device", "volume")]),
        why: "% Disk Write Time's counter, as node_exporter's write_time.",
    },
    Family {
        name: "node_disk_io_time_weighted_seconds_total",
        kind: Kind::Counter,
        help: "The weighted # of seconds spent doing I/Os.",
        sources: &[Source::Series(Series {
            copy: &[("device", "volume")],
            ..one(&["windows_logical_disk_read_seconds_total", "windows_logical_disk_write_seconds_total"])
        })],
        why: "Read plus write request time: the queue-weighted time node-mixin's disk saturation reads.",
    },
    Family {
        name: "node_disk_io_time_seconds_total",
        kind: Kind::Counter,
        help: "Total seconds spent doing I/Os.",
        sources: &BUSY,
        why: "Time the volume had I/O in flight = elapsed - idle. % Idle Time's raw counter counts from\n\
              when the volume's counters started (the boot, for a volume there at boot); windows_exporter\n\
              keeps no elapsed time of that base, so the elapsed time is the node's clock minus its boot\n\
              time, read in the same scrape. A volume attached after the boot starts ahead by a constant:\n\
              rate() is right, as node-mixin reads it. Needs the clock: the time collector (v0.30+, not\n\
              a default one) or, before v0.31, the os collector's. The proxy holds this difference level\n\
              where the two reads dip it by a few milliseconds; a rule cannot, and there such a dip reads\n\
              as a counter reset.",
    },
    Family {
        name: "node_network_receive_bytes_total",
        kind: Kind::Counter,
        help: "Network device statistic receive_bytes.",
        sources: &renamed(&["windows_net_bytes_received_total"], NIC),
        why: "nic (adapter description, \"(\" -> \"[\", \")\" -> \"]\", \"#\" -> \"_\") -> device.",
    },
    Family {
        name: "node_network_transmit_bytes_total",
        kind: Kind::Counter,
        help: "Network device statistic transmit_bytes.",
        sources: &renamed(&["windows_net_bytes_sent_total"], NIC),
        why: "nic -> device.",
    },
    Family {
        name: "node_network_receive_packets_total",
        kind: Kind::Counter,
        help: "Network device statistic receive_packets.",
        sources: &renamed(&["windows_net_packets_received_total"], NIC),
        why: "nic -> device.",
    },
    Family {
        name: "node_network_transmit_packets_total",
        kind: Kind::Counter,
        help: "Network device statistic transmit_packets.",
        sources: &renamed(&["windows_net_packets_sent_total"], NIC),
        why: "nic -> device.",
    },
    Family {
        name: "node_network_receive_errs_total",
        kind: Kind::Counter,
        help: "Network device statistic receive_errs.",
        sources: &renamed(&["windows_net_packets_received_errors_total"], NIC),
        why: "nic -> device.",
    },
    Family {
        name: "node_network_transmit_errs_total",
        kind: Kind::Counter,
        help: "Network device statistic transmit_errs.",
        sources: &renamed(&["windows_net_packets_outbound_errors_total"], NIC),
        why: "nic -> device.",
    },
    Family {
        name: "node_network_receive_drop_total",
        kind: Kind::Counter,
        help: "Network device statistic receive_drop.",
        sources: &renamed(&["windows_net_packets_received_discarded_total"], NIC),
        why: "nic -> device.",
    },
    Family {
        name: "node_network_transmit_drop_total",
        kind: Kind::Counter,
        help: "Network device statistic transmit_drop.",
        sources: &renamed(&["windows_net_packets_outbound_discarded_total"], NIC),
        why: "nic -> device.",
    },
    Family {
        name: "node_boot_time_seconds",
        kind: Kind::Gauge,
        help: "Node boot time, in unixtime.",
        sources: &[
            Source::Series(one(&["windows_system_boot_time_timestamp"])),
            Source::Series(one(&["windows_system_boot_time_timestamp_seconds"])),
            Source::Series(one(&["windows_system_system_up_time"])),
        ],
        why: "v0.31: windows_system_boot_time_timestamp; v0.30 also _seconds; before v0.30\n\
              windows_system_system_up_time, which despite its name is the boot time. There is no\n\
              load1: windows_system_processor_queue_length is a different measure and is not mapped.",
    },
    Family {
        name: "node_time_seconds",
        kind: Kind::Gauge,
        help: "System time in seconds since epoch (1970).",
        sources: &[
            Source::Series(one(&["windows_time_current_timestamp_seconds"])),
            Source::Series(one(&["windows_os_time"])),
        ],
        why: "The time collector (v0.30+, not a default one); before v0.31 the os collector's time.",
    },
    Family {
        name: "node_os_info",
        kind: Kind::Gauge,
        help: "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, version_codename, version_id.",
        sources: &[Source::Series(Series {
            copy: HOSTNAME_FROM_OS_INFO,
            set: &[("id", "windows")],
            ..one(&["windows_os_info"])
        })],
        why: "windows_os_info's labels are kept; name and pretty_name are its product, version_id its\n\
              version, id is \"windows\".",
    },
    Family {
        name: "node_uname_info",
        kind: Kind::Gauge,
        help: "Labeled system information as provided by the uname system call.",
        sources: &[
            Source::Series(Series {
                sum: &["windows_os_hostname"],
                without: &[],
                join: Some(Join { metric: "windows_os_info", on: &[], bring: &["version", "build_number"] }),
                copy: &[("nodename", "hostname"), ("domainname", "domain"), ("release", "version")],
                set: &[("sysname", "Windows")],
                drop: &[],
            }),
            Source::Series(Series {
                sum: &["windows_cs_hostname"],
                without: &[],
                join: Some(Join { metric: "windows_os_info", on: &[], bring: &["version", "build_number"] }),
                copy: &[("nodename", "hostname"), ("domainname", "domain"), ("release", "version")],
                set: &[("sysname", "Windows")],
                drop: &[],
            }),
        ],
        why: "windows_os_hostname (v0.29+; before: windows_cs_hostname) joined with windows_os_info:\n\
              nodename, domainname, release (the Windows version) and sysname=\"Windows\".",
    },
];

/// Records that only the rules have: node-mixin's `instance:` aggregations over a rate, which a
/// single scrape cannot give. They read the node_* records above.
pub static RULES_ONLY: &[(&str, &str, &str)] = &[
    (
        "instance:node_num_cpu:sum",
        "count without (cpu, mode) (node_cpu_seconds_total{os=\"windows\",mode=\"idle\"})",
        "node-mixin / kube-prometheus \"node-exporter.rules\" names, from the records above, so\n\
         they do not depend on the job=\"node-exporter\" selector those rules use.",
    ),
    (
        "instance:node_cpu_utilisation:rate5m",
        "1 - avg without (cpu, mode) (rate(node_cpu_seconds_total{os=\"windows\",mode=\"idle\"}[5m]))",
        "1 - idle is right whatever the privileged/interrupt/dpc split is (no iowait/steal on Windows).",
    ),
    (
        "instance:node_memory_utilisation:ratio",
        "1 - node_memory_MemAvailable_bytes{os=\"windows\"} / node_memory_MemTotal_bytes{os=\"windows\"}",
        "",
    ),
    (
        "instance:node_network_receive_bytes_excluding_lo:rate5m",
        "sum without (device, nic) (rate(node_network_receive_bytes_total{os=\"windows\"}[5m]))",
        "The Windows \"Network Interface\" counters have no loopback instance, so \"excluding_lo\"\n\
         is simply the sum over all adapters.",
    ),
    (
        "instance:node_network_transmit_bytes_excluding_lo:rate5m",
        "sum without (device, nic) (rate(node_network_transmit_bytes_total{os=\"windows\"}[5m]))",
        "",
    ),
    (
        "instance:node_network_receive_drop_excluding_lo:rate5m",
        "sum without (device, nic) (rate(node_network_receive_drop_total{os=\"windows\"}[5m]))",
        "",
    ),
    (
        "instance:node_network_transmit_drop_excluding_lo:rate5m",
        "sum without (device, nic) (rate(node_network_transmit_drop_total{os=\"windows\"}[5m]))",
        "",
    ),
];

/// The labels a target's series carry in Prometheus and a scrape does not: PromQL matches on them
/// where the scrape-time mapping matches within one scrape.
const TARGET: &str = "job, instance";

/// The PromQL of one source, as a recording rule evaluates it.
pub fn promql(source: &Source) -> String {
    match source {
        Source::Cpu { metric } => format!(
            "sum without (core) (\n\
             \x20 label_replace(\n\
             \x20     {metric}{{mode=~\"idle|user\"}}\n\
             \x20   or\n\
             \x20     label_replace({metric}{{mode=\"interrupt\"}}, \"mode\", \"irq\", \"\", \"\")\n\
             \x20   or\n\
             \x20     label_replace({metric}{{mode=\"dpc\"}}, \"mode\", \"softirq\", \"\", \"\")\n\
             \x20   or\n\
             \x20     label_replace(\n\
             \x20         {metric}{{mode=\"privileged\"}}\n\
             \x20       - ignoring (mode) {metric}{{mode=\"interrupt\"}}\n\
             \x20       - ignoring (mode) {metric}{{mode=\"dpc\"}},\n\
             \x20       \"mode\", \"system\", \"\", \"\"\n\
             \x20     ),\n\
             \x20   \"cpu\", \"$1\", \"core\", \"(.+)\"\n\
             \x20 )\n\
             )"
        ),
        Source::Busy { idle, now, boot } => label_replace(
            &format!("(\n    {now}\n  - on ({TARGET}) {boot}\n)\n- on ({TARGET}) group_right () {idle}"),
            "\"device\", \"$1\", \"volume\", \"(.+)\"",
        ),
        Source::Series(series) => {
            let mut expr = match series.sum {
                [one] => (*one).to_owned(),
                many => format!("(\n    {}\n)", many.join("\n  + ")),
            };
            if !series.without.is_empty() {
                expr = format!("sum without ({}) ({expr})", series.without.join(", "));
            }
            if let Some(join) = &series.join {
                let on: Vec<&str> = std::iter::once(TARGET).chain(join.on.iter().copied()).collect();
                expr =
                    format!("{expr} * on ({}) group_left ({}) {}", on.join(", "), join.bring.join(", "), join.metric);
            }
            for (to, from) in series.copy {
                expr = label_replace(&expr, &format!("\"{to}\", \"$1\", \"{from}\", \"(.+)\""));
            }
            for (label, value) in series.set {
                expr = label_replace(&expr, &format!("\"{label}\", \"{value}\", \"\", \"\""));
            }
            for label in series.drop {
                expr = label_replace(&expr, &format!("\"{label}\", \"\", \"\", \"\""));
            }
            expr
        }
    }
}

/// `label_replace(inner, args)`, the inner expression indented on lines of its own so that the
/// rules file stays readable (and within yamllint's line length).
fn label_replace(inner: &str, args: &str) -> String {
    let indented: Vec<String> = inner.lines().map(|line| format!("  {line}")).collect();
    format!("label_replace(\n{},\n  {args}\n)", indented.join("\n"))
}

/// The recording rules file, as checked in at
/// `deploy/prometheus/rules/windows-node-exporter-compat.rules.yml`.
pub fn rules_yaml() -> String {
    let mut out = String::from(RULES_HEADER);
    for (i, family) in FAMILIES.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for line in family.why.lines() {
            out.push_str(&format!("      # {}\n", line.trim_end()));
        }
        out.push_str(&format!("      - record: {}\n        expr: |\n", family.name));
        let alternatives: Vec<String> = family.sources.iter().map(promql).collect();
        let expr = if alternatives.len() == 1 {
            alternatives[0].clone()
        } else {
            alternatives.join(&format!("\n  or on ({TARGET})\n"))
        };
        for line in expr.lines() {
            out.push_str(&format!("          {line}\n"));
        }
        out.push_str("        labels:\n          os: windows\n");
    }
    for (record, expr, why) in RULES_ONLY {
        out.push('\n');
        for line in why.lines() {
            out.push_str(&format!("      # {}\n", line.trim_end()));
        }
        out.push_str(&format!(
            "      - record: {record}\n        expr: {expr}\n        labels:\n          os: windows\n"
        ));
    }
    out
}

const RULES_HEADER: &str = "\
# GENERATED from src/nodemetrics/table.rs by `cargo run --example render_node_rules`: edit the
# table, not this file (a test compares the two). The proxy computes the same families at scrape
# time with PROXY_NODE_METRICS=append; these rules give them where a Prometheus evaluates rules.
#
# Recording rules that give Windows nodes node_exporter-like series, so one dashboard covers Linux
# and Windows nodes. They read whichever names the exporter has: windows_exporter 0.25-0.29,
# 0.30, 0.31 and master. Each record lists its sources first choice first, joined with
# `or on (job, instance)`: a later source counts only for a target where the earlier ones give
# nothing, so a v0.30 exporter that has both old and new names is not counted twice. Every output
# carries os=\"windows\"; remote write forwards these by that label (see ../prometheus.yml), and
# it keeps them apart from the Linux series of the same name.
#
# No job selector: windows_* names come only from windows_exporter (the proxy's own metrics are
# windows_exporter_proxy_*), so the rules work whatever job name the scrape config uses.
# Labels are kept (job, instance, node, ...) so Linux and Windows series sit side by side.
groups:
  - name: windows-node-exporter-compat
    rules:
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_rules_are_what_the_table_renders() {
        let checked_in = include_str!("../../deploy/prometheus/rules/windows-node-exporter-compat.rules.yml");
        assert!(
            checked_in == rules_yaml(),
            "the rules file is stale: run `cargo run --example render_node_rules -- --write`"
        );
    }

    #[test]
    fn every_family_has_node_exporter_naming() {
        for family in FAMILIES {
            assert!(family.name.starts_with("node_"), "{}", family.name);
            assert_eq!(family.kind == Kind::Counter, family.name.ends_with("_total"), "{}", family.name);
            assert!(!family.sources.is_empty());
        }
    }
}
