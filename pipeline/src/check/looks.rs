//! The lines about what the image shows: its background, the face (photos) and the text OCR
//! reads (where a rule asks about it).

use image::RgbImage;
use rythmiq_domain::{DocumentKind, FaceSpec, RuleSpec, TextCheck};
use rythmiq_face::Face;

use super::Line;
use crate::Error;
use crate::face;
use crate::ocr::{Budget, OcrStage};

/// Share of a photo's width (each side) and height (top) taken as its background band: a
/// passport-style photo's subject fills the middle and bottom, its backdrop shows along the top
/// and the sides.
const BAND: f64 = 0.06;

/// How far down the sides the band reaches, as a share of the height: below it the shoulders
/// of a head-and-shoulders photo commonly reach the frame's edges (a photo cropped around its
/// subject rather than framed by the face), and they are the person, not the backdrop.
const SIDES_DOWN_TO: f64 = 0.6;

/// Lightest luma (ITU-R BT.601) and most colour (max − min channel) a "white" backdrop may have
/// as its median, and a "light" one; chosen so paper and studio white pass and a grey-blue or
/// beige wall fails.
const WHITE: (u8, u8) = (200, 28);
const LIGHT: (u8, u8) = (160, 60);

/// Share of band pixels within [`SPREAD`] luma of the median for a backdrop to count as plain.
const PLAIN_SHARE: f64 = 0.8;
const SPREAD: i32 = 40;

fn luma(p: &image::Rgb<u8>) -> u8 {
    let [r, g, b] = p.0.map(u32::from);
    u8::try_from((299 * r + 587 * g + 114 * b + 500) / 1000).unwrap_or(u8::MAX)
}

fn chroma(p: &image::Rgb<u8>) -> u8 {
    let [r, g, b] = p.0;
    r.max(g).max(b) - r.min(g).min(b)
}

fn median(mut v: Vec<u8>) -> u8 {
    if v.is_empty() {
        return 0;
    }
    let mid = v.len() / 2;
    *v.select_nth_unstable(mid).1
}

/// The background line: a photo's backdrop (the band along its top and sides) must be plain
/// and as light as the rule's `background` (`white`, `light`); ink on paper (the other kinds)
/// must sit on paper that light, judged by the median of the whole image, which the paper
/// dominates. Any other `background` value is not checked.
pub(crate) fn background_line(image: &RgbImage, rule: &RuleSpec) -> Line {
    let wanted = rule.background.as_str();
    let (min_luma, max_chroma) = match wanted {
        "white" => WHITE,
        "light" => LIGHT,
        other => {
            return Line::not_checked(
                "background",
                other,
                "this rule places no requirement on the background we can test",
            );
        }
    };
    let (w, h) = image.dimensions();
    let band_w = ((f64::from(w) * BAND).ceil() as u32).max(1);
    let band_h = ((f64::from(h) * BAND).ceil() as u32).max(1);
    let sides_h = (f64::from(h) * SIDES_DOWN_TO).round() as u32;
    let photo = rule.kind == DocumentKind::Photo;
    let pixels: Vec<&image::Rgb<u8>> = image
        .enumerate_pixels()
        .filter(|(x, y, _)| {
            !photo || *y < band_h || (*y < sides_h && (*x < band_w || *x >= w - band_w))
        })
        .map(|(_, _, p)| p)
        .collect();
    let l = median(pixels.iter().map(|p| luma(p)).collect());
    let c = median(pixels.iter().map(|p| chroma(p)).collect());
    let near = pixels
        .iter()
        .filter(|p| (i32::from(luma(p)) - i32::from(l)).abs() <= SPREAD)
        .count();
    let plain = near as f64 / pixels.len().max(1) as f64;
    let found = format!(
        "{} (brightness {}/255, {:.0} % even)",
        describe(l, c),
        l,
        plain * 100.0
    );
    let expected = format!("plain {wanted}");
    let (passed, message) = if l < min_luma || c > max_chroma {
        (
            false,
            format!(
                "the background is {}; this rule needs a plain {wanted} background",
                describe(l, c)
            ),
        )
    } else if photo && plain < PLAIN_SHARE {
        (
            false,
            format!(
                "the background is uneven (only {:.0} % of it is one shade); this rule needs \
                 a plain {wanted} background",
                plain * 100.0
            ),
        )
    } else {
        (true, format!("a plain {} background", describe(l, c)))
    };
    Line::new("background", Some(passed), expected, found, message)
}

