//! The figures of one run and the table printed (Markdown, so it pastes into the README).

use std::fmt::Write as _;

use serde::Serialize;

use crate::ours::Schema;
use crate::stats::Counted;

/// The graphile-worker version `bench.sh` installs (`load/queue/graphile/package.json`).
pub const GRAPHILE_VERSION: &str = "0.16.6";
/// Statement texts are cut to this many characters in the table.
const QUERY_WIDTH: usize = 110;

/// Jobs finished over a window.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rate {
    pub jobs: usize,
    pub seconds: f64,
}

impl Rate {
    /// Jobs per second; zero for an empty window.
    pub fn jobs_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.jobs as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// One queue's run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub rate: Rate,
    pub counted: Option<Counted>,
}

impl Run {
    /// `total / jobs`, when counted.
    fn per_job(&self, total: Option<i64>) -> Option<f64> {
        let jobs = self.rate.jobs;
        total.filter(|_| jobs > 0).map(|t| t as f64 / jobs as f64)
    }

    pub fn statements_per_job(&self) -> Option<f64> {
        self.per_job(self.counted.as_ref().and_then(Counted::total_statements))
    }

    pub fn transactions_per_job(&self) -> Option<f64> {
        self.per_job(self.counted.as_ref().map(|c| c.transactions))
    }

    /// Server execution time per job, in milliseconds (`pg_stat_statements`).
    pub fn exec_ms_per_job(&self) -> Option<f64> {
        let jobs = self.rate.jobs;
        self.counted
            .as_ref()
            .and_then(Counted::total_exec_ms)
            .filter(|_| jobs > 0)
            .map(|t| t / jobs as f64)
    }

    /// The run's statements (calls per job, mean execution in ms, then the statement), under
    /// `title`; nothing when they were not counted.
    fn statements_listing(&self, title: &str, out: &mut String) {
        let Some(statements) = self.counted.as_ref().and_then(|c| c.statements.as_ref()) else {
            return;
        };
        let jobs = self.rate.jobs.max(1) as f64;
        let _ = writeln!(
            out,
            "\n{title} (calls per job, mean execution in ms, then the statement):"
        );
        for st in statements {
            let _ = writeln!(
                out,
                "  {:>6.3}  {:>7.3}  {}",
                st.calls as f64 / jobs,
                st.mean_ms,
                clip(&st.query, QUERY_WIDTH)
            );
        }
    }
}

/// How the run was set up.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub tasks: usize,
    pub loops: usize,
    pub pool_size: u32,
    pub durable: bool,
    /// Our schema: as migrated, or cut down for a diagnosis.
    pub schema: Schema,
    pub statements_from: &'static str,
}

/// Everything one run printed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub ours: Run,
    pub graphile: Option<Run>,
}

