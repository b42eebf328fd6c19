//! The burst's figures: latency split into waiting and processing, throughput, CPU per document
//! from the `cpu_metrics` rows and from the serving process, the monthly budget and the
//! capacity plan's decision; printed, and written as JSON and as a self-contained HTML page.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use serde::Serialize;
use uuid::Uuid;

use crate::Outcome;

/// The capacity plan's monthly CPU budget, in CPU-hours.
const BUDGET_HOURS: f64 = 200.0;
/// Its decision matrix on CPU-seconds per document: GO up to 0.72 (1,000 documents a day fit the
/// budget), ADJUST (reduce volume) up to 0.90, ADJUST (optimise) up to 1.20, NO-GO above.
const GO: f64 = 0.72;
const ADJUST_VOLUME: f64 = 0.90;
const ADJUST_OPTIMISE: f64 = 1.20;
/// The 95th-percentile end-to-end target, seconds.
const P95_TARGET: f64 = 30.0;
/// The stage columns of `cpu_metrics`, in pipeline order.
const STAGES: [&str; 11] = [
    "fetch", "decode", "capture", "quality", "face", "pre_ocr", "enhance", "ocr", "schema",
    "upload", "startup",
];

/// How the burst was run.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub host: String,
    pub users: usize,
    pub docs: usize,
    pub heavy_percent: usize,
    pub slots: usize,
    /// The serving machine (CPU model, cores, the kernel its matrix products run on): CPU
    /// figures compare only between runs on the same kind of machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
}

/// One job's `cpu_metrics` row.
#[derive(Debug, Clone, Serialize)]
pub struct CpuRow {
    pub job_id: Uuid,
    pub path: String,
    pub total: f64,
    pub stages: BTreeMap<&'static str, f64>,
}

/// The burst's rows, read as the database's owner.
pub async fn cpu_rows(url: &str, ids: &[Uuid]) -> Result<Vec<CpuRow>> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    // (job, path, total, the ten stage columns in `STAGES` order, start-up).
    type Raw = (Uuid, String, f64, Vec<Option<f64>>, f64);
    let raw: Vec<Raw> = sqlx::query_as(
        "SELECT job_id, processing_path, total_cpu_seconds,
                ARRAY[fetch_cpu_seconds, decode_cpu_seconds, capture_cpu_seconds,
                      quality_cpu_seconds, face_cpu_seconds, pre_ocr_cpu_seconds,
                      enhancement_cpu_seconds, ocr_cpu_seconds, schema_cpu_seconds,
                      upload_cpu_seconds],
                startup_cpu_seconds
         FROM cpu_metrics WHERE job_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    Ok(raw
        .into_iter()
        .map(|(job_id, path, total, stages, startup)| {
            // The ten stage columns, then the start-up charge.
            let stages: BTreeMap<&'static str, f64> = STAGES
                .iter()
                .zip(stages.iter().chain(std::iter::once(&Some(startup))))
                .map(|(name, v)| (*name, v.unwrap_or(0.0)))
                .collect();
            CpuRow {
                job_id,
                path,
                total,
                stages,
            }
        })
        .collect())
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

fn percentiles(mut v: Vec<f64>) -> Option<Percentiles> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    // Nearest rank.
    let at = |q: f64| {
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    };
    Some(Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
    })
}

