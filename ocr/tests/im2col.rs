//! Convolutions through the vendored GEMM's im2col packing (`ocr/vendor/rten-gemm`, see
//! `ocr/vendor/rten/PATCHES.md`) against a direct convolution. The packing copies a SIMD group
//! of patches as one run when its elements lie side by side in the image (stride 1, away from
//! the padding and from the end of an output row) and gathers the others element by element;
//! the images here are wide enough for both, with padding, without, and at stride 2.
//!
//! One test function, because the kernel switch is process-wide.

use rten_gemm::{
    ColOffsets, GemmExecutor, GemmInputA, GemmInputB, GemmOptions, Im2Col, RowOffsets,
};
use rten_tensor::prelude::*;
use rten_tensor::{NdTensor, NdTensorView};

/// An im2col matrix for a `kernel` × `kernel` convolution of `image` with `pad` pixels of zero
/// padding on every side at stride `stride`, laid out as rten's convolution lays it out
/// (`rten::ops::conv::im2col`): padded rows and columns past the real ones, offsets
/// premultiplied by the image's strides.
fn conv_im2col<'a>(
    image: NdTensorView<'a, f32, 3>,
    kernel: usize,
    pad: usize,
    stride: usize,
    gemm: &GemmExecutor<f32>,
) -> Im2Col<'a, f32> {
    let [chans, img_h, img_w] = image.shape();
    let [chan_stride, h_stride, w_stride] = image.strides().map(|s| s as i32);
    let (out_h, out_w) = out_size(img_h, img_w, kernel, pad, stride);
    let max_y_offset = (img_h as i32 - 1) * h_stride;
    let max_x_offset = (img_w as i32 - 1) * w_stride;

    let n_rows = chans * kernel * kernel;
    let mut row_offsets = RowOffsets {
        chan: Vec::new(),
        y: Vec::new(),
        x: Vec::new(),
    };
    for c in 0..chans as i32 {
        for ky in 0..kernel as i32 {
            for kx in 0..kernel as i32 {
                row_offsets.chan.push(c * chan_stride);
                row_offsets.y.push(ky * h_stride);
                row_offsets.x.push(kx * w_stride);
            }
        }
    }
    for _ in n_rows..n_rows.next_multiple_of(gemm.im2col_row_count_step()) {
        row_offsets.chan.push(0);
        row_offsets.y.push(max_y_offset + 1);
        row_offsets.x.push(max_x_offset + 1);
    }

    let n_cols = out_h * out_w;
    let mut col_offsets = ColOffsets {
        y: Vec::new(),
        x: Vec::new(),
    };
    for col in 0..n_cols.next_multiple_of(gemm.im2col_col_count_step()) {
        let (py, px) = ((col / out_w) as i32, (col % out_w) as i32);
        col_offsets
            .y
            .push((py * stride as i32 - pad as i32) * h_stride);
        col_offsets
            .x
            .push((px * stride as i32 - pad as i32) * w_stride);
    }

    Im2Col {
        image,
        row_offsets,
        col_offsets,
        n_cols,
        n_rows,
        max_y_offset,
        max_x_offset,
    }
}

fn out_size(h: usize, w: usize, kernel: usize, pad: usize, stride: usize) -> (usize, usize) {
    (
        (h + 2 * pad - kernel) / stride + 1,
        (w + 2 * pad - kernel) / stride + 1,
    )
}

/// The convolution, one output at a time.
fn direct_conv(
    image: &NdTensor<f32, 3>,
    weights: &NdTensor<f32, 2>,
    kernel: usize,
    pad: usize,
    stride: usize,
) -> Vec<f32> {
    let [chans, img_h, img_w] = image.shape();
    let (out_h, out_w) = out_size(img_h, img_w, kernel, pad, stride);
    let mut out = Vec::with_capacity(weights.size(0) * out_h * out_w);
    for o in 0..weights.size(0) {
        for oy in 0..out_h {
            for ox in 0..out_w {
                let mut acc = 0f64;
                for c in 0..chans {
                    for ky in 0..kernel {
                        for kx in 0..kernel {
                            let y = (oy * stride + ky).checked_sub(pad).filter(|&y| y < img_h);
                            let x = (ox * stride + kx).checked_sub(pad).filter(|&x| x < img_w);
                            if let (Some(y), Some(x)) = (y, x) {
                                acc += f64::from(weights[[o, (c * kernel + ky) * kernel + kx]])
                                    * f64::from(image[[c, y, x]]);
                            }
                        }
                    }
                }
                out.push(acc as f32);
            }
        }
    }
    out
}

/// Deterministic values in [-1, 1), none of them zero, so a misplaced or zeroed element shows.
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            ((state >> 8) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0 + 1e-3
        })
        .collect()
}

/// Every convolution through `GemmExecutor::default()` as it is now, against `direct_conv`,
/// each output within `tolerance` (relative to the sum of the absolute products' scale).
fn check_convolutions(tolerance: f32) {
    let (chans, img_h, img_w, kernel, out_chans) = (3, 9, 53, 3, 5);
    let image = NdTensor::from_data([chans, img_h, img_w], values(chans * img_h * img_w, 7));
    let weights = NdTensor::from_data(
        [out_chans, chans * kernel * kernel],
        values(out_chans * chans * kernel * kernel, 11),
    );
    let gemm = GemmExecutor::<f32>::default();
    for (pad, stride) in [(1, 1), (0, 1), (1, 2), (2, 1)] {
        let im2col = conv_im2col(image.view(), kernel, pad, stride, &gemm);
        let (out_h, out_w) = out_size(img_h, img_w, kernel, pad, stride);
        let mut out = vec![0f32; out_chans * out_h * out_w];
        gemm.gemm(
            &mut out,
            GemmInputA::Unpacked(weights.view()),
            GemmInputB::Im2Col(&im2col),
            GemmOptions::default(),
        )
        .expect("gemm");
        let expected = direct_conv(&image, &weights, kernel, pad, stride);
        for (i, (got, want)) in out.iter().zip(&expected).enumerate() {
            assert!(
                (got - want).abs() <= tolerance,
                "{} kernel, pad {pad}, stride {stride}: output {i} (channel {}, y {}, x {}) \
                 is {got}, want {want}",
                gemm.kernel_name(),
                i / (out_h * out_w),
                (i % (out_h * out_w)) / out_w,
                i % out_w,
            );
        }
    }
}

#[test]
fn im2col_convolutions_match_a_direct_convolution() {
    // The f32 kernels first: the products are exact to f32 rounding over 27 terms.
    rten_gemm::set_bf16_enabled(false);
    check_convolutions(1e-4);
    // Then whichever bf16 kernel the CPU has (the same packing, then rounded to bf16: inputs
    // in [-1, 1) lose up to 2^-9 of their value each, over 27 terms).
    rten_gemm::set_bf16_enabled(true);
    check_convolutions(0.08);
}
