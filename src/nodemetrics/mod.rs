//! Windows nodes under node_exporter's names, computed at scrape time (`PROXY_NODE_METRICS`).
//!
//! An [`Observer`] watches the exporter's samples stream past, keeps only the few series the
//! mapping reads (CPU time per core and mode, memory, page files, volumes, adapters, boot time,
//! OS info: tens to a few hundred samples, never the body), and at the end of the body renders
//! node_exporter-named families from them ([`Observer::render`]), each series labelled
//! `os="windows"`. What maps and how is the table in [`table`], which the recording rules are
//! rendered from too, so the rules and the proxy cannot drift apart.
//!
//! A family is written only when the scrape has all the inputs of one of its sources; where
//! Windows has no equivalent (load average, Buffers, Slab) nothing is written. Values keep
//! node_exporter's units (seconds, bytes); counters come from counters, and a counter computed
//! as a difference is held level by the process's [`guard::Guard`] rather than going backwards.
//!
//! This module reads samples as [`crate::exposition`] parses them and writes text; it knows
//! nothing of the filter stage that calls it or of the configuration that fills its [`Mode`].

pub mod guard;
pub mod table;

mod labels;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use crate::exposition;
use guard::Guard;
use labels::Labels;
use table::{FAMILIES, Family, Kind, Series, Source};

/// `PROXY_NODE_METRICS`: whether node_exporter-named families are added to `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The exporter's body passes unchanged.
    #[default]
    Off,
    /// The node_exporter families are written after the exporter's own.
    Append,
    /// As `Append`, and the `windows_*` families the mapping reads are left out.
    Only,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(value: &str) -> Result<Mode, String> {
        match value {
            "off" => Ok(Mode::Off),
            "append" => Ok(Mode::Append),
            "only" => Ok(Mode::Only),
            _ => Err("use off, append or only".to_owned()),
        }
    }
}

impl Mode {
    /// Whether the body is observed at all.
    pub fn is_on(self) -> bool {
        self != Mode::Off
    }

    /// Whether the exporter's family `name` (as its `# TYPE` line writes it, either spelling of
    /// a counter) is left out of the answer: in `only` mode, every family the mapping reads.
    pub fn drops_family(self, name: &str) -> bool {
        self == Mode::Only && (INPUTS.contains(name) || INPUTS.contains(format!("{name}_total").as_str()))
    }
}

/// Every metric name some source reads.
static INPUTS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| FAMILIES.iter().flat_map(|f| f.sources.iter()).flat_map(Source::inputs).collect());

/// The names the mapping reads, sorted: what must stay in windows_exporter's metric list.
pub fn inputs() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = INPUTS.iter().copied().collect();
    names.sort_unstable();
    names
}

/// The text format the rendered families are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text (the caller writes `# EOF` after the families).
    OpenMetrics,
}

/// One kept sample.
#[derive(Debug)]
struct Sample {
    metric: &'static str,
    labels: Labels,
    value: f64,
}

/// The mapping's view of one exporter body: what it kept, and the families it renders.
#[derive(Debug)]
pub struct Observer {
    samples: Vec<Sample>,
    guard: Arc<Guard>,
    /// The last sample name seen and whether the mapping reads it: a family's samples come
    /// together, so the name is looked up once per family rather than once per sample.
    last: (Vec<u8>, Option<&'static str>),
}

impl Default for Observer {
    fn default() -> Observer {
        Observer::new()
    }
}

impl Observer {
    /// A new observer for one body, its derived counters held by the process's guard.
    pub fn new() -> Observer {
        Observer::with_guard(Guard::process())
    }

    /// A new observer whose derived counters are held by `guard`.
    pub fn with_guard(guard: Arc<Guard>) -> Observer {
        Observer { samples: Vec::new(), guard, last: (Vec::new(), None) }
    }

