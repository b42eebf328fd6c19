//! Row-level security as defence in depth: even SQL written by hand, through the API's database
//! role, reads and changes only the rows of the user its transaction names.

mod common;

use anyhow::Result;
use common::*;
use rythmiq_shared::db::{self, Role};
use sqlx::PgPool;
use uuid::Uuid;

/// Two users with a job each (and so a credit account each), submitted through the API.
async fn two_users(app: &TestApp) -> Result<(Uuid, Uuid, Uuid)> {
    let job_a = app
        .submit_ok(photo_jpeg(400, 500, 1), "neet-ug-2026-photo")
        .await?;
    let other = Uuid::new_v4();
    let resp = app
        .submit_as(
            &token_for(other),
            photo_jpeg(400, 500, 2),
            "neet-ug-2026-photo",
            None,
        )
        .await?;
    assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
    let body: serde_json::Value = resp.json().await?;
    let job_b: Uuid = body["job_id"].as_str().unwrap_or_default().parse()?;
    Ok((job_a, job_b, other))
}

fn is_permission_denied(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42501"))
}

/// What the API's role can see and do with hand-written SQL in a transaction scoped to `user`.
async fn assert_confined(api: &PgPool, user: Uuid, own_job: Uuid, other: Uuid) -> Result<()> {
    let mut tx = db::user_scope(api, user).await?;
    let visible: Vec<(Uuid, Uuid)> = sqlx::query_as("SELECT id, user_id FROM jobs")
        .fetch_all(&mut *tx)
        .await?;
    assert_eq!(visible, vec![(own_job, user)], "only the user's own job");
    let named: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE user_id = $1")
        .bind(other)
        .fetch_one(&mut *tx)
        .await?;
    assert_eq!(
        named, 0,
        "asking for the other user's rows by id finds nothing"
    );
    let credits: Vec<Uuid> = sqlx::query_scalar("SELECT user_id FROM user_credits")
        .fetch_all(&mut *tx)
        .await?;
    assert_eq!(credits, vec![user]);
    // Writes to another user's rows touch nothing.
    let changed = sqlx::query("UPDATE user_credits SET balance = 1000 WHERE user_id = $1")
        .bind(other)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    assert_eq!(changed, 0);
    let changed = sqlx::query("UPDATE jobs SET error_message = 'x' WHERE user_id <> $1")
        .bind(user)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    assert_eq!(changed, 0);
    tx.rollback().await?;

    // A job planted under another user's id is refused outright.
    let mut tx = db::user_scope(api, user).await?;
    let planted = sqlx::query(
        "INSERT INTO jobs (id, user_id, portal_schema_id, portal_schema_version, correlation_id,
                           request_fingerprint, task_id, input_key, input_bytes)
         SELECT $1, $2, id, version, 'c', 'f', $3, 'k', 1 FROM portal_schemas LIMIT 1",
    )
    .bind(Uuid::new_v4())
    .bind(other)
    .bind(Uuid::new_v4().to_string())
    .execute(&mut *tx)
    .await;
    assert!(
        planted.as_ref().is_err_and(is_permission_denied),
        "{planted:?}"
    );
    tx.rollback().await?;

    // The API role deletes nothing, even its own user's rows.
    let mut tx = db::user_scope(api, user).await?;
    let deleted = sqlx::query("DELETE FROM jobs").execute(&mut *tx).await;
    assert!(
        deleted.as_ref().is_err_and(is_permission_denied),
        "{deleted:?}"
    );
    tx.rollback().await?;

    // A transaction that names no user sees no user's rows.
    let mut conn = api.acquire().await?;
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&mut *conn)
        .await?;
    let credits: i64 = sqlx::query_scalar("SELECT count(*) FROM user_credits")
        .fetch_one(&mut *conn)
        .await?;
    assert_eq!((jobs, credits), (0, 0));
    Ok(())
}

#[tokio::test]
async fn hand_written_queries_through_the_api_role_see_only_their_users_rows() -> Result<()> {
    let app = TestApp::spawn().await?;
    let (job_a, job_b, other) = two_users(&app).await?;
    // The login (the tables' owner) sees both: the rows are there to be leaked.
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(all, 2);

    let api = db::connect_as(&app.db_url, 2, Role::Api).await?;
    assert_confined(&api, app.user, job_a, other).await?;
    assert_confined(&api, other, job_b, app.user).await?;

    // A verified signed link opens exactly its one job, whoever owns it, and nothing else.
    let mut tx = db::signed_link_scope(&api, job_b).await?;
    let visible: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM jobs")
        .fetch_all(&mut *tx)
        .await?;
    assert_eq!(visible, vec![job_b]);
    let credits: i64 = sqlx::query_scalar("SELECT count(*) FROM user_credits")
        .fetch_one(&mut *tx)
        .await?;
    assert_eq!(credits, 0);
    tx.rollback().await?;

    // The settings are transaction-local: the next transaction on the same connection is
    // back to seeing nothing.
    let api_one = db::connect_as(&app.db_url, 1, Role::Api).await?;
    let mut tx = db::user_scope(&api_one, app.user).await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&mut *tx)
        .await?;
    assert_eq!(n, 1);
    tx.commit().await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&api_one)
        .await?;
    assert_eq!(n, 0, "the user scope leaked into the pooled connection");

    // The workers' role processes every user's jobs.
    let worker = db::connect_as(&app.db_url, 1, Role::Worker).await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&worker)
        .await?;
    assert_eq!(n, 2);
    // …but may not rewrite the portal rules.
    let denied = sqlx::query("UPDATE portal_schemas SET max_kb = max_kb + 1")
        .execute(&worker)
        .await;
    assert!(
        denied.as_ref().is_err_and(is_permission_denied),
        "{denied:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_production_login_that_is_the_api_role_cannot_step_out_of_it() -> Result<()> {
    // In production the API logs in as a member of rythmiq_api, not as the owner: there is no
    // other role for `RESET ROLE` to return to.
    let app = TestApp::spawn().await?;
    let (job_a, _job_b, other) = two_users(&app).await?;
    let login = format!("api_login_{}", Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {login} LOGIN IN ROLE rythmiq_api"
    )))
    .execute(&app.pool)
    .await?;
    let url = app
        .db_url
        .replacen("postgres://rythmiq@", &format!("postgres://{login}@"), 1);
    assert_ne!(url, app.db_url);

    let api = db::connect_as(&url, 2, Role::Api).await?;
    assert_confined(&api, app.user, job_a, other).await?;
    let mut conn = api.acquire().await?;
    sqlx::query("RESET ROLE").execute(&mut *conn).await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&mut *conn)
        .await?;
    assert_eq!(n, 0, "the login itself is confined too");
    drop(conn);

    // A login without the role is refused when the pool opens, not at the first request.
    let stranger = format!("stranger_{}", Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {stranger} LOGIN")))
        .execute(&app.pool)
        .await?;
    let url = app
        .db_url
        .replacen("postgres://rythmiq@", &format!("postgres://{stranger}@"), 1);
    let refused = db::connect_as(&url, 1, Role::Worker).await;
    assert!(
        refused.is_err(),
        "a login outside rythmiq_worker opened a worker pool"
    );
    Ok(())
}
