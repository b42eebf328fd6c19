//! Weights packed at load time (`rythmiq_ocr::model_options`, the convolution prepacking of
//! `ocr/vendor/rten/PATCHES.md`): the real models hold them, compute what the same models
//! packing as they go compute, and still run when the matrix kernel changed after loading
//! (their products then pack the weights again).
//!
//! One test function, because the kernel switch is process-wide. Needs the models
//! (`scripts/fetch-models.sh`) and fails, rather than skips, when they are missing.

mod support;

use rten::{Model, ModelOptions};
use rten_tensor::prelude::*;
use rten_tensor::{NdTensor, Tensor};
use support::{MODEL_INPUTS, models_dir, noise};

fn run(model: &Model, input: &NdTensor<f32, 4>, what: &str) -> Tensor<f32> {
    let out = model
        .run_one(input.view().into(), None)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    out.try_into()
        .unwrap_or_else(|e: rten::TryFromValueError| panic!("{what}: {e}"))
}

/// The largest difference between `a` and `b`, over the largest magnitude in `b`.
fn relative_diff(a: &Tensor<f32>, b: &Tensor<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b.iter())
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn prepacked_models_compute_the_same_on_any_kernel() {
    let dir = models_dir();
    for (file, shape) in MODEL_INPUTS {
        let path = dir.join(file);
        let missing =
            |e: rten::LoadError| panic!("{}: {e} (run scripts/fetch-models.sh)", path.display());
        // Loaded on the kernel the CPU runs by default (bf16 where it has it).
        rten_gemm::set_bf16_enabled(true);
        let packed = rythmiq_ocr::model_options()
            .load_file(&path)
            .unwrap_or_else(missing);
        let plain = ModelOptions::with_all_ops()
            .load_file(&path)
            .unwrap_or_else(missing);
        assert!(
            packed.prepacked_weights() > 0,
            "{file}: no weights were packed at load time"
        );
        assert_eq!(plain.prepacked_weights(), 0, "{file}");

        let input = NdTensor::from_data(shape, noise(shape.iter().product(), 3));
        // The same packed values whether packed at load or during the run.
        let diff = relative_diff(&run(&packed, &input, file), &run(&plain, &input, file));
        assert!(diff <= 1e-6, "{file}: prepacked outputs differ by {diff}");

        // Another kernel than the one that packed them: on a CPU with a bf16 kernel the f32
        // kernels cannot read the packed weights, so the products pack them again.
        rten_gemm::set_bf16_enabled(false);
        let diff = relative_diff(&run(&packed, &input, file), &run(&plain, &input, file));
        assert!(
            diff <= 1e-6,
            "{file}: after the kernel switch, outputs differ by {diff}"
        );
    }
}
