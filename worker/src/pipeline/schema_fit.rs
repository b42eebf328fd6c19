//! Schema-fit stage: crop, resize and encode an image so the file matches a portal rule exactly
//! (pixel size, DPI, format and byte window), and verify the result independently.
//!
//! Nothing non-compliant leaves [`fit`]: it re-reads its own output with [`verify`] first.

use std::io::Cursor;

use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::{
    DynamicImage, ExtendedColorType, GrayImage, ImageDecoder, ImageEncoder, ImageFormat,
    ImageReader, Limits, RgbImage,
};
use rythmiq_shared::domain::{DocumentKind, ErrorCode, OutputFormat, PortalRule};
use uuid::Uuid;

/// A file that satisfies a portal rule, ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitOutput {
    /// The encoded file.
    pub bytes: Vec<u8>,
    /// Pixel width (equals the rule's).
    pub width: u32,
    /// Pixel height (equals the rule's).
    pub height: u32,
    /// Dots per inch written into the file (equals the rule's).
    pub dpi: u32,
    /// The container format (equals the rule's).
    pub format: OutputFormat,
    /// Things the user should know, e.g. that the file was padded to reach the minimum size.
    pub warnings: Vec<String>,
}

/// Why an image could not be made to fit a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    /// Even the smallest encoding we can make is above the rule's maximum size.
    #[error(
        "the smallest file we can produce is {smallest} bytes, above the portal's limit of {max} bytes"
    )]
    SizeExceeded {
        /// Size of the smallest encoding tried.
        smallest: u64,
        /// The rule's maximum, in bytes.
        max: u64,
    },
    /// The rule is unusable or encoding failed.
    #[error("could not produce the file: {0}")]
    Failed(String),
    /// A file does not satisfy the rule (from [`verify`]).
    #[error("the file does not meet the portal's rule: {0}")]
    NotCompliant(String),
}

impl FitError {
    /// The user-visible error code: `SIZE_EXCEEDED` or `SCHEMA_FAILED`.
    pub fn code(&self) -> ErrorCode {
        match self {
            FitError::SizeExceeded { .. } => ErrorCode::SizeExceeded,
            FitError::Failed(_) | FitError::NotCompliant(_) => ErrorCode::SchemaFailed,
        }
    }
}

/// Lowest JPEG quality we are willing to ship; below this faces and strokes fall apart.
const MIN_QUALITY: u8 = 5;
const MAX_QUALITY: u8 = 100;
/// Where the search starts and the highest quality it looks for: what phone cameras store, and
/// visually lossless at portal sizes; the bytes above it buy nothing visible. Qualities above it
/// are only used to grow a file that is under the portal's minimum.
const START_QUALITY: u8 = 92;
/// Bound on JPEG encodes per fit, so a job's CPU cost stays predictable.
const MAX_ENCODES: usize = 6;
/// Largest target a rule may ask for; keeps a bad rule from allocating gigabytes.
const MAX_TARGET_PIXELS: u64 = 50_000_000;
/// JPEG cannot describe larger images.
const MAX_SIDE: u32 = 65_535;
const MAX_FILENAME_LEN: usize = 128;
const PNG_MAGIC: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
const PADDING_NOTE: &[u8] = b"rythmiq size padding";

/// The rule, validated and converted to the types the encoders need.
#[derive(Debug, Clone, Copy)]
struct Target {
    width: u32,
    height: u32,
    dpi: u16,
    min: u64,
    max: u64,
}

impl Target {
    fn from_rule(rule: &PortalRule) -> Result<Self, FitError> {
        let side = |v: i32, what: &str| {
            u32::try_from(v)
                .ok()
                .filter(|s| (1..=MAX_SIDE).contains(s))
                .ok_or_else(|| {
                    FitError::Failed(format!("the rule's {what} {v} is outside 1..={MAX_SIDE}"))
                })
        };
        let width = side(rule.width, "width")?;
        let height = side(rule.height, "height")?;
        if u64::from(width) * u64::from(height) > MAX_TARGET_PIXELS {
            return Err(FitError::Failed(format!(
                "the rule's size {width}×{height} is above {MAX_TARGET_PIXELS} pixels"
            )));
        }
        let dpi = u16::try_from(rule.dpi)
            .ok()
            .filter(|d| *d > 0)
            .ok_or_else(|| {
                FitError::Failed(format!("the rule's DPI {} is outside 1..=65535", rule.dpi))
            })?;
        let (min, max) = rule.byte_window();
        if max == 0 || min > max {
            return Err(FitError::Failed(format!(
                "the rule's size window {}–{} KB is empty",
                rule.min_kb, rule.max_kb
            )));
        }
        Ok(Target {
            width,
            height,
            dpi,
            min,
            max,
        })
    }
}

/// Crop (centred) to the rule's aspect ratio, resize to its exact pixel size and encode it in its
/// format with its DPI, landing inside its byte window.
///
/// Fails with [`FitError::SizeExceeded`] when even the smallest acceptable encoding is too big.
pub fn fit(img: &DynamicImage, rule: &PortalRule) -> Result<FitOutput, FitError> {
    let target = Target::from_rule(rule)?;
    let mut warnings = Vec::new();
    let pixels = resize_to_target(img, rule.kind, &target, &mut warnings)?;

    let bytes = match rule.format {
        OutputFormat::Jpeg => {
            fit_jpeg_family(&pixels, rule.kind, &target, &mut warnings, |jpeg| {
                Ok(jpeg.to_vec())
            })?
        }
        OutputFormat::Pdf => fit_jpeg_family(&pixels, rule.kind, &target, &mut warnings, |jpeg| {
            Ok(wrap_pdf(jpeg, &target, pixels.is_grey()))
        })?,
        // PNG keeps its RGB colour type (and its own greyscale fallback for signatures).
        OutputFormat::Png => fit_png(&pixels.into_rgb(), rule.kind, &target, &mut warnings)?,
    };

    // Belt and braces: re-read the file exactly as a portal would before handing it out.
    verify(&bytes, rule)?;
    Ok(FitOutput {
        bytes,
        width: target.width,
        height: target.height,
        dpi: u32::from(target.dpi),
        format: rule.format,
        warnings,
    })
}

/// Check a finished file against a rule: format (by magic bytes), pixel size, DPI stored in the
/// file, byte size within [`PortalRule::byte_window`], and that the image data decodes.
pub fn verify(bytes: &[u8], rule: &PortalRule) -> Result<(), FitError> {
    let target = Target::from_rule(rule)?;
    let detected = sniff(bytes);
    if detected != Some(rule.format) {
        return Err(FitError::NotCompliant(format!(
            "the file is {}, the portal wants {}",
            detected.map_or("not a JPEG, PNG or PDF", |f| f.content_type()),
            rule.format.content_type()
        )));
    }
    let size = len_u64(bytes);
    if size < target.min || size > target.max {
        return Err(FitError::NotCompliant(format!(
            "the file is {size} bytes, outside the window of {}–{} bytes",
            target.min, target.max
        )));
    }
    match rule.format {
        OutputFormat::Jpeg => verify_jpeg(bytes, &target),
        OutputFormat::Png => verify_png(bytes, &target),
        OutputFormat::Pdf => verify_pdf(bytes, &target),
    }
}

/// The file name to upload under, from `rule.filename_pattern` with `{job_id}`, `{slug}` and
/// `{kind}` replaced, reduced to `[A-Za-z0-9._-]`, at most 128 characters, and ending in the
/// format's extension.
pub fn output_filename(rule: &PortalRule, job_id: Uuid) -> String {
    let kind = match rule.kind {
        DocumentKind::Photo => "photo",
        DocumentKind::Signature => "signature",
        DocumentKind::Document => "document",
    };
    let job = job_id.to_string();
    // Single pass, so a slug that happens to contain "{kind}" is not expanded twice.
    let mut expanded = String::new();
    let mut rest = rule.filename_pattern.as_str();
    while let Some(open) = rest.find('{') {
        expanded.push_str(&rest[..open]);
        rest = &rest[open..];
        let value = [
            ("{job_id}", job.as_str()),
            ("{slug}", rule.slug.as_str()),
            ("{kind}", kind),
        ]
        .into_iter()
        .find(|(placeholder, _)| rest.starts_with(placeholder));
        match value {
            Some((placeholder, value)) => {
                expanded.push_str(value);
                rest = &rest[placeholder.len()..];
            }
            None => {
                expanded.push('{');
                rest = &rest[1..];
            }
        }
    }
    expanded.push_str(rest);

    let sanitised = rythmiq_shared::storage::safe_chars(&expanded);
    // A leading dot hides the file and a leading dash reads as a command-line flag.
    let sanitised = sanitised.trim_start_matches(['.', '-']);

    let default_ext = rule.format.extension();
    let accepted: &[&str] = match rule.format {
        OutputFormat::Jpeg => &["jpg", "jpeg"],
        OutputFormat::Png => &["png"],
        OutputFormat::Pdf => &["pdf"],
    };
    let lower = sanitised.to_ascii_lowercase();
    let (stem, ext) = accepted
        .iter()
        .find(|ext| lower.len() > ext.len() + 1 && lower.ends_with(&format!(".{ext}")))
        .map_or((sanitised, default_ext), |ext| {
            let split = sanitised.len() - ext.len();
            (&sanitised[..split - 1], &sanitised[split..])
        });
    // Everything is ASCII now, so byte truncation cannot split a character.
    let room = MAX_FILENAME_LEN - 1 - ext.len();
    let stem = &stem[..stem.len().min(room)];
    let stem = if stem.is_empty() { job.as_str() } else { stem };
    format!("{stem}.{ext}")
}

