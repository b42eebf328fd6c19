//! Phone-style captures of rendered pages, for the capture and OCR tests and the benchmark: the
//! page at about 75 % of a large frame on a wood-like desk, tilted in perspective, a soft shadow
//! across one corner, a warm colour cast, slight blur, JPEG at quality 82 — what a student's
//! phone makes of a certificate on a desk.

#![allow(dead_code)]

use ab_glyph::{Font, PxScale, ScaleFont};
use image::{Rgb, RgbImage};
use imageproc::geometric_transformations::Projection;

use super::render;

/// Text size of a test document's lines: 22 px at 150 dpi is 10.5 pt, a certificate's small print.
pub const BODY_PX: f32 = 22.0;

/// The lines of a test document: a title and eleven wrapped corpus lines.
pub fn document_lines(start: usize) -> Vec<String> {
    let font = render::font("DejaVuSans.ttf");
    let mut lines = vec!["CERTIFICATE OF EDUCATION".to_string()];
    lines.extend(render::wrap_corpus(
        &font,
        BODY_PX,
        1240.0 * 0.88,
        start,
        11,
    ));
    lines
}

/// A4 at 150 dpi (1240 × 1754) with `lines` in [`BODY_PX`] DejaVu Sans, two lines per block and
/// the blocks spread down the page like a certificate's sections.
pub fn document_page(lines: &[String]) -> RgbImage {
    let font = render::font("DejaVuSans.ttf");
    let (w, h) = (1240, 1754);
    let mut page = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let scaled = font.as_scaled(PxScale::from(BODY_PX));
    let line_h = (scaled.height() * 1.4).ceil() as u32;
    let mut y = 120u32;
    for chunk in lines.chunks(2) {
        let block = render::render_lines(&font, BODY_PX, chunk, w, line_h * 2 + 80);
        // render_lines leaves a 6 % margin on top; copy the block's text rows only.
        image::imageops::overlay(&mut page, &block, 0, i64::from(y) - 74);
        y += line_h * 2 + 150;
    }
    page
}

/// How a capture is made.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub frame_w: u32,
    pub frame_h: u32,
    /// Page width over frame width.
    pub page_frac: f32,
    /// Perspective: the top edge is this fraction narrower than the bottom (negative: wider).
    pub tilt: f32,
    /// In-plane rotation of the page, degrees.
    pub rotate_deg: f32,
    /// Darkening at the shadowed corner (0: no shadow).
    pub shadow: f32,
    pub blur_sigma: f32,
    pub jpeg_quality: u8,
    pub seed: u64,
}

impl Spec {
    /// A 3000 × 4000 capture with a 6 % tilt, 3° rotation and a shadow.
    pub fn phone() -> Self {
        Self {
            frame_w: 3000,
            frame_h: 4000,
            page_frac: 0.75,
            tilt: 0.06,
            rotate_deg: 3.0,
            shadow: 0.45,
            blur_sigma: 1.0,
            jpeg_quality: 82,
            seed: 7,
        }
    }
}

/// A capture and where the page's corners are in it.
pub struct Capture {
    /// The JPEG file a phone would upload.
    pub jpeg: Vec<u8>,
    /// The page's corners in the frame: top-left, top-right, bottom-right, bottom-left.
    pub corners: [[f32; 2]; 4],
}

fn xorshift(state: &mut u64) -> f32 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state % 10_000) as f32 / 10_000.0
}

