//! Rythmiq's image pipeline, the CPU part of a job: decode → CAPTURE (documents: the page found,
//! flattened and evenly lit, see [`capture`]) → QUALITY → PRE-OCR → ENHANCE and OCR
//! with rollback (standard path only) → full OCR for documents → SCHEMA fit (with verification).
//! A document on the fast path skips PRE-OCR: its full read is its baseline (see [`ocr`]).
//! No I/O: the worker fetches the upload before and stores the result after.
//!
//! [`process_image`] is a plain blocking function shared by the worker (on the blocking pool, so
//! heartbeats and the claim loop never stall) and by `rythmiq process` (no database, no
//! storage). Each stage is a module; each is timed by wall clock and by the CPU clocks of every
//! thread the job runs on (see [`StageClock`]).

pub mod background;
pub mod capture;
pub mod check;
pub mod clean;
pub mod decode;
pub mod enhance;
mod error;
pub mod face;
pub mod fit;
pub mod ocr;
pub mod quality;

pub use error::Error;

use std::time::Instant;

use cpu_time::ThreadTime;
use rythmiq_domain::{DocumentKind, OutputFormat, PortalRule};
use serde::Serialize;

use decode::DecodeLimits;

/// Cost of one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageTiming {
    pub name: &'static str,
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
}

/// Times stages by wall clock and by CPU: inside a thread pool (a job runs in its OCR engine's
/// pool, which only it uses, see [`process_image`]), the CPU of every thread of that pool, so
/// inference on helper threads is charged too; elsewhere, the calling thread's.
#[derive(Debug, Default)]
pub struct StageClock {
    pub stages: Vec<StageTiming>,
}

/// The span a stage runs in: its log lines carry `stage`, and its trace span is a child of the
/// job's.
pub fn stage_span(name: &'static str) -> tracing::Span {
    tracing::info_span!("stage", otel.name = name, stage = name)
}

/// The "stage completed" log line; call inside the stage's span.
pub fn log_stage(t: &StageTiming) {
    tracing::info!(
        cpu_seconds = t.cpu_seconds,
        latency_ms = t.wall_seconds * 1000.0,
        "stage completed"
    );
}

impl StageClock {
    /// Runs `f` as stage `name` in its span, recording its CPU and wall time.
    pub fn stage<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let span = stage_span(name);
        let _entered = span.enter();
        let (cpu, wall) = (job_cpu(), Instant::now());
        let out = f();
        self.record(
            name,
            job_cpu().saturating_sub(cpu).as_secs_f64(),
            wall.elapsed().as_secs_f64(),
        );
        out
    }

    /// Records a stage measured elsewhere (e.g. on another thread); call inside its span.
    pub fn record(&mut self, name: &'static str, cpu_seconds: f64, wall_seconds: f64) {
        let timing = StageTiming {
            name,
            cpu_seconds,
            wall_seconds,
        };
        log_stage(&timing);
        self.stages.push(timing);
    }
}

/// CPU time so far of the threads this job runs on: every thread of the pool the caller is in
/// (read on each of them; the job owns the pool, and between stages its threads are idle), or
/// the calling thread alone outside a pool.
fn job_cpu() -> std::time::Duration {
    if rayon::current_thread_index().is_some() {
        rayon::broadcast(|_| ThreadTime::now().as_duration())
            .into_iter()
            .sum()
    } else {
        ThreadTime::now().as_duration()
    }
}

/// Which way through the pipeline a job went (the fast-path guard): a photo whose quality score
/// reaches [`quality::FAST_PATH_THRESHOLD`] skips ENHANCE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessingPath {
    Fast,
    Standard,
}

impl ProcessingPath {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessingPath::Fast => "fast",
            ProcessingPath::Standard => "standard",
        }
    }
}

