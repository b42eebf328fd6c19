//! FACE stage: for photo rules with a `[face]` table ([`FaceSpec`]), find the one face and frame
//! the photo by it, as ID-photo tools do (HivisionIDPhotos, idphoto): the head (crown to chin)
//! scaled into the rule's head-height band, the eye line in its band, the face centred, the eyes
//! levelled. Detection is `rythmiq_face` (CenterFace on rten).
//!
//! [`measure`] reports where the face of an image *as it is* sits against a rule, the same
//! measurement the framing is built and tested on.

use image::RgbImage;
use rythmiq_domain::FaceSpec;
use rythmiq_face::{DetectOptions, Detector, Face, Point};
use serde::Serialize;

use crate::Error;

/// A second face whose box has at least this share of the largest one's area makes the photo
/// ambiguous (two people); smaller ones (a face on a poster behind) are ignored.
pub const SIMILAR_FACE_AREA: f32 = 0.5;

/// Long side of the second, finer search for a face (see [`main_face`]).
pub const FINE_SIDE: u32 = 960;

/// A head up to this factor smaller than the output needs is enlarged without a warning (and
/// without decoding the photo again, finer): a 20 % enlargement, followed by the fit's resize,
/// does not show, and a finer decode of a 12 MP photo costs ~0.06 CPU-s.
pub const QUIET_ENLARGEMENT: f64 = 1.2;

/// Least room kept above the crown, as a share of the output height, when the eye-line band
/// pushes the head up.
const MIN_HEADROOM: f64 = 0.03;

/// The canvas the framing draws is at most this many times the target size: enough for the
/// fit's area-averaging resize to antialias what the bilinear warp leaves.
const MAX_OVERSAMPLE: f64 = 1.5;

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
    the_one(&faces).cloned()
}

/// Whether `img` shows one person, from a single look at the detector's default size (no finer
/// search): photo rules that do not frame by the face but want a plain backdrop replace it only
/// around a person, and a photo without one (a pet, an object) should cost one small detection.
pub fn shows_one_person(detector: &Detector, img: &RgbImage) -> Result<bool, Error> {
    let faces = detector.detect(img).map_err(Error::Face)?;
    Ok(the_one(&faces).is_ok())
}

/// The largest of `faces`, unless none was found or another reaches [`SIMILAR_FACE_AREA`] of it.
fn the_one(faces: &[Face]) -> Result<&Face, Error> {
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
    Ok(first)
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

    /// The same map for a canvas `k` times as large.
    fn scaled(&self, k: f64) -> Self {
        Self {
            scale: self.scale * k,
            origin: (self.origin.0 * k, self.origin.1 * k),
            ..*self
        }
    }

    /// The canvas position of the photo's point `p` (the inverse of [`Warp::source_of`]).
    fn canvas_of(&self, p: Point) -> Point {
        let (dx, dy) = (
            f64::from(p.x) - self.centre.0,
            f64::from(p.y) - self.centre.1,
        );
        Point {
            x: (self.origin.0 + self.scale * (dx * self.cos + dy * self.sin)) as f32,
            y: (self.origin.1 + self.scale * (dy * self.cos - dx * self.sin)) as f32,
        }
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
        map_face(f, |q| self.point(q))
    }

    /// A face of the photo, where the canvas shows it.
    fn onto_canvas(&self, f: &Face) -> Face {
        map_face(f, |q| self.canvas_of(q))
    }
}

