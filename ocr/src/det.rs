//! Text detection: PP-OCR DB pre-processing and post-processing.

use image::RgbImage;
use rten_imageproc::{RetrievalMode, find_contours};
use rten_tensor::prelude::*;
use rten_tensor::{NdTensor, NdTensorView};

use crate::geom::{Quad, RotRect, min_area_rect, order_corners};

/// ImageNet statistics, applied by PP-OCR to the B, G, R channels in that
/// order (it reads images with OpenCV, so channel 0 is blue).
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// DB post-processing parameters (PP-OCRv5 defaults).
pub struct DbParams {
    /// Probability above which a pixel counts as text.
    pub thresh: f32,
    /// Minimum mean probability inside a box for it to be kept.
    pub box_thresh: f32,
    /// How far boxes are grown back out (DB shrinks text regions in training).
    pub unclip_ratio: f32,
}

impl Default for DbParams {
    fn default() -> Self {
        Self {
            thresh: 0.3,
            box_thresh: 0.6,
            unclip_ratio: 1.5,
        }
    }
}

/// Resizes so the longer side is at most `max_side` and both sides are
/// multiples of 32 (the detector downsamples 32×), then normalises into an
/// NCHW tensor. An image that fits is scaled *up* until its shorter side
/// reaches `min_side` (0: never), like PP-OCR's `limit_type='min'`: the
/// detector needs text several pixels high at 1/4 scale, and on a small scan
/// (384×191, 10-px lines) it otherwise drops a gently curved line whose box
/// mean falls under `box_thresh` and reads a faint one as a fragment. The
/// upscaled longer side stays within `2 * max_side`.
pub fn preprocess(img: &RgbImage, max_side: u32, min_side: u32) -> NdTensor<f32, 4> {
    let (w, h) = img.dimensions();
    let (long, short) = (w.max(h) as f32, w.min(h) as f32);
    let scale = if long > max_side as f32 {
        max_side as f32 / long
    } else if short < min_side as f32 {
        (min_side as f32 / short).min(2.0 * max_side as f32 / long)
    } else {
        1.0
    };
    let round32 = |v: f32| (((v / 32.0).round() as u32) * 32).max(32);
    let (rw, rh) = (round32(w as f32 * scale), round32(h as f32 * scale));
    let resized;
    let src = if (rw, rh) == (w, h) {
        img
    } else {
        resized = crate::rec::resized(img, rw, rh);
        &resized
    };
    let plane = (rw * rh) as usize;
    let mut data = vec![0f32; 3 * plane];
    // Precompute the 256 possible values per channel: cheaper than
    // normalising every pixel with a division.
    let lut: [[f32; 256]; 3] =
        std::array::from_fn(|c| std::array::from_fn(|v| (v as f32 / 255.0 - MEAN[c]) / STD[c]));
    for (i, px) in src.pixels().enumerate() {
        // Channel c of the tensor holds BGR[c].
        data[i] = lut[0][px[2] as usize];
        data[plane + i] = lut[1][px[1] as usize];
        data[2 * plane + i] = lut[2][px[0] as usize];
    }
    NdTensor::from_data([1, 3, rh as usize, rw as usize], data)
}

/// Turns the probability map into text boxes in the coordinates of the
/// original `orig_w`×`orig_h` image.
pub fn postprocess(
    prob: NdTensorView<f32, 2>,
    orig_w: u32,
    orig_h: u32,
    p: &DbParams,
) -> Vec<Quad> {
    let [ph, pw] = prob.shape();
    let prob = prob.to_contiguous();
    let pdata = prob.data();
    let mask = NdTensor::from_data(
        [ph, pw],
        pdata.iter().map(|&v| v > p.thresh).collect::<Vec<_>>(),
    );
    let contours = find_contours(mask.view(), RetrievalMode::External);
    let sx = orig_w as f32 / pw as f32;
    let sy = orig_h as f32 / ph as f32;
    let mut out = Vec::new();
    for contour in contours.iter().take(1000) {
        let pts: Vec<[f32; 2]> = contour
            .iter()
            .map(|pt| [pt.x as f32, pt.y as f32])
            .collect();
        let Some(rect) = min_area_rect(&pts) else {
            continue;
        };
        if rect.w.min(rect.h) < 3.0 {
            continue;
        }
        if box_score(pdata, pw, ph, &rect) < p.box_thresh {
            continue;
        }
        // Unclip: offset the polygon by area * ratio / perimeter (what
        // pyclipper does in PP-OCR); for a rectangle that grows each side by
        // that distance. DB predicts shrunk text regions, this undoes it.
        let d = rect.w * rect.h * p.unclip_ratio / (2.0 * (rect.w + rect.h));
        let grown = rect.grown(d);
        if grown.w.min(grown.h) < 5.0 {
            continue;
        }
        let corners = grown.corners().map(|c| {
            // Contour points are pixel indices; +0.5 moves to pixel centres
            // before scaling to the original image.
            [
                ((c[0] + 0.5) * sx).clamp(0.0, orig_w as f32),
                ((c[1] + 0.5) * sy).clamp(0.0, orig_h as f32),
            ]
        });
        out.push(order_corners(corners));
    }
    out
}

/// Mean probability inside the rotated rectangle (PP-OCR's "fast" score).
fn box_score(pdata: &[f32], pw: usize, ph: usize, rect: &RotRect) -> f32 {
    let cs = rect.corners();
    let fold = |f: fn(f32, f32) -> f32, init: f32, k: usize| cs.iter().map(|c| c[k]).fold(init, f);
    let xmin = fold(f32::min, f32::INFINITY, 0).floor().max(0.0) as usize;
    let xmax =
        (fold(f32::max, f32::NEG_INFINITY, 0).ceil().max(0.0) as usize).min(pw.saturating_sub(1));
    let ymin = fold(f32::min, f32::INFINITY, 1).floor().max(0.0) as usize;
    let ymax =
        (fold(f32::max, f32::NEG_INFINITY, 1).ceil().max(0.0) as usize).min(ph.saturating_sub(1));
    let (mut sum, mut n) = (0f32, 0usize);
    for y in ymin..=ymax {
        for x in xmin..=xmax {
            // Half a pixel of tolerance: the rectangle runs through the
            // centres of the contour's pixels, which belong to the box.
            if rect.contains(x as f32, y as f32, 0.5) {
                sum += pdata[y * pw + x];
                n += 1;
            }
        }
    }
    if n == 0 { 0.0 } else { sum / n as f32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_images_are_scaled_up_and_large_ones_down() {
        let shape = |w, h, min| preprocess(&RgbImage::new(w, h), 960, min).shape();
        // [N, C, H, W]. A 384×191 scan: short side to 736, long side within 2 × 960.
        assert_eq!(shape(384, 191, 736), [1, 3, 736, 1472]);
        assert_eq!(shape(384, 191, 0), [1, 3, 192, 384]);
        // A long strip stops at 1920.
        assert_eq!(shape(960, 100, 736), [1, 3, 192, 1920]);
        // Pages larger than the limit are only scaled down.
        assert_eq!(shape(1414, 2000, 736), [1, 3, 960, 672]);
    }
}
