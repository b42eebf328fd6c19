use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use rten_base::unroll::unroll_loop;
use rten_simd::ops::{BitOps, NumOps};
use rten_simd::{Isa, SimdOp};
use rten_tensor::prelude::*;
use rten_tensor::{AssumeInit, NdTensor, NdTensorView, NdTensorViewMut};
use smallvec::SmallVec;

use crate::buffer_pool::{AutoReturn, BufferPool};

/// Calculate the output coordinate range for which all input / output
/// coordinates are valid when updating a row of output using:
///
/// ```text
/// for out_x in min_out_x..max_out_x {
///   out_row[out_x] += in_row[out_x * stride + k_x * dilation - pad_left] * kernel_row[k_x]
/// }
/// ```
///
/// Where `in_row` is the un-padded input row of width `in_w` and `out_row` is
/// an output row of width `out_w`.
///
/// In other words, we want to find the minimum and maximum values of `out_x`
/// such that:
///
/// - out_x * stride + k_x * dilation - pad_left >= 0
/// - out_x * stride + k_x * dilation - pad_left <= in_w
/// - out_x >= 0
/// - out_x <= out_w
fn min_max_out_x_coords(
    k_x: usize,
    in_w: usize,
    pad_left: usize,
    stride: usize,
    dilation: usize,
    out_w: usize,
) -> (usize, usize) {
    let min_out_x = pad_left
        .saturating_sub(k_x * dilation)
        .div_ceil(stride)
        .min(out_w);
    let max_out_x = (in_w + pad_left)
        .saturating_sub(k_x * dilation)
        .div_ceil(stride)
        .min(out_w);
    (min_out_x, max_out_x)
}

/// Convolution parameters passed to the kernel which are constant across
/// all calls within a single depthwise conv operation.
struct ConvParams<'a> {
    kernel_h: usize,
    stride_h: usize,
    stride_w: usize,
    dilation_y: usize,
    pad_top: usize,
    in_h: usize,
    in_row_len: usize,
    in_row_stride: usize,
    kernel_w: usize,
    pad_left: usize,
    dilation_x: usize,

    /// Precomputed map of kernel X coordinate to input and output row
    /// range.
    col_range_for_kernel_x: &'a [(Range<usize>, Range<usize>)],
}

/// Trait for architecture and data-type specific kernels for depthwise
/// convolution.
trait DepthwiseConvKernel<X, W, Y> {
    /// Compute every output row of one channel: `out_chan` holds `out_h` rows of
    /// `out_row_len` elements, `out_row_stride` apart. By default, one
    /// [`compute_row`](DepthwiseConvKernel::compute_row) call per row.
    fn compute_channel(
        &self,
        params: &ConvParams,
        out_chan: &mut [MaybeUninit<Y>],
        [out_h, out_row_len, out_row_stride]: [usize; 3],
        out_init: Y,
        image_chan: &[X],
        kernel_chan: NdTensorView<W, 2>,
        input_zero: X,
        kernel_zero: W,
    ) where
        Y: Copy,
        X: Copy,
        W: Copy,
    {
        for out_y in 0..out_h {
            // Here and in the `compute_row` implementation we use manual
            // slicing of the input data rather than tensor `slice` methods
            // for efficiency.
            let out_row = &mut out_chan[out_y * out_row_stride..][..out_row_len];
            self.compute_row(
                params,
                out_row,
                out_y,
                out_init,
                image_chan,
                kernel_chan,
                input_zero,
                kernel_zero,
            );
        }
    }

    /// Compute one output row of the depthwise convolution.
    ///
    /// `image_chan` and `kernel_chan` contain the input data and weights for
    /// the channel that corresponds to the output row.
    fn compute_row(
        &self,
        params: &ConvParams,
        out_row: &mut [MaybeUninit<Y>],
        out_y: usize,
        out_init: Y,
        image_chan: &[X],
        kernel_chan: NdTensorView<W, 2>,
        input_zero: X,
        kernel_zero: W,
    );
}

struct GenericDepthwiseConvKernel {}

