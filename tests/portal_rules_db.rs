//! The rule files of `portal-rules/` in the database: `rythmiq migrate` loads them into
//! `portal_schemas` as new versions only when they change, and jobs keep the version they were
//! created with.

mod common;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use common::{TestApp, fast_worker_settings, fresh_database, photo_jpeg};
use rythmiq_shared::db;
use rythmiq_shared::portals::{self, RuleFile};
use sqlx::PgPool;
use uuid::Uuid;

/// Every row of `portal_schemas`: (slug, version, active, id), by slug and version.
async fn rows(pool: &PgPool) -> Result<Vec<(String, i32, bool, Uuid)>> {
    Ok(sqlx::query_as(
        "SELECT slug, version, active, id FROM portal_schemas ORDER BY slug, version",
    )
    .fetch_all(pool)
    .await?)
}

/// The active row of `slug`, as its file would state it.
async fn active(pool: &PgPool, slug: &str) -> Result<(i32, RuleFile)> {
    let sourced = db::active_portals_with_sources(pool)
        .await?
        .into_iter()
        .find(|s| s.rule.slug == slug)
        .with_context(|| format!("no active {slug}"))?;
    let file = RuleFile {
        spec: sourced.rule.spec,
        source: portals::Source {
            url: sourced.source_url.context("no source_url")?,
            checked: sourced.source_checked_on.context("no source_checked_on")?,
            also: Vec::new(),
            portal_values: sourced
                .source_portal_values
                .context("no source_portal_values")?,
        },
    };
    Ok((sourced.rule.version, file))
}

fn without_also(mut f: RuleFile) -> RuleFile {
    f.source.also.clear();
    f
}

#[tokio::test]
async fn the_files_are_the_seeded_rules_and_migrating_again_adds_no_version() -> Result<()> {
    let pool = db::connect(&fresh_database().await?, 4).await?;
    // The database was migrated once (files loaded) when the test cluster was set up. The files
    // hold the values the SQL migrations seeded, except the photo rules that since frame by the
    // face (`[face]`): a change of the rule, so those are at version 2 and version 1 stays, for
    // the jobs created under it.
    let reframed = [
        "jee-main-2026-photo",
        "neet-ug-2026-photo",
        "passport-india-photo",
    ];
    let before = rows(&pool).await?;
    let files = portals::files()?;
    assert_eq!(before.len(), files.len() + reframed.len(), "{before:?}");
    for file in files {
        let slug = file.spec.slug.clone();
        let version = if reframed.contains(&slug.as_str()) {
            2
        } else {
            1
        };
        assert_eq!(
            active(&pool, &slug).await?,
            (version, without_also(file.clone()))
        );
        let inactive = before.iter().filter(|(s, _, a, _)| *s == slug && !*a);
        assert_eq!(inactive.count(), version as usize - 1, "{slug}: {before:?}");
    }

    db::migrate(&pool).await?;
    db::migrate(&pool).await?;
    assert_eq!(rows(&pool).await?, before);
    Ok(())
}

#[tokio::test]
async fn a_changed_file_becomes_the_next_version_and_old_jobs_keep_theirs() -> Result<()> {
    let app = TestApp::spawn().await?;
    let slug = "ibps-2026-photo";
    let photo = photo_jpeg(900, 1200, 21);
    // Created under version 1 (200 x 230), not yet processed.
    let old_job = app.submit_ok(photo.clone(), slug).await?;

    // The rule file changes: a new pixel size, checked on a later day.
    let mut files = portals::files()?;
    let changed = files
        .iter_mut()
        .find(|f| f.spec.slug == slug)
        .context("no such file")?;
    changed.spec.width = 240;
    changed.spec.height = 276;
    changed.source.checked = NaiveDate::from_ymd_opt(2026, 12, 5).context("date")?;
    let changed = without_also(changed.clone());
    let activated = db::load_portal_rules(&app.pool, &files).await?;
    assert_eq!(
        activated
            .iter()
            .map(|a| (a.slug.as_str(), a.version))
            .collect::<Vec<_>>(),
        [(slug, 2)]
    );
    let versions: Vec<(i32, bool)> = rows(&app.pool)
        .await?
        .into_iter()
        .filter(|r| r.0 == slug)
        .map(|(_, v, a, _)| (v, a))
        .collect();
    assert_eq!(versions, [(1, false), (2, true)]);
    assert_eq!(active(&app.pool, slug).await?, (2, changed));
    // The same files again change nothing.
    assert!(db::load_portal_rules(&app.pool, &files).await?.is_empty());

    // The API lists the new version and when it was checked.
    let listed: serde_json::Value = app.get_json("/v1/portal-schemas").await?;
    let entry = listed
        .as_array()
        .and_then(|a| a.iter().find(|p| p["slug"] == slug))
        .context("not listed")?;
    assert_eq!(
        (
            &entry["version"],
            &entry["width"],
            &entry["source_checked_on"]
        ),
        (
            &serde_json::json!(2),
            &serde_json::json!(240),
            &serde_json::json!("2026-12-05")
        )
    );

    // A job created now uses version 2; the one created before is processed under version 1.
    let new_job = app.submit_ok(photo, slug).await?;
    let (stop, worker) = app.start_worker(fast_worker_settings());
    for (id, version, size) in [(old_job, 1, (200, 230)), (new_job, 2, (240, 276))] {
        let job = app.wait_terminal(id, 120).await?;
        assert_eq!(job["status"], "completed", "{job}");
        assert_eq!(job["portal_version"], version, "{job}");
        assert_eq!(
            (&job["output"]["width"], &job["output"]["height"]),
            (&serde_json::json!(size.0), &serde_json::json!(size.1)),
            "{job}"
        );
    }
    stop.cancel();
    worker.await?;

    // Migrating brings back the compiled-in file's values, as version 3.
    db::migrate(&app.pool).await?;
    let (version, now) = active(&app.pool, slug).await?;
    let compiled = portals::files()?
        .into_iter()
        .find(|f| f.spec.slug == slug)
        .context("no such file")?;
    assert_eq!((version, now), (3, without_also(compiled)));
    Ok(())
}
