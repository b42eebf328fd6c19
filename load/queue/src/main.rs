//! `rythmiq-queue-bench`: the queue's own overhead. No-op tasks are enqueued as the API enqueues
//! them, then claimed and completed by worker loops through the worker crate's queue functions
//! (`rythmiq_worker::queue`), with nothing in place of the pipeline; graphile-worker runs the
//! same number of no-op jobs on the same Postgres in the same run. Prints jobs/s for each and,
//! from `pg_stat_statements`, the statements each of our jobs cost. `load/queue/bench.sh` is the
//! one command (it installs graphile-worker and builds this).

mod cluster;
mod graphile;
mod ours;
mod report;
mod stats;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

/// The queue-overhead benchmark.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// No-op tasks for each queue.
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// Worker loops ("slots") claiming at once; graphile-worker runs with the same concurrency.
    #[arg(long, default_value_t = 4)]
    loops: usize,
    /// Database connections of our worker pool and of graphile-worker's (the production
    /// default, `RYTHMIQ_DB_POOL_SIZE`, is 10).
    #[arg(long, default_value_t = 10)]
    pool_size: u32,
    /// A dedicated, empty database to use instead of a private cluster. graphile-worker then
    /// runs in its own schema (`graphile_worker`) of that database, and statements are counted
    /// only where `pg_stat_statements` is loaded (transactions otherwise).
    #[arg(long, env = "QUEUE_BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Where the private cluster lives (created afresh; deleted when the run ends).
    #[arg(long, default_value = "target/queue-bench/pg")]
    data_dir: PathBuf,
    /// Run the private cluster without fsync (as the tests do), instead of durably.
    #[arg(long)]
    fast: bool,
    /// The graphile-worker runner script, inside the folder where graphile-worker is installed
    /// (`bench.sh` puts it there); without it only our queue runs.
    #[arg(long)]
    graphile_script: Option<PathBuf>,
    /// Diagnosis: disable the trigger that announces job state changes (NOTIFY) in our
    /// database, to see what it costs. Not how Rythmiq runs.
    #[arg(long, conflicts_with = "bare_schema")]
    without_job_notify: bool,
    /// Diagnosis: run ours on a schema cut down to what the queue needs to find and fence a
    /// task and its job (no trigger, foreign keys or indexes beyond those; the claim's job
    /// update HOT), to see what the rest of our schema costs a job. Not how Rythmiq runs.
    #[arg(long)]
    bare_schema: bool,
    /// Run graphile-worker first, then ours (by default ours runs first): the two sides share
    /// one cluster, so the order is worth checking.
    #[arg(long, requires = "graphile_script")]
    graphile_first: bool,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.tasks > 0 && args.loops > 0,
        "--tasks and --loops must be positive"
    );
    let target = match &args.database_url {
        Some(url) => cluster::Target::external(url).await?,
        None => cluster::Target::private(&args.data_dir, args.fast).await?,
    };
    eprintln!(
        "queue-bench: {} tasks, {} loops, pool {}, statements from {}",
        args.tasks,
        args.loops,
        args.pool_size,
        if target.statements {
            "pg_stat_statements"
        } else {
            "nowhere (transactions only)"
        }
    );

    let run_graphile = || async {
        match &args.graphile_script {
            Some(script) => graphile::run(&target, script, args.tasks, args.loops, args.pool_size)
                .await
                .context("graphile-worker")
                .map(Some),
            None => Ok(None),
        }
    };
    let mut theirs = if args.graphile_first {
        run_graphile().await?
    } else {
        None
    };
    let schema = if args.bare_schema {
        ours::Schema::Bare
    } else if args.without_job_notify {
        ours::Schema::WithoutJobNotify
    } else {
        ours::Schema::Migrated
    };
    let ours = ours::run(&target, args.tasks, args.loops, args.pool_size, schema)
        .await
        .context("our queue")?;
    eprintln!(
        "queue-bench: ours {:.0} jobs/s",
        ours.rate.jobs_per_second()
    );
    if !args.graphile_first {
        theirs = run_graphile().await?;
    }

    let settings = report::Settings {
        tasks: args.tasks,
        loops: args.loops,
        pool_size: args.pool_size,
        durable: args.database_url.is_some() || !args.fast,
        schema,
        statements_from: if target.statements {
            "pg_stat_statements"
        } else {
            "pg_stat_database.xact_commit only"
        },
    };
    let out = report::Report {
        settings,
        ours,
        graphile: theirs,
    };
    println!("{}", out.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&out)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    target.stop().await
}
