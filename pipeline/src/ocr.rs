//! PRE-OCR and OCR, and the OCR rollback.
//!
//! OCR is never skipped (an invariant of the product), but it is sized to the document kind:
//! - PRE-OCR reads the unenhanced image with the engine's cheap preset (small detection side,
//!   recognition only where text is found): the baseline confidence, and for photos and
//!   signatures on the fast path the whole of their OCR.
//! - OCR on the standard path reads the enhanced image with the same preset; if its confidence
//!   is lower than the baseline, ENHANCE made the text worse and the pipeline **rolls back** to
//!   the unenhanced image (logged as "OCR rollback triggered"). Comparing like with
//!   like (same preset) keeps the decision about the image, not the settings.
//! - Documents then get a full read (orientation search, line classification, full detection
//!   size) of the image that is kept; its text is stored next to the output, never logged.
//!   Their cheap reads recognise only a sample of the page's widest lines
//!   ([`DOCUMENT_SAMPLE_LINES`]): enough to compare the two versions, where a cheap read of every
//!   line cost as much as the full read. A document on the fast path has no cheap read at all:
//!   nothing is undone on that path, so its full read, of the unenhanced image, is the baseline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;
use rythmiq_domain::DocumentKind;
use rythmiq_ocr::{OcrEngine, OcrOptions, PageText};
use serde::Serialize;

use crate::Error;

/// The short side a small signature is enlarged to for detection ([`OcrStage::signature`]).
pub const SIGNATURE_DET_MIN_SIDE: u32 = 320;

/// How many lines (the widest) a document's cheap reads recognise.
pub const DOCUMENT_SAMPLE_LINES: usize = 4;

/// The cheap preset for `kind`: documents read a sample of their lines.
fn cheap(kind: DocumentKind) -> OcrOptions {
    match kind {
        DocumentKind::Document => OcrOptions::cheap().with_max_lines(DOCUMENT_SAMPLE_LINES),
        DocumentKind::Photo | DocumentKind::Signature => OcrOptions::cheap(),
    }
}

/// The engine a worker process loads once and shares across its jobs, with the per-job limit.
#[derive(Clone)]
pub struct OcrStage {
    pub engine: Arc<OcrEngine>,
    /// The face detector photo rules with a `[face]` table frame by; it runs on the engine's
    /// pool, so its CPU is the job's.
    pub face: rythmiq_face::Detector,
    /// The person segmenter photo rules with a white or light background replace the backdrop
    /// with ([`crate::background`]); on the engine's pool like the detector.
    pub segmenter: rythmiq_face::Segmenter,
    /// Longest OCR may take in one job, all passes together (`OCR_TIMEOUT`, retried).
    pub timeout: Duration,
}

impl std::fmt::Debug for OcrStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcrStage")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What OCR found, as reported in the job result and `rythmiq process --json`.
#[derive(Debug, Clone, Serialize)]
pub struct OcrReport {
    /// Mean line confidence of the kept image's read (0 when no text was found).
    pub confidence: f32,
    pub lines: usize,
    pub chars: usize,
    /// Text lines found but not read (below the engine's confidence floor): never dropped
    /// without trace.
    pub unreadable_lines: usize,
    /// The recogniser's confidence on each unreadable line, top to bottom.
    pub unreadable_confidences: Vec<f32>,
    /// ENHANCE was undone because it lowered OCR confidence.
    pub rolled_back: bool,
    /// Confidence of the cheap read of the unenhanced image.
    pub baseline_confidence: f32,
    /// The page itself (documents only); stored as JSON next to the output, never logged.
    #[serde(skip)]
    pub page: Option<PageText>,
}

impl OcrReport {
    fn from_page(page: &PageText, baseline: f32, rolled_back: bool) -> Self {
        Self {
            confidence: page.confidence,
            lines: page.lines.len(),
            chars: page.chars(),
            unreadable_lines: page.unreadable.len(),
            unreadable_confidences: page.unreadable.iter().map(|u| u.confidence).collect(),
            rolled_back,
            baseline_confidence: baseline,
            page: None,
        }
    }
}

/// The job's OCR time budget, shared by all its passes: each pass runs with the budget's
/// deadline, which the engine checks before every model run, so a pass that runs out stops
/// within one run (detection or a line) instead of finishing the page.
pub struct Budget {
    deadline: Instant,
}

impl Budget {
    pub fn new(limit: Duration) -> Self {
        Self {
            deadline: Instant::now() + limit,
        }
    }
}

impl OcrStage {
    /// Loads the models (OCR, face and segmenter) once for this process; a missing or corrupt
    /// model fails here, at start-up, naming the file.
    pub fn load(
        models_dir: std::path::PathBuf,
        threads: usize,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let face = rythmiq_face::Detector::load(&models_dir).map_err(Error::Face)?;
        let segmenter = rythmiq_face::Segmenter::load(&models_dir).map_err(Error::Face)?;
        let engine = OcrEngine::load(&rythmiq_ocr::EngineConfig {
            models_dir,
            threads,
        })
        .map_err(Error::Ocr)?;
        Ok(Self {
            face: face.with_pool(engine.thread_pool()),
            segmenter: segmenter.with_pool(engine.thread_pool()),
            engine: Arc::new(engine),
            timeout,
        })
    }