/// The result of the CPU stages: a verified, compliant file.
#[derive(Debug, Clone, Serialize)]
pub struct Processed {
    #[serde(skip)]
    pub bytes: Vec<u8>,
    pub path: ProcessingPath,
    pub quality: quality::QualityReport,
    pub enhancement: Option<enhance::EnhanceReport>,
    pub width: u32,
    pub height: u32,
    pub dpi: u32,
    pub format: OutputFormat,
    pub warnings: Vec<String>,
    /// What CAPTURE did (documents only).
    pub capture: Option<capture::CaptureReport>,
    pub stages: Vec<StageTiming>,
    /// What OCR read; `None` only when the caller ran the image stages alone.
    pub ocr: Option<ocr::OcrReport>,
    /// Where the framing put the face, in the output's pixels (rules with a `[face]` table): a
    /// check of the output can measure it without running the detector again.
    #[serde(skip)]
    pub face: Option<rythmiq_face::Face>,
}

/// Decode, read and fit one upload to `rule`. Blocking: call from a blocking thread.
///
/// The worker and `rythmiq process` always pass the OCR stage (an invariant: OCR is
/// never skipped); `None` runs the image stages alone, for benchmarks and image-only tests.
///
/// With OCR, the whole job runs on the OCR engine's thread pool: inference then runs on the
/// job's own thread (inline, with one thread per pool), and every CPU second of the job, on
/// whichever of the pool's threads, is charged to its stages.
pub fn process_image(
    input: &[u8],
    rule: &PortalRule,
    limits: &DecodeLimits,
    ocr: Option<&ocr::OcrStage>,
) -> Result<Processed, Error> {
    match ocr {
        Some(o) => {
            // The pool's thread continues the caller's span, so the stages nest under the job.
            let span = tracing::Span::current();
            o.engine.install(|| {
                let models = FaceModels {
                    detector: &o.face,
                    segmenter: &o.segmenter,
                };
                span.in_scope(|| process_on_this_thread(input, rule, limits, ocr, Some(models)))
            })
        }
        None => process_on_this_thread(input, rule, limits, None, None),
    }
}

/// The models a photo rule with a `[face]` table is framed with ([`face`]) and, when it wants a
/// plain backdrop, has its background replaced with ([`background`]).
#[derive(Clone, Copy)]
pub struct FaceModels<'a> {
    pub detector: &'a rythmiq_face::Detector,
    pub segmenter: &'a rythmiq_face::Segmenter,
}

/// [`process_image`] without OCR but with the face models, so photo rules with a `[face]`
/// table are framed by the face and get their backdrop: the image bench's cost of the face path.
pub fn process_image_with_face(
    input: &[u8],
    rule: &PortalRule,
    limits: &DecodeLimits,
    models: FaceModels<'_>,
) -> Result<Processed, Error> {
    // On the detector's pool, so that a one-thread pool runs the inference inline.
    models
        .detector
        .install(|| process_on_this_thread(input, rule, limits, None, Some(models)))
}

/// [`process_image`] with OCR, then its output held against the rule as `rythmiq check` holds a
/// student's own file ([`check::check_placed`], the face where the framing put it): the report a
/// job carries. The check is timed as a stage of its own, "check", on the job's pool, so that
/// its CPU (a decode of the output, the face and text lines' inference) is the job's too. A
/// check that cannot run is logged and leaves no report; the output stands.
pub fn process_and_check(
    input: &[u8],
    rule: &PortalRule,
    limits: &DecodeLimits,
    ocr: &ocr::OcrStage,
    file_name: &str,
) -> Result<(Processed, Option<check::Report>), Error> {
    let mut processed = process_image(input, rule, limits, Some(ocr))?;
    let span = tracing::Span::current();
    let (report, stages) = ocr.engine.install(|| {
        span.in_scope(|| {
            let mut clock = StageClock::default();
            let report = clock.stage("check", || {
                check::check_placed(
                    &processed.bytes,
                    Some(file_name),
                    rule,
                    Some(ocr),
                    processed.face.as_ref(),
                )
            });
            (report, clock.stages)
        })
    });
    processed.stages.extend(stages);
    let report = report
        .inspect_err(|e| tracing::warn!(error = %e, "the output could not be checked"))
        .ok();
    Ok((processed, report))
}

