//! Line classification (0°/180°) and recognition (CTC) pre/post-processing.

use image::RgbImage;
use rten_tensor::NdTensor;
use rten_tensor::prelude::*;

/// Recognition input height fixed by the PP-OCRv5 recogniser.
pub const REC_HEIGHT: u32 = 48;
/// Classifier input size (width × height) fixed by PP-LCNet textline_ori.
pub const CLS_W: u32 = 160;
/// See [`CLS_W`].
pub const CLS_H: u32 = 80;

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Builds the classifier batch: each crop resized (without keeping aspect,
/// as PaddleX's `ResizeImage` does) to 160×80 and ImageNet-normalised in
/// BGR channel order.
pub fn cls_batch(crops: &[&RgbImage]) -> NdTensor<f32, 4> {
    let (w, h) = (CLS_W as usize, CLS_H as usize);
    let plane = w * h;
    let mut data = vec![0f32; crops.len() * 3 * plane];
    for (n, crop) in crops.iter().enumerate() {
        let r = resized(crop, CLS_W, CLS_H);
        let base = n * 3 * plane;
        for (i, px) in r.pixels().enumerate() {
            for c in 0..3 {
                let v = px[2 - c] as f32 / 255.0;
                data[base + c * plane + i] = (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            }
        }
    }
    NdTensor::from_data([crops.len(), 3, h, w], data)
}

/// `crop` resampled to `w`×`h` with a triangle (bilinear) filter widened to the scale, as
/// `image`'s `Triangle` does, by `fast_image_resize`'s SIMD convolution: 4–5 % of a page's CPU
/// went into `image`'s scalar resize.
pub(crate) fn resized(crop: &RgbImage, w: u32, h: u32) -> RgbImage {
    use fast_image_resize::{FilterType, ResizeAlg};
    crate::resampled(crop, w, h, ResizeAlg::Convolution(FilterType::Bilinear))
}

/// Width a crop gets when scaled to the recogniser's height.
pub fn rec_width(crop: &RgbImage) -> u32 {
    let ratio = crop.width() as f32 / crop.height().max(1) as f32;
    ((REC_HEIGHT as f32 * ratio).ceil() as u32).max(8)
}

/// Horizontal scale applied to a line before recognition. The recogniser's
/// cost is proportional to the line's width and Latin letters scaled to
/// height 48 are wider than it needs: at 0.7 the benchmark's CER is the same
/// (0.0010 vs 0.0012) for 30 % less work; at 0.6 it starts to climb (0.0046),
/// at 0.55 it fails (0.0164; `load/ocr/README.md`).
pub const REC_SQUEEZE: f32 = 0.7;

/// Width a crop is given for the recogniser: [`rec_width`] × `squeeze`.
fn rec_input_width(crop: &RgbImage, squeeze: f32) -> u32 {
    ((rec_width(crop) as f32 * squeeze).ceil() as u32).max(8)
}

/// Builds one recognition batch: crops scaled to height 48 and to `squeeze` (normally
/// [`REC_SQUEEZE`]) of the width that keeps their aspect, normalised to [-1, 1], right-padded
/// with 0 (mid-grey, like PP-OCR) to the widest crop in the batch rounded up to a multiple of 8.
pub fn rec_batch(crops: &[&RgbImage], squeeze: f32) -> NdTensor<f32, 4> {
    let max_w = crops
        .iter()
        .map(|c| rec_input_width(c, squeeze))
        .max()
        .unwrap_or(8);
    let bw = max_w.div_ceil(8) * 8;
    let (bh, bwu) = (REC_HEIGHT as usize, bw as usize);
    let plane = bh * bwu;
    let mut data = vec![0f32; crops.len() * 3 * plane];
    for (n, crop) in crops.iter().enumerate() {
        let rw = rec_input_width(crop, squeeze).min(bw);
        let r = resized(crop, rw, REC_HEIGHT);
        let base = n * 3 * plane;
        for (x, y, px) in r.enumerate_pixels() {
            let i = y as usize * bwu + x as usize;
            for c in 0..3 {
                data[base + c * plane + i] = px[2 - c] as f32 / 127.5 - 1.0;
            }
        }
    }
    NdTensor::from_data([crops.len(), 3, bh, bwu], data)
}

/// The recogniser's character table: index 0 is the CTC blank, the last
/// entry is the space.
pub struct Dictionary {
    chars: Vec<String>,
}

impl Dictionary {
    /// Parses the dictionary file contents (one symbol per line).
    pub fn parse(text: &str) -> Self {
        let mut chars: Vec<String> = text
            .split('\n')
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect();
        // A trailing newline leaves one empty entry that is not a symbol.
        if chars.last().is_some_and(|l| l.is_empty()) {
            chars.pop();
        }
        Self { chars }
    }

    /// Number of classes, which must equal the recogniser's output width.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Keeps only the classes at `keep` (ascending indices), in that order.
    pub fn subset(&self, keep: &[usize]) -> Self {
        Self {
            chars: keep.iter().map(|&i| self.chars[i].clone()).collect(),
        }
    }

    /// Indices of the classes a Latin-script document can contain: the
    /// blank, Latin (with its extensions and combining marks), Greek and
    /// Cyrillic letters, punctuation, currency, letter-like and number
    /// forms, arrows, mathematical and technical symbols, box drawing,
    /// geometric shapes, dingbats (check marks), the ideographic space and
    /// the full-width ASCII look-alikes (both folded to ASCII when decoded)
    /// and the space. Dropped: CJK ideographs, kana, hangul, emoji.
    pub fn latin_classes(&self) -> Vec<usize> {
        let keep_char = |c: char| {
            matches!(c as u32,
                0x20..=0x7E
                | 0xA0..=0x52F
                | 0x1E00..=0x1EFF
                | 0x2000..=0x2BFF
                | 0x3000
                | 0xFF01..=0xFF5E)
        };
        self.chars
            .iter()
            .enumerate()
            .filter(|(i, s)| *i == 0 || (!s.is_empty() && s.chars().all(keep_char)))
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether the first entry is the blank and the last the space.
    pub fn well_formed(&self) -> bool {
        self.chars.len() > 2
            && self.chars.first().is_some_and(|c| c == "blank")
            && self.chars.last().is_some_and(|c| c == " ")
    }

    /// CTC greedy decoding of one `[T, C]` probability sequence: arg-max per
    /// step, merge repeats, drop blanks. Confidence is the mean probability of
    /// the emitted symbols.
    pub fn decode(&self, probs: rten_tensor::NdTensorView<f32, 2>) -> (String, f32) {
        let [_, classes] = probs.shape();
        let mut text = String::new();
        let (mut sum, mut n) = (0f32, 0usize);
        let mut prev = 0usize;
        // The model's output is contiguous, so this borrows it; scanning plain
        // slices (18,385 classes per step) is several times faster than
        // indexing the view element by element.
        let probs = probs.to_contiguous();
        for row in probs.data().chunks_exact(classes.max(1)) {
            let (best, best_p) = arg_max(row);
            if best != 0
                && best != prev
                && let Some(s) = self.chars.get(best)
            {
                text.push_str(s);
                sum += best_p;
                n += 1;
            }
            prev = best;
        }
        let conf = if n == 0 { 0.0 } else { sum / n as f32 };
        (fold_fullwidth(&text), conf)
    }
}

/// Index and value of the largest element (the first one on ties; index 0
/// for an empty or all-NaN row).
fn arg_max(row: &[f32]) -> (usize, f32) {
    // Sixteen independent running maxima (one per lane) let the compiler
    // vectorise the scan; a single running maximum is a serial dependency.
    const LANES: usize = 16;
    let mut best = [f32::NEG_INFINITY; LANES];
    let mut at = [0usize; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for (ci, chunk) in chunks.enumerate() {
        for j in 0..LANES {
            if chunk[j] > best[j] {
                best[j] = chunk[j];
                at[j] = ci * LANES + j;
            }
        }
    }
    let (mut best_i, mut best_p) = (0usize, f32::NEG_INFINITY);
    for (j, &p) in best.iter().enumerate() {
        if p > best_p || (p == best_p && p > f32::NEG_INFINITY && at[j] < best_i) {
            best_p = p;
            best_i = at[j];
        }
    }
    let offset = row.len() - tail.len();
    for (k, &p) in tail.iter().enumerate() {
        if p > best_p {
            best_p = p;
            best_i = offset + k;
        }
    }
    (best_i, best_p)
}

/// Maps full-width ASCII variants and the ideographic space (which the
/// Chinese-centric dictionary also contains) to plain ASCII: the documents
/// this engine reads are Latin-script, and the look-alikes would only count
/// as errors downstream.
fn fold_fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctc_merges_repeats_and_drops_blanks() {
        let d = Dictionary::parse("blank\na\nb\n \n");
        assert!(d.well_formed());
        // steps: a a blank a b space b
        let seq = [1usize, 1, 0, 1, 2, 3, 2];
        let mut data = vec![0.0f32; seq.len() * 4];
        for (t, &c) in seq.iter().enumerate() {
            data[t * 4 + c] = 0.9;
        }
        let probs = NdTensor::from_data([seq.len(), 4], data);
        let (text, conf) = d.decode(probs.view());
        assert_eq!(text, "aab b");
        assert!((conf - 0.9).abs() < 1e-6);
    }

    #[test]
    fn arg_max_takes_the_first_maximum() {
        // Lengths around the lane count, maxima in the lanes, the tail and
        // repeated across lanes.
        for len in [0usize, 1, 5, 16, 17, 40, 100] {
            let row: Vec<f32> = (0..len).map(|i| ((i * 7) % 11) as f32).collect();
            let want =
                row.iter()
                    .enumerate()
                    .fold((0usize, f32::NEG_INFINITY), |(bi, bp), (i, &p)| {
                        if p > bp { (i, p) } else { (bi, bp) }
                    });
            assert_eq!(arg_max(&row), want, "len {len}");
        }
    }

    #[test]
    fn latin_subset_keeps_blank_latin_and_space() {
        let d = Dictionary::parse("blank\n\u{3000}\n一\na\né\nЖ\n€\n✓\nＡ\n😀\n🇩🇪\n \n");
        let keep = d.latin_classes();
        assert_eq!(keep, [0, 1, 3, 4, 5, 6, 7, 8, 11]);
        let sub = d.subset(&keep);
        assert!(sub.well_formed() && sub.len() == 9);
        // steps: a, blank, Ａ (folded), ideographic space, €
        let seq = [2usize, 0, 7, 1, 5];
        let mut data = vec![0.0f32; seq.len() * sub.len()];
        for (t, &c) in seq.iter().enumerate() {
            data[t * sub.len() + c] = 1.0;
        }
        let (text, _) = sub.decode(NdTensor::from_data([seq.len(), sub.len()], data).view());
        assert_eq!(text, "aA €");
    }

    #[test]
    fn folds_fullwidth() {
        assert_eq!(fold_fullwidth("Ａ，１\u{3000}x"), "A,1 x");
    }
}
