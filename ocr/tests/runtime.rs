//! Guards for the patched rten (`ocr/vendor/rten`, see its `PATCHES.md`):
//! the vectorised depthwise convolution must compute what a plain loop
//! computes, and the added graph fusions must not change what the real
//! models output. The bf16 GEMM kernel has its own test (`tests/bf16.rs`).
//!
//! The model test needs the models (`scripts/fetch-models.sh`) and fails,
//! rather than skips, when they are missing.

mod support;

use rten::ModelOptions;
use rten::ops::{Padding, conv};
use rten_tensor::prelude::*;
use rten_tensor::{NdTensor, Tensor};
use support::{MODEL_INPUTS, models_dir, noise};

/// Depthwise convolution the obvious way.
fn reference_depthwise(
    input: &NdTensor<f32, 4>,
    kernel: &NdTensor<f32, 4>,
    bias: &[f32],
    pads: [usize; 4],
    strides: [usize; 2],
    dilations: [usize; 2],
) -> NdTensor<f32, 4> {
    let [n, c, h, w] = input.shape();
    let [_, _, kh, kw] = kernel.shape();
    let [pt, pl, pb, pr] = pads;
    let [dy, dx] = dilations;
    let oh = (h + pt + pb - (kh - 1) * dy - 1) / strides[0] + 1;
    let ow = (w + pl + pr - (kw - 1) * dx - 1) / strides[1] + 1;
    let mut out = NdTensor::zeros([n, c, oh, ow]);
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias[ch];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let y = (oy * strides[0] + ky * dy) as isize - pt as isize;
                            let x = (ox * strides[1] + kx * dx) as isize - pl as isize;
                            if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
                                acc += input[[b, ch, y as usize, x as usize]]
                                    * kernel[[ch, 0, ky, kx]];
                            }
                        }
                    }
                    out[[b, ch, oy, ox]] = acc;
                }
            }
        }
    }
    out
}

#[test]
fn depthwise_conv_matches_reference() {
    let pool = rten::BufferPool::new();
    // Widths that are not a multiple of any SIMD width, kernels 3 and 5 (the
    // PP-LCNet ones), with and without padding, unit and non-unit strides and
    // dilations, and heights that are and are not a multiple of the rows the
    // kernel computes together (4).
    // Padding order: top, left, bottom, right.
    let cases = [
        (3, [1, 1, 1, 1], [1, 1], [1, 1], 9, 37),
        (5, [2, 2, 2, 2], [1, 1], [1, 1], 9, 37),
        (5, [0, 0, 0, 0], [1, 1], [1, 1], 9, 37),
        (3, [1, 1, 1, 1], [2, 1], [1, 1], 9, 37),
        (3, [1, 1, 1, 1], [2, 2], [1, 1], 9, 37),
        (3, [0, 2, 1, 0], [1, 1], [1, 1], 9, 37),
        // Wide rows: many full vectors per tap, with uneven padding.
        (5, [2, 2, 2, 2], [1, 1], [1, 1], 9, 150),
        (3, [1, 0, 1, 3], [1, 1], [1, 1], 9, 211),
        // A row narrower than one vector and than the kernel.
        (5, [2, 2, 2, 2], [1, 1], [1, 1], 9, 3),
        // The recogniser's down-sampling shapes: a horizontal stride of 2
        // (and 3), odd and even padding, a vertical stride of 2 alone.
        (3, [1, 1, 1, 1], [1, 2], [1, 1], 12, 61),
        (5, [2, 2, 2, 2], [1, 2], [1, 1], 12, 64),
        (3, [1, 0, 1, 1], [1, 3], [1, 1], 12, 50),
        (5, [2, 2, 2, 2], [2, 1], [1, 1], 6, 45),
        // Dilated taps, with a stride.
        (3, [2, 2, 2, 2], [1, 1], [2, 2], 9, 40),
        (3, [2, 2, 2, 2], [2, 2], [2, 2], 9, 40),
        // Heights of 1 to 5 rows, and exactly 8.
        (5, [2, 2, 2, 2], [1, 1], [1, 1], 1, 33),
        (5, [2, 2, 2, 2], [1, 1], [1, 1], 2, 33),
        (5, [2, 2, 2, 2], [1, 1], [1, 1], 3, 33),
        (5, [2, 2, 2, 2], [1, 1], [1, 1], 4, 33),
        (5, [2, 2, 2, 2], [1, 1], [1, 1], 5, 16),
        (3, [1, 1, 1, 1], [1, 1], [1, 1], 8, 32),
    ];
    for (i, (k, pads, strides, dilations, h, w)) in cases.into_iter().enumerate() {
        let c = 6;
        let input = NdTensor::from_data([2, c, h, w], noise(2 * c * h * w, 1 + i as u64));
        let kernel = NdTensor::from_data([c, 1, k, k], noise(c * k * k, 100 + i as u64));
        let bias = noise(c, 200 + i as u64);
        let want = reference_depthwise(&input, &kernel, &bias, pads, strides, dilations);
        let bias_t = NdTensor::from_data([c], bias.clone());
        let got: Tensor<f32> = conv(
            &pool,
            input.as_dyn(),
            kernel.as_dyn(),
            Some(bias_t.view()),
            Padding::from(pads),
            c,
            &strides,
            &dilations,
        )
        .unwrap_or_else(|e| panic!("case {i}: {e}"));
        assert_eq!(got.shape(), want.shape().as_slice(), "case {i}");
        for (g, r) in got.iter().zip(want.iter()) {
            assert!((g - r).abs() < 1e-4, "case {i}: {g} vs {r}");
        }
    }
}

#[test]
fn graph_fusions_preserve_model_outputs() {
    // Both graphs on the f32 kernels: bf16 products (`tests/bf16.rs`) would round the fused
    // weights and the unfused activations differently.
    rten_gemm::set_bf16_enabled(false);
    let dir = models_dir();
    for (file, shape) in MODEL_INPUTS {
        let path = dir.join(file);
        let load = |optimize: bool| {
            ModelOptions::with_all_ops()
                .enable_optimization(optimize)
                .load_file(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-models.sh)", path.display()))
        };
        let (fused, plain) = (load(true), load(false));
        let input = NdTensor::from_data(shape, noise(shape.iter().product(), 7));
        let run = |model: &rten::Model| -> Tensor<f32> {
            let out = model
                .run_one(input.view().into(), None)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            out.try_into()
                .unwrap_or_else(|e: rten::TryFromValueError| panic!("{file}: {e}"))
        };
        let (a, b) = (run(&fused), run(&plain));
        assert_eq!(a.shape(), b.shape(), "{file}");
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(b.iter())
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff <= 1e-4 * scale, "{file}: outputs differ by {diff}");
    }
}