fn process_on_this_thread(
    input: &[u8],
    rule: &PortalRule,
    limits: &DecodeLimits,
    ocr: Option<&ocr::OcrStage>,
    face_models: Option<FaceModels<'_>>,
) -> Result<Processed, Error> {
    let detector = face_models.map(|m| m.detector);
    let mut clock = StageClock::default();
    let wall = Instant::now();
    let (tw, th) = (rule.width.unsigned_abs(), rule.height.unsigned_abs());
    let (image, decode_warnings) = {
        // The decode time limit runs the decoder on a thread of its own, which reports its CPU.
        let span = stage_span("decode");
        let _entered = span.enter();
        // Large JPEGs decode at a DCT scale that still covers the target (and OCR's needs:
        // never below the target size).
        // A document may be a photo of a page that fills only part of the frame: decode enough
        // for the page, once flattened, to cover the target (a page at half the frame's width).
        // A rule that frames by the face crops to the head, not to the target's aspect: the
        // decode's short side covers 1.5 × the target's height, square, whichever way the photo
        // is turned, which gives a head half the short side (a portrait's) the pixels the output
        // needs; a smaller head is decoded again after FACE (see `finer_for_face`).
        let zoom = if rule.kind == DocumentKind::Document {
            2
        } else {
            1
        };
        let target = if rule.face.is_some() {
            let side = th.saturating_mul(3) / 2;
            decode::TargetSize {
                width: side,
                height: side,
            }
        } else {
            decode::TargetSize {
                width: tw.saturating_mul(zoom),
                height: th.saturating_mul(zoom),
            }
        };
        let decoded = decode::decode_for_target_timed(input, limits, target)?;
        clock.record(
            "decode",
            decoded.cpu.as_secs_f64(),
            wall.elapsed().as_secs_f64(),
        );
        (decoded.image, decoded.warnings)
    };
    let image = image.into_rgb8();
    let mut capture_warnings = Vec::new();
    let (image, capture_report) = if rule.kind == DocumentKind::Document {
        let (page, report) = clock.stage("capture", || {
            capture::capture(image, rule, &mut capture_warnings)
        });
        (page, Some(report))
    } else {
        (image, None)
    };
    let quality = clock.stage("quality", || quality::assess(&image, tw, th));
    // The engine with this job's OCR time budget.
    let ocr = ocr.map(|o| (o, ocr::Budget::new(o.timeout)));
    let document = rule.kind == DocumentKind::Document;
    // FACE: a rule that frames by the face fails here, before any OCR, when the photo has no
    // single face; the face found frames the photo just before the fit.
    let mut face_warnings = Vec::new();
    let found = match (&rule.face, detector) {
        (Some(spec), Some(d)) => {
            let dims = image.dimensions();
            let found = clock.stage("face", || face::main_face(d, &image))?;
            let finer = finer_for_face(input, limits, spec, (tw, th), &found, dims)?;
            Some((found, dims, finer))
        }
        (Some(_), None) => {
            face_warnings.push(
                "face framing was skipped (no face detector loaded): the photo was cropped \
                 around its subject"
                    .to_owned(),
            );
            None
        }
        (None, _) => None,
    };
    let (image, found) = match found {
        Some((f, dims, Some(finer))) => {
            clock.record("face_decode", finer.cpu.as_secs_f64(), 0.0);
            let image = finer.image.into_rgb8();
            let finer_dims = image.dimensions();
            (
                image,
                Some((face::rescale(&f, dims, finer_dims), finer_dims)),
            )
        }
        Some((f, dims, None)) => (image, Some((f, dims))),
        None => (image, None),
    };
    // A document on the fast path is kept as it is, and its full read below is its baseline.
    let baseline = match &ocr {
        Some((o, b)) if !(document && quality.fast_path()) => {
            Some(clock.stage("pre_ocr", || o.baseline(&image, rule.kind, b))?)
        }
        _ => None,
    };
    let base_conf = baseline.as_ref().map(|p| p.confidence);

    // `read` is the cheap read of the image that is kept, `rolled_back` whether ENHANCE was
    // undone for lowering OCR confidence.
    let (path, image, enhancement, read, rolled_back) = if quality.fast_path() {
        (ProcessingPath::Fast, image, None, baseline, false)
    } else {
        let (enhanced, report) = clock.stage("enhance", || {
            enhance::enhance(&reduce_toward(&image, tw, th), rule.kind, &quality)
        });
        match (&ocr, baseline) {
            (Some((o, b)), Some(base)) => {
                let (keep, page) = clock.stage("ocr", || {
                    o.keeps_enhancement(&enhanced, rule.kind, &base, b)
                })?;
                if keep {
                    (
                        ProcessingPath::Standard,
                        enhanced,
                        Some(report),
                        Some(page),
                        false,
                    )
                } else {
                    tracing::warn!(
                        ocr_confidence = page.confidence,
                        baseline_confidence = base.confidence,
                        "OCR rollback triggered"
                    );
                    (
                        ProcessingPath::Standard,
                        image,
                        Some(report),
                        Some(base),
                        true,
                    )
                }
            }
            _ => (
                ProcessingPath::Standard,
                enhanced,
                Some(report),
                None,
                false,
            ),
        }
    };
    let ocr_report = match (&ocr, read) {
        (Some((o, b)), _) if document => {
            let page = clock.stage("ocr", || o.document(&image, b))?;
            let base = base_conf.unwrap_or(page.confidence);
            Some(ocr::document_report(page, base, rolled_back))
        }
        (_, Some(page)) => Some(ocr::report(
            &page,
            base_conf.unwrap_or(page.confidence),
            rolled_back,
        )),
        _ => None,
    };
    if let Some(r) = &ocr_report {
        tracing::debug!(
            ocr_confidence = r.confidence,
            lines = r.lines,
            "OCR finished"
        );
    }
    let (image, placed) = match (&rule.face, found, detector) {
        (Some(spec), Some((f, dims)), Some(d)) => {
            // ENHANCE may have worked on a reduced copy: the face is moved to its scale.
            let f = face::rescale(&f, dims, image.dimensions());
            let framed = clock.stage("frame", || {
                face::frame_refined(d, &image, &f, spec, (tw, th), &mut face_warnings)
            })?;
            let canvas = framed.image.dimensions();
            (framed.image, Some((framed.face, canvas)))
        }
        _ => (image, None),
    };
    // BACKGROUND: a photo whose rule wants a plain white or light backdrop gets one: on the
    // framed picture, or, for a rule that does not frame by the face, around the one person it
    // shows (a photo of anything else keeps its own).
    let image = match face_models {
        Some(m) if background::applies(rule) => {
            let person = placed.is_some()
                || (rule.face.is_none()
                    && clock.stage("face", || face::shows_one_person(m.detector, &image))?);
            if person {
                clock.stage("background", || {
                    background::replace(m.segmenter, &image, rule, &mut face_warnings)
                })?
            } else {
                image
            }
        }
        _ => image,
    };
    let image = image::DynamicImage::ImageRgb8(image);
    let fitted = clock.stage("schema", || {
        // Ink on paper (signatures, thumbs, declarations) is cleaned and cropped to the writing
        // as part of fitting it, as a photo is cropped around its subject; OCR read it as sent.
        if rule.kind == DocumentKind::Signature {
            let cleaned = clean::clean_ink_for(&image.to_rgb8(), tw, th);
            fit::fit(&image::DynamicImage::ImageRgb8(cleaned), rule)
        } else {
            fit::fit(&image, rule)
        }
    })?;
    let quality_warning = quality.warning();
    Ok(Processed {
        bytes: fitted.bytes,
        path,
        quality,
        enhancement,
        width: fitted.width,
        height: fitted.height,
        dpi: fitted.dpi,
        format: fitted.format,
        // What decode and QUALITY noticed, then what the fit had to do.
        warnings: decode_warnings
            .into_iter()
            .chain(capture_warnings)
            .chain(quality_warning)
            .chain(face_warnings)
            .chain(fitted.warnings)
            .collect(),
        capture: capture_report,
        stages: clock.stages,
        ocr: ocr_report,
        // The fit scales the framed canvas, of the target's aspect, to the target.
        face: placed.map(|(f, canvas)| face::rescale(&f, canvas, (fitted.width, fitted.height))),
    })
}

