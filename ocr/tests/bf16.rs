//! The bf16 GEMM kernels (`ocr/vendor/rten-gemm`, see `ocr/vendor/rten/PATCHES.md`: AMX tiles,
//! AVX512-BF16 dot products) against the f32 kernels they replace, each where the CPU has it:
//! the same products to within bf16 rounding, and the same text from the real models on a
//! rendered page.
//!
//! One test function, because the kernel switch is process-wide. On a CPU with neither unit
//! there is nothing to compare; the test says so and checks that f32 GEMMs stay on the f32
//! kernels.

mod support;

use rten_gemm::{GemmExecutor, GemmInputA, GemmInputB, GemmOptions};
use rten_tensor::prelude::*;
use rten_tensor::{NdTensor, NdTensorView};
use rythmiq_ocr::{EngineConfig, OcrEngine, OcrOptions};
use support::{models_dir, noise, render};

/// `x` rounded to bf16 (nearest even) and back: a value the kernel's conversion keeps.
fn to_bf16(x: f32) -> f32 {
    let u = x.to_bits();
    f32::from_bits(u.wrapping_add(0x7fff + ((u >> 16) & 1)) & 0xffff_0000)
}

/// `alpha * A B + beta * C` on whichever kernel `GemmExecutor::default` picks now.
fn gemm(
    a: &NdTensor<f32, 2>,
    b: NdTensorView<f32, 2>,
    c: &[f32],
    alpha: f32,
    beta: f32,
) -> Vec<f32> {
    let mut out = c.to_vec();
    GemmExecutor::<f32>::default()
        .gemm(
            &mut out,
            GemmInputA::Unpacked(a.view()),
            GemmInputB::Unpacked(b),
            GemmOptions {
                alpha,
                beta,
                ..Default::default()
            },
        )
        .expect("gemm");
    out
}

/// `t`, or its transpose (a strided view).
fn view(t: &NdTensor<f32, 2>, transposed: bool) -> NdTensorView<'_, f32, 2> {
    if transposed {
        t.view().transposed()
    } else {
        t.view()
    }
}

fn kernel_name() -> String {
    GemmExecutor::<f32>::default().kernel_name().to_string()
}

#[test]
fn bf16_kernels_match_the_f32_kernels() {
    rten_gemm::set_bf16_enabled(false);
    let f32_kernel = kernel_name();
    assert!(!f32_kernel.contains("bf16"), "{f32_kernel}");
    rten_gemm::set_bf16_enabled(true);
    // AMX where the CPU has it, then the dot-product kernel (which a CPU with AMX has too).
    let mut checked: Vec<String> = Vec::new();
    for amx in [true, false] {
        rten_gemm::set_amx_enabled(amx);
        let name = kernel_name();
        if !rten_gemm::bf16_active() || checked.contains(&name) {
            continue;
        }
        if amx {
            assert!(["x86_64-f32-amx-bf16", "x86_64-f32-avx512-bf16"].contains(&name.as_str()));
        } else {
            assert_eq!(name, "x86_64-f32-avx512-bf16");
        }
        eprintln!("checking {name} against {f32_kernel}");
        matches_the_f32_kernels();
        checked.push(name);
    }
    rten_gemm::set_amx_enabled(true);
    if checked.is_empty() {
        eprintln!("no bf16 unit on this CPU: f32 GEMMs run on {f32_kernel}, nothing to compare");
        assert_eq!(kernel_name(), f32_kernel);
    }
}

