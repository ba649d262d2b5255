//! The cost of parsing a request body (issue 23 D): the YAML shapes that cost the parser the
//! most, each as large as the request limit allows, timed through
//! `minik_api::decode::parse_document` (what the API server runs on every JSON or YAML body)
//! in this process, beside a flat JSON object of the same size.

use std::time::{Duration, Instant};

use minik_api::decode::{self, prescan};
use serde_json::{json, Value};

use crate::stats::{median, ms};

/// One shape, timed.
pub struct Shape {
    pub name: &'static str,
    pub bytes: usize,
    /// The median parse time.
    pub time: Duration,
    /// `accepted`, or the start of the refusal.
    pub outcome: String,
}

/// Every shape, and the baseline.
pub struct ParseResults {
    pub size: usize,
    pub shapes: Vec<Shape>,
    /// A flat JSON object of the same size.
    pub json_flat: Duration,
}

/// `unit` repeated after `prefix` to about `size` bytes.
fn repeat(prefix: &str, unit: &str, size: usize) -> String {
    let count = size.saturating_sub(prefix.len()) / unit.len();
    format!("{prefix}{}", unit.repeat(count))
}

/// The shapes, each about `size` bytes.
fn shapes(size: usize) -> Vec<(&'static str, String)> {
    // Accepted: 127 flow sequences deep (each token costs libyaml a look at every level), as
    // many leaves as the node limit allows, long enough to fill the body.
    let leaves = prescan::MAX_NODES - 200;
    let leaf = "x".repeat((size / leaves).saturating_sub(2).max(1));
    let deep_leaves = format!(
        "a: {}{}{}",
        "[".repeat(127),
        vec![leaf.as_str(); leaves].join(","),
        "]".repeat(127)
    );
    // A key, its `:` and its value count three.
    let pairs = leaves / 3;
    let value = "v".repeat((size / pairs).saturating_sub(12).max(1));
    let block_map: String = (0..pairs).map(|i| format!("k{i:07}: {value}\n")).collect();
    let long_name = "a".repeat(size / 50);
    let long_anchors = format!(
        "x: &{long_name} [1, 2]\ny: [{}]\n",
        vec![format!("*{long_name}"); 45].join(",")
    );
    // As many aliases as the node limit allows, and a comment to make the text (and so the
    // alias budget, four times its length) as large as the limit.
    let bomb_items = vec!["1"; 20_000].join(",");
    let aliases = vec!["*a"; prescan::MAX_NODES - 30_000].join(",");
    let bomb = repeat(
        &format!("a: &a [{bomb_items}]\nb: [{aliases}]\n#"),
        "x",
        size,
    );
    vec![
        ("nested flow sequences", repeat("a: ", "[", size)),
        ("nested flow mappings", repeat("a: ", "{a: ", size)),
        (
            "nested flow sequences and mappings",
            repeat("a: ", "[{", size),
        ),
        ("nested block sequences on one line", repeat("", "- ", size)),
        (
            "flow sequence of 1s (too many nodes)",
            repeat("a: [", "1,", size),
        ),
        ("alias bomb (20,000 items aliased)", bomb),
        ("long anchor names aliased", long_anchors),
        ("127 flow levels, nodes at the limit", deep_leaves),
        ("block mapping, nodes at the limit", block_map),
    ]
}

/// The median of `runs` parses of `text`, and what came of the last one.
fn time(text: &[u8], runs: usize) -> (Duration, Result<(), String>) {
    let mut samples = Vec::with_capacity(runs);
    let mut outcome = Ok(());
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let parsed = decode::parse_document(text);
        samples.push(start.elapsed());
        outcome = parsed.map(drop).map_err(|e| e.to_string());
    }
    (median(&samples).unwrap_or_default(), outcome)
}

/// Times every shape at `size` bytes, `runs` times each.
pub fn measure(size: usize, runs: usize) -> ParseResults {
    let flat: String = {
        let mut object = serde_json::Map::new();
        let mut i = 0;
        let mut len = 2;
        while len < size {
            let (key, value) = (format!("k{i:07}"), "v".repeat(16));
            len += key.len() + value.len() + 6;
            object.insert(key, Value::String(value));
            i += 1;
        }
        Value::Object(object).to_string()
    };
    let (json_flat, _) = time(flat.as_bytes(), runs);
    let shapes = shapes(size)
        .into_iter()
        .map(|(name, text)| {
            let (time, outcome) = time(text.as_bytes(), runs);
            Shape {
                name,
                bytes: text.len(),
                time,
                outcome: match outcome {
                    Ok(()) => "accepted".into(),
                    Err(e) => e.chars().take(72).collect(),
                },
            }
        })
        .collect();
    ParseResults {
        size,
        shapes,
        json_flat,
    }
}

impl ParseResults {
    /// The slowest shape that was refused, and the slowest accepted.
    pub fn worst(&self, accepted: bool) -> Option<&Shape> {
        self.shapes
            .iter()
            .filter(|s| (s.outcome == "accepted") == accepted)
            .max_by_key(|s| s.time)
    }

    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "flat JSON object, {} bytes: {:.2} ms",
            self.size,
            ms(self.json_flat)
        )];
        out.extend(self.shapes.iter().map(|s| {
            format!(
                "{}, {} bytes: {:.2} ms, {}",
                s.name,
                s.bytes,
                ms(s.time),
                s.outcome
            )
        }));
        out
    }

    pub fn to_json(&self) -> Value {
        json!({
            "size": self.size,
            "json_flat_ms": ms(self.json_flat),
            "shapes": self.shapes.iter().map(|s| json!({
                "shape": s.name,
                "bytes": s.bytes,
                "ms": ms(s.time),
                "outcome": s.outcome,
            })).collect::<Vec<_>>(),
        })
    }
}
