//! The database: pool, migrations (ours and apalis-postgres'), and queries both roles share.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::Result;
use crate::domain::PortalRule;

/// The apalis queue (its `job_type`) every Rythmiq job goes through.
pub const QUEUE: &str = "rythmiq::process";

/// The channel the `jobs` trigger announces state changes on (`<job id>:<state>`).
pub const JOB_EVENTS_CHANNEL: &str = "rythmiq_job_events";

/// The channel apalis-postgres' insert trigger announces new tasks on.
pub const TASK_INSERT_CHANNEL: &str = "apalis::job::insert";

/// Opens a pool. Connections are tested before use so a restarted database heals the pool.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(true)
        .connect(url)
        .await?;
    Ok(pool)
}

/// Applies apalis-postgres' schema (in the `apalis` schema) and then ours.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    apalis_postgres::PostgresStorage::setup(pool).await?;
    sqlx::migrate!("../migrations").run(pool).await?;
    Ok(())
}

/// Whether every migration this build knows has been applied (for `/readyz`).
pub async fn migrations_applied(pool: &PgPool) -> Result<bool> {
    let migrator = sqlx::migrate!("../migrations");
    let latest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
            .or_else(|e| match e {
                // No migrations table yet: nothing applied.
                sqlx::Error::Database(ref d) if d.code().as_deref() == Some("42P01") => Ok(None),
                e => Err(e),
            })?;
    Ok(applied.unwrap_or(0) >= latest)
}

const PORTAL_COLUMNS: &str = "id, slug, version, name, kind, width, height, dpi, format, min_kb, \
                              max_kb, filename_pattern, background";

/// The active version of a portal rule.
pub async fn active_portal<'e, E>(executor: E, slug: &str) -> Result<Option<PortalRule>>
where
    E: sqlx::PgExecutor<'e>,
{
    Ok(sqlx::query_as::<_, PortalRule>(sqlx::AssertSqlSafe(format!(
        "SELECT {PORTAL_COLUMNS} FROM portal_schemas WHERE slug = $1 AND active"
    )))
    .bind(slug)
    .fetch_optional(executor)
    .await?)
}

/// A portal rule by id (a job keeps the exact version it was created with).
pub async fn portal_by_id<'e, E>(executor: E, id: uuid::Uuid) -> Result<PortalRule>
where
    E: sqlx::PgExecutor<'e>,
{
    Ok(sqlx::query_as::<_, PortalRule>(sqlx::AssertSqlSafe(format!(
        "SELECT {PORTAL_COLUMNS} FROM portal_schemas WHERE id = $1"
    )))
    .bind(id)
    .fetch_one(executor)
    .await?)
}

/// All active portal rules, by slug.
pub async fn active_portals(pool: &PgPool) -> Result<Vec<PortalRule>> {
    Ok(sqlx::query_as::<_, PortalRule>(sqlx::AssertSqlSafe(format!(
        "SELECT {PORTAL_COLUMNS} FROM portal_schemas WHERE active ORDER BY slug"
    )))
    .fetch_all(pool)
    .await?)
}