// ---------------------------------------------------------------------------------------------
// Geometry

/// The pixels to encode, at the target size.
#[derive(Debug, Clone)]
enum Pixels {
    Rgb(RgbImage),
    /// Every source pixel of the crop had R = G = B (a grey scan expanded to RGB by decode): one
    /// channel is resized and encoded instead of three equal ones.
    Grey(GrayImage),
}

impl Pixels {
    fn is_grey(&self) -> bool {
        matches!(self, Pixels::Grey(_))
    }

    fn dimensions(&self) -> (u32, u32) {
        match self {
            Pixels::Rgb(rgb) => rgb.dimensions(),
            Pixels::Grey(grey) => grey.dimensions(),
        }
    }

    /// The samples, interleaved, with their JPEG colour type.
    fn samples(&self) -> (&[u8], jpeg_encoder::ColorType) {
        match self {
            Pixels::Rgb(rgb) => (rgb.as_raw(), jpeg_encoder::ColorType::Rgb),
            Pixels::Grey(grey) => (grey.as_raw(), jpeg_encoder::ColorType::Luma),
        }
    }

    fn into_rgb(self) -> RgbImage {
        match self {
            Pixels::Rgb(rgb) => rgb,
            Pixels::Grey(grey) => super::decode::flatten_on_white(DynamicImage::ImageLuma8(grey)),
        }
    }
}

/// Crop `img` to the target aspect ratio (centred, or around the subject for photos: see
/// [`subject_crop`]) and resize it to the exact target size, as RGB8 with any transparency
/// flattened onto white, or as one grey channel when the crop is grey ([`Pixels::Grey`]).
fn resize_to_target(
    img: &DynamicImage,
    kind: DocumentKind,
    target: &Target,
    warnings: &mut Vec<String>,
) -> Result<Pixels, FitError> {
    let (tw, th) = (target.width, target.height);
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err(FitError::Failed("the input image has no pixels".to_owned()));
    }
    let (x, y, cw, ch) = centre_crop(w, h, tw, th);
    if cw < tw || ch < th {
        warnings.push(format!(
            "the photo is smaller than required ({cw}×{ch} after cropping, portal wants \
             {tw}×{th}); it was enlarged and may look soft"
        ));
    }

    // Transparency goes onto white before any filtering, so transparent pixels' hidden colour
    // cannot bleed into the edges. Decode output is already opaque RGB8 and is borrowed as is.
    let owned;
    let source: &RgbImage = match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => {
            owned = super::decode::flatten_on_white(other.clone());
            &owned
        }
    };
    // Photos keep their subject; signatures and pages stay centred (their content is the page).
    let (x, y) = if kind == DocumentKind::Photo && (cw, ch) != (w, h) {
        subject_crop(source, cw, ch).unwrap_or((x, y))
    } else {
        (x, y)
    };
    if let Some(grey) = grey_crop(source, (x, y, cw, ch)) {
        let grey = if (cw, ch) == (tw, th) {
            grey
        } else {
            resample(&grey, (0, 0, cw, ch), tw, th)?
        };
        // Portals ask for colour photographs and some check a JPEG's component count: a grey
        // photo is still written with three components (expanded at the small target size);
        // signatures and pages may be one.
        return Ok(if kind == DocumentKind::Photo {
            Pixels::Rgb(Pixels::Grey(grey).into_rgb())
        } else {
            Pixels::Grey(grey)
        });
    }
    if (cw, ch) == (tw, th) {
        // Already the right size: the crop alone.
        return Ok(Pixels::Rgb(
            image::imageops::crop_imm(source, x, y, cw, ch).to_image(),
        ));
    }
    resample(source, (x, y, cw, ch), tw, th).map(Pixels::Rgb)
}

/// Samples per side of the grid [`grey_crop`] looks at before reading every pixel.
const GREY_PROBE: u32 = 64;

/// The `crop` rectangle (x, y, w, h) of `source` as one channel when all its pixels have
/// R = G = B, else `None`. A colour image is turned down after a [`GREY_PROBE`]² sample grid
/// (microseconds); a grey one costs a single pass, which also extracts the channel.
fn grey_crop(source: &RgbImage, crop: (u32, u32, u32, u32)) -> Option<GrayImage> {
    let (x, y, cw, ch) = crop;
    let is_grey = |p: &image::Rgb<u8>| p[0] == p[1] && p[1] == p[2];
    let (sx, sy) = ((cw / GREY_PROBE).max(1), (ch / GREY_PROBE).max(1));
    for py in (y..y + ch).step_by(sy as usize) {
        for px in (x..x + cw).step_by(sx as usize) {
            if !is_grey(source.get_pixel(px, py)) {
                return None;
            }
        }
    }
    let (w, x, cw) = (source.width() as usize, x as usize, cw as usize);
    let mut grey = vec![0; cw * ch as usize];
    let rows = source.as_raw().chunks_exact(w * 3).skip(y as usize);
    for (dst, row) in grey.chunks_exact_mut(cw).zip(rows) {
        // No early exit inside a row, so the comparison vectorises.
        let mut same = true;
        for (d, p) in dst.iter_mut().zip(row[x * 3..(x + cw) * 3].chunks_exact(3)) {
            same &= (p[0] == p[1]) & (p[1] == p[2]);
            *d = p[0];
        }
        if !same {
            return None;
        }
    }
    GrayImage::from_raw(cw as u32, ch, grey)
}

/// Lanczos-3 resampling of the `crop` rectangle (x, y, w, h) of `source` (RGB or grey) to
/// `tw`×`th`, with `fast_image_resize` (SIMD convolution, gamma-encoded values as before; the
/// crop is read in place, not copied).
fn resample<P>(
    source: &image::ImageBuffer<P, Vec<u8>>,
    crop: (u32, u32, u32, u32),
    tw: u32,
    th: u32,
) -> Result<image::ImageBuffer<P, Vec<u8>>, FitError>
where
    P: image::Pixel<Subpixel = u8>,
    image::ImageBuffer<P, Vec<u8>>:
        fast_image_resize::IntoImageView + fast_image_resize::IntoImageViewMut,
{
    use fast_image_resize::{FilterType as Fir, ResizeAlg, ResizeOptions, Resizer};

    let (x, y, cw, ch) = crop;
    // A convolution at any ratio: its kernel widens with the ratio, so it averages every source
    // pixel (no aliasing on text or fine patterns); a nearest-neighbour pre-pass would be cheaper
    // on a full-size scan but would alias. Large JPEGs arrive already reduced (decode.rs).
    let algorithm = ResizeAlg::Convolution(Fir::Lanczos3);
    let options = ResizeOptions::new().resize_alg(algorithm).crop(
        f64::from(x),
        f64::from(y),
        f64::from(cw),
        f64::from(ch),
    );
    let mut out = image::ImageBuffer::new(tw, th);
    Resizer::new()
        .resize(source, &mut out, &options)
        .map_err(|e| FitError::Failed(format!("resizing failed: {e}")))?;
    Ok(out)
}

/// Saliency of a skin-coloured cell: three times the most an edge or a colour contrast can give,
/// so a face outweighs a detailed background (a flag, a shelf) of the same size.
const SKIN_WEIGHT: f64 = 3.0;
/// Long side of the grid the subject is looked for on: coarse is enough to place a crop window.
const SALIENCY_GRID: u32 = 96;
/// Share of the window height kept free above the top of the subject (a portrait's headroom).
const HEADROOM: f64 = 0.10;
/// A row or column counts as subject when its saliency reaches this share of the strongest one.
const SUBJECT_LEVEL: f64 = 0.30;

/// Where to put a `cw`×`ch` crop window (one side of which is the image's full side) so that it
/// keeps the photo's subject: `(x, y)`, or `None` when nothing stands out (the caller centres).
///
/// Saliency is measured on a grid of at most [`SALIENCY_GRID`] cells on the long side (box means
/// of the image), each cell scoring the sum of
/// - its edge energy (|∇ luma| to the right and below neighbours), normalised by the 95th
///   percentile over the grid: detail is where the subject is;
/// - its colour distance from the background, taken as the median colour of the grid's border
///   cells, normalised the same way: portrait photos are shot against a wall or a backdrop;
/// - [`SKIN_WEIGHT`] for a skin-coloured cell (YCbCr, Cb 77–127, Cr 133–173, the classic
///   Chai–Ngan box): faces.
///
/// Each row (or column) sums its cells; the median is subtracted so that uniform texture counts
/// for nothing. Horizontally the window is centred on the saliency centroid. Vertically, the top
/// of the subject (the first row reaching [`SUBJECT_LEVEL`] of the strongest) is placed
/// [`HEADROOM`] of the window height below the window's top: the head keeps room above it and
/// the crop takes from the bottom, as a passport photo is framed. A window always stays inside
/// the image.
fn subject_crop(img: &RgbImage, cw: u32, ch: u32) -> Option<(u32, u32)> {
    let (w, h) = img.dimensions();
    if (cw < w && ch < h) || cw > w || ch > h {
        return None;
    }
    let grid = SaliencyGrid::new(img)?;
    let saliency = grid.saliency();
    let (gw, gh) = (grid.width, grid.height);
    let horizontal = cw < w;
    let profile: Vec<f64> = if horizontal {
        (0..gw)
            .map(|x| (0..gh).map(|y| saliency[y * gw + x]).sum())
            .collect()
    } else {
        saliency
            .chunks_exact(gw)
            .map(|row| row.iter().sum())
            .collect()
    };
    let mut sorted = profile.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let excess: Vec<f64> = profile.iter().map(|p| (p - median).max(0.0)).collect();
    let total: f64 = excess.iter().sum();
    let peak = excess.iter().copied().fold(0.0, f64::max);
    if total <= f64::EPSILON || peak <= f64::EPSILON {
        return None;
    }
    // Grid cell → image pixels along the free axis.
    let (len, window, cells) = if horizontal { (w, cw, gw) } else { (h, ch, gh) };
    let scale = f64::from(len) / cells as f64;
    let start = if horizontal {
        let centroid = excess
            .iter()
            .enumerate()
            .map(|(i, e)| (i as f64 + 0.5) * e)
            .sum::<f64>()
            / total;
        centroid * scale - f64::from(window) / 2.0
    } else {
        let top = excess.iter().position(|&e| e >= SUBJECT_LEVEL * peak)?;
        top as f64 * scale - HEADROOM * f64::from(window)
    };
    let slack = f64::from(len - window);
    // In 0..=slack, so the cast cannot overflow.
    let start = start.round().clamp(0.0, slack) as u32;
    Some(if horizontal { (start, 0) } else { (0, start) })
}