impl DepthwiseConvKernel<f32, f32, f32> for GenericDepthwiseConvKernel {
    fn compute_row(
        &self,
        params: &ConvParams,
        out_row: &mut [MaybeUninit<f32>],
        out_y: usize,
        out_init: f32,
        image_chan: &[f32],
        kernel_chan: NdTensorView<f32, 2>,
        _input_zero: f32,
        _kernel_zero: f32,
    ) {
        let kernel_view = kernel_chan.weakly_checked_view();

        // Initialize output row.
        for x in out_row.iter_mut() {
            x.write(out_init);
        }
        let out_row: &mut [f32] = unsafe { out_row.assume_init() };

        for k_y in 0..params.kernel_h {
            let in_y = out_y * params.stride_h + k_y * params.dilation_y;
            if in_y < params.pad_top || in_y >= params.in_h + params.pad_top {
                continue;
            }

            let in_row_y = in_y - params.pad_top;
            let in_row = &image_chan[in_row_y * params.in_row_stride..][..params.in_row_len];

            for (k_x, (in_range, out_range)) in params.col_range_for_kernel_x.iter().enumerate() {
                let dest = &mut out_row[out_range.clone()];
                let src = &in_row[in_range.clone()];
                let scale = kernel_view[[k_y, k_x]];

                let src_els = src.len().div_ceil(params.stride_w);
                debug_assert!(src_els == dest.len());

                unroll_loop!(0..src_els, i, 4, {
                    unsafe {
                        *dest.get_unchecked_mut(i) +=
                            *src.get_unchecked(i * params.stride_w) * scale;
                    }
                });
            }
        }
    }
}

/// Depthwise kernel vectorized with rten-simd, a channel at a time
/// ([`DepthwiseChannelOp`]), for any stride and dilation. (The generic kernel's
/// inner loop reads `src[i * stride_w]` with a run-time stride, which the
/// compiler cannot vectorize.)
struct SimdDepthwiseConvKernel {}

/// Output rows computed together by [`DepthwiseChannelOp`]: each has its own
/// accumulator, so the multiply-adds of one tap form independent chains.
/// (`DepthwiseChannelOp::eval` has one arm for each block height up to it.)
const DEPTHWISE_ROWS: usize = 4;
const _: () = assert!(DEPTHWISE_ROWS == 4);

thread_local! {
    /// The zero-padded copy of the channel that [`DepthwiseChannelOp`] reads,
    /// reused across calls on the same thread.
    static PADDED_CHANNEL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// All output rows of one channel of a depthwise convolution.
///
/// The channel is first copied into zero-padded planes (the padding columns,
/// slack past the last output, one row of zeros that stands for every padding
/// row, and one plane per phase of the horizontal stride: see `eval`), so
/// every tap of every output vector is one unconditional load and
/// multiply-add. Each output vector is then summed over
/// all taps in a register and stored once, for [`DEPTHWISE_ROWS`] rows at a
/// time; the last vector of a row is stored under a mask. The per-tap
/// alternative (`row += src * w` over the row, once per tap) loads and stores
/// the output row once per tap, and handles each row's tail in scalar code.
struct DepthwiseChannelOp<'a> {
    params: &'a ConvParams<'a>,
    out_chan: &'a mut [MaybeUninit<f32>],
    out_h: usize,
    out_row_len: usize,
    out_row_stride: usize,
    out_init: f32,
    image_chan: &'a [f32],
    weights: &'a [f32],
    /// [`PADDED_CHANNEL`]'s buffer, taken out of the thread-local for the call:
    /// code in a closure would not be compiled for the dispatched ISA.
    padded: &'a mut Vec<f32>,
}

/// Vectors of one output row computed together by [`DepthwiseChannelOp`] (when
/// the row has that many): with [`DEPTHWISE_ROWS`] rows, 8 independent chains.
const DEPTHWISE_VECTORS: usize = 2;