    /// One line of the body, without its newline (see [`exposition::content`]); comments and
    /// other metrics cost a name check.
    pub fn observe_line(&mut self, line: &[u8]) {
        if let exposition::Line::Sample(sample) = exposition::parse(line) {
            self.observe(&sample);
        }
    }

    /// One sample, as the exposition parser read it: kept when the mapping reads its name (its
    /// labels and value are read only then).
    pub fn observe(&mut self, sample: &exposition::Sample<'_>) {
        if !sample.name.starts_with(b"windows_") {
            return;
        }
        if self.last.0 != sample.name {
            self.last.0.clear();
            self.last.0.extend_from_slice(sample.name);
            self.last.1 = input(sample.name);
        }
        let Some(metric) = self.last.1 else { return };
        let Some(labels) = Labels::from_sample(sample) else { return };
        let Some(value) = sample.value().ok().and_then(parse_value) else { return };
        self.samples.push(Sample { metric, labels, value });
    }

    /// How many samples are kept (the mapping's memory, for tests).
    pub fn kept(&self) -> usize {
        self.samples.len()
    }

    /// The node_exporter families computed from what was observed, in `format`; derived
    /// counters go through the guard (so a render is also a write of their last values).
    pub fn render(&self, format: Format) -> String {
        let mut families = Vec::new();
        let mut derived = Vec::new();
        for family in FAMILIES {
            let found =
                family.sources.iter().map(|source| (source, self.evaluate(source))).find(|(_, s)| !s.is_empty());
            let Some((source, series)) = found else { continue };
            let mut written = Vec::with_capacity(series.len());
            for (mut labels, value) in series {
                labels.set("os", "windows");
                labels.sort();
                if source.is_difference(labels.get("mode")) {
                    derived.push((format!("{}{{{labels}}}", family.name), (families.len(), written.len())));
                }
                written.push((labels, value));
            }
            families.push((family, written));
        }
        if !derived.is_empty() {
            let mut values: Vec<(String, f64)> =
                derived.iter_mut().map(|(key, (f, s))| (std::mem::take(key), families[*f].1[*s].1)).collect();
            self.guard.hold(&mut values);
            for ((_, (f, s)), (_, value)) in derived.iter().zip(values) {
                families[*f].1[*s].1 = value;
            }
        }
        let mut out = String::new();
        for (family, series) in families {
            write_family(&mut out, family, format, series);
        }
        out
    }