/// The photo decoded again, finer, when the head `face` found in its `dims`-sized decode is
/// smaller than a `[face]` rule's output needs and the file holds more pixels (a JPEG decoded at
/// reduced scale): a distant selfie then loses no detail the file has. `None` when the decode
/// already covers the head.
fn finer_for_face(
    input: &[u8],
    limits: &DecodeLimits,
    spec: &rythmiq_domain::FaceSpec,
    (tw, th): (u32, u32),
    found: &rythmiq_face::Face,
    dims: (u32, u32),
) -> Result<Option<decode::Decoded>, Error> {
    // The head height the framing aims at (the middle of the band).
    let needed = (spec.head_height[0] + spec.head_height[1]) / 2.0 * f64::from(th);
    let head = f64::from(found.head_height()).max(1.0);
    if head * face::QUIET_ENLARGEMENT >= needed {
        return Ok(None);
    }
    // The header's size, before EXIF rotation: compared by the long side.
    let stored = image::ImageReader::new(std::io::Cursor::new(input))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok());
    let Some((sw, sh)) = stored else {
        return Ok(None);
    };
    if sw.max(sh) <= dims.0.max(dims.1) {
        return Ok(None);
    }
    // Enough for the head; the decoder never goes beyond the file's own size.
    let zoom = 2.0 * needed / head;
    let target = decode::TargetSize {
        width: (f64::from(tw) * zoom).ceil() as u32,
        height: (f64::from(th) * zoom).ceil() as u32,
    };
    Ok(Some(decode::decode_for_target_timed(
        input, limits, target,
    )?))
}

