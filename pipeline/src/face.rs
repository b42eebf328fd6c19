//! FACE stage: for photo rules with a `[face]` table ([`FaceSpec`]), find the one face and frame
//! the photo by it, as ID-photo tools do (HivisionIDPhotos, idphoto): the head (crown to chin)
//! scaled into the rule's head-height band, the eye line in its band, the face centred, the eyes
//! levelled. Detection is `rythmiq_face` (CenterFace on rten).
//!
//! [`measure`] reports where the face of an image *as it is* sits against a rule, the same
//! measurement the framing is built and tested on.

use image::{Rgb, RgbImage};
use rythmiq_domain::FaceSpec;
use rythmiq_face::{DetectOptions, Detector, Face, Point};
use serde::Serialize;

use crate::Error;

/// A second face whose box has at least this share of the largest one's area makes the photo
/// ambiguous (two people); smaller ones (a face on a poster behind) are ignored.
pub const SIMILAR_FACE_AREA: f32 = 0.5;

/// Long side of the second, finer search for a face (see [`main_face`]).
pub const FINE_SIDE: u32 = 960;

/// Least room kept above the crown, as a share of the output height, when the eye-line band
/// pushes the head up.
const MIN_HEADROOM: f64 = 0.03;

/// The canvas the framing draws is at most this many times the target size: enough for the
/// fit's area-averaging resize to antialias what the bilinear warp leaves.
const MAX_OVERSAMPLE: f64 = 2.0;

/// Where the face of an image sits, as fractions of the image (see [`FaceSpec`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FaceMeasure {
    /// Crown-to-chin height over the image height.
    pub head_height: f64,
    /// Eye line above the bottom edge, over the image height.
    pub eye_line: f64,
    /// Face centre line minus the image's, over the width (negative: left of centre).
    pub centre_offset: f64,
    /// Tilt of the eye line, degrees (clockwise positive).
    pub roll_degrees: f64,
    /// Space above the crown over the image height (negative: the crown is cut off).
    pub headroom: f64,
    /// Whether each value is inside the rule's band.
    pub head_in_band: bool,
    /// See [`FaceMeasure::head_in_band`].
    pub eye_line_in_band: bool,
    /// See [`FaceMeasure::head_in_band`].
    pub centred: bool,
}

impl FaceMeasure {
    /// Whether the photo meets every band of the rule.
    pub fn complies(&self) -> bool {
        self.head_in_band && self.eye_line_in_band && self.centred && self.headroom >= 0.0
    }
}

/// The one face of `img`: the largest, unless another reaches [`SIMILAR_FACE_AREA`] of it.
/// When nothing is found at the detector's default size, a photo larger than that is searched
/// again at up to [`FINE_SIDE`] pixels: a distant selfie's face is then ~2.3× larger to the model.
pub fn main_face(detector: &Detector, img: &RgbImage) -> Result<Face, Error> {
    let coarse = DetectOptions::default();
    let mut faces = detector.detect_with(img, &coarse).map_err(Error::Face)?;
    if faces.is_empty() && img.width().max(img.height()) > coarse.max_side {
        let fine = DetectOptions {
            max_side: FINE_SIDE,
            ..coarse
        };
        faces = detector.detect_with(img, &fine).map_err(Error::Face)?;
    }
    let Some(first) = faces.first() else {
        return Err(Error::FaceNotFound);
    };
    let similar = faces
        .iter()
        .filter(|f| f.area() >= SIMILAR_FACE_AREA * first.area())
        .count();
    if similar > 1 {
        return Err(Error::MultipleFaces { count: similar });
    }
    Ok(first.clone())
}

/// Where the one face of `img` sits against `spec` (fails as [`main_face`] does).
pub fn measure(detector: &Detector, img: &RgbImage, spec: &FaceSpec) -> Result<FaceMeasure, Error> {
    let face = main_face(detector, img)?;
    Ok(measure_face(&face, img.width(), img.height(), spec))
}

/// [`measure`] for a face already found in a `w`×`h` image.
pub fn measure_face(face: &Face, w: u32, h: u32, spec: &FaceSpec) -> FaceMeasure {
    let (w, h) = (f64::from(w.max(1)), f64::from(h.max(1)));
    let eyes = face.eye_centre();
    let head_height = f64::from(face.head_height()) / h;
    let eye_line = 1.0 - f64::from(eyes.y) / h;
    let centre_x = f64::from(face.crown.x + face.chin.x) / 2.0;
    let centre_offset = (centre_x - w / 2.0) / w;
    let inside = |v: f64, [lo, hi]: [f64; 2]| v >= lo && v <= hi;
    FaceMeasure {
        head_height,
        eye_line,
        centre_offset,
        roll_degrees: f64::from(face.roll_degrees),
        headroom: f64::from(face.crown.y) / h,
        head_in_band: inside(head_height, spec.head_height),
        eye_line_in_band: inside(eye_line, spec.eye_line),
        centred: centre_offset.abs() <= spec.centre_tolerance,
    }
}

