//! The Prometheus text exposition format (version 0.0.4), by hand: counters
//! of atomics, histograms with fixed buckets, labelled families of either,
//! and an encoder that writes `# HELP` / `# TYPE` and the samples.
//!
//! Rules kept here so callers cannot get them wrong: every family is written
//! once with all its samples together; label values are escaped (`\\`, `"`,
//! newline); histogram buckets are cumulative, end with `le="+Inf"` equal to
//! `_count`, and come with `_sum`; floats use Prometheus spellings (`+Inf`,
//! `-Inf`, `NaN`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use latch_core::{Histogram, HistogramSnapshot};

/// The `Content-Type` of this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Series of one family, keyed by their label values (in the order of the
/// family's label names). Lookups of an existing series take a read lock;
/// only the first use of a label combination takes the write lock.
#[derive(Debug)]
struct Series<M> {
    labels: &'static [&'static str],
    map: RwLock<BTreeMap<Vec<String>, Arc<M>>>,
}

impl<M> Series<M> {
    fn new(labels: &'static [&'static str]) -> Self {
        Series { labels, map: RwLock::new(BTreeMap::new()) }
    }

    fn get_or(&self, values: &[&str], make: impl FnOnce() -> M) -> Arc<M> {
        let key: Vec<String> =
            (0..self.labels.len()).map(|i| values.get(i).copied().unwrap_or("").to_string()).collect();
        if let Some(m) = self.map.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return m.clone();
        }
        self.map.write().unwrap_or_else(|p| p.into_inner()).entry(key).or_insert_with(|| Arc::new(make())).clone()
    }

    fn all(&self) -> Vec<(Vec<String>, Arc<M>)> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn pairs<'a>(&self, values: &'a [String]) -> Vec<(&'static str, &'a str)> {
        self.labels.iter().copied().zip(values.iter().map(String::as_str)).collect()
    }
}

/// Counters with labels.
#[derive(Debug)]
pub struct CounterVec(Series<Counter>);

impl CounterVec {
    pub fn new(labels: &'static [&'static str]) -> Self {
        CounterVec(Series::new(labels))
    }
    /// The counter for these label values (created at zero on first use).
    pub fn with(&self, values: &[&str]) -> Arc<Counter> {
        self.0.get_or(values, Counter::default)
    }
    /// The value for these label values, without creating the series.
    pub fn value(&self, values: &[&str]) -> u64 {
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        self.0.map.read().unwrap_or_else(|p| p.into_inner()).get(&key).map_or(0, |c| c.get())
    }
}

/// Histograms with labels, all with the same buckets.
#[derive(Debug)]
pub struct HistogramVec {
    series: Series<Histogram>,
    bounds: &'static [f64],
}

impl HistogramVec {
    pub fn new(labels: &'static [&'static str], bounds: &'static [f64]) -> Self {
        HistogramVec { series: Series::new(labels), bounds }
    }
    pub fn with(&self, values: &[&str]) -> Arc<Histogram> {
        let bounds = self.bounds;
        self.series.get_or(values, || Histogram::new(bounds))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A float as Prometheus spells it.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust prints the shortest representation that round-trips, without
        // an exponent: `0.005`, `3`, `1234.5`.
        format!("{v}")
    }
}

/// A label value inside double quotes: backslash, double quote and line feed escaped.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text: backslash and line feed escaped.
pub fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Writes families in the text format.
#[derive(Debug, Default)]
pub struct Encoder {
    out: String,
}

impl Encoder {
    pub fn new() -> Self {
        Encoder::default()
    }

    pub fn finish(self) -> String {
        self.out
    }

    /// `# HELP` and `# TYPE` of a family; its samples must follow at once.
    pub fn header(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label_value(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_float(value));
    }

    /// One sample line of an integer value (exact up to 2^53, like any sample).
    pub fn sample_u64(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.sample(name, labels, value as f64);
    }

    /// The `_bucket` (cumulative, ending with `+Inf`), `_sum` and `_count`
    /// samples of one histogram series named `name`.
    pub fn histogram_samples(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        for (bound, n) in h.bounds.iter().zip(&h.cumulative) {
            let le = format_float(*bound);
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            self.sample_u64(&bucket, &with_le, *n);
        }
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample_u64(&bucket, &with_le, h.count);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample_u64(&format!("{name}_count"), labels, h.count);
    }