    /// The same models on a pool of as many threads, of their own: a worker gives one to each
    /// of its slots, so that each job's inference runs on threads only that job uses.
    pub fn with_own_pool(&self) -> Self {
        let engine = self.engine.with_threads(self.engine.threads());
        Self {
            face: self.face.with_pool(engine.thread_pool()),
            segmenter: self.segmenter.with_pool(engine.thread_pool()),
            engine: Arc::new(engine),
            timeout: self.timeout,
        }
    }

    fn read(&self, img: &RgbImage, opts: &OcrOptions, budget: &Budget) -> Result<PageText, Error> {
        let opts = opts.clone().with_deadline(budget.deadline);
        self.engine.recognize(img, &opts).map_err(|e| match e {
            rythmiq_ocr::OcrError::DeadlineExceeded => Error::OcrTimeout,
            e => Error::Ocr(e),
        })
    }

    /// PRE-OCR: the cheap read of the unenhanced image.
    pub fn baseline(
        &self,
        img: &RgbImage,
        kind: DocumentKind,
        budget: &Budget,
    ) -> Result<PageText, Error> {
        self.read(img, &cheap(kind), budget)
    }

    /// OCR on the enhanced image: whether to keep it (`true`) or roll back, and its cheap read.
    pub fn keeps_enhancement(
        &self,
        enhanced: &RgbImage,
        kind: DocumentKind,
        baseline: &PageText,
        budget: &Budget,
    ) -> Result<(bool, PageText), Error> {
        let page = self.read(enhanced, &cheap(kind), budget)?;
        Ok((page.confidence >= baseline.confidence, page))
    }

    /// The full read of a document page.
    pub fn document(&self, img: &RgbImage, budget: &Budget) -> Result<PageText, Error> {
        self.read(img, &OcrOptions::default(), budget)
    }

    /// The read of a signature as the pipeline made it: one line of writing on a small,
    /// upright picture (140 × 60 px for IBPS). The page preset's search for turned pages and
    /// lines is not needed, and its enlargement of a small image to a 736-px short side for
    /// detection is cut to [`SIGNATURE_DET_MIN_SIDE`]: 0.3–0.4 CPU-s for a 140 × 60 signature,
    /// where one line of large writing is found as well at 320 (detection's cost grows with the
    /// area; the recogniser reads the line from the picture itself either way).
    pub fn signature(&self, img: &RgbImage, budget: &Budget) -> Result<PageText, Error> {
        let opts = OcrOptions {
            det_min_side: SIGNATURE_DET_MIN_SIDE,
            det_refine_max_side: 0,
            detect_orientation: false,
            classify_lines: false,
            ..OcrOptions::default()
        };
        self.read(img, &opts, budget)
    }
}

/// The report for a read that is final (photos and signatures: the cheap read is their OCR).
pub fn report(page: &PageText, baseline: f32, rolled_back: bool) -> OcrReport {
    OcrReport::from_page(page, baseline, rolled_back)
}

/// The report for a document, carrying its page for storage.
pub fn document_report(page: PageText, baseline: f32, rolled_back: bool) -> OcrReport {
    let mut r = OcrReport::from_page(&page, baseline, rolled_back);
    r.page = Some(page);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use rythmiq_ocr::Line;

    fn stage(timeout: Duration) -> OcrStage {
        let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        match OcrStage::load(models, 1, timeout) {
            Ok(s) => s,
            Err(e) => panic!("OCR models unavailable ({e}); run scripts/setup.sh --test"),
        }
    }

    fn read_page(confidence: f32) -> PageText {
        PageText {
            text: "ROLL NO 4521873".into(),
            confidence,
            rotation: 0,
            lines: vec![Line {
                text: "ROLL NO 4521873".into(),
                confidence,
                bbox: [[0.0, 0.0]; 4],
            }],
            unreadable: Vec::new(),
        }
    }

    #[test]
    fn enhancement_that_loses_the_text_is_rolled_back() -> Result<(), Error> {
        let ocr = stage(Duration::from_secs(60));
        let budget = Budget::new(ocr.timeout);
        // ENHANCE washed the page out: nothing is read where the baseline read a line.
        let washed_out = RgbImage::from_pixel(400, 300, image::Rgb([255, 255, 255]));
        let (keep, page) = ocr.keeps_enhancement(
            &washed_out,
            DocumentKind::Document,
            &read_page(0.93),
            &budget,
        )?;
        assert!(!keep && page.confidence == 0.0);
        // Nothing read before or after: enhancement did no harm and is kept.
        let (keep, _) = ocr.keeps_enhancement(
            &washed_out,
            DocumentKind::Document,
            &read_page(0.0),
            &budget,
        )?;
        assert!(keep);
        Ok(())
    }

    #[test]
    fn running_out_of_ocr_time_is_ocr_timeout() {
        let ocr = stage(Duration::ZERO);
        let budget = Budget::new(ocr.timeout);
        let img = RgbImage::from_pixel(64, 64, image::Rgb([255, 255, 255]));
        let err = ocr.baseline(&img, DocumentKind::Photo, &budget).err();
        assert_eq!(
            err.map(|e| e.code()),
            Some(rythmiq_domain::ErrorCode::OcrTimeout)
        );
    }

    #[test]
    fn reports_count_lines_and_characters_and_keep_document_text_only() {
        let page = read_page(0.9);
        let r = report(&page, 0.8, true);
        assert_eq!((r.lines, r.chars, r.rolled_back), (1, 15, true));
        assert!(r.page.is_none());
        assert!(document_report(page, 0.8, false).page.is_some());
    }
}