/// Box means of an image on a coarse grid (RGB, as f64).
struct SaliencyGrid {
    width: usize,
    height: usize,
    cells: Vec<[f64; 3]>,
}

impl SaliencyGrid {
    fn new(img: &RgbImage) -> Option<Self> {
        let (w, h) = img.dimensions();
        let step = w.max(h).div_ceil(SALIENCY_GRID).max(1);
        let (gw, gh) = (
            usize::try_from(w / step).ok()?,
            usize::try_from(h / step).ok()?,
        );
        if gw < 3 || gh < 3 {
            return None;
        }
        let step_us = usize::try_from(step).ok()?;
        let mut sums = vec![[0u32; 3]; gw * gh];
        for (y, row) in img.rows().enumerate().take(gh * step_us) {
            let gy = y / step_us;
            for (x, px) in row.enumerate().take(gw * step_us) {
                let cell = &mut sums[gy * gw + x / step_us];
                for (acc, v) in cell.iter_mut().zip(px.0) {
                    *acc += u32::from(v);
                }
            }
        }
        let n = f64::from(step * step);
        let cells = sums
            .iter()
            .map(|s| {
                [
                    f64::from(s[0]) / n,
                    f64::from(s[1]) / n,
                    f64::from(s[2]) / n,
                ]
            })
            .collect();
        Some(SaliencyGrid {
            width: gw,
            height: gh,
            cells,
        })
    }

    /// Per-cell saliency: normalised edge energy + normalised distance from the background colour
    /// + 1 for skin (see [`subject_crop`]).
    fn saliency(&self) -> Vec<f64> {
        let (gw, gh) = (self.width, self.height);
        let luma = |c: &[f64; 3]| 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
        let l: Vec<f64> = self.cells.iter().map(luma).collect();
        let edges: Vec<f64> = (0..gw * gh)
            .map(|i| {
                let (x, y) = (i % gw, i / gw);
                let right = if x + 1 < gw {
                    (l[i + 1] - l[i]).abs()
                } else {
                    0.0
                };
                let below = if y + 1 < gh {
                    (l[i + gw] - l[i]).abs()
                } else {
                    0.0
                };
                right + below
            })
            .collect();
        // Background: per-channel median of the border cells.
        let border: Vec<&[f64; 3]> = self
            .cells
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                let (x, y) = (i % gw, i / gw);
                x == 0 || y == 0 || x + 1 == gw || y + 1 == gh
            })
            .map(|(_, c)| c)
            .collect();
        let background: [f64; 3] = std::array::from_fn(|ch| {
            let mut v: Vec<f64> = border.iter().map(|c| c[ch]).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        });
        let distance: Vec<f64> = self
            .cells
            .iter()
            .map(|c| {
                let d: f64 = (0..3).map(|ch| (c[ch] - background[ch]).powi(2)).sum();
                d.sqrt()
            })
            .collect();
        let normalise = |v: &[f64]| -> Vec<f64> {
            let mut sorted = v.to_vec();
            sorted.sort_by(f64::total_cmp);
            let p95 = sorted[sorted.len() * 95 / 100].max(1.0);
            v.iter().map(|x| (x / p95).min(1.0)).collect()
        };
        let (edges, distance) = (normalise(&edges), normalise(&distance));
        self.cells
            .iter()
            .zip(edges.iter().zip(&distance))
            .map(|(c, (e, d))| {
                let cb = 128.0 - 0.168_736 * c[0] - 0.331_264 * c[1] + 0.5 * c[2];
                let cr = 128.0 + 0.5 * c[0] - 0.418_688 * c[1] - 0.081_312 * c[2];
                let skin = (77.0..=127.0).contains(&cb) && (133.0..=173.0).contains(&cr);
                e + d + if skin { SKIN_WEIGHT } else { 0.0 }
            })
            .collect()
    }
}

/// The largest centred rectangle of `w`×`h` with the aspect ratio of `tw`×`th`: (x, y, w, h).
fn centre_crop(w: u32, h: u32, tw: u32, th: u32) -> (u32, u32, u32, u32) {
    let (w64, h64, tw64, th64) = (u64::from(w), u64::from(h), u64::from(tw), u64::from(th));
    let narrow = |v: u64, fallback: u32| u32::try_from(v).unwrap_or(fallback);
    if w64 * th64 > h64 * tw64 {
        // Too wide: keep the full height.
        let cw = ((h64 * tw64 + th64 / 2) / th64).clamp(1, w64);
        (narrow((w64 - cw) / 2, 0), 0, narrow(cw, w), h)
    } else {
        // Too tall (or exact): keep the full width.
        let ch = ((w64 * th64 + tw64 / 2) / tw64).clamp(1, h64);
        (0, narrow((h64 - ch) / 2, 0), w, narrow(ch, h))
    }
}

// ---------------------------------------------------------------------------------------------
// JPEG and PDF

/// One JPEG encoding and the container built around it.
struct Candidate {
    quality: u8,
    jpeg: Vec<u8>,
    file: Vec<u8>,
}

/// Chroma resolution of an encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chroma {
    /// 4:2:0, as every camera stores photos: colour at half resolution, a third less data.
    Half,
    /// 4:4:4: thin coloured strokes (ink signatures, stamps, coloured text) stay crisp.
    Full,
}

/// Typical size of a JPEG at quality `q` relative to quality 100, from libjpeg's scaled tables
/// on photos (within ~25 % across the photos, scans and signatures we measured). Only a prior for
/// where to encode next: every decision is taken on measured sizes.
const TYPICAL_RATIO: [(u8, f64); 10] = [
    (5, 0.045),
    (15, 0.07),
    (30, 0.10),
    (50, 0.14),
    (70, 0.19),
    (80, 0.24),
    (90, 0.34),
    (95, 0.46),
    (98, 0.65),
    (100, 1.0),
];

/// `ln` of [`TYPICAL_RATIO`] at `q`, linear between the table's points.
fn prior(q: f64) -> f64 {
    let mut prev = TYPICAL_RATIO[0];
    for &(tq, r) in &TYPICAL_RATIO[1..] {
        if q <= f64::from(tq) {
            let t = ((q - f64::from(prev.0)) / f64::from(tq - prev.0)).clamp(0.0, 1.0);
            return (prev.1.ln() * (1.0 - t)) + (r.ln() * t);
        }
        prev = (tq, r);
    }
    0.0
}

