//! `rythmiq ocr IMAGE [--json]`: the OCR engine alone on one image.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use rythmiq_ocr::{EngineConfig, OcrEngine, OcrOptions};
use rythmiq_pipeline::decode::{self, DecodeLimits};
use rythmiq_shared::config::{CliLogArgs, ModelsDirArgs};

#[derive(Args)]
pub struct OcrArgs {
    /// The image to read.
    image: PathBuf,
    /// Print `{"text", "confidence", "rotation", "lines": [{"text", "confidence", "box"}],
    /// "unreadable": [{"confidence", "box"}]}`.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    models: ModelsDirArgs,
    /// Intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[command(flatten)]
    pub log: CliLogArgs,
}

pub fn run(args: OcrArgs) -> anyhow::Result<ExitCode> {
    let engine = OcrEngine::load(&EngineConfig {
        models_dir: super::serve::models_dir(&args.models)?,
        threads: args.threads,
    })?;
    let bytes =
        std::fs::read(&args.image).with_context(|| format!("reading {}", args.image.display()))?;
    // The same safe decoder the pipeline uses (limits, EXIF orientation, ICC to sRGB).
    let image = decode::decode(&bytes, &DecodeLimits::default())?.into_rgb8();
    let page = engine.recognize(&image, &OcrOptions::default())?;
    if args.json {
        println!("{}", rythmiq_ocr::to_json(&page));
    } else {
        println!("{}", page.text);
        // Lines found but not read are never dropped without a word.
        if !page.unreadable.is_empty() {
            eprintln!(
                "{} text line(s) could not be read (confidence below {}); --json lists them",
                page.unreadable.len(),
                OcrOptions::default().min_line_confidence
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
