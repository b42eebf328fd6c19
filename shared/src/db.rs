//! The database: pool, migrations (ours and apalis-postgres'), and queries both roles share.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool, Postgres, Transaction};

use chrono::NaiveDate;

use crate::Result;
use crate::domain::{PortalRule, RuleSpec};
use crate::portals::RuleFile;

/// The apalis queue (its `job_type`) every Rythmiq job goes through.
pub const QUEUE: &str = "rythmiq::process";

/// The channel the `jobs` trigger announces state changes on (`<job id>:<state>`).
pub const JOB_EVENTS_CHANNEL: &str = "rythmiq_job_events";

/// The channel apalis-postgres' insert trigger announces new tasks on.
pub const TASK_INSERT_CHANNEL: &str = "apalis::job::insert";

/// The database role a service acts as (migration `…_row_level_security.sql`): every connection
/// of its pool switches to it, so row-level security and the role's grants apply to everything
/// the service runs, whatever the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sees only the rows of the user its transaction names ([`user_scope`]).
    Api,
    /// Sees every job, with the grants the pipeline and the maintenance sweep need.
    Worker,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Api => "rythmiq_api",
            Role::Worker => "rythmiq_worker",
        }
    }
}

/// A pooled connection idle at least this long is pinged before use. Pinging every checkout
/// (sqlx's default) costs a round trip per statement on the queue's hot path, where a worker
/// slot checks a connection out twice per job; a connection that went unused for a second is
/// the one that may have died with a database restart or a dropped link (the same trade as
/// HikariCP's `aliveBypassWindowMs`).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        // A failed ping closes the connection and the pool tries the next one (sqlx's contract).
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

fn role_options(max_connections: u32, role: Role) -> PgPoolOptions {
    pool_options(max_connections).after_connect(move |conn, _| {
        Box::pin(async move {
            sqlx::query(sqlx::AssertSqlSafe(format!("SET ROLE {}", role.name())))
                .execute(conn)
                .await
                .map(drop)
        })
    })
}

/// Opens a pool as the login itself (migrations, administration, tests' assertions).
/// Connections are tested before use so a restarted database heals the pool.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    Ok(pool_options(max_connections).connect(url).await?)
}

/// Opens a pool whose connections act as `role`. Fails at once when the login may not take
/// the role, rather than at the first request.
pub async fn connect_as(url: &str, max_connections: u32, role: Role) -> Result<PgPool> {
    Ok(role_options(max_connections, role).connect(url).await?)
}

/// [`connect_as`] without connecting until first use (for callers that cannot wait).
pub fn connect_lazy_as(url: &str, max_connections: u32, role: Role) -> Result<PgPool> {
    Ok(role_options(max_connections, role).connect_lazy(url)?)
}

/// A transaction in which row-level security lets the API's role see `user`'s rows only.
pub async fn user_scope(pool: &PgPool, user: uuid::Uuid) -> Result<Transaction<'static, Postgres>> {
    scoped(pool, "rythmiq.user_id", user).await
}

/// A transaction that may read the one job (or batch) `id` a verified signed link names,
/// whoever owns it, and nothing else.
pub async fn signed_link_scope(
    pool: &PgPool,
    id: uuid::Uuid,
) -> Result<Transaction<'static, Postgres>> {
    scoped(pool, "rythmiq.signed_link_id", id).await
}

async fn scoped(
    pool: &PgPool,
    setting: &str,
    id: uuid::Uuid,
) -> Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    // `true`: local to this transaction, so a pooled connection never carries it to the next.
    sqlx::query("SELECT set_config($1, $2, true)")
        .bind(setting)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Applies apalis-postgres' schema (in the `apalis` schema), then ours, then makes the rule
/// files of `portal-rules/` the active portal rules ([`load_portal_rules`]).
pub async fn migrate(pool: &PgPool) -> Result<()> {
    apalis_postgres::PostgresStorage::setup(pool).await?;
    sqlx::migrate!("../migrations").run(pool).await?;
    load_portal_rules(pool, &crate::portals::files()?).await?;
    Ok(())
}

/// What `portal_schemas` stores of one rule version, as compared with its file.
#[derive(Debug, PartialEq, sqlx::FromRow)]
struct StoredRule {
    #[sqlx(flatten)]
    spec: RuleSpec,
    source_url: Option<String>,
    source_checked_on: Option<NaiveDate>,
    source_portal_values: Option<Vec<String>>,
}

impl From<&RuleFile> for StoredRule {
    fn from(f: &RuleFile) -> Self {
        Self {
            spec: f.spec.clone(),
            source_url: Some(f.source.url.clone()),
            source_checked_on: Some(f.source.checked),
            // Stored in the canonical order, so the file's order alone makes no new version.
            source_portal_values: Some(
                f.source
                    .portal_values()
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            ),
        }
    }
}

/// A rule version [`load_portal_rules`] made active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivatedRule {
    pub id: uuid::Uuid,
    pub slug: String,
    pub version: i32,
}