impl DepthwiseChannelOp<'_> {
    /// Rows `y0..y0 + R` of the output, whose input rows start at `offsets`
    /// (`R * kernel_h` offsets into `plane`, row by row) and whose kernel
    /// columns' taps start `taps` further on.
    #[inline(always)]
    fn rows<I: Isa, const R: usize>(
        &mut self,
        isa: I,
        plane: *const f32,
        offsets: &[usize],
        taps: &[usize],
        y0: usize,
    ) {
        let n = isa.f32().len();
        let out_w = self.out_row_len;
        let mut x0 = 0;
        while x0 < out_w {
            if out_w - x0 > n {
                self.block::<I, R, DEPTHWISE_VECTORS>(isa, plane, offsets, taps, y0, x0);
                x0 += DEPTHWISE_VECTORS * n;
            } else {
                self.block::<I, R, 1>(isa, plane, offsets, taps, y0, x0);
                x0 += n;
            }
        }
    }

    /// Output vectors `x0..x0 + V * n` of rows `y0..y0 + R`: every tap summed in
    /// registers, then one store per vector (masked past the row's end).
    #[inline(always)]
    fn block<I: Isa, const R: usize, const V: usize>(
        &mut self,
        isa: I,
        plane: *const f32,
        offsets: &[usize],
        taps: &[usize],
        y0: usize,
        x0: usize,
    ) {
        let ops = isa.f32();
        let n = ops.len();
        let (k_h, k_w) = (self.params.kernel_h, self.params.kernel_w);
        let mut acc = [[ops.splat(self.out_init); V]; R];
        for k_y in 0..k_h {
            // Safety (here and for the loads below): every offset is at most
            // the zero row's, and a tap's column plus `V * n` stays within the
            // row's slack (see `eval`), so each load is inside the plane.
            let rows: [*const f32; R] =
                std::array::from_fn(|j| unsafe { plane.add(offsets[j * k_h + k_y] + x0) });
            let weights = &self.weights[k_y * k_w..][..k_w];
            for (&weight, &tap) in weights.iter().zip(taps) {
                let w = ops.splat(weight);
                for (row, acc) in rows.iter().zip(acc.iter_mut()) {
                    for (v, acc) in acc.iter_mut().enumerate() {
                        let x = unsafe { ops.load_ptr(row.add(tap + v * n)) };
                        *acc = ops.mul_add(x, w, *acc);
                    }
                }
            }
        }
        let out_w = self.out_row_len;
        for (j, acc) in acc.iter().enumerate() {
            let row = &mut self.out_chan[(y0 + j) * self.out_row_stride..][..out_w];
            for (v, acc) in acc.iter().enumerate() {
                let x = x0 + v * n;
                if x >= out_w {
                    break;
                }
                let left = out_w - x;
                let dst = row[x..].as_mut_ptr() as *mut f32;
                // Safety: `dst` has `left` elements of the row after it; a full
                // vector is stored only when `left >= n`.
                unsafe {
                    if left >= n {
                        ops.store_ptr(*acc, dst);
                    } else {
                        ops.store_ptr_mask(*acc, dst, ops.first_n_mask(left));
                    }
                }
            }
        }
    }
}

