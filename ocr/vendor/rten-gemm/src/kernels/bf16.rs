//! f32 GEMM with bf16 inputs and f32 accumulation, on Intel AMX tiles or on AVX-512 BF16
//! dot products.
//!
//! Both inputs are rounded to bfloat16 (round to nearest even) while they are packed. Each call
//! computes a 32 × 32 output tile from an A panel (per 32-deep step, two tiles of 16 rows × 32
//! depth) and a B panel (per step, two tiles of 16 depth pairs × 16 columns, in the "VNNI"
//! layout where the two depth values of a pair sit next to each other). Two units read the same
//! panels ([`Bf16Unit`]):
//!
//! - [`Amx`]: `TDPBF16PS` multiplies 16 × 32 by 32 × 16 blocks into f32 accumulator tiles
//!   (`tmm0`–`tmm3`), 16 times the multiply-adds of one AVX-512 FMA per instruction (Sapphire
//!   Rapids and later Xeons).
//! - [`DotProduct`]: `VDPBF16PS` (AVX512-BF16: Cooper Lake, Sapphire Rapids, AMD Zen 4 and
//!   later) multiplies a broadcast depth pair of A by a row of B pairs into sixteen f32 lanes:
//!   twice the multiply-adds of an FMA per instruction, and half the bytes of f32 panels. A
//!   pair of B tiles' rows is exactly one such operand each, so the panels need no other layout.
//!
//! Linux hands AMX state to a process only after it asks for it (`arch_prctl
//! ARCH_REQ_XCOMP_PERM`, <https://docs.kernel.org/arch/x86/xstate.html>); [`Amx`] asks once.
//! A kernel is `None` when the CPU lacks its unit, `RTEN_GEMM_NO_BF16` (or its older name
//! `RTEN_GEMM_NO_AMX`) is set, or [`set_bf16_enabled`] turned bf16 off (then the AVX-512 f32
//! kernel is used); [`set_amx_enabled`] leaves the dot-product kernel to a CPU with AMX too.

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use rten_base::byte_cast::cast_uninit_mut_slice;
use rten_tensor::{Matrix, MatrixLayout};

use super::x86_64::Avx512Kernel;
use super::{Kernel, Lhs, MatVecOutput, PackedLayout, QuantParams};
use crate::Im2Col;
use crate::packing::pack_b_block;

/// Output tile rows (two A tiles of 16 rows).
const MR: usize = 32;
/// Output tile columns (two B tiles of 16 columns).
const NR: usize = 32;
/// Depth consumed by one tile multiply: a 64-byte tile row holds 32 bf16 values.
const KB: usize = 32;
/// Products shallower than this run on the AVX-512 f32 kernel: a network's first layers
/// (an RGB stem's 3 × 3 × 3 = 27) carry the image's small contrasts, which bf16 inputs blur.
const MIN_DEPTH: usize = 64;
/// Bytes of one tile (16 rows × 64 bytes).
const TILE_BYTES: usize = 1024;

/// Whether new f32 GEMM executors may pick a bf16 kernel ([`set_bf16_enabled`]).
static ENABLED: AtomicBool = AtomicBool::new(true);
/// Whether they may pick the AMX one ([`set_amx_enabled`]).
static AMX_ENABLED: AtomicBool = AtomicBool::new(true);