/// Makes each rule file the active version of its slug, in one transaction: where the active
/// row stores the same values (source included) nothing changes; otherwise that row is
/// deactivated and a row with the slug's next version becomes active. Rows are never changed
/// otherwise or deleted, because jobs keep the id of the version they were created with.
/// Slugs without a file are left as they are. Returns the versions it activated.
pub async fn load_portal_rules(pool: &PgPool, files: &[RuleFile]) -> Result<Vec<ActivatedRule>> {
    let mut tx = pool.begin().await?;
    // One loader at a time (`rythmiq migrate` may run twice at once), without blocking readers
    // or the foreign-key checks of job inserts, which take weaker locks.
    sqlx::query("LOCK TABLE portal_schemas IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let mut activated = Vec::new();
    for file in files {
        let wanted = StoredRule::from(file);
        let active: Option<StoredRule> = sqlx::query_as(
            "SELECT slug, name, kind, width, height, dpi, format, min_kb, max_kb, \
                    filename_pattern, background, text_check, face, source_url, \
                    source_checked_on, source_portal_values \
             FROM portal_schemas WHERE slug = $1 AND active",
        )
        .bind(&file.spec.slug)
        .fetch_optional(&mut *tx)
        .await?;
        if active.as_ref() == Some(&wanted) {
            continue;
        }
        // Before the insert: at most one active row per slug (`portal_schemas_one_active`).
        sqlx::query("UPDATE portal_schemas SET active = FALSE WHERE slug = $1 AND active")
            .bind(&file.spec.slug)
            .execute(&mut *tx)
            .await?;
        let (id, version): (uuid::Uuid, i32) = sqlx::query_as(
            "INSERT INTO portal_schemas \
                 (slug, version, name, kind, width, height, dpi, format, min_kb, max_kb, \
                  filename_pattern, background, source_url, source_checked_on, \
                  source_portal_values, text_check, face, active) \
             SELECT $1, COALESCE(max(version), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                    $11, $12, $13, $14, $15, $16, TRUE \
             FROM portal_schemas WHERE slug = $1 \
             RETURNING id, version",
        )
        .bind(&file.spec.slug)
        .bind(&wanted.spec.name)
        .bind(wanted.spec.kind)
        .bind(wanted.spec.width)
        .bind(wanted.spec.height)
        .bind(wanted.spec.dpi)
        .bind(wanted.spec.format)
        .bind(wanted.spec.min_kb)
        .bind(wanted.spec.max_kb)
        .bind(&wanted.spec.filename_pattern)
        .bind(&wanted.spec.background)
        .bind(&wanted.source_url)
        .bind(wanted.source_checked_on)
        .bind(&wanted.source_portal_values)
        .bind(wanted.spec.text_check)
        // SQL NULL, not JSON null, for a rule without `[face]`.
        .bind(wanted.spec.face.map(sqlx::types::Json))
        .fetch_one(&mut *tx)
        .await?;
        tracing::info!(slug = %file.spec.slug, version, "portal rule version activated");
        activated.push(ActivatedRule {
            id,
            slug: file.spec.slug.clone(),
            version,
        });
    }
    tx.commit().await?;
    Ok(activated)
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

/// Whether a failed database call may succeed if simply tried again: the connection was lost or
/// could not be had (I/O, pool timeout, pool closed), or Postgres refused the statement for a
/// passing reason. The SQLSTATEs are PostgreSQL's (Appendix A, "PostgreSQL Error Codes",
/// <https://www.postgresql.org/docs/current/errcodes-appendix.html>): class 08 connection
/// exceptions, 40001 `serialization_failure`, 40P01 `deadlock_detected`, 53300
/// `too_many_connections`, 57P01 `admin_shutdown`, 57P02 `crash_shutdown`, 57P03
/// `cannot_connect_now`. Everything else (a constraint, a missing row or column, a decode error)
/// fails the same way on every try.
///
/// The one place that decides whether a database error is retried.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(d) => d.code().as_deref().is_some_and(transient_sqlstate),
        _ => false,
    }
}

fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03"
        )
}

/// The columns a [`PortalRule`] is read from, in `portal_schemas`.
pub const PORTAL_COLUMNS: &str = "id, slug, version, name, kind, width, height, dpi, format, min_kb, \
                              max_kb, filename_pattern, background, text_check, face";

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

/// An active portal rule with the public source its values were checked against.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SourcedPortalRule {
    #[sqlx(flatten)]
    pub rule: PortalRule,
    pub source_url: Option<String>,
    pub source_checked_on: Option<NaiveDate>,
    /// Which values the portal states (the rest are ours); `None` on rows loaded before
    /// provenance was recorded.
    pub source_portal_values: Option<Vec<String>>,
}

/// All active portal rules with their sources, by slug.
pub async fn active_portals_with_sources(pool: &PgPool) -> Result<Vec<SourcedPortalRule>> {
    Ok(
        sqlx::query_as::<_, SourcedPortalRule>(sqlx::AssertSqlSafe(format!(
            "SELECT {PORTAL_COLUMNS}, source_url, source_checked_on, source_portal_values \
             FROM portal_schemas WHERE active ORDER BY slug"
        )))
        .fetch_all(pool)
        .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database error with a given SQLSTATE, as the driver would report it.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Coded {}

    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            "test"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn db(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Coded(code)))
    }

    #[test]
    fn lost_connections_and_passing_refusals_are_transient() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(is_transient(&sqlx::Error::Io(io)));
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(is_transient(&sqlx::Error::PoolClosed));
        for code in [
            "40001", "40P01", "57P01", "57P02", "57P03", "08000", "08003", "08006", "08P01",
            "53300",
        ] {
            assert!(is_transient(&db(code)), "{code}");
        }
    }

    #[test]
    fn errors_that_repeat_on_every_try_are_not() {
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        assert!(!is_transient(&sqlx::Error::ColumnNotFound("x".into())));
        assert!(!is_transient(&sqlx::Error::Protocol("bad".into())));
        // unique violation, undefined column, undefined table, insufficient privilege,
        // disk full (53100: the class is 53 but only too-many-connections passes by itself).
        for code in ["23505", "42703", "42P01", "42501", "53100", "57014"] {
            assert!(!is_transient(&db(code)), "{code}");
        }
    }
}