/// Smooth value noise on a `cell`-pixel lattice, in [0, 1].
fn value_noise(w: u32, h: u32, cell: u32, seed: u64) -> impl Fn(f32, f32) -> f32 {
    let (gw, gh) = (w / cell + 2, h / cell + 2);
    let mut state = seed | 1;
    let grid: Vec<f32> = (0..gw * gh).map(|_| xorshift(&mut state)).collect();
    move |x: f32, y: f32| {
        let (gx, gy) = (x / cell as f32, y / cell as f32);
        let (x0, y0) = (gx.floor() as u32, gy.floor() as u32);
        let (fx, fy) = (gx - x0 as f32, gy - y0 as f32);
        let (fx, fy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
        let g = |i: u32, j: u32| grid[(j.min(gh - 1) * gw + i.min(gw - 1)) as usize];
        let top = g(x0, y0) * (1.0 - fx) + g(x0 + 1, y0) * fx;
        let bottom = g(x0, y0 + 1) * (1.0 - fx) + g(x0 + 1, y0 + 1) * fx;
        top * (1.0 - fy) + bottom * fy
    }
}

/// The page's corners in the frame for `spec` (`aspect` = page height / width).
pub fn page_corners(spec: &Spec, aspect: f32) -> [[f32; 2]; 4] {
    let (fw, fh) = (spec.frame_w as f32, spec.frame_h as f32);
    let pw = fw * spec.page_frac;
    let ph = pw * aspect;
    // The far edge (top, for a positive tilt) is foreshortened and narrower.
    let top_half = pw / 2.0 * (1.0 - spec.tilt.max(0.0));
    let bottom_half = pw / 2.0 * (1.0 + spec.tilt.min(0.0));
    let ph = ph * (1.0 - spec.tilt.abs() * 0.5);
    let local = [
        [-top_half, -ph / 2.0],
        [top_half, -ph / 2.0],
        [bottom_half, ph / 2.0],
        [-bottom_half, ph / 2.0],
    ];
    let (s, c) = spec.rotate_deg.to_radians().sin_cos();
    local.map(|[x, y]| [fw / 2.0 + c * x - s * y, fh / 2.0 + s * x + c * y])
}

/// Photographs `page` as described by `spec`.
pub fn capture(page: &RgbImage, spec: &Spec) -> Capture {
    let (pw, ph) = (page.width() as f32, page.height() as f32);
    let corners = page_corners(spec, ph / pw);
    let to_frame = Projection::from_control_points(
        [(0.0, 0.0), (pw, 0.0), (pw, ph), (0.0, ph)],
        corners.map(|[x, y]| (x, y)),
    )
    .expect("page corners form a quadrilateral");
    let to_page = to_frame.invert();
    let (fw, fh) = (spec.frame_w, spec.frame_h);
    let grain = value_noise(fw, fh, 40, spec.seed);
    let knots = value_noise(fw, fh, 400, spec.seed ^ 0x5eed);
    let mut state = spec.seed.wrapping_mul(2_654_435_761) | 1;
    // The shadow falls from beyond the bottom-right corner of the page.
    let shadow_at = corners[2];
    let shadow_r = fw as f32 * 0.45;
    let mut frame = RgbImage::new(fw, fh);
    for (x, y, px) in frame.enumerate_pixels_mut() {
        let (xf, yf) = (x as f32, y as f32);
        let (u, v) = to_page * (xf + 0.5, yf + 0.5);
        let base = if u >= 0.0 && v >= 0.0 && u < pw - 1.0 && v < ph - 1.0 {
            let (x0, y0) = (u.floor() as u32, v.floor() as u32);
            let (fx, fy) = (u - x0 as f32, v - y0 as f32);
            let mut out = [0f32; 3];
            for (c, o) in out.iter_mut().enumerate() {
                let g = |i: u32, j: u32| page.get_pixel(i, j)[c] as f32;
                *o = g(x0, y0) * (1.0 - fx) * (1.0 - fy)
                    + g(x0 + 1, y0) * fx * (1.0 - fy)
                    + g(x0, y0 + 1) * (1.0 - fx) * fy
                    + g(x0 + 1, y0 + 1) * fx * fy;
            }
            // Paper is never pure white under a lamp.
            out.map(|v| v * 0.93)
        } else {
            // Wood: stretched grain with rings bent by a larger noise.
            let bend = knots(xf, yf) * 60.0;
            let rings =
                ((xf * 0.02 + bend).sin() * 0.5 + 0.5) * 0.6 + grain(xf * 4.0, yf * 0.25) * 0.4;
            let n = xorshift(&mut state) * 12.0;
            let t = 0.75 + 0.35 * rings;
            [120.0 * t + n, 82.0 * t + n, 50.0 * t + n]
        };
        let d = ((xf - shadow_at[0]).powi(2) + (yf - shadow_at[1]).powi(2)).sqrt();
        let shade = 1.0 - spec.shadow * (1.0 - (d / shadow_r).clamp(0.0, 1.0)).powf(0.7);
        // A warm lamp: blue is weaker than red.
        let cast = [1.0, 0.96, 0.86];
        *px = Rgb(std::array::from_fn(|c| {
            (base[c] * shade * cast[c]).clamp(0.0, 255.0) as u8
        }));
    }
    let frame = if spec.blur_sigma > 0.0 {
        imageproc::filter::gaussian_blur_f32(&frame, spec.blur_sigma)
    } else {
        frame
    };
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, spec.jpeg_quality)
        .encode_image(&frame)
        .expect("encoding a JPEG in memory");
    Capture { jpeg, corners }
}

/// Line recall: the share of `reference` lines found in `read` (one of its lines, or two
/// neighbouring ones joined, within `max_cer` of the reference line).
pub fn line_recall(reference: &[String], read: &str, max_cer: f64) -> (f64, Vec<String>) {
    let rows: Vec<&str> = read.lines().collect();
    let mut candidates: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    candidates.extend(rows.windows(2).map(|w| format!("{} {}", w[0], w[1])));
    let missing: Vec<String> = reference
        .iter()
        .filter(|line| !candidates.iter().any(|c| render::cer(line, c) <= max_cer))
        .cloned()
        .collect();
    let found = reference.len() - missing.len();
    (found as f64 / reference.len().max(1) as f64, missing)
}