/// Lets (`true`, the default) or stops f32 GEMM executors made from now on use a bf16
/// kernel; stopped, they use the f32 kernels (exact f32 runs, comparisons in tests).
pub fn set_bf16_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Lets (`true`, the default) or stops f32 GEMM executors made from now on use the AMX
/// kernel; stopped, a CPU with AVX512-BF16 uses the dot-product kernel ([`DotProduct`]).
pub fn set_amx_enabled(enabled: bool) {
    AMX_ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether f32 GEMMs made now run on a bf16 kernel (AMX or AVX512-BF16).
pub fn bf16_active() -> bool {
    Amx::usable() || DotProduct::usable()
}

/// Whether bf16 products are allowed at all: not turned off by the environment or
/// [`set_bf16_enabled`].
fn bf16_allowed() -> bool {
    static ENV_OFF: OnceLock<bool> = OnceLock::new();
    let env_off = *ENV_OFF.get_or_init(|| {
        std::env::var_os("RTEN_GEMM_NO_BF16").is_some()
            || std::env::var_os("RTEN_GEMM_NO_AMX").is_some()
    });
    ENABLED.load(Ordering::Relaxed) && !env_off
}

/// Whether this process may use AMX-BF16: checked and requested once.
fn amx_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        // CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE (std's detection of these is
        // not stable).
        let leaf7 = __cpuid_count(7, 0);
        let amx = leaf7.edx & (1 << 22) != 0 && leaf7.edx & (1 << 24) != 0;
        if !(amx && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")) {
            return false;
        }
        request_tile_data_permission()
    })
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: 0 on success.
fn request_tile_data_permission() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // Safety: a plain system call with integer arguments; it only changes which register
    // state the kernel saves for this process.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

/// The tile configuration every call uses: palette 1, all eight tiles 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

const TILE_CONFIG: TileConfig = {
    let mut cfg = [0u8; 64];
    cfg[0] = 1;
    let mut t = 0;
    while t < 8 {
        cfg[16 + 2 * t] = 64;
        cfg[48 + t] = 16;
        t += 1;
    }
    TileConfig(cfg)
};

thread_local! {
    /// Tile configuration is per thread; load it on a thread's first call.
    static TILES_CONFIGURED: Cell<bool> = const { Cell::new(false) };
    /// One column panel of B in the AVX-512 kernel's f32 layout, before conversion.
    static F32_PANEL: RefCell<Vec<MaybeUninit<f32>>> = const { RefCell::new(Vec::new()) };
}

fn configure_tiles() {
    TILES_CONFIGURED.with(|done| {
        if !done.get() {
            // Safety: `amx_usable` (checked when the kernel was made) ensures AMX is present
            // and permitted; the configuration is a valid palette-1 layout.
            unsafe { asm!("ldtilecfg [{0}]", in(reg) TILE_CONFIG.0.as_ptr(), options(nostack)) };
            done.set(true);
        }
    });
}

/// Rounds sixteen f32 values to bf16 (nearest even), leaving each in the high half of its
/// 32-bit lane.
#[inline]
#[target_feature(enable = "avx512f")]
fn round_to_bf16_hi(x: __m512) -> __m512i {
    let u = _mm512_castps_si512(x);
    let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(u), _mm512_set1_epi32(1));
    _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb))
}

/// The mask of the first `n - from` lanes of sixteen (none when `n <= from`, all when
/// `n >= from + 16`): the part of a row's 16-value half that holds data.
fn lanes(n: usize, from: usize) -> __mmask16 {
    let m = n.saturating_sub(from).min(16);
    if m == 16 { 0xffff } else { (1u16 << m) - 1 }
}

/// Scalar form of [`round_to_bf16_hi`], returning the bf16 bits.
#[inline]
fn bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// The unit a [`Bf16Kernel`] multiplies its packed panels on.
pub trait Bf16Unit: Send + Sync + 'static {
    /// The kernel's name.
    const NAME: &'static str;

    /// Whether executors made now may use this unit.
    fn usable() -> bool;

    /// The 32 × 32 f32 tile at `c` (rows `c_row_bytes` apart) = A panel × B panel over
    /// `steps` 32-deep steps (`steps` ≥ 1).
    ///
    /// # Safety
    /// [`usable`](Self::usable) must have returned `true`; `a` and `b` must hold
    /// `steps * 2 * TILE_BYTES` bytes each, and `c` 32 writable rows of 32 f32.
    unsafe fn multiply(c: *mut f32, c_row_bytes: usize, a: *const u8, b: *const u8, steps: usize);
}

