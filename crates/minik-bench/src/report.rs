//! The report: one row per figure with the baseline measured in the same run, their ratio and the
//! target, printed as a table and written as JSON.

use serde_json::{json, Value};

/// How a figure is counted and printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    PerSec,
    Millis,
    /// Megabytes (10^6 bytes).
    Megabytes,
    /// A plain number.
    Count,
}

impl Unit {
    fn format(self, value: f64) -> String {
        match self {
            Unit::PerSec => format!("{}/s", group_thousands(value)),
            Unit::Millis if value < 10.0 => format!("{value:.2} ms"),
            Unit::Millis => format!("{value:.1} ms"),
            Unit::Megabytes => format!("{value:.1} MB"),
            Unit::Count => format!("{value:.2}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::PerSec => "per_second",
            Unit::Millis => "ms",
            Unit::Megabytes => "MB",
            Unit::Count => "count",
        }
    }
}

fn group_thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A goal for a figure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value >= t,
            Target::AtMost(t) => value <= t,
        }
    }

    fn format(self, unit: Unit) -> String {
        match self {
            Target::AtLeast(t) => format!(">= {}", unit.format(t)),
            Target::AtMost(t) => format!("<= {}", unit.format(t)),
        }
    }
}

/// What a figure is compared with.
#[derive(Clone, Debug)]
pub struct Baseline {
    pub what: String,
    pub value: f64,
}

/// One figure of the report.
#[derive(Clone, Debug)]
pub struct Row {
    pub figure: String,
    pub value: f64,
    pub unit: Unit,
    pub baseline: Option<Baseline>,
    pub target: Option<Target>,
}

impl Row {
    pub fn new(figure: impl Into<String>, value: f64, unit: Unit) -> Row {
        Row {
            figure: figure.into(),
            value,
            unit,
            baseline: None,
            target: None,
        }
    }

    pub fn baseline(mut self, what: impl Into<String>, value: f64) -> Row {
        self.baseline = Some(Baseline {
            what: what.into(),
            value,
        });
        self
    }

    pub fn target(mut self, target: Target) -> Row {
        self.target = Some(target);
        self
    }

    /// The figure divided by its baseline.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline
            .as_ref()
            .filter(|b| b.value > 0.0)
            .map(|b| self.value / b.value)
    }

    pub fn met(&self) -> Option<bool> {
        self.target.map(|t| t.met(self.value))
    }

    fn cells(&self) -> [String; 6] {
        [
            self.figure.clone(),
            self.unit.format(self.value),
            self.baseline
                .as_ref()
                .map(|b| format!("{} ({})", self.unit.format(b.value), b.what))
                .unwrap_or_else(|| "-".into()),
            self.ratio().map(format_ratio).unwrap_or_else(|| "-".into()),
            self.target
                .map(|t| t.format(self.unit))
                .unwrap_or_else(|| "-".into()),
            match self.met() {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => "-".into(),
            },
        ]
    }

    pub fn to_json(&self) -> Value {
        json!({
            "figure": self.figure,
            "value": self.value,
            "unit": self.unit.name(),
            "baseline": self.baseline.as_ref().map(|b| json!({"what": b.what, "value": b.value})),
            "ratio": self.ratio(),
            "target": self.target.map(|t| match t {
                Target::AtLeast(v) => json!({"at_least": v}),
                Target::AtMost(v) => json!({"at_most": v}),
            }),
            "met": self.met(),
        })
    }
}

fn format_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}x")
    } else if r >= 0.1 {
        format!("{r:.2}x")
    } else {
        format!("{r:.4}x")
    }
}

const HEADERS: [&str; 6] = [
    "figure",
    "result",
    "baseline (same run)",
    "ratio",
    "target",
    "met",
];

/// The rows as an aligned plain-text table.
pub fn table(rows: &[Row]) -> String {
    table_of(rows, false)
}

/// The rows as a Markdown table (what docs/benchmarks.md holds).
pub fn markdown(rows: &[Row]) -> String {
    table_of(rows, true)
}

fn table_of(rows: &[Row], markdown: bool) -> String {
    let cells: Vec<[String; 6]> = rows.iter().map(Row::cells).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        if markdown {
            format!("| {} |", padded.join(" | "))
        } else {
            padded.join("  ").trim_end().to_owned()
        }
    };
    let mut out = vec![line(&HEADERS.map(String::from))];
    out.push(if markdown {
        format!("|{}|", widths.map(|w| "-".repeat(w + 2)).join("|"))
    } else {
        widths.map(|w| "-".repeat(w)).join("  ")
    });
    out.extend(cells.iter().map(|c| line(c)));
    out.join("\n")
}

/// Prints the table of `rows` on stdout and, with `json`, writes them there as the document
/// every suite writes (`benchmark`, `figures`, `markdown_table`), which `minik-bench all` merges.
pub fn print_and_save(
    benchmark: &str,
    rows: &[Row],
    json: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    println!();
    println!("{}", table(rows));
    if let Some(path) = json {
        let document = json!({
            "benchmark": benchmark,
            "figures": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
            "markdown_table": markdown(rows),
        });
        std::fs::write(path, serde_json::to_string_pretty(&document)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

/// Runs a suite's measurements on a multi-threaded runtime, then prints its rows and saves them
/// as JSON to `json` when given.
pub fn run_suite(
    name: &str,
    json: Option<&std::path::Path>,
    measure: impl std::future::Future<Output = anyhow::Result<Vec<Row>>>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rows = runtime.block_on(measure)?;
    print_and_save(name, &rows, json)
}

/// Checks a suite's `--phase-seconds`: a finite number above zero.
pub fn check_phase_seconds(seconds: f64) -> anyhow::Result<()> {
    anyhow::ensure!(
        seconds.is_finite() && seconds > 0.0,
        "--phase-seconds must be a positive number"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_compare_with_baseline_and_target() {
        let row = Row::new("creates", 6000.0, Unit::PerSec)
            .baseline("sled", 300.0)
            .target(Target::AtLeast(5000.0));
        assert_eq!(row.ratio(), Some(20.0));
        assert_eq!(row.met(), Some(true));
        let slow = Row::new("list", 120.0, Unit::Millis).target(Target::AtMost(100.0));
        assert_eq!((slow.ratio(), slow.met()), (None, Some(false)));
    }

    #[test]
    fn table_reads_well() {
        let rows = [
            Row::new("creates/s", 12345.6, Unit::PerSec)
                .baseline("sled", 250.0)
                .target(Target::AtLeast(5000.0)),
            Row::new("RSS", 42.25, Unit::Megabytes),
            Row::new("LIST p99", 7.5, Unit::Millis).target(Target::AtMost(100.0)),
        ];
        let expected = "\
figure     result    baseline (same run)  ratio   target       met
---------  --------  -------------------  ------  -----------  ---
creates/s  12,346/s  250/s (sled)         49.38x  >= 5,000/s   yes
RSS        42.2 MB   -                    -       -            -
LIST p99   7.50 ms   -                    -       <= 100.0 ms  yes";
        assert_eq!(table(&rows), expected);
        assert!(markdown(&rows).starts_with("| figure    | result"));
    }
}