/// The quality whose [`prior`] is `level` (inverse of [`prior`], by bisection: it is monotonic).
fn quality_at(level: f64) -> f64 {
    let (mut lo, mut hi) = (f64::from(MIN_QUALITY), f64::from(MAX_QUALITY));
    for _ in 0..30 {
        let mid = (lo + hi) / 2.0;
        if prior(mid) < level {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The quality predicted to give `goal` bytes, from measured (quality, bytes) points: the sizes
/// follow the prior's shape, `ln size = a + b · prior(q)`, fitted through the two points (or with
/// b = 1 through one).
fn predict_quality(known: &[(u8, u64)], goal: u64) -> f64 {
    let ln = |bytes: u64| (bytes.max(1) as f64).ln();
    match known {
        [(q0, s0), (q1, s1), ..] if q0 != q1 && s0 != s1 => {
            let (p0, p1) = (prior(f64::from(*q0)), prior(f64::from(*q1)));
            let b = (ln(*s1) - ln(*s0)) / (p1 - p0);
            if b.is_finite() && b > 0.0 {
                return quality_at(p0 + (ln(goal) - ln(*s0)) / b);
            }
            quality_at(prior(f64::from(*q0)) + ln(goal) - ln(*s0))
        }
        [(q, s), ..] => quality_at(prior(f64::from(*q)) + ln(goal) - ln(*s)),
        [] => f64::from(MAX_QUALITY),
    }
}

/// Find (nearly) the highest JPEG quality up to [`START_QUALITY`] whose wrapped file fits under
/// the maximum, in few encodes: [`START_QUALITY`] first (most portal files fit at once); otherwise
/// each next quality
/// is predicted from the sizes measured so far ([`predict_quality`]) aiming a little under the
/// maximum, inside the bracket between the best fitting and the lowest too-big quality, which
/// shrinks at every step. The search stops when a fitting file is within 10 % of the maximum,
/// the bracket is closed, or after [`MAX_ENCODES`]. Then, if the file is under the minimum,
/// it grows honestly: quality 100, then full-resolution chroma, then inert metadata padding.
fn fit_jpeg_family(
    pixels: &Pixels,
    kind: DocumentKind,
    target: &Target,
    warnings: &mut Vec<String>,
    wrap: impl Fn(&[u8]) -> Result<Vec<u8>, FitError>,
) -> Result<Vec<u8>, FitError> {
    let chroma = if kind == DocumentKind::Photo {
        Chroma::Half
    } else {
        Chroma::Full
    };
    let attempt = |quality: u8, chroma: Chroma| -> Result<Candidate, FitError> {
        let jpeg = encode_jpeg(pixels, quality, target.dpi, chroma)?;
        let file = wrap(&jpeg)?;
        Ok(Candidate {
            quality,
            jpeg,
            file,
        })
    };
    let size = |c: &Candidate| len_u64(&c.file);

    let first = attempt(START_QUALITY, chroma)?;
    let mut best = if size(&first) <= target.max {
        first
    } else {
        // Aim a little under the maximum so a prediction that is slightly off still fits.
        let goal = target.max - target.max / 20;
        let good_enough = target.max - target.max / 10;
        let mut known = vec![(first.quality, size(&first))];
        let mut too_big = START_QUALITY;
        let mut fits: Option<Candidate> = None;
        let mut encodes = 1;
        while encodes < MAX_ENCODES {
            let floor = fits.as_ref().map_or(MIN_QUALITY, |f| f.quality + 1);
            if floor >= too_big || fits.as_ref().is_some_and(|f| size(f) >= good_enough) {
                break;
            }
            let predicted = predict_quality(&known, goal).round();
            // Clamp into the open bracket and, when it is wide, keep away from its ends so that
            // every step shrinks it noticeably even if the prediction is poor.
            let (lo, hi) = (f64::from(floor), f64::from(too_big - 1));
            let margin = ((hi - lo) / 8.0).floor();
            let q = predicted.clamp(lo + margin, hi - margin).clamp(lo, hi);
            // In MIN_QUALITY..MAX_QUALITY, so the cast is exact.
            let q = q as u8;
            let candidate = attempt(q, chroma)?;
            encodes += 1;
            // The two most recent points predict best (sizes are only locally like the prior).
            known.insert(0, (q, size(&candidate)));
            known.truncate(2);
            if size(&candidate) <= target.max {
                fits = Some(candidate);
            } else {
                too_big = q;
                if q == MIN_QUALITY {
                    break;
                }
            }
        }
        match fits {
            Some(f) => f,
            None => {
                let floor = attempt(MIN_QUALITY, chroma)?;
                if size(&floor) > target.max {
                    return Err(FitError::SizeExceeded {
                        smallest: size(&floor),
                        max: target.max,
                    });
                }
                floor
            }
        }
    };
    tracing::debug!(
        quality = best.quality,
        bytes = best.file.len(),
        "chose JPEG quality"
    );

    if size(&best) >= target.min {
        return Ok(best.file);
    }
    // Even the best quality is too small (tiny, flat images). Grow it honestly: quality 100, then
    // full-resolution chroma, both real gains in detail; then only inert metadata is left: COM
    // segments that every decoder skips. Container overhead can grow with the padding (PDF
    // offsets), so re-measure.
    if best.quality == START_QUALITY {
        let mut steps = vec![(MAX_QUALITY, chroma)];
        // A grey JPEG has no chroma to grow.
        if chroma == Chroma::Half && !pixels.is_grey() {
            steps.push((MAX_QUALITY, Chroma::Full));
        }
        for (quality, c) in steps {
            let grown = attempt(quality, c)?;
            if size(&grown) > target.max {
                break;
            }
            best = grown;
            if size(&best) >= target.min {
                return Ok(best.file);
            }
        }
    }
    let small = size(&best);
    let mut padding = target.min - small;
    for _ in 0..4 {
        let file = wrap(&pad_jpeg(&best.jpeg, padding)?)?;
        let padded = len_u64(&file);
        if padded >= target.min {
            warnings.push(format!(
                "the file came out at only {small} bytes (JPEG quality {}); {} bytes of \
                 metadata padding were added to reach the portal's minimum of {} bytes \
                 (the picture is unchanged)",
                best.quality,
                padded - small,
                target.min
            ));
            return Ok(file);
        }
        padding += target.min - padded;
    }
    Err(FitError::Failed(
        "could not pad the file to the minimum size".to_owned(),
    ))
}

/// A JPEG of `pixels`: one component for [`Pixels::Grey`] (the chroma setting then has no
/// effect), YCbCr otherwise.
fn encode_jpeg(
    pixels: &Pixels,
    quality: u8,
    dpi: u16,
    chroma: Chroma,
) -> Result<Vec<u8>, FitError> {
    use jpeg_encoder::{Encoder, PixelDensity, SamplingFactor};

    let side = |v: u32| {
        u16::try_from(v).map_err(|_| FitError::Failed(format!("{v} pixels is too large for JPEG")))
    };
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, quality);
    encoder.set_density(PixelDensity::dpi(dpi));
    encoder.set_sampling_factor(match chroma {
        Chroma::Half => SamplingFactor::F_2_2,
        Chroma::Full => SamplingFactor::F_1_1,
    });
    let (w, h) = pixels.dimensions();
    let (samples, colour) = pixels.samples();
    encoder
        .encode(samples, side(w)?, side(h)?, colour)
        .map_err(|e| FitError::Failed(format!("JPEG encoding failed: {e}")))?;
    Ok(out)
}

/// Insert COM segments totalling at least `extra` bytes right after the JFIF APP0 segment (which
/// must stay first).
fn pad_jpeg(jpeg: &[u8], extra: u64) -> Result<Vec<u8>, FitError> {
    const SEGMENT_OVERHEAD: usize = 4; // marker + length
    const MAX_SEGMENT: usize = SEGMENT_OVERHEAD + 65_533;
    let app0_end = jfif_segment(jpeg)
        .map(|(_, end)| end)
        .ok_or_else(|| FitError::Failed("encoder output lacks a JFIF header".to_owned()))?;
    let extra = usize::try_from(extra)
        .map_err(|_| FitError::Failed("padding does not fit in memory".to_owned()))?;

    let mut segments = Vec::with_capacity(extra + MAX_SEGMENT);
    let mut remaining = extra.max(SEGMENT_OVERHEAD);
    while remaining > 0 {
        let mut seg = remaining.min(MAX_SEGMENT);
        let rest = remaining - seg;
        if rest > 0 && rest < SEGMENT_OVERHEAD {
            // Leave room for a final, minimal segment.
            seg -= SEGMENT_OVERHEAD - rest;
        }
        let payload = seg - SEGMENT_OVERHEAD;
        let length = u16::try_from(payload + 2)
            .map_err(|_| FitError::Failed("padding segment too long".to_owned()))?;
        segments.extend_from_slice(&[0xFF, 0xFE]);
        segments.extend_from_slice(&length.to_be_bytes());
        let note = &PADDING_NOTE[..PADDING_NOTE.len().min(payload)];
        segments.extend_from_slice(note);
        segments.resize(segments.len() + payload - note.len(), b' ');
        remaining -= seg;
    }

    let mut out = Vec::with_capacity(jpeg.len() + segments.len());
    out.extend_from_slice(&jpeg[..app0_end]);
    out.extend_from_slice(&segments);
    out.extend_from_slice(&jpeg[app0_end..]);
    Ok(out)
}

/// Locate the APP0 JFIF segment directly after SOI: (payload start, segment end).
fn jfif_segment(jpeg: &[u8]) -> Option<(usize, usize)> {
    if jpeg.get(..4)? != [0xFF, 0xD8, 0xFF, 0xE0] {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*jpeg.get(4)?, *jpeg.get(5)?]));
    let end = 4 + len;
    if len < 16 || end > jpeg.len() || jpeg.get(6..11)? != b"JFIF\0" {
        return None;
    }
    Some((6, end))
}

/// Page size in PostScript points (1/72 inch) for `pixels` at `dpi`.
fn points(pixels: u32, dpi: u16) -> String {
    format!("{:.2}", f64::from(pixels) * 72.0 / f64::from(dpi))
}