/// `f` with every point moved by `p`, its box the bounds of its moved corners and its roll read
/// again from its moved eyes.
fn map_face(f: &Face, p: impl Fn(Point) -> Point) -> Face {
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

/// A photo framed by [`frame_refined`], and where its face is.
#[derive(Debug, Clone)]
pub struct Framed {
    /// The framed picture (up to [`MAX_OVERSAMPLE`] times the target size, the target's aspect).
    pub image: RgbImage,
    /// The face as the detector reads it on that picture, in its pixels: what a check of the
    /// output measures, without running the detector again.
    pub face: Face,
}

/// The photo framed for a `tw`×`th` rule (see [`place`]), then framed again from the face as the
/// detector finds it on that first framing: CenterFace's landmarks depend a little on how large
/// the face is in the picture it sees (the head reads ~8 % taller once it fills the frame), and
/// the second pass places the head as a check of the output will measure it. The first framing
/// is drawn only about as large as the detector looks at it: drawing it at full size
/// cost as much as the second one, for pixels the detector shrinks away.
pub fn frame_refined(
    detector: &Detector,
    img: &RgbImage,
    face: &Face,
    spec: &FaceSpec,
    target: (u32, u32),
    warnings: &mut Vec<String>,
) -> Result<Framed, Error> {
    // The first placement's warnings are said again, or not, by the second.
    let first = place(img, face, spec, target, &mut Vec::new());
    // Drawn at twice the detector's default input, which the detector's own resize then halves,
    // as it halves a 630 × 810 output checked afterwards: the head is read at the size a check
    // reads it (at 256 px it reads ~7 % shorter, and the output then misses the band).
    let opts = DetectOptions::default();
    let refine_side = 2 * opts.max_side;
    let k = f64::from(refine_side) / f64::from(first.size.0.max(first.size.1));
    let small = if k < 1.0 {
        Placement {
            size: (
                ((f64::from(first.size.0) * k).round() as u32).max(1),
                ((f64::from(first.size.1) * k).round() as u32).max(1),
            ),
            warp: first.warp.scaled(k),
        }
    } else {
        first
    };
    let refined = detector
        .detect_with(&render(img, &small), &opts)
        .map_err(Error::Face)?
        .first()
        .map(|on_canvas| small.warp.face(on_canvas));
    // Not found again on the first framing (it should be): the first placement stands.
    let face = refined.as_ref().unwrap_or(face);
    let placed = place(img, face, spec, target, warnings);
    Ok(Framed {
        image: render(img, &placed),
        face: placed.warp.onto_canvas(face),
    })
}

/// A framing: the canvas size and how its pixels map onto the photo.
#[derive(Debug, Clone, Copy)]
struct Placement {
    size: (u32, u32),
    warp: Warp,
}

/// Where the photo goes for a `tw`×`th` rule: a canvas of the target's aspect ratio (up to
/// [`MAX_OVERSAMPLE`] times its size, for the fit's resize to finish), levelled by the face's
/// roll, with the head at the middle of the head-height band, centred, its eye line moved into
/// the eye-line band when the middle placement misses it. Parts of the canvas beyond the photo
/// extend the photo's edge pixels (a warning says so), and a face whose head
/// is smaller than the output needs is enlarged (a `face_too_small` warning). [`render`] draws it.
fn place(
    img: &RgbImage,
    face: &Face,
    spec: &FaceSpec,
    (tw, th): (u32, u32),
    warnings: &mut Vec<String>,
) -> Placement {
    let head_src = f64::from(face.head_height()).max(1.0);
    let head_frac = (spec.head_height[0] + spec.head_height[1]) / 2.0;
    let head_needed = head_frac * f64::from(th);
    let oversample = (head_src / head_needed).clamp(1.0, MAX_OVERSAMPLE);
    if head_src * QUIET_ENLARGEMENT < head_needed {
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
    Placement {
        size: (cw, ch),
        warp,
    }
}

/// The canvas of `p`, each pixel interpolated from the photo. Hand-rolled rather than
/// `imageproc`'s warp: the map is affine, so each row's source positions are one addition apart,
/// and the pixels are read from the raw buffer; this draws a 945 × 1215 canvas ~4× faster than a
/// per-pixel transform with bounds-checked reads.
fn render(img: &RgbImage, p: &Placement) -> RgbImage {
    let mut out = RgbImage::new(p.size.0, p.size.1);
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return out;
    }
    let src = img.as_raw();
    let (ox, oy) = p.warp.source_of(0.5, 0.5);
    let (x1, y1) = p.warp.source_of(1.5, 0.5);
    let (step_x, step_y) = (x1 - ox, y1 - oy);
    let row_len = p.size.0 as usize * 3;
    if row_len == 0 {
        return out;
    }
    let (max_x, max_y) = ((w - 1) as f64, (h - 1) as f64);
    for (v, row) in out.chunks_exact_mut(row_len).enumerate() {
        let (mut x, mut y) = p.warp.source_of(0.5, v as f64 + 0.5);
        // Pixel centres: the photo's pixel (i, j) is centred at (i + 0.5, j + 0.5).
        x -= 0.5;
        y -= 0.5;
        for px in row.chunks_exact_mut(3) {
            // Beyond the photo, its edge pixels continue outwards (a portrait's edge is its
            // backdrop, which then simply extends).
            let (cx, cy) = (x.clamp(0.0, max_x), y.clamp(0.0, max_y));
            let (x0, y0) = (cx as usize, cy as usize);
            let (fx, fy) = ((cx - x0 as f64) as f32, (cy - y0 as f64) as f32);
            let x1 = (x0 + 1).min(w - 1);
            let y1 = (y0 + 1).min(h - 1);
            let (a, b) = ((y0 * w + x0) * 3, (y0 * w + x1) * 3);
            let (c, d) = ((y1 * w + x0) * 3, (y1 * w + x1) * 3);
            for i in 0..3 {
                let top = f32::from(src[a + i]) * (1.0 - fx) + f32::from(src[b + i]) * fx;
                let bottom = f32::from(src[c + i]) * (1.0 - fx) + f32::from(src[d + i]) * fx;
                px[i] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
            }
            x += step_x;
            y += step_y;
        }
    }
    out
}

fn distance(a: Point, b: Point) -> f32 {
    ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt()
}
