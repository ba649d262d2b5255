//! `minik-bench all`: every benchmark, one after another, each in its own process (so one
//! suite's threads, memory and servers never colour the next), merged into one report: a
//! markdown file and a JSON file with every figure, its baseline from the same run, the
//! ratio and the target, plus the machine they ran on.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::machine::Machine;

/// Every suite, in the order they run, with what it covers.
pub const SUITES: &[(&str, &str)] = &[
    ("api", "API server and store (issue 2)"),
    ("scheduler", "Scheduler (issue 4)"),
    ("controllers", "Workload controllers (issue 5)"),
    ("node", "Node agent (issue 3)"),
    ("proxy", "Service proxy (issue 7)"),
    ("up", "`minik up` and the quick start (issue 9)"),
];

/// Suites that print their own report but write no JSON table: their output is kept verbatim.
const TEXT_ONLY: &[&str] = &["node", "proxy"];

/// Flags of `minik-bench all`.
#[derive(clap::Args, Debug)]
pub struct AllArgs {
    /// Where the merged report goes: `NAME.md` and `NAME.json`.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Suites to leave out (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// The minik binary to measure [default: `minik` next to this executable].
    #[arg(long)]
    minik: Option<PathBuf>,
}

pub fn run(args: AllArgs) -> anyhow::Result<()> {
    for name in &args.skip {
        if !SUITES.iter().any(|(suite, _)| suite == name) {
            let known: Vec<&str> = SUITES.iter().map(|(s, _)| *s).collect();
            bail!(
                "--skip {name}: no such suite; the suites are {}",
                known.join(", ")
            );
        }
    }
    let minik = crate::up::minik_path(args.minik.clone())?;
    let me = std::env::current_exe().context("cannot tell where minik-bench is")?;
    let scratch = tempfile::Builder::new()
        .prefix("minik-bench-all-")
        .tempdir()?;
    let machine = Machine::describe(scratch.path());
    let started = Instant::now();
    let mut markdown = format!(
        "# minik benchmarks\n\n{}\n",
        machine
            .lines()
            .iter()
            .map(|l| format!("- {l}\n"))
            .collect::<String>()
    );
    let mut suites = serde_json::Map::new();
    let mut failed = Vec::new();
    for (name, title) in SUITES {
        if args.skip.iter().any(|s| s == name) {
            continue;
        }
        eprintln!("[minik-bench] === {name}: {title} ===");
        let json_path = scratch.path().join(format!("{name}.json"));
        let text_only = TEXT_ONLY.contains(name);
        let mut command = Command::new(&me);
        command.arg(name);
        if !text_only {
            command.arg("--json").arg(&json_path);
        }
        if *name != "scheduler" {
            command.arg("--minik").arg(&minik);
        }
        let suite_started = Instant::now();
        let output = command
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run minik-bench {name}"))?;
        let status = output.status;
        let printed = String::from_utf8_lossy(&output.stdout).into_owned();
        print!("{printed}");
        let seconds = suite_started.elapsed().as_secs_f64();
        let document: Option<Value> = if text_only {
            Some(json!({
                "benchmark": format!("minik-bench {name}"),
                "output": printed,
                "markdown_table": format!("```\n{}\n```", printed.trim_end()),
            }))
        } else {
            std::fs::read(&json_path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
        };
        match (status.success(), document) {
            (true, Some(document)) => {
                let table = document["markdown_table"].as_str().unwrap_or_default();
                markdown.push_str(&format!(
                    "\n## {title}\n\n`minik-bench {name}` ({seconds:.0} s)\n\n{table}\n"
                ));
                suites.insert((*name).to_owned(), document);
            }
            (ok, _) => {
                let why = if ok { "wrote no report" } else { "failed" };
                eprintln!("[minik-bench] {name} {why} ({status}); going on with the others");
                markdown.push_str(&format!(
                    "\n## {title}\n\n`minik-bench {name}` {why} ({status}).\n"
                ));
                failed.push(*name);
            }
        }
    }
    let report = json!({
        "benchmark": "minik-bench all",
        "machine": machine.to_json(),
        "seconds": started.elapsed().as_secs_f64(),
        "suites": suites,
        "failed": failed,
    });
    let md_path = args.out.with_extension("md");
    let json_path = args.out.with_extension("json");
    std::fs::write(&md_path, &markdown)
        .with_context(|| format!("cannot write {}", md_path.display()))?;
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    println!("wrote {} and {}", md_path.display(), json_path.display());
    if !failed.is_empty() {
        bail!("these suites failed: {}", failed.join(", "));
    }
    Ok(())
}
