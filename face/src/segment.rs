//! Person segmentation: which pixels of a portrait belong to the person (hair and shoulders
//! included), as a soft mask, so that a photo rule's background can be replaced.
//!
//! The model is MediaPipe's selfie segmenter (the general, square model: a MobileNetV3-style
//! encoder-decoder, 256×256 input; model card: <https://storage.googleapis.com/mediapipe-assets/Model%20Card%20MediaPipe%20Selfie%20Segmentation.pdf>),
//! Apache-2.0, as the npm package `@mediapipe/selfie_segmentation` ships it (TFLite).
//! `scripts/fetch-models.sh` converts it to ONNX with `scripts/selfie-tflite-to-onnx.py` and
//! verifies the result's sha256, so rten runs it like the other models.

use std::path::Path;
use std::sync::Arc;

use image::{ImageBuffer, Luma, RgbImage};
use rten::{Model, NodeId, RunOptions, ThreadPool};
use rten_tensor::NdTensor;
use rten_tensor::prelude::*;

use fast_image_resize::{FilterType, ResizeAlg};

use crate::FaceError;
use rythmiq_ocr::resampled;

/// The converted model's file name inside the models directory.
pub const SEGMENT_MODEL: &str = "selfie_segmentation.onnx";

/// The model's fixed input side, pixels.
pub const SEGMENT_SIDE: u32 = 256;

/// A person mask: for each pixel of a [`SEGMENT_SIDE`]-square grid stretched over the whole
/// image, the probability (0–1) that it shows the person.
pub type PersonMask = ImageBuffer<Luma<f32>, Vec<f32>>;

/// The loaded segmenter. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Segmenter {
    model: Arc<Model>,
    input: NodeId,
    output: NodeId,
    pool: Option<Arc<ThreadPool>>,
}

impl std::fmt::Debug for Segmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segmenter").finish_non_exhaustive()
    }
}

impl Segmenter {
    /// Loads [`SEGMENT_MODEL`] from `dir` and runs it once on a grey image, so that a file that
    /// parses but is not the expected model fails here.
    pub fn load(dir: &Path) -> Result<Self, FaceError> {
        let path = dir.join(SEGMENT_MODEL);
        if !path.is_file() {
            return Err(FaceError::ModelMissing { path });
        }
        let corrupt = |reason: String| FaceError::ModelCorrupt {
            path: path.clone(),
            reason,
        };
        let model = rythmiq_ocr::model_options()
            .load_file(&path)
            .map_err(|e| corrupt(e.to_string()))?;
        let input = model.node_id("input").map_err(|e| corrupt(e.to_string()))?;
        let output = model.node_id("mask").map_err(|e| corrupt(e.to_string()))?;
        let seg = Self {
            model: Arc::new(model),
            input,
            output,
            pool: None,
        };
        let mask = seg.person_mask(&RgbImage::from_pixel(8, 8, image::Rgb([128; 3])))?;
        if mask.dimensions() != (SEGMENT_SIDE, SEGMENT_SIDE) {
            return Err(corrupt(format!(
                "unexpected mask size {:?}",
                mask.dimensions()
            )));
        }
        Ok(seg)
    }

    /// The same model, run on `pool` (see [`crate::Detector::with_pool`]).
    pub fn with_pool(&self, pool: Arc<ThreadPool>) -> Self {
        Self {
            pool: Some(pool),
            ..self.clone()
        }
    }

    /// The person mask of `img`, at the model's resolution: the caller scales it back to the
    /// image (the whole image is stretched to the square input, as MediaPipe does).
    pub fn person_mask(&self, img: &RgbImage) -> Result<PersonMask, FaceError> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(FaceError::InvalidImage("the image has no pixels".into()));
        }
        let side = SEGMENT_SIDE as usize;
        // A bilinear convolution over every source pixel keeps thin hair visible to the model.
        let small = resampled(
            img,
            SEGMENT_SIDE,
            SEGMENT_SIDE,
            ResizeAlg::Convolution(FilterType::Bilinear),
        );
        let plane = side * side;
        let mut data = vec![0f32; 3 * plane];
        // The model takes RGB scaled to [0, 1].
        for (i, px) in small.pixels().enumerate() {
            for c in 0..3 {
                data[c * plane + i] = f32::from(px[c]) / 255.0;
            }
        }
        let input = NdTensor::from_data([1, 3, side, side], data);
        let opts = self
            .pool
            .as_ref()
            .map(|p| RunOptions::default().with_thread_pool(Some(p.clone())));
        let out = self
            .model
            .run(vec![(self.input, input.into())], &[self.output], opts)
            .map_err(|e| FaceError::Inference(e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| FaceError::Inference("the model returned no output".into()))?;
        let out: NdTensor<f32, 4> = out
            .try_into()
            .map_err(|e: rten::TryFromValueError| FaceError::Inference(e.to_string()))?;
        if out.shape() != [1, 1, side, side] {
            return Err(FaceError::Inference(format!(
                "unexpected mask shape {:?}",
                out.shape()
            )));
        }
        let values: Vec<f32> = out.iter().copied().collect();
        PersonMask::from_raw(SEGMENT_SIDE, SEGMENT_SIDE, values)
            .ok_or_else(|| FaceError::Inference("mask of the wrong length".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
    }

    fn mean(mask: &PersonMask, x0: u32, y0: u32, x1: u32, y1: u32) -> f32 {
        let (mut sum, mut n) = (0.0, 0.0);
        for y in y0..y1 {
            for x in x0..x1 {
                sum += mask.get_pixel(x, y)[0];
                n += 1.0;
            }
        }
        sum / n
    }

    #[test]
    fn the_astronaut_is_a_person_and_the_sky_behind_her_is_not() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../pipeline/tests/fixtures/photos/astronaut.jpg");
        let img = image::open(&p).expect("fixture").into_rgb8();
        let seg = Segmenter::load(&models()).expect("run scripts/fetch-models.sh first");
        let mask = seg.person_mask(&img).expect("segment");
        // Checked by hand on the 512×512 photo, halved: her face spans x 95–145, y 25–75;
        // her chest, below, x 60–200, y 150–200; the dark wall top right and the ceiling
        // top left are backdrop.
        let (face, chest) = (
            mean(&mask, 105, 30, 135, 65),
            mean(&mask, 60, 150, 200, 200),
        );
        let (right, left) = (mean(&mask, 200, 0, 256, 60), mean(&mask, 0, 0, 50, 60));
        assert!(face > 0.95 && chest > 0.9, "face {face}, chest {chest}");
        assert!(right < 0.05 && left < 0.05, "backdrop {left}, {right}");
    }

    #[test]
    fn a_wrong_file_is_reported_as_corrupt() {
        let dir = std::env::temp_dir().join("rythmiq-segment-bad-model");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(SEGMENT_MODEL), b"not a model").expect("write");
        let err = Segmenter::load(&dir).expect_err("must fail");
        assert!(matches!(err, FaceError::ModelCorrupt { .. }), "{err}");
        let err = Segmenter::load(&dir.join("nowhere")).expect_err("must fail");
        assert!(err.to_string().contains("fetch-models.sh"), "{err}");
    }
}