/// Intel AMX tiles: `TDPBF16PS`.
pub struct Amx;

impl Bf16Unit for Amx {
    const NAME: &'static str = "x86_64-f32-amx-bf16";

    fn usable() -> bool {
        bf16_allowed() && AMX_ENABLED.load(Ordering::Relaxed) && amx_usable()
    }

    #[inline]
    unsafe fn multiply(c: *mut f32, c_row_bytes: usize, a: *const u8, b: *const u8, steps: usize) {
        configure_tiles();
        // Safety: AMX is usable and the tiles are configured on this thread; the caller
        // guarantees the panels' and the tile's sizes.
        unsafe {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "2:",
                "tileloadd tmm4, [{a} + {stride}*1]",
                "tileloadd tmm6, [{b} + {stride}*1]",
                "tileloadd tmm5, [{a} + {stride}*1 + 1024]",
                "tileloadd tmm7, [{b} + {stride}*1 + 1024]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {a}, 2048",
                "add {b}, 2048",
                "dec {steps}",
                "jnz 2b",
                "tilestored [{c} + {cstride}*1], tmm0",
                "tilestored [{c} + {cstride}*1 + 64], tmm1",
                "tilestored [{c2} + {cstride}*1], tmm2",
                "tilestored [{c2} + {cstride}*1 + 64], tmm3",
                a = inout(reg) a => _,
                b = inout(reg) b => _,
                steps = inout(reg) steps => _,
                c = in(reg) c,
                c2 = in(reg) c.byte_add(16 * c_row_bytes),
                stride = in(reg) 64usize,
                cstride = in(reg) c_row_bytes,
                options(nostack),
            );
        }
    }
}

/// AVX512-BF16 dot products: `VDPBF16PS`.
pub struct DotProduct;

/// Output rows a [`DotProduct`] pass keeps in registers: 8 rows × 2 vectors, 16 independent
/// accumulators (enough to cover the instruction's latency), with the two B vectors and the
/// broadcast A pair 19 of the 32 vector registers.
const DP_ROWS: usize = 8;

impl Bf16Unit for DotProduct {
    const NAME: &'static str = "x86_64-f32-avx512-bf16";

    fn usable() -> bool {
        bf16_allowed()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512bf16")
    }

    #[inline]
    unsafe fn multiply(c: *mut f32, c_row_bytes: usize, a: *const u8, b: *const u8, steps: usize) {
        // Safety: the unit is usable (AVX512-BF16 is present); the caller guarantees the
        // panels' and the tile's sizes.
        unsafe { dot_product_tile(c, c_row_bytes, a, b, steps) }
    }
}

