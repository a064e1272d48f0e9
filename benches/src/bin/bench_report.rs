//! Turns the bench results into markdown tables and an SVG bar chart.
//!
//! `bench-report [OUT_DIR]` reads `$CARGO_TARGET_DIR/kalamstore-bench/engines.jsonl` (the
//! median of the latest series of rounds, see `scripts/bench-engines`, or else the latest
//! record of each engine and workload), prints the table and writes `engines.md` and
//! `engines.svg` into OUT_DIR (default `docs/bench`); when the tables bench has run, it also
//! writes `tables.md` from `tables.jsonl` (latest record of each workload).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use kalamstore_benches::{
    MemoryResult, RatioResult, WorkloadResult, results_path, sql_memory_path, sql_results_path,
    tables_results_path,
};

const WORKLOADS: [&str; 5] = ["load", "ycsb-a", "ycsb-b", "ycsb-c", "ycsb-e"];
const BASELINE: &str = "plain rust-rocksdb";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("docs/bench"), PathBuf::from);
    std::fs::create_dir_all(&out_dir)?;
    let path = results_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => engines_report(&text, &path, &out_dir)?,
        // Each bench writes its own results: report whichever have run.
        Err(e) => eprintln!(
            "no engine results at {}: {e} (`cargo bench --bench engines` writes them)",
            path.display()
        ),
    }
    if let Ok(text) = std::fs::read_to_string(tables_results_path()) {
        let tables = ratio_table(&text)?;
        std::fs::write(out_dir.join("tables.md"), &tables)?;
        print!("\n{tables}");
    }
    if let Ok(text) = std::fs::read_to_string(sql_results_path()) {
        let mut sql = ratio_table(&text)?;
        if let Ok(memory) = std::fs::read_to_string(sql_memory_path()) {
            sql.push_str(&memory_table(&memory)?);
        }
        std::fs::write(out_dir.join("sql.md"), &sql)?;
        print!("\n{sql}");
    }
    Ok(())
}

/// Writes `engines.md` and `engines.svg` from the engine bench's results `text` (read from
/// `path`).
fn engines_report(
    text: &str,
    path: &std::path::Path,
    out_dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut records = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let r: WorkloadResult =
            serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        records.push(r);
    }
    // The latest series of rounds (`scripts/bench-engines`) when the last record has one;
    // otherwise the latest record of each engine and workload.
    let series = records.last().and_then(|r| r.series.clone());
    if let Some(series) = &series {
        records.retain(|r| r.series.as_ref() == Some(series));
    }
    let mut order: Vec<String> = Vec::new();
    let mut runs: BTreeMap<(String, String), Vec<WorkloadResult>> = BTreeMap::new();
    for r in records {
        if !order.contains(&r.engine) {
            order.push(r.engine.clone());
        }
        let key = (r.engine.clone(), r.workload.clone());
        let entry = runs.entry(key).or_default();
        if series.is_none() {
            entry.clear();
        }
        entry.push(r);
    }
    let mut latest: BTreeMap<(String, String), WorkloadResult> = BTreeMap::new();
    let mut spreads: BTreeMap<(String, String), Spread> = BTreeMap::new();
    for (key, mut rounds) in runs {
        let (median, spread) = median_of(&mut rounds);
        latest.insert(key.clone(), median);
        spreads.insert(key, spread);
    }
    let table = markdown(&order, &latest, &spreads);
    let svg = chart(&order, &latest);
    std::fs::write(out_dir.join("engines.md"), &table)?;
    std::fs::write(out_dir.join("engines.svg"), svg)?;
    print!("{table}");
    Ok(())
}

/// The tables bench as markdown: each workload's latest pair, with the ratio to the baseline.
fn ratio_table(text: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut latest: BTreeMap<String, RatioResult> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: RatioResult = serde_json::from_str(line)?;
        latest.insert(r.bench.clone(), r);
    }
    let mut out = String::from(
        "| workload | kalamstore | baseline | time ratio (ours / baseline) | target |\n|---|---|---|---|---|\n",
    );
    for r in latest.values() {
        // Throughput workloads also show MB/s.
        let cell = |secs: f64| match r.bytes {
            Some(b) => format!("{}, {:.0} MB/s", fmt_us(secs * 1e6), b as f64 / 1e6 / secs),
            None => fmt_us(secs * 1e6),
        };
        writeln!(
            out,
            "| {} | {} {} | {} {} | {:.2}x | {} |",
            r.bench,
            r.ours,
            cell(r.ours_secs),
            r.baseline,
            cell(r.baseline_secs),
            r.ours_secs / r.baseline_secs,
            r.target
        )?;
    }
    Ok(out)
}

/// Peak memory of streamed queries as markdown (latest record of each).
fn memory_table(text: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut latest: BTreeMap<String, MemoryResult> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: MemoryResult = serde_json::from_str(line)?;
        latest.insert(r.bench.clone(), r);
    }
    let mut out =
        String::from("\n| query | peak RSS | data size | time | target |\n|---|---|---|---|---|\n");
    for r in latest.values() {
        writeln!(
            out,
            "| {} | {} MiB | {} MiB | {:.1} s | {} |",
            r.bench,
            r.peak_rss_bytes >> 20,
            r.data_bytes >> 20,
            r.secs,
            r.target
        )?;
    }
    Ok(out)
}

fn fmt_ops(ops: f64) -> String {
    if ops >= 1e6 {
        format!("{:.2} M", ops / 1e6)
    } else if ops >= 1e3 {
        format!("{:.1} k", ops / 1e3)
    } else {
        format!("{ops:.0}")
    }
}

fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// How far a workload's rounds were apart: the count and (max - min) / median of ops/s.
#[derive(Debug, Clone, Copy)]
struct Spread {
    rounds: usize,
    relative: f64,
}

/// The median round by ops/s (its latencies come with it) and the spread of all rounds.
fn median_of(rounds: &mut [WorkloadResult]) -> (WorkloadResult, Spread) {
    rounds.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    let median = rounds[rounds.len() / 2].clone();
    let (min, max) = (rounds[0].ops_per_sec, rounds[rounds.len() - 1].ops_per_sec);
    let spread = Spread {
        rounds: rounds.len(),
        relative: (max - min) / median.ops_per_sec.max(1e-9),
    };
    (median, spread)
}

fn markdown(
    order: &[String],
    results: &BTreeMap<(String, String), WorkloadResult>,
    spreads: &BTreeMap<(String, String), Spread>,
) -> String {
    let mut out = String::from(
        "| engine | bulk load rows/s | A ops/s (p50 / p99) | B ops/s (p50 / p99) | C ops/s (p50 / p99) | E ops/s (p50 / p99) |\n|---|---|---|---|---|---|\n",
    );
    for engine in order {
        let _ = write!(out, "| {engine} |");
        for workload in WORKLOADS {
            let cell = match results.get(&(engine.clone(), workload.to_owned())) {
                None => "n/a".to_owned(),
                Some(r) => {
                    let ratio = results
                        .get(&(BASELINE.to_owned(), workload.to_owned()))
                        .filter(|_| engine != BASELINE)
                        .map(|b| format!(" ({:.2}x)", r.ops_per_sec / b.ops_per_sec))
                        .unwrap_or_default();
                    let ratio = match spreads.get(&(engine.clone(), workload.to_owned())) {
                        Some(s) if s.rounds > 1 => {
                            format!("{ratio} ±{:.0}%", s.relative * 50.0)
                        }
                        _ => ratio,
                    };
                    if workload == "load" {
                        format!("{}{ratio}", fmt_ops(r.ops_per_sec))
                    } else {
                        format!(
                            "{}{ratio} ({} / {})",
                            fmt_ops(r.ops_per_sec),
                            fmt_us(r.p50_us),
                            fmt_us(r.p99_us)
                        )
                    }
                }
            };
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    let rounds = spreads.values().map(|s| s.rounds).max().unwrap_or(1);
    if rounds > 1 {
        let _ = write!(
            out,
            "\nMedian of {rounds} rounds; each engine ran in its own process, in alternating order \
             (`scripts/bench-engines`); ±: half the spread (max - min) of the rounds, relative to \
             the median. Ratios are of medians against plain rust-rocksdb. "
        );
    } else {
        out.push_str("\nRatios are against plain rust-rocksdb in the same run. ");
    }
    out.push_str("16 concurrent tasks; load in batches of 1000 rows of 100 bytes.\n");
    out
}

/// Grouped horizontal bars of ops/s per workload, log scale.
fn chart(order: &[String], results: &BTreeMap<(String, String), WorkloadResult>) -> String {
    const COLORS: [&str; 8] = [
        "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f",
    ];
    let bar = 12.0;
    let group_gap = 18.0;
    let left = 70.0;
    let width = 720.0;
    let plot = width - left - 20.0;
    let max = results
        .values()
        .map(|r| r.ops_per_sec)
        .fold(1.0, f64::max)
        .log10()
        .ceil()
        .max(1.0);
    let x = |ops: f64| left + plot * (ops.max(1.0).log10() / max);
    let group_h = bar * order.len() as f64 + group_gap;
    let legend_h = 16.0 * order.len() as f64 + 10.0;
    let height = 30.0 + group_h * WORKLOADS.len() as f64 + legend_h;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"16\" font-size=\"13\">ops/s per workload (log scale)</text>\n"
    );
    for decade in 0..=max as i32 {
        let gx = left + plot * decade as f64 / max;
        let _ = writeln!(
            svg,
            "<line x1=\"{gx}\" y1=\"24\" x2=\"{gx}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{gx}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\">1e{decade}</text>",
            24.0 + group_h * WORKLOADS.len() as f64,
            34.0 + group_h * WORKLOADS.len() as f64
        );
    }
    for (w, workload) in WORKLOADS.iter().enumerate() {
        let y0 = 28.0 + group_h * w as f64;
        let _ = writeln!(
            svg,
            "<text x=\"4\" y=\"{}\">{workload}</text>",
            y0 + bar * order.len() as f64 / 2.0 + 4.0
        );
        for (e, engine) in order.iter().enumerate() {
            if let Some(r) = results.get(&(engine.clone(), (*workload).to_owned())) {
                let y = y0 + bar * e as f64;
                let _ = writeln!(
                    svg,
                    "<rect x=\"{left}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" fill=\"{}\"><title>{engine}: {:.0} ops/s</title></rect>",
                    x(r.ops_per_sec) - left,
                    bar - 2.0,
                    COLORS[e % COLORS.len()],
                    r.ops_per_sec
                );
            }
        }
    }
    let ly = 40.0 + group_h * WORKLOADS.len() as f64;
    for (e, engine) in order.iter().enumerate() {
        let y = ly + 16.0 * e as f64;
        let _ = writeln!(
            svg,
            "<rect x=\"{left}\" y=\"{y}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            COLORS[e % COLORS.len()],
            left + 16.0,
            y + 9.0,
            engine.replace('&', "&amp;").replace('<', "&lt;")
        );
    }
    svg.push_str("</svg>\n");
    svg
}