fn figure(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

/// `s` cut to `width` characters, with an ellipsis when cut.
pub fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl Report {
    /// The table: settings, then one row per figure, then each side's statements per job.
    pub fn table(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Queue overhead: {} no-op tasks, {} worker loops (graphile-worker concurrency {}), \
             pool {} connections, {} cluster{}; statements from {}.\n",
            s.tasks,
            s.loops,
            s.loops,
            s.pool_size,
            if s.durable { "durable" } else { "fsync-off" },
            match s.schema {
                Schema::Migrated => "",
                Schema::WithoutJobNotify => ", ours without the jobs NOTIFY trigger (diagnosis)",
                Schema::Bare => ", ours on the bare schema (diagnosis)",
            },
            s.statements_from
        );
        let theirs = self.graphile.as_ref();
        let ours_rate = self.ours.rate.jobs_per_second();
        let their_rate = theirs.map(|r| r.rate.jobs_per_second());
        let _ = writeln!(out, "| | ours | graphile-worker {GRAPHILE_VERSION} |");
        let _ = writeln!(out, "|---|---:|---:|");
        let row = |out: &mut String, name: &str, a: String, b: String| {
            let _ = writeln!(out, "| {name} | {a} | {b} |");
        };
        row(
            &mut out,
            "jobs/s",
            format!("{ours_rate:.0}"),
            figure(their_rate, 0),
        );
        row(
            &mut out,
            "window (s)",
            format!("{:.2}", self.ours.rate.seconds),
            figure(theirs.map(|r| r.rate.seconds), 2),
        );
        row(
            &mut out,
            "statements/job",
            figure(self.ours.statements_per_job(), 2),
            figure(theirs.and_then(Run::statements_per_job), 2),
        );
        row(
            &mut out,
            "transactions/job",
            figure(self.ours.transactions_per_job(), 2),
            figure(theirs.and_then(Run::transactions_per_job), 2),
        );
        row(
            &mut out,
            "server execution ms/job",
            figure(self.ours.exec_ms_per_job(), 3),
            figure(theirs.and_then(Run::exec_ms_per_job), 3),
        );
        let ratio = their_rate.filter(|r| *r > 0.0).map(|r| ours_rate / r);
        let _ = writeln!(out, "\nratio ours / graphile-worker: {}", figure(ratio, 2));
        self.ours.statements_listing("Our statements", &mut out);
        if let Some(theirs) = theirs {
            theirs.statements_listing("graphile-worker's statements", &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Statement;

    fn run(jobs: usize, seconds: f64, statements: i64, transactions: i64) -> Run {
        Run {
            rate: Rate { jobs, seconds },
            counted: Some(Counted {
                transactions,
                statements: Some(vec![Statement {
                    query: "SELECT 1".into(),
                    calls: statements,
                    mean_ms: 0.25,
                }]),
            }),
        }
    }

    #[test]
    fn rates_guard_an_empty_window() {
        assert_eq!(
            Rate {
                jobs: 10,
                seconds: 0.0
            }
            .jobs_per_second(),
            0.0
        );
        assert_eq!(
            Rate {
                jobs: 10,
                seconds: 2.0
            }
            .jobs_per_second(),
            5.0
        );
    }

    #[test]
    fn the_table_gives_rates_ratio_and_per_job_counts() {
        let report = Report {
            settings: Settings {
                tasks: 100,
                loops: 4,
                pool_size: 10,
                durable: true,
                schema: Schema::Migrated,
                statements_from: "pg_stat_statements",
            },
            ours: run(100, 0.05, 500, 200),
            graphile: Some(run(100, 0.1, 200, 200)),
        };
        let t = report.table();
        assert!(t.contains("| jobs/s | 2000 | 1000 |"), "{t}");
        assert!(t.contains("| statements/job | 5.00 | 2.00 |"), "{t}");
        assert!(t.contains("| transactions/job | 2.00 | 2.00 |"), "{t}");
        assert!(t.contains("ratio ours / graphile-worker: 2.00"), "{t}");
        // 500 calls of 0.25 ms over 100 jobs; 200 over 100.
        assert!(
            t.contains("| server execution ms/job | 1.250 | 0.500 |"),
            "{t}"
        );
        assert!(t.contains("Our statements"), "{t}");
        assert!(t.contains("   5.000    0.250  SELECT 1"), "{t}");
        assert!(t.contains("graphile-worker's statements"), "{t}");
        assert!(t.contains("   2.000    0.250  SELECT 1"), "{t}");
    }

    #[test]
    fn a_missing_peer_or_count_reads_na() {
        let report = Report {
            settings: Settings {
                tasks: 1,
                loops: 1,
                pool_size: 2,
                durable: false,
                schema: Schema::Bare,
                statements_from: "pg_stat_database.xact_commit only",
            },
            ours: Run {
                rate: Rate {
                    jobs: 1,
                    seconds: 1.0,
                },
                counted: None,
            },
            graphile: None,
        };
        let t = report.table();
        assert!(t.contains("| statements/job | n/a | n/a |"), "{t}");
        assert!(t.contains("| server execution ms/job | n/a | n/a |"), "{t}");
        assert!(t.contains("ratio ours / graphile-worker: n/a"), "{t}");
        assert!(t.contains("ours on the bare schema (diagnosis)"), "{t}");
    }

    #[test]
    fn long_statements_are_clipped() {
        assert_eq!(clip("abcdef", 10), "abcdef");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