/// [`DotProduct::multiply`]: the tile a band of [`DP_ROWS`] rows at a time, each band over the
/// whole depth. A's pair `r` of row `i` in step `s` is the 32-bit word
/// `((s * 2 + i / 16) * 16 + i % 16) * 16 + r` of its panel; B's pairs `r` of columns 0–15 and
/// 16–31 are the 16-word rows `(s * 2) * 256 + r * 16` and `(s * 2 + 1) * 256 + r * 16`.
///
/// # Safety
/// As [`Bf16Unit::multiply`], with AVX512-BF16 present.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn dot_product_tile(
    c: *mut f32,
    c_row_bytes: usize,
    a: *const u8,
    b: *const u8,
    steps: usize,
) {
    let (a, b) = (a as *const u32, b as *const u32);
    const WORDS_PER_TILE: usize = TILE_BYTES / 4;
    for band in 0..MR / DP_ROWS {
        let first = band * DP_ROWS;
        let mut acc = [[_mm512_setzero_ps(); 2]; DP_ROWS];
        for s in 0..steps {
            // Safety: step `s < steps` lies within both panels (the caller's guarantee).
            let (a_rows, b_rows) = unsafe {
                (
                    a.add((s * 2 + first / 16) * WORDS_PER_TILE + (first % 16) * 16),
                    b.add(s * 2 * WORDS_PER_TILE),
                )
            };
            for r in 0..16 {
                // Safety: pair `r < 16` of the step's two B tiles and of rows
                // `first..first + DP_ROWS` of one A tile.
                unsafe {
                    let b0: __m512bh =
                        std::mem::transmute(_mm512_loadu_si512(b_rows.add(r * 16) as *const _));
                    let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(
                        b_rows.add(WORDS_PER_TILE + r * 16) as *const _,
                    ));
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let pair: __m512bh =
                            std::mem::transmute(_mm512_set1_epi32(*a_rows.add(i * 16 + r) as i32));
                        acc[0] = _mm512_dpbf16_ps(acc[0], pair, b0);
                        acc[1] = _mm512_dpbf16_ps(acc[1], pair, b1);
                    }
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            // Safety: row `first + i < MR` of the 32 × 32 tile at `c`.
            unsafe {
                let row = c.byte_add((first + i) * c_row_bytes);
                _mm512_storeu_ps(row, acc[0]);
                _mm512_storeu_ps(row.add(16), acc[1]);
            }
        }
    }
}

/// f32 GEMM kernel with bf16 inputs and f32 accumulation, multiplying on `U`.
pub struct Bf16Kernel<U: Bf16Unit> {
    /// Used for matrix-vector products and to lay out im2col / B blocks before conversion.
    avx512: Avx512Kernel,
    unit: PhantomData<U>,
}

/// The kernel on AMX tiles.
pub type AmxBf16Kernel = Bf16Kernel<Amx>;
/// The kernel on AVX512-BF16 dot products.
pub type Avx512Bf16Kernel = Bf16Kernel<DotProduct>;

impl<U: Bf16Unit> Bf16Kernel<U> {
    /// Depth rounded up to whole tile steps.
    fn padded_depth(depth: usize) -> usize {
        depth.next_multiple_of(KB)
    }

    /// Converts one column panel in the AVX-512 kernel's layout (`depth` rows of `NR` f32,
    /// row-major) to this kernel's B panel ([`convert_b_rows`](Self::convert_b_rows)).
    #[target_feature(enable = "avx512f")]
    fn convert_b_panel(out: &mut [MaybeUninit<u32>], panel: &[MaybeUninit<f32>], depth: usize) {
        assert!(panel.len() >= depth * NR);
        // Safety: `panel` holds `depth` rows of `NR` values.
        unsafe { Self::convert_b_rows(out, panel.as_ptr() as *const f32, NR, depth, NR) }
    }