/// Shrinks `image` (area averaging) so that it still covers twice the target in both directions
/// after any aspect crop, and no more: ENHANCE then works on the pixels the output can show, not
/// on a 12 MP original. Smaller images are returned as they are.
fn reduce_toward(image: &image::RgbImage, target_w: u32, target_h: u32) -> image::RgbImage {
    let (w, h) = image.dimensions();
    let factor = (f64::from(w) / (2.0 * f64::from(target_w.max(1))))
        .min(f64::from(h) / (2.0 * f64::from(target_h.max(1))));
    if factor <= 1.5 {
        return image.clone();
    }
    let (nw, nh) = (
        (f64::from(w) / factor).ceil(),
        (f64::from(h) / factor).ceil(),
    );
    // Both are at most the original dimensions, so the casts cannot overflow.
    image::imageops::thumbnail(image, nw as u32, nh as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduction_keeps_twice_the_target_after_any_crop() {
        let big = image::RgbImage::new(4000, 3000);
        let small = reduce_toward(&big, 200, 230);
        let (w, h) = small.dimensions();
        assert!(w >= 400 && h >= 460, "{w}x{h}");
        assert!(h <= 470, "no more than needed: {w}x{h}");
        // Aspect ratio preserved (within a pixel of rounding).
        assert!((f64::from(w) / f64::from(h) - 4000.0 / 3000.0).abs() < 0.01);
        let tiny = image::RgbImage::new(300, 300);
        assert_eq!(reduce_toward(&tiny, 200, 230).dimensions(), (300, 300));
    }
}
