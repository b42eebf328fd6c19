//! `rythmiq process`: the worker's pipeline, locally, with no database or storage. Portal rules
//! are the ones compiled in from `portal-rules/`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use rythmiq_pipeline::ocr::OcrStage;
use rythmiq_pipeline::{self as pipeline, Processed, decode::DecodeLimits};
use rythmiq_shared::config::{CliLogArgs, OcrArgs};
use rythmiq_shared::domain::PortalRule;
use serde_json::{Value, json};

#[derive(Args)]
pub struct ProcessArgs {
    /// The photo, signature or scan to convert.
    #[arg(required_unless_present = "list_portals")]
    input: Option<PathBuf>,
    /// Portal rule slug.
    #[arg(long, required_unless_present = "list_portals")]
    portal: Option<String>,
    /// Where to write the output file.
    #[arg(long, required_unless_present = "list_portals")]
    out: Option<PathBuf>,
    /// Print one JSON object instead of a human summary.
    #[arg(long)]
    json: bool,
    /// List the portal slugs and exit.
    #[arg(long)]
    list_portals: bool,
    /// The OCR engine, with the worker's time limit.
    #[command(flatten)]
    ocr: OcrArgs,
    #[command(flatten)]
    pub log: CliLogArgs,
}

pub fn run(args: ProcessArgs) -> anyhow::Result<ExitCode> {
    if args.list_portals {
        list_portals()?;
        return Ok(ExitCode::SUCCESS);
    }
    let rules = rythmiq_shared::portals::builtin()?;
    let (Some(input), Some(slug), Some(out)) = (args.input, args.portal, args.out) else {
        anyhow::bail!("INPUT, --portal and --out are required");
    };
    let Some(rule) = rules.into_iter().find(|r| r.slug == slug) else {
        return Ok(report(
            args.json,
            &slug,
            Err((
                "PAYLOAD_INVALID",
                format!("unknown portal {slug:?}; `rythmiq process --list-portals` lists them"),
            )),
        ));
    };
    let bytes = std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
    let ocr = OcrStage::load(
        super::serve::models_dir(&args.ocr.models)?,
        0,
        args.ocr.timeout(),
    )
    .context("loading the OCR models")?;
    let outcome = pipeline::process_image(&bytes, &rule, &DecodeLimits::default(), Some(&ocr));
    let result = match outcome {
        Ok(p) => {
            std::fs::write(&out, &p.bytes).with_context(|| format!("writing {}", out.display()))?;
            // A document's text goes next to the output, as the worker stores it.
            if let Some(page) = p.ocr.as_ref().and_then(|r| r.page.as_ref()) {
                let mut name = out.clone().into_os_string();
                name.push(".ocr.json");
                std::fs::write(&name, rythmiq_ocr::to_json(page).to_string())
                    .with_context(|| format!("writing {}", PathBuf::from(&name).display()))?;
            }
            Ok((p, &rule))
        }
        Err(e) => Err((e.code().as_str(), e.to_string())),
    };
    Ok(report(args.json, &slug, result))
}

/// Prints every compiled-in rule: its values, then where they come from (the public page, the
/// day they were checked against it, and which values are the portal's and which ours).
pub fn list_portals() -> anyhow::Result<()> {
    for f in rythmiq_shared::portals::files()? {
        let r = &f.spec;
        println!(
            "{:<28} {:>4}x{:<4} {:>3} dpi {:<4} {}-{} KB  {}",
            r.slug,
            r.width,
            r.height,
            r.dpi,
            r.format.extension(),
            r.min_kb,
            r.max_kb,
            r.name
        );
        println!(
            "{:<28} source: {} (checked {})",
            "", f.source.url, f.source.checked
        );
        let list = |v: &[&str]| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        println!(
            "{:<28} the portal's: {}; ours: {}",
            "",
            list(&f.source.portal_values()),
            list(&f.source.our_values())
        );
    }
    Ok(())
}

fn report(
    as_json: bool,
    slug: &str,
    result: Result<(Processed, &PortalRule), (&str, String)>,
) -> ExitCode {
    let (value, code): (Value, ExitCode) = match &result {
        Ok((p, _)) => (
            json!({
                "status": "ok",
                "error_code": null,
                "message": null,
                "portal": slug,
                "path": p.path,
                "quality_score": p.quality.score,
                "quality": p.quality,
                "enhancement": p.enhancement,
                "output": {
                    "bytes": p.bytes.len(),
                    "width": p.width,
                    "height": p.height,
                    "dpi": p.dpi,
                    "format": p.format.extension(),
                },
                "capture": p.capture,
                "stages": p.stages,
                "ocr": p.ocr,
                "warnings": p.warnings,
            }),
            ExitCode::SUCCESS,
        ),
        Err((error_code, message)) => (
            json!({
                "status": "error",
                "error_code": error_code,
                "message": message,
                "portal": slug,
                "path": null,
                "quality_score": null,
                "output": null,
                "stages": [],
                "ocr": null,
                "warnings": [],
            }),
            ExitCode::from(2),
        ),
    };
    if as_json {
        println!("{value}");
    } else {
        match &result {
            Ok((p, rule)) => {
                println!(
                    "ok: {} {}x{} {} dpi, {} bytes (window {}-{} bytes), {} path, quality {:.2}",
                    rule.slug,
                    p.width,
                    p.height,
                    p.dpi,
                    p.bytes.len(),
                    rule.byte_window().0,
                    rule.byte_window().1,
                    p.path.as_str(),
                    p.quality.score
                );
                for w in &p.warnings {
                    println!("warning: {w}");
                }
            }
            Err((error_code, message)) => eprintln!("error {error_code}: {message}"),
        }
    }
    code
}
