//! JPEG (and the JPEG inside a PDF): the quality search into the byte window, chroma and
//! padding to reach its minimum.

use rythmiq_domain::DocumentKind;

use super::resize::Pixels;
use super::{FitError, PADDING_NOTE, Target, len_u64};

/// Lowest JPEG quality we are willing to ship; below this faces and strokes fall apart.
pub(super) const MIN_QUALITY: u8 = 5;

pub(super) const MAX_QUALITY: u8 = 100;

/// Where the search starts and the highest quality it looks for: what phone cameras store, and
/// visually lossless at portal sizes; the bytes above it buy nothing visible. Qualities above it
/// are only used to grow a file that is under the portal's minimum.
pub(super) const START_QUALITY: u8 = 92;

/// Bound on JPEG encodes per fit, so a job's CPU cost stays predictable.
pub(super) const MAX_ENCODES: usize = 6;

/// One JPEG encoding and the container built around it.
pub(super) struct Candidate {
    quality: u8,
    jpeg: Vec<u8>,
    file: Vec<u8>,
}

/// Chroma resolution of an encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chroma {
    /// 4:2:0, as every camera stores photos: colour at half resolution, a third less data.
    Half,
    /// 4:4:4: thin coloured strokes (ink signatures, stamps, coloured text) stay crisp.
    Full,
}

/// Typical size of a JPEG at quality `q` relative to quality 100, from libjpeg's scaled tables
/// on photos (within ~25 % across the photos, scans and signatures we measured). Only a prior for
/// where to encode next: every decision is taken on measured sizes.
pub(super) const TYPICAL_RATIO: [(u8, f64); 10] = [
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
pub(super) fn prior(q: f64) -> f64 {
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
pub(super) fn quality_at(level: f64) -> f64 {
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
pub(super) fn predict_quality(known: &[(u8, u64)], goal: u64) -> f64 {
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
pub(super) fn fit_jpeg_family(
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
pub(super) fn encode_jpeg(
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
pub(super) fn pad_jpeg(jpeg: &[u8], extra: u64) -> Result<Vec<u8>, FitError> {
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
        let note = &PADDING_NOTE.as_bytes()[..PADDING_NOTE.len().min(payload)];
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
pub(crate) fn jfif_segment(jpeg: &[u8]) -> Option<(usize, usize)> {
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