fn mean(v: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = v
        .into_iter()
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// CPU per document, as the rows charge it.
#[derive(Debug, Clone, Serialize)]
pub struct RowsCpu {
    pub rows: usize,
    pub mean: f64,
    pub by_path: BTreeMap<String, f64>,
    pub by_input: BTreeMap<String, f64>,
    pub by_stage: BTreeMap<&'static str, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub setup: Setup,
    pub jobs: usize,
    pub completed: usize,
    pub failed: usize,
    pub error_rate: f64,
    pub wall_seconds: f64,
    pub documents_per_minute: f64,
    pub end_to_end: Option<Percentiles>,
    pub waiting: Option<Percentiles>,
    pub processing: Option<Percentiles>,
    pub errors: BTreeMap<String, usize>,
    /// CPU per document from the `cpu_metrics` rows.
    pub rows_cpu: Option<RowsCpu>,
    /// CPU the serving process spent over the burst, per completed document (all threads).
    pub process_cpu_per_document: Option<f64>,
    pub process_cpu_seconds: Option<f64>,
    /// The figure the decision rests on: the process's when measured, else the rows'.
    pub cpu_per_document: Option<f64>,
    pub monthly_cpu_hours_at_1000_per_day: Option<f64>,
    pub monthly_cpu_hours_at_57175_per_day: Option<f64>,
    pub decision: Option<String>,
    /// Jobs at once (worker cores) that would bring this burst's p95 under 30 s.
    pub slots_for_p95_under_30s: Option<usize>,
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn new(
        setup: &Setup,
        outcomes: Vec<Outcome>,
        wall: f64,
        process_cpu: Option<f64>,
        rows: Option<Vec<CpuRow>>,
    ) -> Self {
        let completed = outcomes.iter().filter(|o| o.status == "completed").count();
        let failed = outcomes.len() - completed;
        let mut errors = BTreeMap::new();
        for o in outcomes.iter().filter(|o| o.status != "completed") {
            let code = o.error_code.clone().unwrap_or_else(|| o.status.clone());
            *errors.entry(code).or_insert(0) += 1;
        }
        let done = || outcomes.iter().filter(|o| o.status == "completed");
        let end_to_end = percentiles(done().map(|o| o.end_to_end_seconds).collect());
        let waiting = percentiles(done().filter_map(|o| o.waiting_seconds).collect());
        let processing = percentiles(done().filter_map(|o| o.processing_seconds).collect());

        let rows_cpu = rows.filter(|r| !r.is_empty()).map(|rows| {
            let class: BTreeMap<Uuid, &str> = outcomes
                .iter()
                .filter_map(|o| o.job_id.map(|id| (id, o.class)))
                .collect();
            let mut by_path: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            let mut by_input: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for r in &rows {
                by_path.entry(r.path.clone()).or_default().push(r.total);
                let c = class.get(&r.job_id).copied().unwrap_or("unknown");
                by_input.entry(c.to_owned()).or_default().push(r.total);
            }
            let avg = |m: BTreeMap<String, Vec<f64>>| {
                m.into_iter()
                    .filter_map(|(k, v)| mean(v).map(|m| (k, m)))
                    .collect()
            };
            let by_stage = STAGES
                .iter()
                .map(|s| {
                    let v = mean(rows.iter().map(|r| r.stages.get(s).copied().unwrap_or(0.0)));
                    (*s, v.unwrap_or(0.0))
                })
                .collect();
            RowsCpu {
                rows: rows.len(),
                mean: mean(rows.iter().map(|r| r.total)).unwrap_or(0.0),
                by_path: avg(by_path),
                by_input: avg(by_input),
                by_stage,
            }
        });
        let process_cpu_per_document =
            process_cpu.and_then(|c| (completed > 0).then(|| c / completed as f64));
        let cpu_per_document =
            process_cpu_per_document.or_else(|| rows_cpu.as_ref().map(|r| r.mean));
        let monthly = |per_day: f64| cpu_per_document.map(|c| c * per_day * 30.0 / 3600.0);
        let decision = cpu_per_document.map(|c| {
            let verdict = if c <= GO {
                "GO"
            } else if c <= ADJUST_VOLUME {
                "ADJUST (reduce volume)"
            } else if c <= ADJUST_OPTIMISE {
                "ADJUST (optimise)"
            } else {
                "NO-GO"
            };
            let per_day = BUDGET_HOURS * 3600.0 / 30.0 / c;
            format!(
                "{verdict}: {c:.3} CPU-s per document; the {BUDGET_HOURS:.0} CPU-hour month carries \
                 {per_day:.0} documents a day"
            )
        });
        // The burst is CPU-bound once it queues: its p95 scales with 1 / (jobs at once).
        let slots_for_p95_under_30s = end_to_end.as_ref().map(|e| {
            let needed = setup.slots as f64 * e.p95 / P95_TARGET;
            (needed.ceil() as usize).max(1)
        });
        Self {
            setup: setup.clone(),
            jobs: outcomes.len(),
            completed,
            failed,
            error_rate: if outcomes.is_empty() {
                0.0
            } else {
                failed as f64 / outcomes.len() as f64
            },
            wall_seconds: wall,
            documents_per_minute: completed as f64 / wall * 60.0,
            end_to_end,
            waiting,
            processing,
            errors,
            rows_cpu,
            process_cpu_per_document,
            process_cpu_seconds: process_cpu,
            cpu_per_document,
            monthly_cpu_hours_at_1000_per_day: monthly(1000.0),
            monthly_cpu_hours_at_57175_per_day: monthly(57_175.0),
            decision,
            slots_for_p95_under_30s,
            outcomes,
        }
    }

    /// The report as printed.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let p = |p: &Option<Percentiles>| {
            p.as_ref().map_or("n/a".to_owned(), |p| {
                format!("p50 {:.1} s, p95 {:.1} s, p99 {:.1} s", p.p50, p.p95, p.p99)
            })
        };
        if let Some(m) = &self.setup.machine {
            let _ = writeln!(s, "machine: {m}");
        }
        let _ = writeln!(
            s,
            "jobs {} | completed {} | failed {} | error rate {:.2} % | {:.1} documents/min over {:.1} s",
            self.jobs,
            self.completed,
            self.failed,
            self.error_rate * 100.0,
            self.documents_per_minute,
            self.wall_seconds
        );
        if !self.errors.is_empty() {
            let _ = writeln!(s, "failures: {:?}", self.errors);
        }
        let _ = writeln!(s, "end to end: {}", p(&self.end_to_end));
        let _ = writeln!(s, "  waiting (queued -> started): {}", p(&self.waiting));
        let _ = writeln!(s, "  processing: {}", p(&self.processing));
        if let Some(r) = &self.rows_cpu {
            let _ = writeln!(
                s,
                "CPU per document, cpu_metrics rows ({}): {:.3} CPU-s",
                r.rows, r.mean
            );
            let _ = writeln!(s, "  by path: {}", fmt_map(&r.by_path));
            let _ = writeln!(s, "  by input: {}", fmt_map(&r.by_input));
            let stages: BTreeMap<String, f64> = r
                .by_stage
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect();
            let _ = writeln!(s, "  by stage: {}", fmt_map(&stages));
        }
        if let (Some(c), Some(total)) = (self.process_cpu_per_document, self.process_cpu_seconds) {
            let _ = writeln!(
                s,
                "CPU per document, serving process (all threads, /proc): {c:.3} CPU-s ({total:.1} CPU-s in all)"
            );
            if let Some(r) = &self.rows_cpu {
                let _ = writeln!(
                    s,
                    "  the rows account for {:.1} % of it",
                    r.mean / c * 100.0
                );
            }
        }
        if let (Some(a), Some(b)) = (
            self.monthly_cpu_hours_at_1000_per_day,
            self.monthly_cpu_hours_at_57175_per_day,
        ) {
            let _ = writeln!(
                s,
                "monthly CPU-hours: {a:.1} at 1,000 documents/day, {b:.0} at 57,175/day (budget {BUDGET_HOURS:.0})"
            );
        }
        if let Some(d) = &self.decision {
            let _ = writeln!(s, "decision: {d}");
        }
        if let Some(n) = self.slots_for_p95_under_30s {
            let _ = writeln!(
                s,
                "sizing: {n} jobs at once (worker cores) would bring this burst's p95 under {P95_TARGET:.0} s (measured with {})",
                self.setup.slots
            );
        }
        s
    }

    /// A self-contained page: the summary, latency over time and CPU per stage.
    pub fn html(&self) -> String {
        let mut points = String::new();
        let (w, h, pad) = (760.0, 300.0, 40.0);
        let max_x = self
            .outcomes
            .iter()
            .map(|o| o.finished_at)
            .fold(1.0, f64::max);
        let max_y = self
            .outcomes
            .iter()
            .map(|o| o.end_to_end_seconds)
            .fold(1.0, f64::max);
        let x = |v: f64| pad + v / max_x * (w - 2.0 * pad);
        let y = |v: f64| h - pad - v / max_y * (h - 2.0 * pad);
        for o in &self.outcomes {
            let colour = if o.status == "completed" {
                "#1f77b4"
            } else {
                "#d62728"
            };
            let wait = o.waiting_seconds.unwrap_or(0.0);
            // A bar per job at its finish time: waiting (light) under processing (dark).
            let _ = write!(
                points,
                "<line x1='{fx:.1}' y1='{y0:.1}' x2='{fx:.1}' y2='{yw:.1}' stroke='#aec7e8' stroke-width='2'/>\
                 <line x1='{fx:.1}' y1='{yw:.1}' x2='{fx:.1}' y2='{ye:.1}' stroke='{colour}' stroke-width='2'><title>{} {} {:.1} s</title></line>",
                o.class,
                o.status,
                o.end_to_end_seconds,
                fx = x(o.finished_at),
                y0 = y(0.0),
                yw = y(wait),
                ye = y(o.end_to_end_seconds),
            );
        }
        let mut bars = String::new();
        if let Some(r) = &self.rows_cpu {
            let max = r.by_stage.values().copied().fold(1e-9, f64::max);
            for (i, (stage, v)) in r.by_stage.iter().enumerate() {
                let top = 20.0 + i as f64 * 26.0;
                let len = v / max * 500.0;
                let _ = write!(
                    bars,
                    "<text x='0' y='{ty:.0}'>{stage}</text><rect x='90' y='{top:.0}' width='{len:.1}' height='18' fill='#2ca02c'/>\
                     <text x='{tx:.1}' y='{ty:.0}'>{v:.3} CPU-s</text>",
                    ty = top + 14.0,
                    tx = 96.0 + len,
                );
            }
        }
        let json = serde_json::to_string(&self.outcomes).unwrap_or_default();
        format!(
            "<!doctype html><meta charset='utf-8'><title>Rythmiq burst</title>\
             <style>body{{font:14px sans-serif;margin:2em;max-width:860px}}pre{{background:#f4f4f4;padding:1em}}</style>\
             <h1>Rythmiq burst: {} users &times; {} documents ({} % heavy)</h1>\
             <pre>{}</pre>\
             <h2>Latency over time</h2><p>One bar per job at the moment it finished: waiting (light) \
             then processing (dark; red if it failed), in seconds end to end.</p>\
             <svg width='{w}' height='{h}' style='border:1px solid #ccc'>\
             <text x='5' y='15'>{max_y:.0} s</text><text x='{xl:.0}' y='{h}'>{max_x:.0} s</text>{points}</svg>\
             <h2>CPU per document, by stage (cpu_metrics)</h2>\
             <svg width='{w}' height='{bh}'>{bars}</svg>\
             <script type='application/json' id='outcomes'>{json}</script>",
            self.setup.users,
            self.setup.docs,
            self.setup.heavy_percent,
            html_escape(&self.text()),
            xl = w - 60.0,
            bh = 30.0 + STAGES.len() as f64 * 26.0,
        )
    }
}