/// A minimal single-page PDF 1.4 that shows the JPEG (DCTDecode, no re-encoding) over the whole
/// page, at the physical size implied by the rule's pixels and DPI; `grey` for a one-component
/// JPEG (DeviceGray).
fn wrap_pdf(jpeg: &[u8], target: &Target, grey: bool) -> Vec<u8> {
    let (pw, ph) = (
        points(target.width, target.dpi),
        points(target.height, target.dpi),
    );
    let content = format!("q {pw} 0 0 {ph} 0 0 cm /Im0 Do Q");
    let mut out = Vec::with_capacity(jpeg.len() + 1024);
    // The binary comment line tells transfer tools the file is not text.
    out.extend_from_slice(b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n");
    let mut offsets = Vec::with_capacity(5);
    let mut object = |out: &mut Vec<u8>, head: String, stream: Option<&[u8]>| {
        offsets.push(out.len());
        out.extend_from_slice(head.as_bytes());
        if let Some(data) = stream {
            out.extend_from_slice(b"\nstream\n");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\nendstream");
        }
        out.extend_from_slice(b"\nendobj\n");
    };
    object(
        &mut out,
        "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        None,
    );
    object(
        &mut out,
        "2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        None,
    );
    object(
        &mut out,
        format!(
            "3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pw} {ph}] \
             /Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>"
        ),
        None,
    );
    object(
        &mut out,
        format!(
            "4 0 obj\n<< /Type /XObject /Subtype /Image /Width {} /Height {} \
             /ColorSpace /{} /BitsPerComponent 8 /Filter /DCTDecode /Length {} >>",
            target.width,
            target.height,
            if grey { "DeviceGray" } else { "DeviceRGB" },
            jpeg.len()
        ),
        Some(jpeg),
    );
    object(
        &mut out,
        format!("5 0 obj\n<< /Length {} >>", content.len()),
        Some(content.as_bytes()),
    );
    let xref = out.len();
    out.extend_from_slice(b"xref\n0 6\n0000000000 65535 f \n");
    for offset in offsets {
        // Each xref entry is exactly 20 bytes, as the format requires.
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
    );
    out
}

// ---------------------------------------------------------------------------------------------
// PNG

fn fit_png(
    pixels: &RgbImage,
    kind: DocumentKind,
    target: &Target,
    warnings: &mut Vec<String>,
) -> Result<Vec<u8>, FitError> {
    let mut png = encode_png(
        pixels.as_raw(),
        pixels.width(),
        pixels.height(),
        ExtendedColorType::Rgb8,
        target.dpi,
    )?;
    if len_u64(&png) > target.max && kind == DocumentKind::Signature {
        // Signatures are ink on paper; dropping colour costs nothing visible and a third of the
        // data.
        let grey = DynamicImage::ImageRgb8(pixels.clone()).into_luma8();
        let grey_png = encode_png(
            grey.as_raw(),
            grey.width(),
            grey.height(),
            ExtendedColorType::L8,
            target.dpi,
        )?;
        if len_u64(&grey_png) < len_u64(&png) {
            png = grey_png;
            warnings.push("the signature was saved in greyscale to fit the size limit".to_owned());
        }
    }
    let size = len_u64(&png);
    if size > target.max {
        return Err(FitError::SizeExceeded {
            smallest: size,
            max: target.max,
        });
    }
    if size < target.min {
        png = pad_png(&png, target.min - size)?;
        warnings.push(format!(
            "the image compresses to only {size} bytes; {} bytes of metadata padding were added \
             to reach the portal's minimum of {} bytes (the picture is unchanged)",
            len_u64(&png) - size,
            target.min
        ));
    }
    Ok(png)
}

fn encode_png(
    raw: &[u8],
    width: u32,
    height: u32,
    colour: ExtendedColorType,
    dpi: u16,
) -> Result<Vec<u8>, FitError> {
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Best, PngFilter::Adaptive)
        .write_image(raw, width, height, colour)
        .map_err(|e| FitError::Failed(format!("PNG encoding failed: {e}")))?;
    // image's PNG encoder cannot write pHYs, so splice it in right after IHDR (it must precede
    // IDAT). IHDR is always the first chunk: 8 magic + 4 length + 4 type + 13 data + 4 CRC.
    const IHDR_END: usize = 33;
    if out.get(12..16) != Some(b"IHDR".as_slice()) {
        return Err(FitError::Failed("PNG encoder output lacks IHDR".to_owned()));
    }
    let ppm = dpi_to_ppm(dpi).to_be_bytes();
    let mut phys = Vec::with_capacity(9);
    phys.extend_from_slice(&ppm);
    phys.extend_from_slice(&ppm);
    phys.push(1); // unit: metre
    let mut with_phys = Vec::with_capacity(out.len() + 21);
    with_phys.extend_from_slice(&out[..IHDR_END]);
    write_png_chunk(&mut with_phys, b"pHYs", &phys)?;
    with_phys.extend_from_slice(&out[IHDR_END..]);
    Ok(with_phys)
}

/// Add a `tEXt` comment of at least `extra` bytes before IEND; viewers ignore or merely show it.
fn pad_png(png: &[u8], extra: u64) -> Result<Vec<u8>, FitError> {
    const IEND_LEN: usize = 12;
    const KEYWORD: &[u8] = b"Comment\0";
    const OVERHEAD: usize = 12 + KEYWORD.len();
    let extra = usize::try_from(extra)
        .map_err(|_| FitError::Failed("padding does not fit in memory".to_owned()))?;
    let body = png
        .len()
        .checked_sub(IEND_LEN)
        .filter(|&at| png.get(at + 4..at + 8) == Some(b"IEND".as_slice()))
        .ok_or_else(|| FitError::Failed("PNG encoder output lacks IEND".to_owned()))?;
    let text_len = extra.saturating_sub(OVERHEAD);
    let mut data = Vec::with_capacity(KEYWORD.len() + text_len);
    data.extend_from_slice(KEYWORD);
    let note = &PADDING_NOTE[..PADDING_NOTE.len().min(text_len)];
    data.extend_from_slice(note);
    data.resize(KEYWORD.len() + text_len, b' ');

    let mut out = Vec::with_capacity(png.len() + extra.max(OVERHEAD));
    out.extend_from_slice(&png[..body]);
    write_png_chunk(&mut out, b"tEXt", &data)?;
    out.extend_from_slice(&png[body..]);
    Ok(out)
}

fn write_png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) -> Result<(), FitError> {
    let len =
        u32::try_from(data.len()).map_err(|_| FitError::Failed("PNG chunk too long".to_owned()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
    Ok(())
}

/// Pixels per metre for `dpi` (pHYs stores metres), rounded.
fn dpi_to_ppm(dpi: u16) -> u32 {
    (u32::from(dpi) * 10_000 + 127) / 254
}

/// DPI for a pixels-per-metre value, rounded (inverse of [`dpi_to_ppm`]).
fn ppm_to_dpi(ppm: u32) -> u64 {
    (u64::from(ppm) * 254 + 5_000) / 10_000
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

/// The PNG chunk CRC (ISO 3309 / zlib CRC-32) over the concatenation of `parts`.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for part in parts {
        for &b in *part {
            c = CRC_TABLE[usize::from((c as u8) ^ b)] ^ (c >> 8);
        }
    }
    !c
}

// ---------------------------------------------------------------------------------------------
// Verification

fn len_u64(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

fn sniff(bytes: &[u8]) -> Option<OutputFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(OutputFormat::Jpeg)
    } else if bytes.starts_with(PNG_MAGIC) {
        Some(OutputFormat::Png)
    } else if bytes.starts_with(b"%PDF-") {
        Some(OutputFormat::Pdf)
    } else {
        None
    }
}

fn not_compliant(msg: impl Into<String>) -> FitError {
    FitError::NotCompliant(msg.into())
}

fn verify_jpeg(jpeg: &[u8], target: &Target) -> Result<(), FitError> {
    let (payload, _) = jfif_segment(jpeg)
        .ok_or_else(|| not_compliant("the JPEG has no JFIF header, so it carries no DPI"))?;
    // JFIF APP0: "JFIF\0", version (2), units (1), X density (2), Y density (2).
    let field = |at: usize| jpeg.get(payload + at).copied().unwrap_or(0);
    let units = field(7);
    let x = u16::from_be_bytes([field(8), field(9)]);
    let y = u16::from_be_bytes([field(10), field(11)]);
    if units != 1 {
        return Err(not_compliant(format!(
            "the JPEG density unit is {units}, not dots per inch"
        )));
    }
    if x != target.dpi || y != target.dpi {
        return Err(not_compliant(format!(
            "the JPEG says {x}×{y} DPI, the portal wants {}",
            target.dpi
        )));
    }
    if !jpeg.ends_with(&[0xFF, 0xD9]) {
        return Err(not_compliant("the JPEG is truncated"));
    }
    check_pixels(jpeg, ImageFormat::Jpeg, target)
}

fn verify_png(png: &[u8], target: &Target) -> Result<(), FitError> {
    let mut at = PNG_MAGIC.len();
    let mut dpi = None;
    let mut first = true;
    let mut ended = false;
    while at < png.len() {
        let len = png
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .and_then(|l| usize::try_from(l).ok())
            .ok_or_else(|| not_compliant("the PNG is truncated"))?;
        let kind = png
            .get(at + 4..at + 8)
            .ok_or_else(|| not_compliant("the PNG is truncated"))?;
        let data_end = at
            .checked_add(8 + len)
            .filter(|&end| end + 4 <= png.len())
            .ok_or_else(|| not_compliant("the PNG is truncated"))?;
        let data = &png[at + 8..data_end];
        let stored = png
            .get(data_end..data_end + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| not_compliant("the PNG is truncated"))?;
        if crc32(&[kind, data]) != stored {
            return Err(not_compliant("a PNG chunk has a bad checksum"));
        }
        if first && kind != b"IHDR" {
            return Err(not_compliant("the PNG does not start with IHDR"));
        }
        first = false;
        match kind {
            b"pHYs" if data.len() == 9 => {
                let x = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let y = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                if data[8] != 1 || x != y {
                    return Err(not_compliant(
                        "the PNG pHYs chunk is not a square per-metre density",
                    ));
                }
                dpi = Some(ppm_to_dpi(x));
            }
            b"IEND" => {
                ended = true;
                at = data_end + 4;
                break;
            }
            _ => {}
        }
        at = data_end + 4;
    }
    if !ended || at != png.len() {
        return Err(not_compliant("the PNG does not end with IEND"));
    }
    match dpi {
        None => {
            return Err(not_compliant(
                "the PNG has no pHYs chunk, so it carries no DPI",
            ));
        }
        Some(d) if d != u64::from(target.dpi) => {
            return Err(not_compliant(format!(
                "the PNG says {d} DPI, the portal wants {}",
                target.dpi
            )));
        }
        Some(_) => {}
    }
    check_pixels(png, ImageFormat::Png, target)
}