    /// Converts `depth` rows of `used_cols` (≤ 32) f32 at `src`, `row_stride` apart, to this
    /// kernel's B panel: for each 32-deep step, two tiles (columns 0–15, 16–31), each 16 rows
    /// of depth pairs with the pair's two bf16 values side by side. Missing rows and columns
    /// are zero.
    ///
    /// # Safety
    /// `src` must point to `depth` readable rows of `used_cols` values.
    #[target_feature(enable = "avx512f")]
    unsafe fn convert_b_rows(
        out: &mut [MaybeUninit<u32>],
        src: *const f32,
        row_stride: usize,
        depth: usize,
        used_cols: usize,
    ) {
        let kp = Self::padded_depth(depth);
        assert_eq!(out.len(), kp * NR / 2);
        let zero = _mm512_setzero_ps();
        let hi_mask = _mm512_set1_epi32(0xffff_0000u32 as i32);
        let masks = [lanes(used_cols, 0), lanes(used_cols, 16)];
        let row = |k: usize, half: usize| -> __m512 {
            if k < depth {
                // Safety: row `k < depth`, the masked load reads only its first `used_cols`.
                unsafe { _mm512_maskz_loadu_ps(masks[half], src.add(k * row_stride + half * 16)) }
            } else {
                zero
            }
        };
        for pair in 0..kp / 2 {
            let (step, r) = (pair / 16, pair % 16);
            for half in 0..2 {
                let even = round_to_bf16_hi(row(2 * pair, half));
                let odd = round_to_bf16_hi(row(2 * pair + 1, half));
                let packed = _mm512_or_si512(
                    _mm512_and_si512(odd, hi_mask),
                    _mm512_srli_epi32::<16>(even),
                );
                let offset = ((step * 2 + half) * 16 + r) * 16;
                // Safety: `offset + 16 <= kp * NR / 2 == out.len()`.
                unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(offset) as *mut _, packed) };
            }
        }
    }

    /// Packs B column panel by panel: the AVX-512 kernel's packing (any strides, im2col)
    /// into a scratch panel, then [`convert_b_panel`](Self::convert_b_panel).
    fn pack_b_panels(
        &self,
        out: &mut [MaybeUninit<u8>],
        depth: usize,
        cols: Range<usize>,
        mut pack_f32_panel: impl FnMut(&mut [MaybeUninit<f32>], Range<usize>),
    ) {
        let kp = Self::padded_depth(depth);
        let panel_u32s = kp * NR / 2;
        let out: &mut [MaybeUninit<u32>] =
            cast_uninit_mut_slice(out).expect("incorrect alignment for packing buffer");
        F32_PANEL.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.resize(depth * NR, MaybeUninit::uninit());
            for (p, panel_cols) in (cols.start..cols.end).step_by(NR).enumerate() {
                let panel_cols = panel_cols..(panel_cols + NR).min(cols.end);
                pack_f32_panel(&mut scratch[..depth * NR], panel_cols);
                // Safety: the kernel exists only where AVX-512 is available.
                unsafe {
                    Self::convert_b_panel(
                        &mut out[p * panel_u32s..(p + 1) * panel_u32s],
                        &scratch[..depth * NR],
                        depth,
                    )
                };
            }
        });
    }

    /// Rounds `n` (≤ 32) contiguous f32 values from `src` to bf16 into `dst` (32 values,
    /// zero beyond `n`).
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_a_run(dst: &mut [MaybeUninit<u16>], src: *const f32, n: usize) {
        debug_assert!(dst.len() == KB && n <= KB);
        for half in 0..2 {
            // Safety: the masked load reads only the first `n` values, which the caller
            // guarantees are readable; the store writes 16 of `dst`'s 32 values.
            unsafe {
                let x = _mm512_maskz_loadu_ps(lanes(n, half * 16), src.add(half * 16));
                let bf16 = _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(round_to_bf16_hi(x)));
                _mm256_storeu_si256(dst.as_mut_ptr().add(half * 16) as *mut __m256i, bf16);
            }
        }
    }

    /// Writes `alpha * acc + beta * out` for the used part of the tile.
    #[target_feature(enable = "avx512f")]
    unsafe fn store(
        acc: &[f32; MR * NR],
        out: *mut f32,
        row_stride: usize,
        used_rows: usize,
        used_cols: usize,
        alpha: f32,
        beta: f32,
    ) {
        let alpha_v = _mm512_set1_ps(alpha);
        let beta_v = _mm512_set1_ps(beta);
        for half in 0..2 {
            let mask = lanes(used_cols, half * 16);
            if mask == 0 {
                break;
            }
            for row in 0..used_rows {
                // Safety: `row < used_rows <= MR`, `half * 16 + 16 <= NR`; the output pointer
                // covers `used_rows` rows of `used_cols` columns (masked).
                unsafe {
                    let mut v = _mm512_loadu_ps(acc.as_ptr().add(row * NR + half * 16));
                    if alpha != 1.0 {
                        v = _mm512_mul_ps(v, alpha_v);
                    }
                    let dst = out.add(row * row_stride + half * 16);
                    if beta != 0.0 {
                        let old = _mm512_maskz_loadu_ps(mask, dst);
                        v = _mm512_fmadd_ps(old, beta_v, v);
                    }
                    _mm512_mask_storeu_ps(dst, mask, v);
                }
            }
        }
    }
}