fn describe(luma: u8, chroma: u8) -> &'static str {
    match (luma, chroma) {
        (_, c) if c > LIGHT.1 => "coloured",
        (l, c) if l >= WHITE.0 && c <= WHITE.1 => "white",
        (l, _) if l >= LIGHT.0 => "light",
        (l, _) if l >= 90 => "mid-grey or mid-toned",
        _ => "dark",
    }
}

/// The face lines of a photo: exactly one face, its height within the rule's band, centred
/// (the last two only where the rule has a `[face]` table). Measured by the detector the
/// pipeline frames with, so the check and the framing agree; without `ocr` (the stage that holds
/// the models: the API loads none) they are not checked.
pub fn face_lines(image: &RgbImage, rule: &RuleSpec, ocr: Option<&OcrStage>) -> Vec<Line> {
    face_lines_placed(image, rule, ocr, None)
}

/// [`face_lines`] for a photo whose one face is already known (`placed`, in its pixels: where the
/// pipeline's framing put it), so the detector does not run again.
pub fn face_lines_placed(
    image: &RgbImage,
    rule: &RuleSpec,
    ocr: Option<&OcrStage>,
    placed: Option<&Face>,
) -> Vec<Line> {
    if rule.kind != DocumentKind::Photo {
        return Vec::new();
    }
    let one = "exactly one face";
    let height = |spec: Option<&FaceSpec>| match spec {
        Some(f) => format!(
            "{}–{} % of the photo's height",
            pct(f.head_height[0]),
            pct(f.head_height[1])
        ),
        None => "the face's share of the photo's height".to_owned(),
    };
    let centre = |spec: Option<&FaceSpec>| match spec {
        Some(f) => format!("within {} % of the centre", pct(f.centre_tolerance)),
        None => "the face centred left to right".to_owned(),
    };
    let spec = rule.face.as_ref();
    let Some(ocr) = ocr else {
        let why = "finding the face needs the face model, which is not loaded here";
        return vec![
            Line::not_checked("face", one, why),
            Line::not_checked("face_height", height(spec), why),
            Line::not_checked("face_centre", centre(spec), why),
        ];
    };
    let found = match placed {
        Some(f) => Ok(f.clone()),
        None => face::main_face(&ocr.face, image),
    };
    let face = match found {
        Ok(face) => face,
        Err(e) => {
            let (found, message) = match e {
                Error::FaceNotFound => (
                    "no face".to_owned(),
                    "no face was found; the photo must show your face, looking at the camera"
                        .to_owned(),
                ),
                Error::MultipleFaces { count } => (
                    format!("{count} faces"),
                    format!("{count} faces of similar size; the photo must show only you"),
                ),
                other => {
                    let why = format!("the face detector failed: {other}");
                    return vec![Line::not_checked("face", one, &why)];
                }
            };
            let why = "there is no single face to measure";
            return vec![
                Line::new("face", Some(false), one, found, message),
                Line::not_checked("face_height", height(spec), why),
                Line::not_checked("face_centre", centre(spec), why),
            ];
        }
    };
    let mut lines = vec![Line::new(
        "face",
        Some(true),
        one,
        "one face",
        "one face, as required",
    )];
    let Some(spec) = spec else {
        let why = "this rule states no face framing";
        lines.push(Line::not_checked("face_height", height(None), why));
        lines.push(Line::not_checked("face_centre", centre(None), why));
        return lines;
    };
    let m = face::measure_face(&face, image.width(), image.height(), spec);
    let share = pct(m.head_height);
    let band = format!(
        "{}–{} %",
        pct(spec.head_height[0]),
        pct(spec.head_height[1])
    );
    let head_ok = m.head_in_band && m.headroom >= 0.0;
    lines.push(Line::new(
        "face_height",
        Some(head_ok),
        height(Some(spec)),
        format!("{share} %"),
        if m.headroom < 0.0 {
            "the top of the head is cut off; leave room above it".to_owned()
        } else if m.head_in_band {
            format!("the face fills {share} % of the photo's height, within {band}")
        } else {
            format!("the face fills {share} % of the photo's height; this rule needs {band}")
        },
    ));
    let side = if m.centre_offset < 0.0 {
        "left"
    } else {
        "right"
    };
    let off = pct(m.centre_offset.abs());
    lines.push(Line::new(
        "face_centre",
        Some(m.centred),
        centre(Some(spec)),
        format!("{off} % {side} of centre"),
        if m.centred {
            "the face is centred".to_owned()
        } else {
            format!(
                "the face sits {off} % {side} of the centre; this rule allows {} %",
                pct(spec.centre_tolerance)
            )
        },
    ));
    lines
}