/// `face`, found in an image of `from` size, in the coordinates of the same image at `to` size.
pub fn rescale(face: &Face, from: (u32, u32), to: (u32, u32)) -> Face {
    let sx = to.0 as f32 / from.0.max(1) as f32;
    let sy = to.1 as f32 / from.1.max(1) as f32;
    let p = |q: Point| Point {
        x: q.x * sx,
        y: q.y * sy,
    };
    Face {
        bbox: [
            face.bbox[0] * sx,
            face.bbox[1] * sy,
            face.bbox[2] * sx,
            face.bbox[3] * sy,
        ],
        left_eye: p(face.left_eye),
        right_eye: p(face.right_eye),
        nose: p(face.nose),
        mouth_left: p(face.mouth_left),
        mouth_right: p(face.mouth_right),
        crown: p(face.crown),
        chin: p(face.chin),
        ..face.clone()
    }
}

/// How a framed canvas maps back onto the photo: canvas pixel → levelled coordinates around
/// the head's centre → source pixel (an affine map).
#[derive(Debug, Clone, Copy)]
struct Warp {
    scale: f64,
    sin: f64,
    cos: f64,
    centre: (f64, f64),
    origin: (f64, f64),
}

impl Warp {
    fn source_of(&self, u: f64, v: f64) -> (f64, f64) {
        let x = (u - self.origin.0) / self.scale;
        let y = (v - self.origin.1) / self.scale;
        (
            self.centre.0 + x * self.cos - y * self.sin,
            self.centre.1 + x * self.sin + y * self.cos,
        )
    }

    fn point(&self, p: Point) -> Point {
        let (x, y) = self.source_of(f64::from(p.x), f64::from(p.y));
        Point {
            x: x as f32,
            y: y as f32,
        }
    }

    /// A face found on the canvas, in the photo's coordinates.
    fn face(&self, f: &Face) -> Face {
        let p = |q| self.point(q);
        let (a, b) = (
            p(Point {
                x: f.bbox[0],
                y: f.bbox[1],
            }),
            p(Point {
                x: f.bbox[2],
                y: f.bbox[3],
            }),
        );
        let eyes = (p(f.left_eye), p(f.right_eye));
        Face {
            bbox: [a.x.min(b.x), a.y.min(b.y), a.x.max(b.x), a.y.max(b.y)],
            left_eye: eyes.0,
            right_eye: eyes.1,
            nose: p(f.nose),
            mouth_left: p(f.mouth_left),
            mouth_right: p(f.mouth_right),
            crown: p(f.crown),
            chin: p(f.chin),
            roll_degrees: (eyes.1.y - eyes.0.y)
                .atan2(eyes.1.x - eyes.0.x)
                .to_degrees(),
            ..f.clone()
        }
    }
}

/// The photo framed for a `tw`×`th` rule by [`frame`], then framed again from the face as the
/// detector finds it on that first result: CenterFace's landmarks depend a little on how large
/// the face is in the picture it sees (the head reads ~8 % taller once it fills the frame), and
/// the second pass places the head as a check of the output will measure it.
pub fn frame_refined(
    detector: &Detector,
    img: &RgbImage,
    face: &Face,
    spec: &FaceSpec,
    target: (u32, u32),
    warnings: &mut Vec<String>,
) -> Result<RgbImage, Error> {
    let mut first_warnings = Vec::new();
    let (canvas, warp) = frame(img, face, spec, target, &mut first_warnings);
    let refined = match detector.detect(&canvas).map_err(Error::Face)?.first() {
        Some(on_canvas) => warp.face(on_canvas),
        None => {
            warnings.extend(first_warnings);
            return Ok(canvas);
        }
    };
    Ok(frame(img, &refined, spec, target, warnings).0)
}