impl SimdOp for DepthwiseChannelOp<'_> {
    type Output = ();

    #[inline(always)]
    fn eval<I: Isa>(mut self, isa: I) {
        let n = isa.f32().len();
        let p = self.params;
        let (in_h, in_w) = (p.in_h, p.in_row_len);
        let (k_h, k_w, dx, sx) = (p.kernel_h, p.kernel_w, p.dilation_x, p.stride_w);
        let out_w = self.out_row_len;
        // The padded channel is split into `sx` phase planes, plane `r` holding
        // the padded columns `r, r + sx, r + 2 sx, …`, so that output column
        // `x`'s tap at padded column `x * sx + k_x * dx` is column
        // `x + (k_x * dx) / sx` of plane `(k_x * dx) % sx`: consecutive outputs
        // read consecutive elements whatever the stride. Each plane has one
        // more row, of zeros, that stands for every padding row, and a block's
        // `DEPTHWISE_VECTORS` vectors of slack past the last output.
        let pw = (p.pad_left + in_w)
            .div_ceil(sx)
            .max(out_w + (k_w - 1) * dx / sx)
            + DEPTHWISE_VECTORS * n;
        let plane_len = (in_h + 1) * pw;
        let zero_row = in_h * pw;
        let taps: SmallVec<[usize; 7]> = (0..k_w)
            .map(|k_x| (k_x * dx % sx) * plane_len + k_x * dx / sx)
            .collect();

        let mut padded = std::mem::take(self.padded);
        padded.clear();
        padded.resize(sx * plane_len, 0.0);
        for y in 0..in_h {
            let src = &self.image_chan[y * p.in_row_stride..][..in_w];
            if sx == 1 {
                padded[y * pw + p.pad_left..][..in_w].copy_from_slice(src);
            } else {
                // Input column `x` is padded column `pad_left + x`: plane
                // `(pad_left + x) % sx`, column `(pad_left + x) / sx`.
                for x0 in 0..sx.min(in_w) {
                    let c = p.pad_left + x0;
                    let dst = &mut padded[(c % sx) * plane_len + y * pw + c / sx..];
                    for (d, &v) in dst.iter_mut().zip(src[x0..].iter().step_by(sx)) {
                        *d = v;
                    }
                }
            }
        }
        let plane = padded.as_ptr();

        let mut offsets: SmallVec<[usize; DEPTHWISE_ROWS * 7]> =
            SmallVec::from_elem(zero_row, DEPTHWISE_ROWS * k_h);
        let mut y0 = 0;
        while y0 < self.out_h {
            let rows = (self.out_h - y0).min(DEPTHWISE_ROWS);
            for j in 0..rows {
                for k_y in 0..k_h {
                    let in_y = (y0 + j) * p.stride_h + k_y * p.dilation_y;
                    let inside = in_y >= p.pad_top && in_y - p.pad_top < in_h;
                    offsets[j * k_h + k_y] = if inside {
                        (in_y - p.pad_top) * pw
                    } else {
                        zero_row
                    };
                }
            }
            match rows {
                4 => self.rows::<I, 4>(isa, plane, &offsets, &taps, y0),
                3 => self.rows::<I, 3>(isa, plane, &offsets, &taps, y0),
                2 => self.rows::<I, 2>(isa, plane, &offsets, &taps, y0),
                _ => self.rows::<I, 1>(isa, plane, &offsets, &taps, y0),
            }
            y0 += rows;
        }
        *self.padded = padded;
    }
}

impl DepthwiseConvKernel<f32, f32, f32> for SimdDepthwiseConvKernel {
    fn compute_channel(
        &self,
        params: &ConvParams,
        out_chan: &mut [MaybeUninit<f32>],
        [out_h, out_row_len, out_row_stride]: [usize; 3],
        out_init: f32,
        image_chan: &[f32],
        kernel_chan: NdTensorView<f32, 2>,
        _input_zero: f32,
        _kernel_zero: f32,
    ) {
        let weights: SmallVec<[f32; 49]> = kernel_chan.iter().copied().collect();
        let mut padded = PADDED_CHANNEL.with(|cell| cell.take());
        DepthwiseChannelOp {
            params,
            out_chan,
            out_h,
            out_row_len,
            out_row_stride,
            out_init,
            image_chan,
            weights: &weights,
            padded: &mut padded,
        }
        .dispatch();
        PADDED_CHANNEL.with(|cell| cell.replace(padded));
    }

    fn compute_row(
        &self,
        params: &ConvParams,
        out_row: &mut [MaybeUninit<f32>],
        out_y: usize,
        out_init: f32,
        image_chan: &[f32],
        kernel_chan: NdTensorView<f32, 2>,
        input_zero: f32,
        kernel_zero: f32,
    ) {
        GenericDepthwiseConvKernel {}.compute_row(
            params,
            out_row,
            out_y,
            out_init,
            image_chan,
            kernel_chan,
            input_zero,
            kernel_zero,
        )
    }
}