    fn series(&self, metric: &str) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.metric == metric)
    }

    fn evaluate(&self, source: &Source) -> Vec<(Labels, f64)> {
        match source {
            Source::Cpu { metric } => self.cpu(metric),
            Source::Busy { idle, now, boot } => self.busy(idle, now, boot),
            Source::Series(series) => self.arithmetic(series),
        }
    }

    /// `now - boot - idle` per volume; the clock and the boot time are one series each.
    fn busy(&self, idle: &str, now: &str, boot: &str) -> Vec<(Labels, f64)> {
        let single = |metric: &str| {
            let mut series = self.series(metric);
            match (series.next(), series.next()) {
                (Some(one), None) => Some(one.value),
                _ => None,
            }
        };
        let (Some(now), Some(boot)) = (single(now), single(boot)) else { return Vec::new() };
        self.series(idle)
            .map(|sample| {
                let mut labels = sample.labels.clone();
                labels.copy("device", "volume");
                (labels, now - boot - sample.value)
            })
            .collect()
    }

    fn cpu(&self, metric: &str) -> Vec<(Labels, f64)> {
        let mode_of = |s: &Sample| s.labels.get("mode").unwrap_or_default().to_owned();
        let mut out = Vec::new();
        let find = |of: &Sample, mode: &str| {
            self.series(metric)
                .find(|s| s.labels.equal_except(&of.labels, "mode") && mode_of(s) == mode)
                .map(|s| s.value)
        };
        for sample in self.series(metric) {
            let value = match mode_of(sample).as_str() {
                "idle" | "user" => Some((mode_of(sample), sample.value)),
                "interrupt" => Some(("irq".to_owned(), sample.value)),
                "dpc" => Some(("softirq".to_owned(), sample.value)),
                "privileged" => match (find(sample, "interrupt"), find(sample, "dpc")) {
                    (Some(interrupt), Some(dpc)) => Some(("system".to_owned(), sample.value - interrupt - dpc)),
                    _ => None,
                },
                _ => None,
            };
            let Some((mode, value)) = value else { continue };
            let mut labels = sample.labels.clone();
            labels.set("mode", &mode);
            labels.copy("cpu", "core");
            labels.remove("core");
            out.push((labels, value));
        }
        out
    }

    fn arithmetic(&self, series: &Series) -> Vec<(Labels, f64)> {
        let Some((first, rest)) = series.sum.split_first() else { return Vec::new() };
        // a + b + ...: series with identical labels.
        let mut summed: Vec<(Labels, f64)> = Vec::new();
        for sample in self.series(first) {
            let others: Option<Vec<f64>> =
                rest.iter().map(|m| self.series(m).find(|s| s.labels == sample.labels).map(|s| s.value)).collect();
            if let Some(others) = others {
                summed.push((sample.labels.clone(), sample.value + others.iter().sum::<f64>()));
            }
        }
        // sum without (...)
        if !series.without.is_empty() {
            let mut grouped: Vec<(Labels, f64)> = Vec::new();
            for (mut labels, value) in summed {
                for label in series.without {
                    labels.remove(label);
                }
                match grouped.iter_mut().find(|(l, _)| *l == labels) {
                    Some((_, total)) => *total += value,
                    None => grouped.push((labels, value)),
                }
            }
            summed = grouped;
        }
        let mut out = Vec::new();
        for (mut labels, mut value) in summed {
            if let Some(join) = &series.join {
                let mut matches = self.series(join.metric).filter(|info| {
                    join.on.iter().all(|l| info.labels.get(l).unwrap_or_default() == labels.get(l).unwrap_or_default())
                });
                // group_left: exactly one info series per series, as PromQL requires.
                let (Some(info), None) = (matches.next(), matches.next()) else { continue };
                for label in join.bring {
                    match info.labels.get(label) {
                        Some(v) if !v.is_empty() => labels.set(label, v),
                        _ => labels.remove(label),
                    }
                }
                value *= info.value;
            }
            for (to, from) in series.copy {
                labels.copy(to, from);
            }
            for (label, constant) in series.set {
                labels.set(label, constant);
            }
            for label in series.drop {
                labels.remove(label);
            }
            out.push((labels, value));
        }
        out
    }
}

/// Whether the mapping reads any sample of `family` (a `# TYPE` name in either format, or a
/// sample name): the filter's fast paths, which skip the observer, are off for such a family.
pub fn reads_family(family: &[u8]) -> bool {
    family.starts_with(b"windows_") && INPUTS.iter().any(|input| exposition::belongs_to(input.as_bytes(), family))
}

fn input(name: &[u8]) -> Option<&'static str> {
    let name = std::str::from_utf8(name).ok()?;
    INPUTS.get(name).copied()
}

/// A sample value as the text formats write it (`NaN`, `+Inf`, `-Inf`, decimals, exponents).
fn parse_value(value: &[u8]) -> Option<f64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn write_family(out: &mut String, family: &Family, format: Format, series: Vec<(Labels, f64)>) {
    let base = match (format, family.kind) {
        (Format::OpenMetrics, Kind::Counter) => family.name.strip_suffix("_total").unwrap_or(family.name),
        _ => family.name,
    };
    let _ = writeln!(out, "# HELP {base} {}", family.help);
    let _ = writeln!(out, "# TYPE {base} {}", family.kind.as_str());
    for (labels, value) in series {
        let _ = writeln!(out, "{}{{{}}} {}", family.name, labels, format_value(value));
    }
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests;