    /// A counter family without labels.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, Kind::Counter, help);
        self.sample_u64(name, &[], value);
    }

    /// A gauge family without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, Kind::Gauge, help);
        self.sample(name, &[], value);
    }

    /// A labelled counter family, every series in label order.
    pub fn counter_vec(&mut self, name: &str, help: &str, v: &CounterVec) {
        self.header(name, Kind::Counter, help);
        for (values, c) in v.0.all() {
            self.sample_u64(name, &v.0.pairs(&values), c.get());
        }
    }

    /// A histogram family without labels.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.header(name, Kind::Histogram, help);
        self.histogram_samples(name, &[], &h.snapshot());
    }

    /// A labelled histogram family, every series in label order.
    pub fn histogram_vec(&mut self, name: &str, help: &str, v: &HistogramVec) {
        self.header(name, Kind::Histogram, help);
        for (values, h) in v.series.all() {
            self.histogram_samples(name, &v.series.pairs(&values), &h.snapshot());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("two\nlines"), "two\\nlines");
        assert_eq!(escape_label_value("plain /v1/users/{name} ünï"), "plain /v1/users/{name} ünï");
        assert_eq!(escape_help("a \\ b\nc \"quoted\""), "a \\\\ b\\nc \"quoted\"");
        let mut e = Encoder::new();
        e.header("x_total", Kind::Counter, "line one\nline two");
        e.sample("x_total", &[("route", "/a\"b\\c\nd"), ("code", "200")], 3.0);
        assert_eq!(
            e.finish(),
            "# HELP x_total line one\\nline two\n# TYPE x_total counter\nx_total{route=\"/a\\\"b\\\\c\\nd\",code=\"200\"} 3\n"
        );
    }

    #[test]
    fn floats_use_prometheus_spellings() {
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(0.005), "0.005");
        assert_eq!(format_float(3.0), "3");
        assert_eq!(format_float(-2.5), "-2.5");
        assert_eq!(format_float(0.0005), "0.0005");
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let h = Histogram::new(&[0.1, 1.0, 10.0]);
        for v in [0.05, 0.1, 0.5, 2.0, 20.0, 30.0] {
            h.observe(v);
        }
        let mut e = Encoder::new();
        e.histogram("t_seconds", "Test.", &h);
        let text = e.finish();
        let want = "# HELP t_seconds Test.\n# TYPE t_seconds histogram\n\
                    t_seconds_bucket{le=\"0.1\"} 2\n\
                    t_seconds_bucket{le=\"1\"} 3\n\
                    t_seconds_bucket{le=\"10\"} 4\n\
                    t_seconds_bucket{le=\"+Inf\"} 6\n\
                    t_seconds_sum 52.65\n\
                    t_seconds_count 6\n";
        assert_eq!(text, want);
        // Cumulative: never decreasing, +Inf equals _count.
        let counts: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("t_seconds_bucket"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    }

    #[test]
    fn empty_histogram_still_has_every_bucket() {
        let v = HistogramVec::new(&["approval"], &[1.0, 2.0]);
        v.with(&["auto"]);
        let mut e = Encoder::new();
        e.histogram_vec("g_seconds", "G.", &v);
        assert_eq!(
            e.finish(),
            "# HELP g_seconds G.\n# TYPE g_seconds histogram\n\
             g_seconds_bucket{approval=\"auto\",le=\"1\"} 0\n\
             g_seconds_bucket{approval=\"auto\",le=\"2\"} 0\n\
             g_seconds_bucket{approval=\"auto\",le=\"+Inf\"} 0\n\
             g_seconds_sum{approval=\"auto\"} 0\n\
             g_seconds_count{approval=\"auto\"} 0\n"
        );
    }

    #[test]
    fn labelled_counters_are_sorted_and_counted() {
        let v = CounterVec::new(&["method", "code"]);
        v.with(&["POST", "201"]).inc();
        v.with(&["GET", "200"]).add(2);
        v.with(&["GET", "200"]).inc();
        assert_eq!(v.value(&["GET", "200"]), 3);
        assert_eq!(v.value(&["GET", "404"]), 0);
        let mut e = Encoder::new();
        e.counter_vec("r_total", "R.", &v);
        assert_eq!(
            e.finish(),
            "# HELP r_total R.\n# TYPE r_total counter\n\
             r_total{method=\"GET\",code=\"200\"} 3\n\
             r_total{method=\"POST\",code=\"201\"} 1\n"
        );
    }

    #[test]
    fn counters_are_exact_under_concurrency() {
        let v = Arc::new(CounterVec::new(&["k"]));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let v = v.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        v.with(&["x"]).inc();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(v.value(&["x"]), 4000);
    }
}