impl DepthwiseConvKernel<i8, u8, i32> for GenericDepthwiseConvKernel {
    fn compute_row(
        &self,
        params: &ConvParams,
        out_row: &mut [MaybeUninit<i32>],
        out_y: usize,
        out_init: i32,
        image_chan: &[i8],
        kernel_chan: NdTensorView<u8, 2>,
        input_zero: i8,
        kernel_zero: u8,
    ) {
        let kernel_view = kernel_chan.weakly_checked_view();
        let input_zero = input_zero as i32;
        let kernel_zero = kernel_zero as i32;

        // Initialize output row.
        for x in out_row.iter_mut() {
            x.write(out_init);
        }
        let out_row: &mut [i32] = unsafe { out_row.assume_init() };

        for k_y in 0..params.kernel_h {
            let in_y = out_y * params.stride_h + k_y * params.dilation_y;
            if in_y < params.pad_top || in_y >= params.in_h + params.pad_top {
                continue;
            }

            let in_row_y = in_y - params.pad_top;
            let in_row = &image_chan[in_row_y * params.in_row_stride..][..params.in_row_len];

            for (k_x, (in_range, out_range)) in params.col_range_for_kernel_x.iter().enumerate() {
                let dest = &mut out_row[out_range.clone()];
                let src = &in_row[in_range.clone()];
                let scale = kernel_view[[k_y, k_x]] as i32 - kernel_zero;

                let src_els = src.len().div_ceil(params.stride_w);
                debug_assert!(src_els == dest.len());

                unroll_loop!(0..src_els, i, 4, {
                    unsafe {
                        *dest.get_unchecked_mut(i) +=
                            (*src.get_unchecked(i * params.stride_w) as i32 - input_zero) * scale;
                    }
                });
            }
        }
    }
}

/// Compute depthwise convolution for the block of channels from `input`
/// specified by `chan_range` into `output`.
///
/// Convolutions where the group count is equal to the input and output
/// channel count are referred to as _depthwise_. These use a different
/// implementation than general convolutions for efficiency.
///
/// `X`, `W` and `Y` are the input, weight and output data types respectively.
pub struct DepthwiseConvExecutor<X: Copy, W, Y: Copy + Default> {
    kernel: Box<dyn DepthwiseConvKernel<X, W, Y> + Sync>,
}

