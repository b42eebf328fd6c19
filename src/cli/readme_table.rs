//! The README's configuration table is a contract: every variable it lists is declared by some
//! subcommand (`env = "…"`), every variable a subcommand declares is listed, and the defaults
//! agree.
//!
//! The table states most defaults as a literal (`` `30` ``). A few are stated in words; this is
//! what clap declares for them:
//!
//! | README default | clap default |
//! |---|---|
//! | number of cores | the number of cores of the machine running the test |
//! | cores ÷ concurrency | `0` (which asks for cores ÷ concurrency) |
//! | `json` for `api`/`worker`/`migrate`, `text` otherwise | per subcommand |
//! | `info,sqlx=warn` (`warn` for one-shot commands) | per subcommand |
//! | anything else not starting with a literal (required …, none, AWS, unset …) | no default |
//!
//! The standard `OTEL_*` variables are read by the OpenTelemetry SDK, not declared with clap.

use std::collections::{BTreeMap, BTreeSet};

use clap::CommandFactory;

use super::Cli;

const README: &str = include_str!("../../README.md");

/// The long-running services, which log JSON by default.
const SERVICES: [&str; 3] = ["api", "worker", "migrate"];
/// Commands whose output is their result, which log only trouble by default.
const ONE_SHOT: [&str; 5] = ["token", "submit", "process", "check", "ocr"];

/// Variable → subcommand → its default (`None`: no default), as clap declares them.
fn declared() -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    let mut vars: BTreeMap<String, BTreeMap<String, Option<String>>> = BTreeMap::new();
    let cmd = Cli::command();
    for sub in cmd.get_subcommands() {
        for arg in sub.get_arguments() {
            let Some(env) = arg.get_env() else { continue };
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            vars.entry(env.to_string_lossy().into_owned())
                .or_default()
                .insert(
                    sub.get_name().to_owned(),
                    (!defaults.is_empty()).then(|| defaults.join(",")),
                );
        }
    }
    vars
}

/// The backquoted pieces of a table cell.
fn literals(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// `(variables, default cell)` of each row of the `## Configuration` table.
fn rows(readme: &str) -> Vec<(Vec<String>, String)> {
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap_or_default();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
            let names = literals(cells.first()?)
                .into_iter()
                .map(str::to_owned)
                .collect();
            Some((names, cells.get(1)?.trim().to_owned()))
        })
        .collect()
}

/// What clap should declare as `role`'s default for a variable whose README default is `cell`.
fn expected_default(role: &str, cell: &str) -> Option<String> {
    let words = match cell {
        "number of cores" => rythmiq_shared::config::available_cores().to_string(),
        "cores ÷ concurrency" => "0".to_owned(),
        "`json` for `api`/`worker`/`migrate`, `text` otherwise" => if SERVICES.contains(&role) {
            "json"
        } else {
            "text"
        }
        .to_owned(),
        "`info,sqlx=warn` (`warn` for one-shot commands)" => if ONE_SHOT.contains(&role) {
            "warn"
        } else {
            "info,sqlx=warn"
        }
        .to_owned(),
        _ if cell.starts_with('`') => return literals(cell).first().map(|l| (*l).to_owned()),
        _ => return None,
    };
    Some(words)
}

/// Every disagreement between `readme`'s table and the clap definitions.
fn mismatches(readme: &str) -> Vec<String> {
    let declared = declared();
    let mut problems = Vec::new();
    let mut listed = BTreeSet::new();
    for (names, cell) in rows(readme) {
        for name in names {
            listed.insert(name.clone());
            if name.starts_with("OTEL_") {
                continue; // read by the OpenTelemetry SDK itself
            }
            let Some(roles) = declared.get(&name) else {
                problems.push(format!(
                    "{name} is in the README but no subcommand reads it"
                ));
                continue;
            };
            for (role, default) in roles {
                let expected = expected_default(role, &cell);
                if *default != expected {
                    problems.push(format!(
                        "{name}: `rythmiq {role}` defaults to {default:?}, the README says \
                         {cell:?} ({expected:?})"
                    ));
                }
            }
        }
    }
    for (name, roles) in &declared {
        if !listed.contains(name) {
            let roles: Vec<&str> = roles.keys().map(String::as_str).collect();
            problems.push(format!(
                "{name} (read by {}) is missing from the README's configuration table",
                roles.join(", ")
            ));
        }
    }
    problems
}

#[test]
fn readme_configuration_table_matches_the_clap_definitions() {
    assert!(rows(README).len() > 30, "the table was not found");
    let problems = mismatches(README);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_missing_row_or_a_changed_default_is_caught() {
    let without_row: String = README
        .lines()
        .filter(|l| !l.starts_with("| `RYTHMIQ_HEARTBEAT_SECS`"))
        .map(|l| format!("{l}\n"))
        .collect();
    let problems = mismatches(&without_row);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("RYTHMIQ_HEARTBEAT_SECS") && p.contains("missing")),
        "{problems:?}"
    );

    let changed = README.replace(
        "| `RYTHMIQ_ORPHAN_TIMEOUT_SECS` | `20` |",
        "| `RYTHMIQ_ORPHAN_TIMEOUT_SECS` | `25` |",
    );
    assert_ne!(changed, README);
    let problems = mismatches(&changed);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("RYTHMIQ_ORPHAN_TIMEOUT_SECS: `rythmiq worker` defaults")),
        "{problems:?}"
    );

    let unknown = README.replace(
        "| `RYTHMIQ_RETENTION_DAYS` |",
        "| `RYTHMIQ_RETENTION_DAYZ` |",
    );
    assert!(
        mismatches(&unknown)
            .iter()
            .any(|p| p.starts_with("RYTHMIQ_RETENTION_DAYZ is in the README")),
    );
}
