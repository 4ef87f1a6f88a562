//! The metric families of one scrape, built from snapshots and encoded in the text
//! exposition format 0.0.4.
//!
//! The `prometheus` crate (without its protobuf feature) does the encoding: its
//! `MetricFamily` is a plain snapshot, which is what a scrape builds, and its
//! `TextEncoder` writes format 0.0.4 (escaping label values and help text). The official
//! `prometheus-client` crate writes OpenMetrics only (`# TYPE x counter` above
//! `x_total`, `# EOF`), which a 0.0.4 parser such as `promtool check metrics` reads as
//! an untyped `x_total`.

use indexmap::IndexMap;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

use super::MetricsError;

/// The content type of what [`Families::encode`] returns.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// One series of a section: name, help, value (`None`: left out).
pub type Row = (&'static str, &'static str, Option<f64>);

/// Label names and values of one series, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels(Vec<(&'static str, String)>);

impl Labels {
    pub fn new() -> Labels {
        Labels::default()
    }

    /// These labels and one more.
    pub fn with(&self, name: &'static str, value: impl Into<String>) -> Labels {
        let mut more = self.clone();
        more.0.push((name, value.into()));
        more
    }

    fn pairs(&self) -> Vec<LabelPair> {
        self.0
            .iter()
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value(value.clone());
                pair
            })
            .collect()
    }
}

/// Families in the order of their first sample; each sample joins its family, so the
/// samples of one name stay together whatever order they come in (one stream after
/// another).
#[derive(Debug, Default)]
pub struct Families(IndexMap<&'static str, MetricFamily>);

impl Families {
    pub fn new() -> Families {
        Families::default()
    }

    /// A sample: a counter when `name` ends in `_total`, else a gauge (the naming rule
    /// of Prometheus, so that a name cannot say one thing and the type another). `None`
    /// writes nothing: an absent series, not a made-up 0.
    pub fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &Labels,
        value: impl Into<Option<f64>>,
    ) {
        let kind = if name.ends_with("_total") {
            MetricType::COUNTER
        } else {
            MetricType::GAUGE
        };
        self.sample(kind, name, help, labels, value.into());
    }

    /// One sample per row, all with `labels`.
    pub fn add_rows(&mut self, labels: &Labels, rows: &[Row]) {
        for (name, help, value) in rows {
            self.add(name, help, labels, *value);
        }
    }

    /// A gauge that is 1 when `on`, else 0.
    pub fn flag(&mut self, name: &'static str, help: &'static str, labels: &Labels, on: bool) {
        self.add(name, help, labels, if on { 1.0 } else { 0.0 });
    }

    /// Samples of non-finite values are left out too: the 0.0.4 format spells them
    /// `+Inf` and `NaN`, which none of these figures means.
    fn sample(
        &mut self,
        kind: MetricType,
        name: &'static str,
        help: &'static str,
        labels: &Labels,
        value: Option<f64>,
    ) {
        let Some(value) = value.filter(|v| v.is_finite()) else {
            return;
        };
        let mut metric = Metric::from_label(labels.pairs());
        if kind == MetricType::COUNTER {
            let mut counter = Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        } else {
            let mut gauge = Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
        let family = self.0.entry(name).or_insert_with(|| {
            let mut family = MetricFamily::default();
            family.set_name(name.to_owned());
            family.set_help(help.to_owned());
            family.set_field_type(kind);
            family
        });
        debug_assert_eq!(family.get_field_type(), kind, "{name}");
        family.mut_metric().push(metric);
    }

    /// Every family's name and type, in order.
    #[cfg(test)]
    pub fn names(&self) -> Vec<(&'static str, MetricType)> {
        self.0
            .iter()
            .map(|(name, f)| (*name, f.get_field_type()))
            .collect()
    }

    /// The text exposition format 0.0.4.
    pub fn encode(self) -> Result<String, MetricsError> {
        let families: Vec<MetricFamily> = self.0.into_values().collect();
        let mut out = Vec::new();
        TextEncoder::new().encode(&families, &mut out)?;
        // The encoder writes only str slices.
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_are_typed_and_grouped() {
        let mut f = Families::new();
        let cam0 = Labels::new().with("stream", "cam0");
        let cam1 = Labels::new().with("stream", "cam1");
        f.add("x_frames_total", "Frames.", &cam0, 10.0);
        f.add("x_fps", "Rate.", &cam0, 29.5);
        f.add("x_frames_total", "Frames.", &cam1, 3.0);
        f.add("x_missing", "Absent.", &cam1, None);
        f.add("x_bad", "Not a number.", &cam1, f64::NAN);
        assert_eq!(
            f.encode().expect("encodes"),
            "# HELP x_frames_total Frames.\n\
             # TYPE x_frames_total counter\n\
             x_frames_total{stream=\"cam0\"} 10\n\
             x_frames_total{stream=\"cam1\"} 3\n\
             # HELP x_fps Rate.\n\
             # TYPE x_fps gauge\n\
             x_fps{stream=\"cam0\"} 29.5\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut f = Families::new();
        let odd = Labels::new().with("device", "a\"b\\c\nd");
        f.add("x_info", "Help with \\ and\nnewline.", &odd, 1.0);
        let text = f.encode().expect("encodes");
        assert!(text.contains(r#"x_info{device="a\"b\\c\nd"} 1"#), "{text}");
        assert!(
            text.contains(r"# HELP x_info Help with \\ and\nnewline."),
            "{text}"
        );
    }
}
