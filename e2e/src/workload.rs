//! The synthetic multi-namespace workload: one deterministic set of series shaped like a small
//! Kubernetes cluster (kube-state-metrics, cAdvisor, kubelet, node-exporter, one instrumented
//! app per namespace), shared by the lab (where Prometheus scrapes [`exposition`] from the
//! `lab-workload` binary) and the e2e suite (where [`crate::seed`] remote-writes the same
//! series over a past window).
//!
//! Every value is a pure function of the series and the time ([`value`]), so two Prometheus
//! fed the same window hold identical data, and a test can recompute any sample. Metric and
//! label names are the real exporters' ones, so kube-prometheus style rules and dashboards work.

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::fmt::Write as _;

/// Counters count from here (Unix seconds): `rate * (t_s - EPOCH)`.
pub const EPOCH: i64 = 1_700_000_000;
/// [`EPOCH`] in milliseconds.
pub const EPOCH_MS: i64 = EPOCH * 1000;
/// Period of the restart counter's steps: one restart per pod every half hour.
pub const RESTART_PERIOD_S: i64 = 1800;
/// Namespaces with a `data-<ns>` PersistentVolumeClaim (kubelet volume stats).
pub const PVC_NAMESPACES: [&str; 3] = ["team-a", "team-b", "monitoring"];

/// The namespaces of the synthetic cluster.
pub const NAMESPACES: [&str; 7] = [
    "team-a",
    "team-b",
    "team-c",
    "team-d",
    "monitoring",
    "kube-system",
    "default",
];

/// The nodes of the synthetic cluster.
pub const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];

const PODS_PER_APP: usize = 2;
const HISTOGRAM_BUCKETS: [(&str, f64); 6] = [
    ("0.05", 0.4),
    ("0.1", 0.6),
    ("0.25", 0.8),
    ("0.5", 0.9),
    ("1", 0.97),
    ("+Inf", 1.0),
];
const MEAN_REQUEST_SECONDS: f64 = 0.12;

pub fn namespaces() -> Vec<&'static str> {
    NAMESPACES.to_vec()
}

/// The exposition type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyType {
    Counter,
    Gauge,
    Histogram,
}

impl FamilyType {
    pub fn as_str(self) -> &'static str {
        match self {
            FamilyType::Counter => "counter",
            FamilyType::Gauge => "gauge",
            FamilyType::Histogram => "histogram",
        }
    }
}

/// How a series' value evolves with time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A fixed value (info metrics, `up`, phases, capacities).
    Constant(f64),
    /// `rate * (t - EPOCH_MS) / 1000`, floored when `integer`.
    Counter { rate: f64, integer: bool },
    /// `base + amplitude * sin(2π (t/1000 + phase_s) / period_s)`.
    Gauge {
        base: f64,
        amplitude: f64,
        period_s: f64,
        phase_s: f64,
    },
    /// A `_bucket` series: `floor(observations) * fraction`, floored; `fraction` grows with `le`
    /// and is 1 for `+Inf`, so buckets are cumulative and `+Inf` equals `_count`.
    HistogramBucket { rate: f64, fraction: f64 },
    /// A `_count` series: `floor(rate * (t - EPOCH_MS) / 1000)` observations.
    HistogramCount { rate: f64 },
    /// A `_sum` series: `_count * mean`.
    HistogramSum { rate: f64, mean: f64 },
    /// An integer counter stepping by one every `period_s`, shifted per series by `offset_s`:
    /// `floor((t_s - EPOCH + offset_s) / period_s)`.
    StepCounter { period_s: i64, offset_s: i64 },
}

/// One series: its full label set (sorted by name, `__name__` included) and its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesDef {
    pub labels: Vec<(String, String)>,
    pub kind: Kind,
    /// The metric family it belongs to (`_bucket`/`_sum`/`_count` stripped for histograms).
    pub family: String,
    pub family_type: FamilyType,
}

