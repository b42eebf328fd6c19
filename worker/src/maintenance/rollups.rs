//! The rollups refresh: the observability views' materialised rollups, brought up to date.

use sqlx::PgConnection;

/// Refreshes the rollups (`refresh_rollups()`, migration `…_observability.sql`).
pub async fn refresh(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT refresh_rollups()")
        .execute(conn)
        .await?;
    Ok(())
}