/// The bf16 kernel `GemmExecutor::default` picks now against the f32 kernels.
fn matches_the_f32_kernels() {
    // Shapes on and off the 32 × 32 tile and the 32-deep step, transposed (strided) B, alpha
    // and beta (the kernel's slower output path), and a product shallower than the kernel's
    // minimum depth (run on the f32 kernel).
    let cases: [(usize, usize, usize, bool, f32, f32); 8] = [
        (32, 64, 32, false, 1.0, 0.0),
        (64, 256, 96, false, 1.0, 0.0),
        (37, 70, 70, false, 1.0, 0.0),
        (5, 65, 3, false, 1.0, 0.0),
        (96, 600, 130, false, 1.0, 0.0),
        (33, 100, 65, true, 1.0, 0.0),
        (48, 80, 50, false, 0.5, 2.0),
        (40, 27, 50, false, 1.0, 0.0),
    ];
    for (i, &(m, k, n, transposed, alpha, beta)) in cases.iter().enumerate() {
        let a_vals = noise(m * k, 1 + i as u64);
        let b_vals = noise(k * n, 100 + i as u64);
        let c = noise(m * n, 200 + i as u64);
        // B as given, or stored transposed (a strided view: the kernel's other packing path).
        let b_shape = if transposed { [n, k] } else { [k, n] };
        let a = NdTensor::from_data([m, k], a_vals.clone());
        let b_store = NdTensor::from_data(b_shape, b_vals.clone());
        // Inputs already in bf16: both kernels compute the same exact products; only the
        // order of f32 additions differs.
        let a16 = NdTensor::from_data(
            [m, k],
            a_vals.iter().map(|&x| to_bf16(x)).collect::<Vec<_>>(),
        );
        let b16_store = NdTensor::from_data(
            b_shape,
            b_vals.iter().map(|&x| to_bf16(x)).collect::<Vec<_>>(),
        );
        let (b, b16) = (view(&b_store, transposed), view(&b16_store, transposed));
        assert_eq!(b.stride(1) == 1, !transposed);
        rten_gemm::set_bf16_enabled(false);
        let want16 = gemm(&a16, b16, &c, alpha, beta);
        let want = gemm(&a, b, &c, alpha, beta);
        rten_gemm::set_bf16_enabled(true);
        let got16 = gemm(&a16, b16, &c, alpha, beta);
        let got = gemm(&a, b, &c, alpha, beta);
        let scale = k as f32; // |a|, |b| < 1: every output is below `k` in size.
        for (j, ((g, w), (g16, w16))) in got
            .iter()
            .zip(&want)
            .zip(got16.iter().zip(&want16))
            .enumerate()
        {
            assert!(
                (g16 - w16).abs() <= 1e-5 * scale,
                "case {i} ({m}×{k}×{n}) element {j}: {g16} vs {w16} on bf16 inputs"
            );
            // Rounding both inputs to 8 significant bits: each product within 2^-8 of
            // its f32 value, and errors of random sign.
            assert!(
                (g - w).abs() <= 2f32.powi(-8) * scale.sqrt() * 4.0,
                "case {i} ({m}×{k}×{n}) element {j}: {g} vs {w}"
            );
        }
    }

    // Prepacked inputs (rten prepacks a reused weight or batch operand) must be packed for the
    // kernel that runs the product, shallow ones (handed to the f32 kernel) included.
    for (m, k, n) in [(40, 27, 50), (37, 70, 70)] {
        let a = NdTensor::from_data([m, k], noise(m * k, 300));
        let b = NdTensor::from_data([k, n], noise(k * n, 301));
        let gemm = GemmExecutor::<f32>::default();
        let mut packed_out = vec![0.0; m * n];
        gemm.gemm(
            &mut packed_out,
            GemmInputA::Packed(&gemm.prepack_a(a.view())),
            GemmInputB::Packed(&gemm.prepack_b(b.view())),
            GemmOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{m}×{k}×{n} prepacked: {e}"));
        let unpacked_out = self::gemm(&a, b.view(), &vec![0.0; m * n], 1.0, 0.0);
        assert_eq!(packed_out, unpacked_out, "{m}×{k}×{n}");
    }

    // The real models, through detection (3 × 3 convolutions: the im2col path), the line
    // classifier and the recogniser (1 × 1 convolutions): the same text either way.
    let engine = OcrEngine::load(&EngineConfig {
        models_dir: models_dir(),
        threads: 1,
    })
    .unwrap_or_else(|e| panic!("{e} (run scripts/fetch-models.sh first)"));
    let page = render::page(&render::font("DejaVuSerif.ttf"), 26.0, 1200, 700, 3);
    let read = || {
        engine
            .recognize(&page.image, &OcrOptions::default())
            .unwrap_or_else(|e| panic!("recognize: {e}"))
    };
    rten_gemm::set_bf16_enabled(false);
    let exact = read();
    rten_gemm::set_bf16_enabled(true);
    let bf16 = read();
    assert_eq!(bf16.lines.len(), exact.lines.len());
    let between = render::cer(&exact.text, &bf16.text);
    let cer = render::cer(&page.text, &bf16.text);
    assert!(
        between <= 0.002,
        "bf16 and f32 read differently: CER {between}"
    );
    assert!(cer <= 0.01, "bf16 reading: CER {cer} against the reference");
    for (x, y) in exact.lines.iter().zip(&bf16.lines) {
        assert!(
            (x.confidence - y.confidence).abs() <= 0.02,
            "{:?}: confidence {} vs {}",
            x.text,
            x.confidence,
            y.confidence
        );
    }
}