/// The photo framed for a `tw`×`th` rule: a canvas of the target's aspect ratio (up to
/// [`MAX_OVERSAMPLE`] times its size, for the fit's resize to finish), levelled by the face's
/// roll, with the head at the middle of the head-height band, centred, its eye line moved into
/// the eye-line band when the middle placement misses it. Parts of the canvas beyond the photo
/// extend the photo's edge pixels (a warning says so), and a face whose head
/// is smaller than the output needs is enlarged (a `face_too_small` warning).
fn frame(
    img: &RgbImage,
    face: &Face,
    spec: &FaceSpec,
    (tw, th): (u32, u32),
    warnings: &mut Vec<String>,
) -> (RgbImage, Warp) {
    let head_src = f64::from(face.head_height()).max(1.0);
    let head_frac = (spec.head_height[0] + spec.head_height[1]) / 2.0;
    let head_needed = head_frac * f64::from(th);
    let oversample = (head_src / head_needed).clamp(1.0, MAX_OVERSAMPLE);
    if head_src < head_needed {
        warnings.push(format!(
            "face_too_small: the head is {head_src:.0} px tall and the photo needs \
             {head_needed:.0} px; it was enlarged and may look soft, a closer photo works better"
        ));
    }
    let cw = ((f64::from(tw) * oversample).round() as u32).max(1);
    let ch = ((f64::from(th) * oversample).round() as u32).max(1);
    let (cwf, chf) = (f64::from(cw), f64::from(ch));
    let scale = head_frac * chf / head_src;

    // Vertical placement, in canvas pixels: the crown's row.
    let eye_below_crown = f64::from(distance(face.crown, face.eye_centre())) * scale;
    let head_out = head_frac * chf;
    // More room below the chin (neck, shoulders) than above the crown, as ICAO's example
    // photos are framed.
    let mut top = (chf - head_out) * 0.4;
    let eye_from_bottom = |top: f64| 1.0 - (top + eye_below_crown) / chf;
    let [eye_lo, eye_hi] = spec.eye_line;
    let mid = (eye_lo + eye_hi) / 2.0;
    if !(eye_lo..=eye_hi).contains(&eye_from_bottom(top)) {
        // Move the eye line to the nearer edge of its band, aiming a little inside it.
        let want = if eye_from_bottom(top) < eye_lo {
            eye_lo + 0.25 * (mid - eye_lo)
        } else {
            eye_hi - 0.25 * (eye_hi - mid)
        };
        top = (1.0 - want) * chf - eye_below_crown;
        top = top.clamp(MIN_HEADROOM * chf, (chf - head_out).max(MIN_HEADROOM * chf));
    }

    let (sin, cos) = f64::from(face.roll_degrees).to_radians().sin_cos();
    let warp = Warp {
        scale,
        sin,
        cos,
        centre: (
            f64::from(face.crown.x + face.chin.x) / 2.0,
            f64::from(face.crown.y + face.chin.y) / 2.0,
        ),
        origin: (cwf / 2.0, top + head_out / 2.0),
    };
    let (w, h) = (f64::from(img.width()), f64::from(img.height()));
    let inside = |(x, y): (f64, f64)| x >= -0.5 && y >= -0.5 && x <= w - 0.5 && y <= h - 0.5;
    let corners = [(0.0, 0.0), (cwf, 0.0), (0.0, chf), (cwf, chf)];
    if !corners.iter().all(|&(u, v)| inside(warp.source_of(u, v))) {
        warnings.push(
            "face_framing_padded: the photo does not reach every edge of the framed picture; \
             its edge was extended to fill the gap"
                .to_owned(),
        );
    }
    let mut out = RgbImage::new(cw, ch);
    for (u, v, px) in out.enumerate_pixels_mut() {
        let (x, y) = warp.source_of(f64::from(u) + 0.5, f64::from(v) + 0.5);
        *px = bilinear(img, x - 0.5, y - 0.5);
    }
    (out, warp)
}

fn distance(a: Point, b: Point) -> f32 {
    ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt()
}

/// The pixel at (`x`, `y`) interpolated from its four neighbours; beyond the photo, its edge
/// pixels continue outwards (a portrait's edge is its backdrop, which then simply extends).
fn bilinear(img: &RgbImage, x: f64, y: f64) -> Rgb<u8> {
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Rgb([255, 255, 255]);
    }
    let (x, y) = (
        x.clamp(0.0, f64::from(w - 1)),
        y.clamp(0.0, f64::from(h - 1)),
    );
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - f64::from(x0), y - f64::from(y0));
    let (a, b, c, d) = (
        img.get_pixel(x0, y0).0,
        img.get_pixel(x1, y0).0,
        img.get_pixel(x0, y1).0,
        img.get_pixel(x1, y1).0,
    );
    let mut out = [0u8; 3];
    for i in 0..3 {
        let top = f64::from(a[i]) * (1.0 - fx) + f64::from(b[i]) * fx;
        let bottom = f64::from(c[i]) * (1.0 - fx) + f64::from(d[i]) * fx;
        out[i] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
    }
    Rgb(out)
}