/// A fraction as a whole percentage.
fn pct(v: f64) -> i64 {
    // Bounded: fractions of an image, and rule bands validated to 0–1.
    (v * 100.0).round().clamp(-1000.0, 1000.0) as i64
}

/// Whether `rule` has lines that read text.
pub(super) fn reads_text(rule: &RuleSpec) -> bool {
    rule.text_check != TextCheck::None
}

/// A declaration reads as English when at least this share of its letters are Latin (A–Z) …
const LATIN_SHARE: f64 = 0.9;
/// … and it holds at least this many words of two or more Latin letters.
const MIN_WORDS: usize = 5;
/// A signature is in capitals when at least this share of its letters are upper case, judged
/// on at least [`MIN_LETTERS`] letters (fewer, from a cursive scrawl, say nothing).
const CAPITAL_SHARE: f64 = 0.8;
const MIN_LETTERS: usize = 3;

/// The lines the rule's `text_check` asks for, read by OCR; without `ocr` (the API loads no
/// models) they are not checked.
pub fn text_lines(image: &RgbImage, rule: &RuleSpec, ocr: Option<&OcrStage>) -> Vec<Line> {
    let (name, expected) = match rule.text_check {
        TextCheck::None => return Vec::new(),
        TextCheck::English => ("text", "hand-written text, in English"),
        TextCheck::NoCapitals => ("capitals", "not in capital letters"),
    };
    let Some(ocr) = ocr else {
        return vec![Line::not_checked(
            name,
            expected,
            "reading the text needs the OCR engine, which is not loaded here",
        )];
    };
    let budget = Budget::new(ocr.timeout);
    let read = match rule.text_check {
        TextCheck::NoCapitals => ocr.signature(image, &budget),
        _ => ocr.document(image, &budget),
    };
    let page = match read {
        Ok(p) => p,
        Err(e) => {
            return vec![Line::not_checked(
                name,
                expected,
                &format!("OCR failed: {e}"),
            )];
        }
    };
    let letters: Vec<char> = page.text.chars().filter(|c| c.is_alphabetic()).collect();
    let latin = letters.iter().filter(|c| c.is_ascii_alphabetic()).count();
    match rule.text_check {
        TextCheck::English => {
            let words = page
                .text
                .split(|c: char| !c.is_ascii_alphabetic())
                .filter(|w| w.len() >= 2)
                .count();
            let share = latin as f64 / letters.len().max(1) as f64;
            let found = format!(
                "{words} English words, {:.0} % Latin letters",
                share * 100.0
            );
            let (passed, message) = if letters.is_empty() {
                (
                    false,
                    "no writing was found; the declaration must be written out".to_owned(),
                )
            } else if share < LATIN_SHARE {
                (
                    false,
                    format!(
                        "the declaration is not in English (only {:.0} % of its letters are A–Z); \
                     this rule needs it in English",
                        share * 100.0
                    ),
                )
            } else if words < MIN_WORDS {
                (
                    false,
                    format!(
                        "only {words} words could be read; write the whole declaration out clearly"
                    ),
                )
            } else {
                (
                    true,
                    format!("the declaration reads as English ({words} words)"),
                )
            };
            vec![Line::new(name, Some(passed), expected, found, message)]
        }
        TextCheck::NoCapitals => {
            let upper = letters.iter().filter(|c| c.is_uppercase()).count();
            if letters.len() < MIN_LETTERS {
                return vec![Line::not_checked(
                    name,
                    expected,
                    "too few letters could be read to tell",
                )];
            }
            let share = upper as f64 / letters.len() as f64;
            let found = format!(
                "{:.0} % of {} letters in capitals",
                share * 100.0,
                letters.len()
            );
            let (passed, message) = if share >= CAPITAL_SHARE {
                (false, "the signature is written in capital letters, which this rule does not accept; sign as you usually do".to_owned())
            } else {
                (true, "not in capital letters".to_owned())
            };
            vec![Line::new(name, Some(passed), expected, found, message)]
        }
        TextCheck::None => Vec::new(),
    }
}