// Safety: `new` returns a kernel only where AVX-512 and the unit are present and permitted.
unsafe impl<U: Bf16Unit> Kernel<f32, f32, f32> for Bf16Kernel<U> {
    fn new() -> Option<Self> {
        if !U::usable() {
            return None;
        }
        Avx512Kernel::new().map(|avx512| Bf16Kernel {
            avx512,
            unit: PhantomData,
        })
    }

    fn name(&self) -> &'static str {
        U::NAME
    }

    fn mr(&self) -> usize {
        MR
    }

    fn nr(&self) -> usize {
        NR
    }

    fn packed_a_layout(
        &self,
        _a: Matrix,
        rows: usize,
        cols: usize,
        _quant: Option<QuantParams<f32>>,
    ) -> PackedLayout {
        let panel_stride = MR * Self::padded_depth(cols) * 2;
        let mut layout =
            PackedLayout::new(rows.div_ceil(MR).max(1) * panel_stride, 4, panel_stride);
        layout.must_pack = true;
        layout
    }

    /// A row panel: for each 32-deep step, two tiles (rows 0–15, 16–31), each 16 rows of 32
    /// bf16 values.
    fn pack_a_block(
        &self,
        out: &mut [MaybeUninit<u8>],
        a: Matrix,
        rows: Range<usize>,
        cols: Range<usize>,
        _quant: Option<QuantParams<f32>>,
    ) {
        let kp = Self::padded_depth(cols.len());
        let out: &mut [MaybeUninit<u16>] =
            cast_uninit_mut_slice(out).expect("incorrect alignment for packing buffer");
        let panels = rows.len().div_ceil(MR).max(1);
        assert!(out.len() >= panels * MR * kp);
        for p in 0..panels {
            for i in 0..MR {
                let row = rows.start + p * MR + i;
                for step in 0..kp / KB {
                    let offset = p * MR * kp + ((step * 2 + i / 16) * 16 + i % 16) * KB;
                    let dst = &mut out[offset..offset + KB];
                    let k0 = cols.start + step * KB;
                    let n = if row < rows.end {
                        cols.end.saturating_sub(k0).min(KB)
                    } else {
                        0
                    };
                    if n > 0 && a.col_stride() == 1 {
                        // Safety: `row < rows.end`, `k0 + n <= cols.end`, a row of `a` with unit
                        // column stride; AVX-512 is present (the kernel exists).
                        unsafe { Self::pack_a_run(dst, a.get_unchecked([row, k0]), n) };
                    } else {
                        for (k, d) in dst.iter_mut().enumerate() {
                            let v = if k < n {
                                // Safety: `row < rows.end` and `k0 + k < cols.end`.
                                bf16_bits(unsafe { *a.get_unchecked([row, k0 + k]) })
                            } else {
                                0
                            };
                            d.write(v);
                        }
                    }
                }
            }
        }
    }

    fn packed_b_layout(
        &self,
        rows: usize,
        cols: usize,
        _quant: Option<QuantParams<f32>>,
    ) -> PackedLayout {
        let panel_stride = Self::padded_depth(rows) * NR * 2;
        PackedLayout::new(cols.div_ceil(NR).max(1) * panel_stride, 4, panel_stride)
    }

    fn pack_b_block(
        &self,
        out: &mut [MaybeUninit<u8>],
        b: Matrix,
        rows: Range<usize>,
        cols: Range<usize>,
        _quant: Option<QuantParams<f32>>,
    ) {
        let depth = rows.len();
        if b.col_stride() == 1 && depth > 0 {
            // Rows of B are contiguous: convert straight from them.
            let out: &mut [MaybeUninit<u32>] =
                cast_uninit_mut_slice(out).expect("incorrect alignment for packing buffer");
            let panel_u32s = Self::padded_depth(depth) * NR / 2;
            for (p, col) in (cols.start..cols.end).step_by(NR).enumerate() {
                let used = (cols.end - col).min(NR);
                // Safety: rows `rows` and columns `col..col + used` lie within `b`, whose
                // rows are `b.row_stride()` apart; AVX-512 is present (the kernel exists).
                unsafe {
                    Self::convert_b_rows(
                        &mut out[p * panel_u32s..(p + 1) * panel_u32s],
                        b.get_unchecked([rows.start, col]),
                        b.row_stride(),
                        depth,
                        used,
                    )
                };
            }
            return;
        }
        self.pack_b_panels(out, depth, cols, |panel, panel_cols| {
            pack_b_block::<f32, NR>(panel, b, rows.clone(), panel_cols)
        });
    }

    fn pack_im2col(
        &self,
        out: &mut [MaybeUninit<u8>],
        image: &Im2Col<f32>,
        rows: Range<usize>,
        cols: Range<usize>,
        zero_point: Option<f32>,
    ) {
        let depth = rows.len();
        self.pack_b_panels(out, depth, cols, |panel, panel_cols| {
            let panel: &mut [MaybeUninit<u8>] =
                cast_uninit_mut_slice(panel).expect("bytes have no alignment");
            self.avx512
                .pack_im2col(panel, image, rows.clone(), panel_cols, zero_point)
        });
    }

    unsafe fn kernel(
        &self,
        tile_ptr: *mut f32,
        tile_row_stride: usize,
        a: Lhs<f32>,
        b: &[u8],
        used_rows: usize,
        used_cols: usize,
        depth: usize,
        alpha: f32,
        beta: f32,
        _a_quant: Option<QuantParams<f32>>,
        _b_quant: Option<QuantParams<f32>>,
    ) {
        let Lhs::Packed(a) = a else {
            panic!("the bf16 kernels need a packed A input");
        };
        let steps = Self::padded_depth(depth) / KB;
        assert!(a.len() >= steps * 2 * TILE_BYTES && b.len() >= steps * 2 * TILE_BYTES);
        if steps > 0 && used_rows == MR && used_cols == NR && alpha == 1.0 && beta == 0.0 {
            // The common case: the tiles go straight to the output.
            // Safety: the unit is usable (the kernel exists), both panels hold `steps` steps
            // (asserted above) and the output tile is 32 × 32.
            unsafe { U::multiply(tile_ptr, tile_row_stride * 4, a.as_ptr(), b.as_ptr(), steps) };
            return;
        }
        let mut acc = [0f32; MR * NR];
        if steps > 0 {
            // Safety: as above, into the 32 × 32 `acc`.
            unsafe { U::multiply(acc.as_mut_ptr(), NR * 4, a.as_ptr(), b.as_ptr(), steps) };
        }
        // Safety: the caller passes an output tile of `used_rows` × `used_cols`.
        unsafe {
            Self::store(
                &acc,
                tile_ptr,
                tile_row_stride,
                used_rows,
                used_cols,
                alpha,
                beta,
            )
        };
    }

    /// The AVX-512 kernel has the same `NR` (32), so the same im2col steps.
    fn instead_for_depth(&self, depth: usize) -> Option<&dyn Kernel<f32, f32, f32>> {
        (depth < MIN_DEPTH).then_some(&self.avx512 as &dyn Kernel<f32, f32, f32>)
    }

    fn gemv_kernel(
        &self,
        out: MatVecOutput<f32>,
        a: &[f32],
        b: Matrix,
        alpha: f32,
        a_quant: Option<QuantParams<f32>>,
        b_quant: Option<QuantParams<f32>>,
    ) {
        self.avx512.gemv_kernel(out, a, b, alpha, a_quant, b_quant)
    }
}
