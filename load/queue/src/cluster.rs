//! Where the benchmark runs: a private cluster (as `rythmiq dev` and the tests start one, as the
//! `postgres` account when root) with `pg_stat_statements` preloaded, or a database given by URL.

use std::path::Path;

use anyhow::{Context, Result};
use rythmiq_embedded_pg::{EmbeddedOptions, EmbeddedPostgres};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// Our queue's database on the private cluster.
const OURS_DB: &str = "queue_bench";
/// graphile-worker's database on the private cluster.
const GRAPHILE_DB: &str = "graphile_bench";
const PRELOAD: &str = "pg_stat_statements";

/// The databases of one run.
pub struct Target {
    /// Our queue's database (migrated by [`crate::ours`]).
    pub ours_url: String,
    /// graphile-worker's: another database of the same cluster, or the same database (its own
    /// schema) when a URL was given.
    pub graphile_url: String,
    /// Whether `pg_stat_statements` is loaded and installed in both databases.
    pub statements: bool,
    pg: Option<EmbeddedPostgres>,
}

impl Target {
    /// A private cluster in `data_dir`, with `pg_stat_statements` preloaded (set with ALTER
    /// SYSTEM and a restart, since the embedded cluster's start options are fixed) and two fresh
    /// databases.
    pub async fn private(data_dir: &Path, fast: bool) -> Result<Self> {
        let options = EmbeddedOptions {
            fast,
            ..EmbeddedOptions::new(data_dir)
        };
        let mut pg = EmbeddedPostgres::start(options.clone())
            .await
            .context("starting the private cluster")?;
        let mut admin = PgConnection::connect(&pg.url()).await?;
        let preload: String =
            sqlx::query_scalar("SELECT current_setting('shared_preload_libraries')")
                .fetch_one(&mut admin)
                .await?;
        if !preload.split(',').any(|l| l.trim() == PRELOAD) {
            sqlx::query(AssertSqlSafe(format!(
                "ALTER SYSTEM SET shared_preload_libraries = '{PRELOAD}'"
            )))
            .execute(&mut admin)
            .await?;
            admin.close().await?;
            pg.stop()
                .await
                .context("stopping the cluster to preload pg_stat_statements")?;
            pg = EmbeddedPostgres::start(options)
                .await
                .context("restarting the private cluster")?;
            admin = PgConnection::connect(&pg.url()).await?;
        }
        for db in [OURS_DB, GRAPHILE_DB] {
            // A cluster kept from an earlier run: start from empty databases all the same.
            sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await?;
            pg.create_database(db).await?;
        }
        admin.close().await?;
        let (ours_url, graphile_url) = (pg.url_for(OURS_DB), pg.url_for(GRAPHILE_DB));
        for url in [&ours_url, &graphile_url] {
            install_statements(url)
                .await
                .context("installing pg_stat_statements")?;
        }
        Ok(Self {
            ours_url,
            graphile_url,
            statements: true,
            pg: Some(pg),
        })
    }

    /// A database given by URL; statements are counted when its server preloads
    /// `pg_stat_statements`.
    pub async fn external(url: &str) -> Result<Self> {
        let statements = match install_statements(url).await {
            Ok(()) => true,
            Err(e) => {
                eprintln!("queue-bench: no pg_stat_statements ({e:#}); counting transactions only");
                false
            }
        };
        Ok(Self {
            ours_url: url.to_owned(),
            graphile_url: url.to_owned(),
            statements,
            pg: None,
        })
    }

    /// Stops the private cluster, if this run started one.
    pub async fn stop(self) -> Result<()> {
        if let Some(pg) = self.pg {
            pg.stop().await?;
        }
        Ok(())
    }
}

/// Creates the extension and reads it once: that fails when the library is not preloaded.
async fn install_statements(url: &str) -> Result<()> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut conn)
        .await?;
    sqlx::query("SELECT count(*) FROM pg_stat_statements")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}