impl SeriesDef {
    pub fn name(&self) -> &str {
        self.label("__name__").unwrap_or_default()
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The series as PromQL selector text, e.g. `{__name__="up",job="x"}`; handy for queries
    /// that must hit exactly this series.
    pub fn selector(&self) -> String {
        let body: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

/// The value of a series at `t_ms` (milliseconds since the epoch). Pure: same input, same bits.
pub fn value(series: &SeriesDef, t_ms: i64) -> f64 {
    let secs = (t_ms - EPOCH_MS) as f64 / 1000.0;
    match series.kind {
        Kind::Constant(v) => v,
        Kind::Counter { rate, integer } => {
            let v = rate * secs;
            if integer { v.floor() } else { v }
        }
        Kind::Gauge {
            base,
            amplitude,
            period_s,
            phase_s,
        } => base + amplitude * (2.0 * PI * (t_ms as f64 / 1000.0 + phase_s) / period_s).sin(),
        Kind::HistogramBucket { rate, fraction } => ((rate * secs).floor() * fraction).floor(),
        Kind::HistogramCount { rate } => (rate * secs).floor(),
        Kind::HistogramSum { rate, mean } => (rate * secs).floor() * mean,
        Kind::StepCounter { period_s, offset_s } => {
            (t_ms.div_euclid(1000) - EPOCH + offset_s).div_euclid(period_s.max(1)) as f64
        }
    }
}

/// The labels of a series as a map (e.g. to compare with a Prometheus API answer).
pub fn labels_map(series: &SeriesDef) -> BTreeMap<String, String> {
    series.labels.iter().cloned().collect()
}

/// Every series of the workload, grouped by family in a fixed order.
pub fn series() -> Vec<SeriesDef> {
    let mut b = Builder::default();
    let pods = pods();
    families::kube_state_metrics(&mut b, &pods);
    families::cadvisor(&mut b, &pods);
    families::kubelet(&mut b, &pods);
    families::node_exporter(&mut b);
    families::apps(&mut b, &pods);
    b.finish()
}

/// The Prometheus text exposition of every series at `t_ms`: families grouped, each with its
/// `# HELP` and `# TYPE` lines, no timestamps (the scraper stamps them).
pub fn exposition(t_ms: i64) -> String {
    render_exposition(&series(), t_ms)
}

/// [`exposition`] over a given set of series (in the order of first appearance of families).
pub fn render_exposition(series: &[SeriesDef], t_ms: i64) -> String {
    let mut families: Vec<(&str, FamilyType, Vec<&SeriesDef>)> = Vec::new();
    for s in series {
        match families.iter_mut().find(|(f, _, _)| *f == s.family) {
            Some((_, _, members)) => members.push(s),
            None => families.push((&s.family, s.family_type, vec![s])),
        }
    }
    let mut out = String::with_capacity(series.len() * 160);
    for (family, ty, members) in families {
        let _ = writeln!(
            out,
            "# HELP {family} Synthetic {} from the lab workload.",
            ty.as_str()
        );
        let _ = writeln!(out, "# TYPE {family} {}", ty.as_str());
        for s in members {
            out.push_str(s.name());
            let labels: Vec<String> = s
                .labels
                .iter()
                .filter(|(k, _)| k != "__name__")
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
                .collect();
            if !labels.is_empty() {
                let _ = write!(out, "{{{}}}", labels.join(","));
            }
            let _ = writeln!(out, " {}", format_value(value(s, t_ms)));
        }
    }
    out
}

/// A float as the text format spells it.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

// Topology -------------------------------------------------------------------------------------

/// One pod of an app: the unit most families are keyed by.
#[derive(Debug, Clone)]
pub struct Pod {
    pub namespace: &'static str,
    /// `<namespace>-app-<0|1>`.
    pub name: String,
    pub node: &'static str,
    pub ip: String,
    pub uid: String,
    pub container_id: String,
}

/// The 14 pods: two per namespace (`<ns>-app-0`, `<ns>-app-1`), on the nodes round robin.
pub fn pods() -> Vec<Pod> {
    let mut pods = Vec::new();
    for (ni, ns) in NAMESPACES.iter().enumerate() {
        for i in 0..PODS_PER_APP {
            let n = ni * PODS_PER_APP + i;
            let node_index = n % NODES.len();
            let id = fnv1a(format!("{ns}/{i}").as_bytes());
            pods.push(Pod {
                namespace: ns,
                name: format!("{ns}-app-{i}"),
                node: NODES[node_index],
                ip: format!("10.244.{}.{}", node_index + 1, 10 + n),
                uid: format!(
                    "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                    id >> 32,
                    id & 0xffff,
                    (id >> 16) & 0xfff,
                    (id >> 4) & 0xfff,
                    id & 0xffff_ffff_ffff
                ),
                container_id: format!("{id:016x}{:016x}", fnv1a(&id.to_le_bytes())),
            });
        }
    }
    pods
}

/// FNV-1a: a stable hash for deterministic per-series variation (std's hasher is seeded).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A deterministic factor in [0.5, 1.5) for a label set, so sibling series differ.
fn spread(labels: &[(&str, &str)]) -> f64 {
    let key: String = labels.iter().map(|(k, v)| format!("{k}={v};")).collect();
    0.5 + (fnv1a(key.as_bytes()) % 1000) as f64 / 1000.0
}

// Families -------------------------------------------------------------------------------------

#[derive(Default)]
struct Builder {
    series: Vec<SeriesDef>,
}

impl Builder {
    fn add(
        &mut self,
        family: &str,
        ty: FamilyType,
        name: &str,
        labels: &[(&str, &str)],
        kind: Kind,
    ) {
        let mut all: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.push(("__name__".into(), name.into()));
        all.sort();
        self.series.push(SeriesDef {
            labels: all,
            kind,
            family: family.into(),
            family_type: ty,
        });
    }

    fn constant(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.add(name, FamilyType::Gauge, name, labels, Kind::Constant(v));
    }

    /// Integer counter stepping once per `RESTART_PERIOD_S`, at a per-series moment.
    fn restarts(&mut self, name: &str, labels: &[(&str, &str)]) {
        let offset_s = ((spread(labels) - 0.5) * RESTART_PERIOD_S as f64) as i64;
        let kind = Kind::StepCounter {
            period_s: RESTART_PERIOD_S,
            offset_s,
        };
        self.add(name, FamilyType::Counter, name, labels, kind);
    }

    fn counter(&mut self, name: &str, labels: &[(&str, &str)], rate: f64, integer: bool) {
        let rate = rate * spread(labels);
        self.add(
            name,
            FamilyType::Counter,
            name,
            labels,
            Kind::Counter { rate, integer },
        );
    }

    fn gauge(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        base: f64,
        amplitude: f64,
        period_s: f64,
    ) {
        let f = spread(labels);
        let kind = Kind::Gauge {
            base: base * f,
            amplitude: amplitude * f,
            period_s,
            phase_s: f * period_s,
        };
        self.add(name, FamilyType::Gauge, name, labels, kind);
    }

    fn histogram(&mut self, family: &str, labels: &[(&str, &str)], rate: f64) {
        let rate = rate * spread(labels);
        let ty = FamilyType::Histogram;
        for (le, fraction) in HISTOGRAM_BUCKETS {
            let mut with_le = labels.to_vec();
            with_le.push(("le", le));
            self.add(
                family,
                ty,
                &format!("{family}_bucket"),
                &with_le,
                Kind::HistogramBucket { rate, fraction },
            );
        }
        let mean = MEAN_REQUEST_SECONDS;
        self.add(
            family,
            ty,
            &format!("{family}_sum"),
            labels,
            Kind::HistogramSum { rate, mean },
        );
        self.add(
            family,
            ty,
            &format!("{family}_count"),
            labels,
            Kind::HistogramCount { rate },
        );
    }

    /// Group by family (stable), keeping the order in which families were first added.
    fn finish(self) -> Vec<SeriesDef> {
        let mut order: Vec<String> = Vec::new();
        for s in &self.series {
            if !order.contains(&s.family) {
                order.push(s.family.clone());
            }
        }
        let mut series = self.series;
        series.sort_by_key(|s| order.iter().position(|f| *f == s.family));
        series
    }
}

mod families;
#[cfg(test)]
mod tests;