fn verify_pdf(pdf: &[u8], target: &Target) -> Result<(), FitError> {
    if !trim_end(pdf).ends_with(b"%%EOF") {
        return Err(not_compliant("the PDF has no %%EOF trailer"));
    }
    let media_box = format!(
        "/MediaBox [0 0 {} {}]",
        points(target.width, target.dpi),
        points(target.height, target.dpi)
    );
    if find(pdf, media_box.as_bytes(), 0).is_none() {
        return Err(not_compliant(
            "the PDF page size does not match the rule's pixels and DPI",
        ));
    }
    let image = find(pdf, b"/Subtype /Image", 0)
        .ok_or_else(|| not_compliant("the PDF contains no image"))?;
    if find(pdf, b"/Filter /DCTDecode", image).is_none() {
        return Err(not_compliant("the PDF image is not a JPEG"));
    }
    let length_at = find(pdf, b"/Length ", image)
        .ok_or_else(|| not_compliant("the PDF image stream has no length"))?
        + b"/Length ".len();
    let digits = pdf[length_at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let length: usize = std::str::from_utf8(&pdf[length_at..length_at + digits])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| not_compliant("the PDF image stream length is unreadable"))?;
    let start = find(pdf, b"stream\n", length_at)
        .ok_or_else(|| not_compliant("the PDF image stream is missing"))?
        + b"stream\n".len();
    let jpeg = start
        .checked_add(length)
        .and_then(|end| pdf.get(start..end))
        .ok_or_else(|| not_compliant("the PDF image stream is truncated"))?;
    if !jpeg.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Err(not_compliant("the PDF image stream is not a JPEG"));
    }
    verify_jpeg(jpeg, target)
}

