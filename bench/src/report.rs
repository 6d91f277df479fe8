//! Figures, targets, and how they are printed: one JSON line per scenario
//! on standard output as each finishes, and a table of everything at the end.

use serde_json::{Value, json};
use std::time::Duration;

/// A target a figure should meet.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// At most this.
    AtMost(f64),
    /// At least this.
    AtLeast(f64),
}

impl Target {
    fn met(self, v: f64) -> bool {
        match self {
            Target::AtMost(t) => v <= t,
            Target::AtLeast(t) => v >= t,
        }
    }

    fn text(self, unit: &str) -> String {
        match self {
            Target::AtMost(t) => format!("<= {} {unit}", num(t)),
            Target::AtLeast(t) => format!(">= {} {unit}", num(t)),
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    pub case: String,
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    pub target: Option<Target>,
    /// Must hold for the run to pass (e.g. zero lost deliveries), whatever
    /// the speed.
    pub must: bool,
}

impl Figure {
    pub(crate) fn met(&self) -> Option<bool> {
        self.target.map(|t| t.met(self.value))
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "case": self.case,
            "metric": self.name,
            "value": round(self.value),
            "unit": self.unit,
        });
        if let (Some(t), Some(obj)) = (self.target, v.as_object_mut()) {
            obj.insert("target".into(), Value::String(t.text(self.unit)));
            obj.insert("met".into(), Value::Bool(t.met(self.value)));
        }
        v
    }
}

/// The outcome of one scenario.
#[derive(Debug)]
pub(crate) struct ScenarioReport {
    pub id: &'static str,
    pub title: &'static str,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
    pub error: Option<String>,
    pub secs: f64,
}

impl ScenarioReport {
    pub(crate) fn new(id: &'static str, title: &'static str) -> Self {
        ScenarioReport {
            id,
            title,
            figures: Vec::new(),
            notes: Vec::new(),
            error: None,
            secs: 0.0,
        }
    }

    /// Adds a figure.
    pub(crate) fn add(
        &mut self,
        case: &str,
        name: &str,
        value: f64,
        unit: &'static str,
        target: Option<Target>,
    ) {
        self.figures.push(Figure {
            case: case.to_owned(),
            name: name.to_owned(),
            value,
            unit,
            target,
            must: false,
        });
    }

    /// Adds a figure that fails the run when its target is missed.
    pub(crate) fn must(
        &mut self,
        case: &str,
        name: &str,
        value: f64,
        unit: &'static str,
        target: Target,
    ) {
        self.figures.push(Figure {
            case: case.to_owned(),
            name: name.to_owned(),
            value,
            unit,
            target: Some(target),
            must: true,
        });
    }

    pub(crate) fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// Whether the scenario ran and kept every must-hold figure.
    pub(crate) fn passed(&self) -> bool {
        self.error.is_none()
            && self
                .figures
                .iter()
                .all(|f| !f.must || f.met() != Some(false))
    }

    pub(crate) fn json_line(&self) -> String {
        let v = json!({
            "scenario": self.id,
            "title": self.title,
            "passed": self.passed(),
            "error": self.error,
            "secs": round(self.secs),
            "figures": self.figures.iter().map(Figure::to_json).collect::<Vec<_>>(),
            "notes": self.notes,
        });
        v.to_string()
    }
}

fn round(v: f64) -> f64 {
    if v.abs() >= 100.0 {
        (v * 10.0).round() / 10.0
    } else {
        (v * 1000.0).round() / 1000.0
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The readable table of every scenario.
pub(crate) fn table(reports: &[ScenarioReport]) -> String {
    let mut rows: Vec<[String; 6]> = vec![[
        "scenario".into(),
        "case".into(),
        "metric".into(),
        "value".into(),
        "target".into(),
        "".into(),
    ]];
    for r in reports {
        if let Some(e) = &r.error {
            rows.push([
                r.id.into(),
                "ERROR".into(),
                e.chars().take(80).collect(),
                String::new(),
                String::new(),
                "FAIL".into(),
            ]);
        }
        for f in &r.figures {
            let verdict = match (f.met(), f.must) {
                (Some(true), _) => "ok",
                (Some(false), true) => "FAIL",
                (Some(false), false) => "MISSED",
                (None, _) => "",
            };
            rows.push([
                r.id.into(),
                f.case.clone(),
                f.name.clone(),
                format!("{} {}", num(f.value), f.unit),
                f.target.map(|t| t.text(f.unit)).unwrap_or_default(),
                verdict.into(),
            ]);
        }
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join(" | ").trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("-|-"));
            out.push('\n');
        }
    }
    out
}

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub(crate) struct Samples {
    us: Vec<u64>,
}

impl Samples {
    pub(crate) fn push(&mut self, d: Duration) {
        self.us
            .push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub(crate) fn push_us(&mut self, us: u64) {
        self.us.push(us);
    }

    pub(crate) fn extend(&mut self, other: &[u32]) {
        self.us.extend(other.iter().map(|&v| u64::from(v)));
    }

    /// Takes every sample of `other`.
    pub(crate) fn absorb(&mut self, other: Samples) {
        self.us.extend(other.us);
    }

    pub(crate) fn len(&self) -> usize {
        self.us.len()
    }

    /// The `p`-th percentile (0–100) in milliseconds, nearest rank.
    pub(crate) fn pct_ms(&mut self, p: f64) -> f64 {
        if self.us.is_empty() {
            return f64::NAN;
        }
        self.us.sort_unstable();
        let rank = ((p / 100.0) * self.us.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.us.len()) - 1;
        self.us[i] as f64 / 1000.0
    }

    pub(crate) fn max_ms(&self) -> f64 {
        self.us
            .iter()
            .max()
            .map_or(f64::NAN, |&v| v as f64 / 1000.0)
    }

    /// Adds p50/p90/p99/max of these samples to `report` under `case`,
    /// with `p99_target` on the p99.
    pub(crate) fn report(
        &mut self,
        report: &mut ScenarioReport,
        case: &str,
        what: &str,
        p99_target: Option<f64>,
    ) {
        let p50 = self.pct_ms(50.0);
        let p90 = self.pct_ms(90.0);
        let p99 = self.pct_ms(99.0);
        report.add(case, &format!("{what} p50"), p50, "ms", None);
        report.add(case, &format!("{what} p90"), p90, "ms", None);
        report.add(
            case,
            &format!("{what} p99"),
            p99,
            "ms",
            p99_target.map(Target::AtMost),
        );
        report.add(case, &format!("{what} max"), self.max_ms(), "ms", None);
    }
}