impl<X: Copy + Default + Sync, W: Copy + Default + Sync, Y: Copy + Default>
    DepthwiseConvExecutor<X, W, Y>
{
    /// Compute depthwise convolution for the block of channels from `input`
    /// specified by `chan_range` into `output`.
    ///
    /// `col_range_for_kernel_x` is a precomputed map of kernel X coordinate to
    /// `(in_range, out_range)` of column ranges that are valid for the input and
    /// output.
    ///
    /// When this function returns, all elements of `output` will have been
    /// initialized.
    fn depthwise_conv_2d_block(
        &self,
        mut output: NdTensorViewMut<MaybeUninit<Y>, 3>, // C, H, W
        chan_range: Range<usize>,
        input: NdTensorView<X, 3>,  // C, H, W
        kernel: NdTensorView<W, 4>, // C, _, Kh, Kw
        bias: Option<NdTensorView<Y, 1>>,
        padding: [usize; 4],
        strides: [usize; 2],
        dilations: [usize; 2],
        col_range_for_kernel_x: &[(Range<usize>, Range<usize>)],
        input_zero: Option<X>,
        kernel_zero: Option<&[W]>,
    ) {
        debug_assert_eq!(input.stride(2), 1, "last dim of input is not contiguous");
        debug_assert_eq!(output.stride(2), 1, "last dim of output is not contiguous");

        let [_, out_h, _out_w] = output.shape();
        let [_, _, k_h, k_w] = kernel.shape();
        let [_, in_h, _in_w] = input.shape();
        let [stride_h, stride_w] = strides;
        let [pad_top, pad_left, _pad_bottom, _pad_right] = padding;
        let [dilation_y, dilation_x] = dilations;

        let conv_params = ConvParams {
            stride_h,
            stride_w,
            kernel_h: k_h,
            pad_top,
            dilation_y,
            in_h,
            in_row_stride: input.stride(1),
            in_row_len: input.size(2),
            kernel_w: k_w,
            pad_left,
            dilation_x,
            col_range_for_kernel_x,
        };

        let input_zero = input_zero.unwrap_or_default();
        for c in chan_range.clone() {
            let kernel_view = kernel.slice([c, 0]);

            let mut out_chan = output.slice_mut([c - chan_range.start]);
            let out_row_stride = out_chan.stride(0);
            let out_row_len = out_chan.size(1);
            let out_chan_data = out_chan.data_mut().unwrap();

            let in_chan = input.slice([c]);
            let in_chan_data = in_chan.data().unwrap();

            let init_value = if let Some(bias) = bias {
                bias[c]
            } else {
                Y::default()
            };

            let kernel_zero = kernel_zero.map(|kz| kz[c]).unwrap_or_default();

            self.kernel.compute_channel(
                &conv_params,
                out_chan_data,
                [out_h, out_row_len, out_row_stride],
                init_value,
                in_chan_data,
                kernel_view,
                input_zero,
                kernel_zero,
            );
        }
    }

    /// Compute a depthwise convolution of a 2D image.
    pub fn depthwise_conv_2d(
        &self,
        pool: &BufferPool,
        input: &NdTensorView<X, 4>,
        kernel: &NdTensorView<W, 4>,
        bias: Option<NdTensorView<Y, 1>>,
        padding: [usize; 4],
        strides: [usize; 2],
        dilations: [usize; 2],
        out_hw: [usize; 2],
        input_zero: Option<X>,
        kernel_zero: Option<&[W]>,
    ) -> NdTensor<Y, 4> {
        let [batch, _in_c, _in_h, in_w]: [usize; 4] = input.shape();
        let [out_c, _, _k_h, k_w]: [usize; 4] = kernel.shape();
        let [_pad_top, pad_left, _pad_bottom, _pad_right] = padding;
        let [_stride_h, stride_w] = strides;
        let [_dilation_y, dilation_x] = dilations;
        let [out_h, out_w] = out_hw;

        let mut output = NdTensor::uninit_in(pool, [batch, out_c, out_h, out_w]);

        // `conv_2d_depthwise_block` assumes contiguous last dimension.
        let input = input.to_contiguous_in(pool).auto_return(pool);

        // Map of kernel X position to `(in_range, out_range)` of column ranges that
        // are used in the inner loop.
        let col_range_for_kernel_x: SmallVec<[_; 7]> = (0..k_w)
            .map(|k_x| {
                let (min_out_x, max_out_x) =
                    min_max_out_x_coords(k_x, in_w, pad_left, stride_w, dilation_x, out_w);

                // If the output range is empty, the input range must be too. Exit
                // early in case `max_out_x` is zero.
                //
                // This can happen if all the input coordinates which this kernel
                // column would be multiplied with are part of the padding region.
                if min_out_x == max_out_x {
                    return (0..0, 0..0);
                }

                let min_in_x = min_out_x * stride_w + k_x * dilation_x - pad_left;
                let max_in_x = (max_out_x - 1) * stride_w + k_x * dilation_x - pad_left + 1;

                (min_in_x..max_in_x, min_out_x..max_out_x)
            })
            .collect();

        let n_init = AtomicUsize::new(0);
        for n in 0..batch {
            let mut out_chans = output.slice_mut(n);
            let input = input.slice(n);

            out_chans
                .axis_iter_mut(0)
                .into_par_iter()
                .enumerate()
                .for_each(|(out_chan, mut out_chans)| {
                    let mut out_chans = out_chans
                        .reshaped_mut([1, out_chans.size(0), out_chans.size(1)])
                        .unwrap();
                    self.depthwise_conv_2d_block(
                        out_chans.view_mut(),
                        out_chan..out_chan + 1,
                        input,
                        kernel.view(),
                        bias,
                        padding,
                        strides,
                        dilations,
                        &col_range_for_kernel_x,
                        input_zero,
                        kernel_zero,
                    );

                    n_init.fetch_add(out_chans.len(), Ordering::SeqCst);
                });
        }

        // Safety: We initialized all output rows
        assert!(n_init.load(Ordering::SeqCst) == output.len());
        unsafe { output.assume_init() }
    }
}

impl Default for DepthwiseConvExecutor<f32, f32, f32> {
    fn default() -> Self {
        DepthwiseConvExecutor {
            kernel: Box::new(SimdDepthwiseConvKernel {}),
        }
    }
}

impl Default for DepthwiseConvExecutor<i8, u8, i32> {
    fn default() -> Self {
        DepthwiseConvExecutor {
            kernel: Box::new(GenericDepthwiseConvKernel {}),
        }
    }
}

// nb. Tests for depthwise conv are implemented in the main `conv.rs` module.
