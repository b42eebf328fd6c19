//! `rythmiq check FILE --portal SLUG [--json]`: a student's own file held against a portal rule,
//! nothing changed, one line per requirement. Exit code 0 when compliant, 1 when not, 2 when the
//! file cannot be read (or the portal is unknown).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rythmiq_pipeline::check::{self, Report};
use rythmiq_pipeline::ocr::OcrStage;
use rythmiq_shared::config::{CliLogArgs, OcrArgs};
use serde_json::json;

#[derive(Args)]
pub struct CheckArgs {
    /// The file to check, exactly as it would be uploaded.
    #[arg(required_unless_present = "list_portals")]
    file: Option<PathBuf>,
    /// Portal rule slug.
    #[arg(long, required_unless_present = "list_portals")]
    portal: Option<String>,
    /// Print the report as one JSON object:
    /// `{"portal", "compliant", "checks": [{"rule", "passed", "expected", "found", "message"}]}`.
    #[arg(long)]
    json: bool,
    /// List the portal slugs, with where each rule's values come from, and exit.
    #[arg(long)]
    list_portals: bool,
    /// The OCR engine, for the lines that read text (declarations, signatures in capitals).
    #[command(flatten)]
    ocr: OcrArgs,
    #[command(flatten)]
    pub log: CliLogArgs,
}

/// Exit code of a file that cannot be checked at all.
const UNREADABLE: u8 = 2;

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    if args.list_portals {
        super::process::list_portals()?;
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(path), Some(slug)) = (args.file, args.portal) else {
        anyhow::bail!("FILE and --portal are required");
    };
    let cannot = |message: String| {
        if args.json {
            println!("{}", json!({"portal": slug, "error": message}));
        } else {
            eprintln!("cannot check: {message}");
        }
        ExitCode::from(UNREADABLE)
    };
    let Some(rule) = rythmiq_shared::portals::find(&slug)? else {
        return Ok(cannot(format!(
            "unknown portal {slug:?}; `rythmiq check --list-portals` lists them"
        )));
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => return Ok(cannot(format!("reading {}: {e}", path.display()))),
    };
    // The models load only for rules with lines that read text or find the face: the rest
    // need none.
    let ocr = if check::needs_models(&rule) {
        Some(OcrStage::load(
            super::serve::models_dir(&args.ocr.models)?,
            0,
            args.ocr.timeout(),
        )?)
    } else {
        None
    };
    let name = path.file_name().and_then(|n| n.to_str());
    match check::check(&bytes, name, &rule, ocr.as_ref()) {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", human(&report, &rule.name));
            }
            Ok(if report.compliant {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(e) => Ok(cannot(e.to_string())),
    }
}

/// The report as a student reads it: a verdict, then one line per requirement.
fn human(report: &Report, rule_name: &str) -> String {
    let verdict = if report.compliant {
        "the portal should accept this file"
    } else {
        "the portal will likely refuse this file"
    };
    let mut out = format!("{rule_name} ({}): {verdict}\n", report.portal);
    for line in &report.checks {
        let mark = match line.passed {
            Some(true) => "ok  ",
            Some(false) => "FAIL",
            None => "--  ",
        };
        out.push_str(&format!("  {mark} {:<12} {}\n", line.rule, line.message));
    }
    out
}