fn fmt_map(m: &BTreeMap<String, f64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: &str, e2e: f64, wait: f64) -> Outcome {
        Outcome {
            class: "photo",
            portal: "neet-ug-2026-photo",
            job_id: Some(Uuid::new_v4()),
            status: status.to_owned(),
            error_code: (status != "completed").then(|| "DECODE_FAILED".to_owned()),
            submitted_at: 0.0,
            finished_at: e2e,
            waiting_seconds: Some(wait),
            processing_seconds: Some(e2e - wait),
            end_to_end_seconds: e2e,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = percentiles((1..=100).map(f64::from).collect()).expect("values");
        assert_eq!((p.p50, p.p95, p.p99), (50.0, 95.0, 99.0));
        assert!(percentiles(Vec::new()).is_none());
    }

    #[test]
    fn the_decision_follows_the_matrix_and_sizing_scales_the_p95() {
        let setup = Setup {
            host: "h".into(),
            users: 1,
            docs: 4,
            heavy_percent: 30,
            slots: 2,
            machine: Some("test CPU, 2 cores".into()),
        };
        let outcomes = vec![
            outcome("completed", 10.0, 8.0),
            outcome("completed", 20.0, 15.0),
            outcome("completed", 60.0, 50.0),
            outcome("failed", 5.0, 1.0),
        ];
        // 3 completed documents, 2.4 CPU-s in all: 0.8 per document.
        let r = Report::new(&setup, outcomes, 60.0, Some(2.4), None);
        assert_eq!((r.completed, r.failed), (3, 1));
        assert!((r.error_rate - 0.25).abs() < 1e-9);
        let d = r.decision.clone().expect("decision");
        assert!(d.starts_with("ADJUST (reduce volume)"), "{d}");
        // p95 of 10, 20, 60 is 60 s with 2 slots: 4 slots bring it to 30 s.
        assert_eq!(r.slots_for_p95_under_30s, Some(4));
        let hours = r.monthly_cpu_hours_at_1000_per_day.expect("hours");
        assert!((hours - 0.8 * 1000.0 * 30.0 / 3600.0).abs() < 1e-9);
        assert!(r.html().contains("<svg"));
        assert!(r.text().contains("machine: test CPU, 2 cores"));
    }
}
