//! What Postgres counted over a measured window: statements by text (`pg_stat_statements`, every
//! client statement including BEGIN and COMMIT, so one per round trip) and committed transactions
//! (`pg_stat_database.xact_commit`).

use anyhow::Result;
use serde::Serialize;
use sqlx::{Connection, PgConnection};

/// One statement text and how often it ran.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Statement {
    /// Normalised by `pg_stat_statements` (constants as `$n`), whitespace collapsed.
    pub query: String,
    pub calls: i64,
    /// Mean time the server spent executing it, in milliseconds.
    pub mean_ms: f64,
}

/// The counts of one window.
#[derive(Debug, Clone, Serialize)]
pub struct Counted {
    pub transactions: i64,
    /// None when `pg_stat_statements` is not available.
    pub statements: Option<Vec<Statement>>,
}

impl Counted {
    /// All statements of the window.
    pub fn total_statements(&self) -> Option<i64> {
        self.statements
            .as_ref()
            .map(|s| s.iter().map(|s| s.calls).sum())
    }

    /// Milliseconds the server spent executing the window's statements, all together.
    pub fn total_exec_ms(&self) -> Option<f64> {
        self.statements
            .as_ref()
            .map(|s| s.iter().map(|s| s.calls as f64 * s.mean_ms).sum())
    }
}

/// A window opened on one database; the measuring connection's own statements (those that read
/// the `pg_stat_*` views) are left out of the counts.
pub struct Window {
    conn: PgConnection,
    statements: bool,
    commits_before: i64,
}

impl Window {
    /// Resets `pg_stat_statements` (when used) and notes the commits so far.
    pub async fn open(url: &str, statements: bool) -> Result<Self> {
        let mut conn = PgConnection::connect(url).await?;
        if statements {
            sqlx::query("SELECT pg_stat_statements_reset()")
                .execute(&mut conn)
                .await?;
        }
        let commits_before = commits(&mut conn).await?;
        Ok(Self {
            conn,
            statements,
            commits_before,
        })
    }

    /// The counts since [`Window::open`]. Call after the measured connections are closed: a
    /// backend reports its transaction counts when it goes idle for a while or exits.
    pub async fn close(mut self) -> Result<Counted> {
        let transactions = commits(&mut self.conn).await? - self.commits_before;
        let statements = if self.statements {
            let rows: Vec<(String, i64, f64)> = sqlx::query_as(
                "SELECT query, calls, mean_exec_time FROM pg_stat_statements
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND query NOT LIKE '%pg_stat_%'
                 ORDER BY calls DESC, query",
            )
            .fetch_all(&mut self.conn)
            .await?;
            Some(
                rows.into_iter()
                    .map(|(query, calls, mean_ms)| Statement {
                        query: collapse_whitespace(&query),
                        calls,
                        mean_ms,
                    })
                    .collect(),
            )
        } else {
            None
        };
        self.conn.close().await?;
        Ok(Counted {
            transactions,
            statements,
        })
    }
}

async fn commits(conn: &mut PgConnection) -> Result<i64> {
    // The reading connection's own transactions are counted at its next report; a fresh
    // snapshot of the view is taken for each read.
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *conn)
        .await?;
    Ok(sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut *conn)
    .await?)
}

/// One line per statement: runs of whitespace (the SQL's indentation) become one space.
pub fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indentation_and_newlines_collapse() {
        assert_eq!(
            collapse_whitespace("UPDATE jobs\n         SET a = $1,\t b = $2  "),
            "UPDATE jobs SET a = $1, b = $2"
        );
    }

    #[test]
    fn total_adds_every_statement() {
        let c = Counted {
            transactions: 3,
            statements: Some(vec![
                Statement {
                    query: "BEGIN".into(),
                    calls: 2,
                    mean_ms: 0.01,
                },
                Statement {
                    query: "COMMIT".into(),
                    calls: 2,
                    mean_ms: 0.01,
                },
            ]),
        };
        assert_eq!(c.total_statements(), Some(4));
        assert!((c.total_exec_ms().unwrap_or_default() - 0.04).abs() < 1e-9);
        let none = Counted {
            transactions: 3,
            statements: None,
        };
        assert_eq!(none.total_statements(), None);
        assert_eq!(none.total_exec_ms(), None);
    }
}