/// Decode the pixel data with limits sized to the rule, and check the dimensions.
fn check_pixels(bytes: &[u8], format: ImageFormat, target: &Target) -> Result<(), FitError> {
    let undecodable =
        |e: image::ImageError| not_compliant(format!("the image does not decode: {e}"));
    // Probe with a memory limit only, so a wrong size is reported as such; then hold the decoder
    // to the exact rule size before it allocates pixels.
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_TARGET_PIXELS * 4);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits.clone());
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let (w, h) = decoder.dimensions();
    if (w, h) != (target.width, target.height) {
        return Err(not_compliant(format!(
            "the image is {w}×{h} pixels, the portal wants {}×{}",
            target.width, target.height
        )));
    }
    limits.max_image_width = Some(target.width);
    limits.max_image_height = Some(target.height);
    decoder.set_limits(limits).map_err(undecodable)?;
    DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use image::Rgb;
    use image::{GrayImage, Luma, Rgba, RgbaImage};
    use std::sync::OnceLock;

    fn rule(
        kind: DocumentKind,
        format: OutputFormat,
        (width, height): (i32, i32),
        dpi: i32,
        (min_kb, max_kb): (i32, i32),
    ) -> PortalRule {
        PortalRule {
            id: Uuid::nil(),
            slug: "test-portal".to_owned(),
            version: 1,
            name: "Test portal".to_owned(),
            kind,
            width,
            height,
            dpi,
            format,
            min_kb,
            max_kb,
            filename_pattern: "{slug}_{kind}_{job_id}".to_owned(),
            background: "any".to_owned(),
        }
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) as u32
        }
    }

    /// A 3000×4000 camera-like photo: smooth gradients, a face-ish ellipse, hard-edged shapes and
    /// sensor noise (noise matters: flat images compress unrealistically well).
    fn photo() -> &'static DynamicImage {
        static PHOTO: OnceLock<DynamicImage> = OnceLock::new();
        PHOTO.get_or_init(|| {
            let (w, h) = (3000u32, 4000u32);
            let mut rng = Rng(7);
            let img = RgbImage::from_fn(w, h, |x, y| {
                let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
                let mut c = [
                    40.0 + 150.0 * fx,
                    60.0 + 120.0 * fy,
                    90.0 + 80.0 * (1.0 - fx),
                ];
                let (dx, dy) = ((fx - 0.5) / 0.25, (fy - 0.4) / 0.2);
                if dx * dx + dy * dy < 1.0 {
                    c = [220.0 - 40.0 * fy, 180.0 - 30.0 * fy, 150.0];
                }
                if (x / 150 + y / 150) % 7 == 0 && fy > 0.7 {
                    c = [30.0, 30.0, 60.0];
                }
                let n = (rng.next() % 41) as f32 - 20.0;
                Rgb(c.map(|v| (v + n).clamp(0.0, 255.0) as u8))
            });
            DynamicImage::ImageRgb8(img)
        })
    }

    /// A 1200×400 signature: dark strokes on white paper with slight scanner noise.
    fn signature() -> DynamicImage {
        let (w, h) = (1200u32, 400u32);
        let mut rng = Rng(11);
        let img = RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32, y as f32);
            let wave = 200.0 + 90.0 * (fx / 70.0).sin() + 30.0 * (fx / 23.0).cos();
            let loops = 200.0 + 120.0 * (fx / 110.0).cos();
            let ink = (200..1000).contains(&x)
                && ((fy - wave).abs() < 4.0 || ((fy - loops).abs() < 3.0 && x % 300 < 180));
            let n = (rng.next() % 9) as u8;
            if ink {
                Rgb([20 + n, 25 + n, 70 + n])
            } else {
                Rgb([250 - n, 250 - n, 248 - n])
            }
        });
        DynamicImage::ImageRgb8(img)
    }

    fn assert_compliant(out: &FitOutput, rule: &PortalRule) {
        let (min, max) = rule.byte_window();
        let size = out.bytes.len() as u64;
        assert!(size >= min && size <= max, "{size} not in {min}..={max}");
        assert_eq!(
            (out.width, out.height),
            (rule.width as u32, rule.height as u32)
        );
        assert_eq!(out.dpi, rule.dpi as u32);
        assert_eq!(out.format, rule.format);
        verify(&out.bytes, rule).unwrap();
    }

    #[test]
    fn neet_photo_jpeg_is_compliant() {
        let r = rule(
            DocumentKind::Photo,
            OutputFormat::Jpeg,
            (200, 230),
            200,
            (10, 100),
        );
        let out = fit(photo(), &r).unwrap();
        assert_compliant(&out, &r);
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        // The JFIF header itself says 200 DPI.
        assert_eq!(&out.bytes[6..11], b"JFIF\0");
        assert_eq!(out.bytes[13], 1);
        assert_eq!(&out.bytes[14..18], &[0, 200, 0, 200]);
    }

    #[test]
    fn ibps_signature_lands_in_window_with_padding_warning() {
        let r = rule(
            DocumentKind::Signature,
            OutputFormat::Jpeg,
            (140, 60),
            200,
            (10, 20),
        );
        let out = fit(&signature(), &r).unwrap();
        assert_compliant(&out, &r);
        assert!(out.bytes.len() as u64 >= 10 * 1024);
        assert!(
            out.warnings.iter().any(|w| w.contains("padding")),
            "{:?}",
            out.warnings
        );
    }

    #[test]
    fn passport_photo_jpeg_under_max_only() {
        let r = rule(
            DocumentKind::Photo,
            OutputFormat::Jpeg,
            (630, 810),
            300,
            (0, 250),
        );
        let out = fit(photo(), &r).unwrap();
        assert_compliant(&out, &r);
        assert!(out.warnings.is_empty());
    }

    #[test]
    fn tight_jpeg_window_uses_quality_search() {
        let r = rule(
            DocumentKind::Photo,
            OutputFormat::Jpeg,
            (600, 800),
            300,
            (20, 50),
        );
        let out = fit(photo(), &r).unwrap();
        assert_compliant(&out, &r);
    }

    #[test]
    fn png_photo_rule_has_phys_and_fits() {
        let r = rule(
            DocumentKind::Photo,
            OutputFormat::Png,
            (200, 230),
            300,
            (5, 200),
        );
        let out = fit(photo(), &r).unwrap();
        assert_compliant(&out, &r);
        // pHYs sits right after IHDR: 11811 px/m = 300 DPI, unit metre.
        assert_eq!(&out.bytes[37..41], b"pHYs");
        assert_eq!(
            u32::from_be_bytes(out.bytes[41..45].try_into().unwrap()),
            11_811
        );
        assert_eq!(out.bytes[49], 1);
    }

    #[test]
    fn png_signature_is_padded_to_min() {
        let r = rule(
            DocumentKind::Signature,
            OutputFormat::Png,
            (300, 100),
            150,
            (40, 60),
        );
        let out = fit(&signature(), &r).unwrap();
        assert_compliant(&out, &r);
        assert!(out.warnings.iter().any(|w| w.contains("padding")));
    }

    #[test]
    fn png_signature_falls_back_to_greyscale() {
        let sig = signature();
        let pixels = resize_to_target(
            &sig,
            DocumentKind::Signature,
            &Target::from_rule(&rule(
                DocumentKind::Signature,
                OutputFormat::Png,
                (600, 200),
                200,
                (0, 1000),
            ))
            .unwrap(),
            &mut Vec::new(),
        )
        .unwrap()
        .into_rgb();
        let rgb_len = encode_png(pixels.as_raw(), 600, 200, ExtendedColorType::Rgb8, 200)
            .unwrap()
            .len() as u64;
        // Allow just under the RGB size, so only the greyscale version can fit.
        let max_kb = i32::try_from((rgb_len - 1) / 1000).unwrap();
        let r = rule(
            DocumentKind::Signature,
            OutputFormat::Png,
            (600, 200),
            200,
            (0, max_kb),
        );
        let out = fit(&sig, &r).unwrap();
        assert_compliant(&out, &r);
        assert!(out.warnings.iter().any(|w| w.contains("greyscale")));
    }

    #[test]
    fn impossible_jpeg_rule_is_size_exceeded() {
        let r = rule(
            DocumentKind::Photo,
            OutputFormat::Jpeg,
            (1200, 1600),
            300,
            (0, 1),
        );
        let err = fit(photo(), &r).unwrap_err();
        assert!(
            matches!(err, FitError::SizeExceeded { max: 1000, .. }),
            "{err}"
        );
        assert_eq!(err.code(), ErrorCode::SizeExceeded);
    }

    #[test]
    fn impossible_png_rule_is_size_exceeded() {
        let r = rule(
            DocumentKind::Photo,
            OutputFormat::Png,
            (600, 800),
            300,
            (0, 5),
        );
        let err = fit(photo(), &r).unwrap_err();
        assert!(matches!(err, FitError::SizeExceeded { .. }), "{err}");
    }

    #[test]
    fn pdf_document_is_compliant() {
        let r = rule(
            DocumentKind::Document,
            OutputFormat::Pdf,
            (1240, 1754),
            150,
            (50, 400),
        );
        let out = fit(photo(), &r).unwrap();
        assert_compliant(&out, &r);
        assert!(out.bytes.starts_with(b"%PDF-1.4"));
        // Page is 1240/150 × 72 points wide.
        let text = String::from_utf8_lossy(&out.bytes);
        assert!(text.contains("/MediaBox [0 0 595.20 841.92]"));
        // Every xref offset points at its object.
        let xref = text.rfind("xref\n").unwrap();
        for (i, line) in text[xref..].lines().skip(3).take(5).enumerate() {
            let offset: usize = line[..10].parse().unwrap();
            assert!(
                text[offset..].starts_with(&format!("{} 0 obj", i + 1)),
                "{line}"
            );
        }
    }

    #[test]
    fn small_pdf_is_padded_to_min() {
        let r = rule(
            DocumentKind::Document,
            OutputFormat::Pdf,
            (100, 100),
            100,
            (200, 300),
        );
        let out = fit(&signature(), &r).unwrap();
        assert_compliant(&out, &r);
        assert!(out.warnings.iter().any(|w| w.contains("padding")));
    }

    #[test]
    fn small_input_is_enlarged_with_warning() {
        let small = DynamicImage::ImageRgb8(RgbImage::from_fn(50, 60, |x, y| {
            Rgb([(x * 5) as u8, (y * 4) as u8, 90])
        }));
        let r = rule(
            DocumentKind::Photo,
            OutputFormat::Jpeg,
            (200, 230),
            200,
            (0, 100),
        );
        let out = fit(&small, &r).unwrap();
        assert_compliant(&out, &r);
        assert!(out.warnings.iter().any(|w| w.contains("enlarged")));
    }

    #[test]
    fn non_rgb_inputs_are_accepted_and_alpha_becomes_white() {
        let clear = DynamicImage::ImageRgba8(RgbaImage::from_pixel(400, 400, Rgba([0, 0, 0, 0])));
        let r = rule(
            DocumentKind::Photo,
            OutputFormat::Png,
            (100, 100),
            100,
            (0, 50),
        );
        let out = fit(&clear, &r).unwrap();
        let back = image::load_from_memory(&out.bytes).unwrap().into_rgb8();
        assert!(back.pixels().all(|p| *p == Rgb([255; 3])));

        let grey = DynamicImage::ImageLuma8(GrayImage::from_pixel(300, 300, Luma([40])));
        assert_compliant(&fit(&grey, &r).unwrap(), &r);
    }

    /// A grey A4-like page stored as RGB with three equal channels, as decode hands a grey scan
    /// over: paper grain, text-like bars and a photo-like gradient.
    fn grey_page(w: u32, h: u32) -> RgbImage {
        let mut rng = Rng(11);
        RgbImage::from_fn(w, h, |x, y| {
            let mut v = 225.0 + (rng.next() % 13) as f32 - 6.0;
            if (y / 9) % 3 == 0 && (x / 40) % 5 != 4 && x > 60 && x < w - 60 {
                v = 40.0 + (rng.next() % 30) as f32;
            }
            if x < w / 3 && y < h / 4 {
                v = 60.0 + 150.0 * x as f32 / (w / 3) as f32 + (rng.next() % 9) as f32;
            }
            let v = v.clamp(0.0, 255.0) as u8;
            Rgb([v, v, v])
        })
    }

    fn max_and_mean_diff(a: &[u8], b: &[u8]) -> (u8, f64) {
        assert_eq!(a.len(), b.len());
        let max = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        let sum: u64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
        (max, sum as f64 / a.len() as f64)
    }

    #[test]
    fn grey_inputs_take_one_channel_with_the_same_pixels() {
        let page = grey_page(827, 1170);
        let crop = (0, 0, 827, 1170);
        let grey = grey_crop(&page, crop).unwrap();
        assert_eq!(grey.as_raw().len(), 827 * 1170);

        // Resize: one channel gives exactly the pixels of the three equal ones.
        let one = resample(&grey, crop, 620, 877).unwrap();
        let three = resample(&page, crop, 620, 877).unwrap();
        assert!(three.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
        let red: Vec<u8> = three.pixels().map(|p| p[0]).collect();
        assert_eq!(one.as_raw(), &red);

        // Encode: a one-component JPEG against the YCbCr one at the same quality differ by
        // rounding only (Y is computed in fixed point from three equal values; Cb = Cr = 128).
        let decode = |jpeg: &[u8]| image::load_from_memory(jpeg).unwrap().into_luma8();
        let luma = encode_jpeg(&Pixels::Grey(one), 92, 150, Chroma::Full).unwrap();
        let ycbcr = encode_jpeg(&Pixels::Rgb(three), 92, 150, Chroma::Full).unwrap();
        assert_eq!(
            image::load_from_memory(&luma).unwrap().color(),
            image::ColorType::L8
        );
        let (max, mean) = max_and_mean_diff(decode(&luma).as_raw(), decode(&ycbcr).as_raw());
        assert!(max <= 2 && mean < 0.1, "max {max}, mean {mean:.3}");
        assert!(
            luma.len() < ycbcr.len(),
            "{} vs {}",
            luma.len(),
            ycbcr.len()
        );

        // A single coloured pixel, even one the probe grid skips, keeps the RGB path.
        let mut tinted = page.clone();
        tinted.put_pixel(413, 601, Rgb([120, 121, 120]));
        assert!(grey_crop(&tinted, crop).is_none());
        assert!(grey_crop(&tinted, (0, 602, 827, 500)).is_some());
        assert!(grey_crop(photo().as_rgb8().unwrap(), (0, 0, 3000, 4000)).is_none());
    }

    #[test]
    fn grey_inputs_give_compliant_files_with_one_component_except_photos() {
        let page = DynamicImage::ImageRgb8(grey_page(827, 1170));
        let cases = [
            (
                DocumentKind::Document,
                OutputFormat::Pdf,
                (620, 877),
                75,
                (0, 2000),
            ),
            (
                DocumentKind::Photo,
                OutputFormat::Jpeg,
                (200, 230),
                200,
                (10, 100),
            ),
            (
                DocumentKind::Signature,
                OutputFormat::Jpeg,
                (140, 60),
                200,
                (10, 20),
            ),
        ];
        for (kind, format, size, dpi, window) in cases {
            let r = rule(kind, format, size, dpi, window);
            let out = fit(&page, &r).unwrap();
            assert_compliant(&out, &r);
            let jpeg = find(&out.bytes, &[0xFF, 0xD8, 0xFF], 0).unwrap();
            let decoded = image::load_from_memory(&out.bytes[jpeg..]).unwrap();
            let components = if kind == DocumentKind::Photo {
                image::ColorType::Rgb8
            } else {
                image::ColorType::L8
            };
            assert_eq!(decoded.color(), components, "{kind:?}");
            if format == OutputFormat::Pdf {
                assert!(find(&out.bytes, b"/ColorSpace /DeviceGray", 0).is_some());
            }
        }
        // Colour inputs are untouched: YCbCr JPEG, DeviceRGB.
        let r = rule(
            DocumentKind::Document,
            OutputFormat::Pdf,
            (620, 877),
            75,
            (0, 2000),
        );
        let out = fit(photo(), &r).unwrap();
        assert!(find(&out.bytes, b"/ColorSpace /DeviceRGB", 0).is_some());
        let jpeg = find(&out.bytes, &[0xFF, 0xD8, 0xFF], 0).unwrap();
        let decoded = image::load_from_memory(&out.bytes[jpeg..]).unwrap();
        assert_eq!(decoded.color(), image::ColorType::Rgb8);
    }

    #[test]
    fn centre_crop_keeps_aspect_and_centres() {
        assert_eq!(centre_crop(3000, 4000, 200, 230), (0, 275, 3000, 3450));
        assert_eq!(centre_crop(1200, 400, 140, 60), (133, 0, 933, 400));
        assert_eq!(centre_crop(100, 100, 100, 100), (0, 0, 100, 100));
        assert_eq!(centre_crop(1, 5000, 5000, 1), (0, 2499, 1, 1));
    }

    #[test]
    fn verify_rejects_wrong_dpi_size_format_and_window() {
        let r = rule(
            DocumentKind::Photo,
            OutputFormat::Jpeg,
            (200, 230),
            200,
            (10, 100),
        );
        let out = fit(photo(), &r).unwrap();
        let wrong_dpi = PortalRule {
            dpi: 300,
            ..r.clone()
        };
        assert!(matches!(
            verify(&out.bytes, &wrong_dpi),
            Err(FitError::NotCompliant(_))
        ));
        let wrong_size = PortalRule {
            width: 201,
            ..r.clone()
        };
        assert!(matches!(
            verify(&out.bytes, &wrong_size),
            Err(FitError::NotCompliant(_))
        ));
        let wrong_format = PortalRule {
            format: OutputFormat::Png,
            ..r.clone()
        };
        assert!(matches!(
            verify(&out.bytes, &wrong_format),
            Err(FitError::NotCompliant(_))
        ));
        let wrong_window = PortalRule {
            max_kb: 1,
            min_kb: 0,
            ..r.clone()
        };
        assert!(matches!(
            verify(&out.bytes, &wrong_window),
            Err(FitError::NotCompliant(_))
        ));
        // Truncation is caught.
        let cut = &out.bytes[..out.bytes.len() - 100];
        assert!(verify(cut, &r).is_err());
        // A JPEG without a DPI (aspect-ratio-only JFIF) is rejected.
        let mut no_dpi = out.bytes.clone();
        no_dpi[13] = 0;
        assert!(matches!(
            verify(&no_dpi, &r),
            Err(FitError::NotCompliant(_))
        ));
        assert!(verify(b"", &r).is_err());
        assert!(
            verify(
                b"%PDF-",
                &PortalRule {
                    format: OutputFormat::Pdf,
                    min_kb: 0,
                    ..r.clone()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn verify_rejects_png_without_phys_or_with_bad_crc() {
        let r = rule(
            DocumentKind::Photo,
            OutputFormat::Png,
            (64, 64),
            300,
            (0, 100),
        );
        let out = fit(photo(), &r).unwrap();
        // Remove pHYs (21 bytes after IHDR).
        let mut no_phys = out.bytes[..33].to_vec();
        no_phys.extend_from_slice(&out.bytes[54..]);
        assert!(
            verify(&no_phys, &r)
                .unwrap_err()
                .to_string()
                .contains("pHYs")
        );
        let mut bad_crc = out.bytes.clone();
        bad_crc[45] ^= 1;
        assert!(
            verify(&bad_crc, &r)
                .unwrap_err()
                .to_string()
                .contains("checksum")
        );
    }

    #[test]
    fn invalid_rules_fail_cleanly() {
        let base = rule(
            DocumentKind::Photo,
            OutputFormat::Jpeg,
            (200, 230),
            200,
            (10, 100),
        );
        for bad in [
            PortalRule {
                width: 0,
                ..base.clone()
            },
            PortalRule {
                height: -5,
                ..base.clone()
            },
            PortalRule {
                width: 70_000,
                ..base.clone()
            },
            PortalRule {
                dpi: 0,
                ..base.clone()
            },
            PortalRule {
                dpi: 70_000,
                ..base.clone()
            },
            PortalRule {
                min_kb: 200,
                ..base.clone()
            },
            PortalRule {
                max_kb: 0,
                ..base.clone()
            },
        ] {
            let err = fit(photo(), &bad).unwrap_err();
            assert!(matches!(err, FitError::Failed(_)), "{err}");
            assert_eq!(err.code(), ErrorCode::SchemaFailed);
        }
    }

    #[test]
    fn jpeg_padding_handles_large_and_tiny_amounts() {
        let jpeg = encode_jpeg(&Pixels::Rgb(RgbImage::new(8, 8)), 90, 72, Chroma::Full).unwrap();
        for extra in [1u64, 3, 4, 5, 65_537, 65_538, 65_540, 200_000] {
            let padded = pad_jpeg(&jpeg, extra).unwrap();
            let grown = (padded.len() - jpeg.len()) as u64;
            assert!(
                grown >= extra && grown <= extra.max(4) + 3,
                "{extra} -> {grown}"
            );
            let img = image::load_from_memory(&padded).unwrap();
            assert_eq!(img.width(), 8);
        }
    }

    #[test]
    fn filenames_are_expanded_and_sanitised() {
        let job = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let mut r = rule(
            DocumentKind::Signature,
            OutputFormat::Jpeg,
            (140, 60),
            200,
            (10, 20),
        );
        assert_eq!(
            output_filename(&r, job),
            "test-portal_signature_01234567-89ab-cdef-0123-456789abcdef.jpg"
        );
        r.filename_pattern = "../{slug}/{kind} ✓.JPEG".to_owned();
        assert_eq!(output_filename(&r, job), "_test-portal_signature__.JPEG");
        r.filename_pattern = "{unknown}-{slug}".to_owned();
        r.slug = "{kind}".to_owned();
        assert_eq!(output_filename(&r, job), "_unknown_-_kind_.jpg");
        r.filename_pattern = "x".repeat(500) + ".jpg";
        let long = output_filename(&r, job);
        assert_eq!(long.len(), 128);
        assert!(long.ends_with("x.jpg"));
        r.filename_pattern = "...".to_owned();
        r.format = OutputFormat::Pdf;
        assert_eq!(output_filename(&r, job), format!("{job}.pdf"));
        r.filename_pattern = ".png".to_owned();
        r.format = OutputFormat::Png;
        assert_eq!(output_filename(&r, job), "png.png");
    }

    #[test]
    fn dpi_round_trips_through_ppm() {
        for dpi in [1u16, 72, 96, 100, 150, 200, 240, 300, 600, 1200, 65_535] {
            assert_eq!(ppm_to_dpi(dpi_to_ppm(dpi)), u64::from(dpi));
        }
    }

    // ---- subject-aware crop ----

    /// A portrait on a plain wall: a skin-coloured face (ellipse) with dark hair on top, and dark
    /// shoulders below it, centred at `cx`; the head's top at `head_top`.
    fn portrait(w: u32, h: u32, cx: f64, head_top: f64) -> RgbImage {
        let face_r = (w.min(h) as f64) * 0.12;
        let face_cy = head_top + face_r * 1.3;
        RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (f64::from(x) - cx, f64::from(y) - face_cy);
            let in_face = (fx / face_r).powi(2) + (fy / (face_r * 1.3)).powi(2) <= 1.0;
            let in_hair = (fx / (face_r * 1.1)).powi(2)
                + ((fy + face_r * 0.4) / (face_r * 1.1)).powi(2)
                <= 1.0
                && fy < -face_r * 0.5;
            let shoulders_top = face_cy + face_r * 1.5;
            let in_body = f64::from(y) > shoulders_top
                && fx.abs() < face_r * 2.2 + (f64::from(y) - shoulders_top) * 0.5;
            if in_hair {
                Rgb([40, 30, 25])
            } else if in_face {
                Rgb([224, 172, 138])
            } else if in_body {
                Rgb([30, 40, 70])
            } else {
                Rgb([228, 230, 232])
            }
        })
    }

    #[test]
    fn photo_crop_follows_a_subject_off_centre() {
        // Landscape frame, person at 3/4 of the width; the portal wants a portrait.
        let img = portrait(1200, 800, 900.0, 150.0);
        let (cw, ch) = (centre_crop(1200, 800, 200, 230).2, 800);
        let (x, y) = subject_crop(&img, cw, ch).unwrap();
        assert_eq!(y, 0);
        let face_r = 800.0 * 0.12;
        // The whole face is inside the window; a centre crop (x = 252..948) would cut it.
        assert!(
            f64::from(x) < 900.0 - face_r && f64::from(x + cw) > 900.0 + face_r,
            "x {x}"
        );
        assert!(
            f64::from(x) > 900.0 - f64::from(cw) / 2.0 - 60.0,
            "roughly centred on it: {x}"
        );
    }

    #[test]
    fn photo_crop_keeps_headroom_above_the_head() {
        // A tall phone portrait whose head is near the top: a centre crop would cut it.
        let img = portrait(600, 1200, 300.0, 80.0);
        let (_, centre_y, cw, ch) = centre_crop(600, 1200, 200, 230);
        assert!(
            centre_y > 80,
            "the centre crop starts at {centre_y}, below the head's top"
        );
        let (x, y) = subject_crop(&img, cw, ch).unwrap();
        assert_eq!(x, 0);
        // Head top at 80: the window starts above it, with about 10 % of its height free.
        assert!(y < 80, "y {y}");
        let headroom = 80 - y;
        assert!(
            f64::from(headroom) >= 0.05 * f64::from(ch)
                && f64::from(headroom) <= 0.2 * f64::from(ch),
            "headroom {headroom} of {ch}"
        );
    }

    #[test]
    fn featureless_photos_and_non_photos_stay_centred() {
        let flat = RgbImage::from_pixel(900, 600, Rgb([200, 200, 200]));
        assert_eq!(subject_crop(&flat, 400, 600), None);
        // Signatures are cropped around the centre whatever their content.
        let img = DynamicImage::ImageRgb8(portrait(1200, 800, 900.0, 150.0));
        let t = Target::from_rule(&rule(
            DocumentKind::Signature,
            OutputFormat::Jpeg,
            (200, 230),
            200,
            (0, 100),
        ))
        .unwrap();
        let sig = resize_to_target(&img, DocumentKind::Signature, &t, &mut Vec::new())
            .unwrap()
            .into_rgb();
        let photo = resize_to_target(&img, DocumentKind::Photo, &t, &mut Vec::new())
            .unwrap()
            .into_rgb();
        // The photo crop shows the whole face (skin tones); the centred one cuts it.
        let skin = |p: &RgbImage| {
            p.pixels()
                .filter(|px| px[0] > 180 && px[1] > 130 && px[1] < 200 && px[2] < 170)
                .count()
        };
        assert!(
            skin(&photo) > skin(&sig),
            "{} vs {}",
            skin(&photo),
            skin(&sig)
        );
    }

    #[test]
    fn subject_crop_on_the_real_astronaut_keeps_her_face() {
        // Eileen Collins' head (hair included) spans about x 150–300 of skimage's 512 × 512
        // portrait, with a flag on the left and a shuttle model on the right: a 1:2 window must
        // keep the head whole.
        let bytes = std::fs::read(format!(
            "{}/tests/fixtures/photos/astronaut.jpg",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let img = image::load_from_memory(&bytes).unwrap().into_rgb8();
        let (x, _) = subject_crop(&img, 256, 512).unwrap();
        assert!(x <= 150 && x + 256 >= 300, "window {x}..{}", x + 256);
    }
}
