//! Renders pages of known text for the accuracy tests and the benchmark.
//! Fonts: DejaVu from Debian's `fonts-dejavu-core` (/usr/share/fonts/truetype/dejavu).

#![allow(dead_code)]

use ab_glyph::{Font, FontVec, PxScale, ScaleFont, point};
use image::{Rgb, RgbImage};

/// Directory of the DejaVu fonts shipped by `fonts-dejavu-core`.
pub const FONT_DIR: &str = "/usr/share/fonts/truetype/dejavu";

/// The lines of [`certificate_png`].
pub const CERTIFICATE: [&str; 4] = [
    "CERTIFICATE OF BIRTH",
    "Name of Candidate: Priya Sharma",
    "Registration number ABX-2291-KL",
    "Issued at New Delhi on 03 January 2024",
];

/// A certificate as a student would upload it: an A4 page at 150 dpi (1240 × 1754) with the
/// lines of [`CERTIFICATE`], each followed by `suffix`, in `px`-pixel DejaVu Sans, as PNG bytes.
pub fn certificate_png(px: f32, suffix: &str) -> Vec<u8> {
    let lines: Vec<String> = CERTIFICATE.iter().map(|l| format!("{l}{suffix}")).collect();
    let page = render_lines(&font("DejaVuSans.ttf"), px, &lines, 1240, 1754);
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(page)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encoding a PNG in memory");
    png
}

/// Loads a DejaVu font by file name; panics with the package to install.
pub fn font(name: &str) -> FontVec {
    let path = format!("{FONT_DIR}/{name}");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (install Debian package fonts-dejavu-core)"));
    FontVec::try_from_vec(bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Sentences typical of the documents students upload (forms, certificates,
/// mark sheets): words, names, digits, dates and punctuation.
pub const CORPUS: &[&str] = &[
    "The candidate has passed the Senior Secondary Examination held in March 2023.",
    "Name of Candidate: Priya Sharma   Roll No. 4521873   Date of Birth: 14/08/2005",
    "Mother's Name: Sunita Devi, Father's Name: Rajesh Kumar Sharma",
    "Subject Code 041 Mathematics: 87 marks out of 100 (Eighty Seven)",
    "This is to certify that the above information is correct to the best of my knowledge.",
    "Address: House No. 221, Sector 15, Rohini, New Delhi - 110085",
    "Category: General / OBC / SC / ST; Annual family income below Rs. 2,50,000",
    "Signature of the Principal with seal of the institution",
    "Registration number ABX-2291-KL was issued on 03 January 2024 at 10:45 AM.",
    "Physics 78, Chemistry 81, Biology 92, English Core 88, Total 427/500",
    "Please attach a recent passport size photograph (3.5 cm x 4.5 cm).",
    "Applicants must upload documents in JPG or PDF format, maximum size 200 KB.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Email: student.helpdesk@example.org, Phone: +91 98765 43210",
    "Aadhaar number and PAN details are optional for this application.",
    "Percentage obtained: 85.4% in aggregate, First Division with Distinction",
    "Examination centre: Kendriya Vidyalaya No. 2, Jaipur, Rajasthan",
    "Issued by the Controller of Examinations, Central Board of Secondary Education",
    "Valid only with the original certificate; photocopies must be self-attested.",
    "Pack my box with five dozen liquor jugs and seven quartz ideas.",
];

/// A rendered page and the text it shows (lines joined with '\n').
pub struct Page {
    pub image: RgbImage,
    pub text: String,
}

/// Draws `lines` in `font` at `px` pixels per em on a white page `width`×`height`.
pub fn render_lines(
    font: &FontVec,
    px: f32,
    lines: &[String],
    width: u32,
    height: u32,
) -> RgbImage {
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let scaled = font.as_scaled(PxScale::from(px));
    let line_h = (scaled.height() + scaled.line_gap()).max(px) * 1.35;
    let margin = (width as f32 * 0.06).max(10.0);
    let mut y = margin + scaled.ascent();
    for line in lines {
        let mut x = margin;
        let mut prev = None;
        for ch in line.chars() {
            let id = scaled.glyph_id(ch);
            if let Some(p) = prev {
                x += scaled.kern(p, id);
            }
            let glyph = id.with_scale_and_position(PxScale::from(px), point(x, y));
            x += scaled.h_advance(id);
            prev = Some(id);
            if let Some(outlined) = font.outline_glyph(glyph) {
                let b = outlined.px_bounds();
                outlined.draw(|gx, gy, cov| {
                    let (ix, iy) = (b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32);
                    if ix >= 0 && iy >= 0 && (ix as u32) < width && (iy as u32) < height {
                        let p = img.get_pixel_mut(ix as u32, iy as u32);
                        let v = (p[0] as f32 * (1.0 - cov.clamp(0.0, 1.0))) as u8;
                        *p = Rgb([v, v, v]);
                    }
                });
            }
        }
        y += line_h;
    }
    img
}

/// Width in pixels of `text` set in `font` at `px`.
pub fn text_width(font: &FontVec, px: f32, text: &str) -> f32 {
    let scaled = font.as_scaled(PxScale::from(px));
    text.chars()
        .map(|c| scaled.h_advance(scaled.glyph_id(c)))
        .sum()
}

/// Greedy word wrap of the corpus (starting at sentence `start`) into lines
/// that fit `max_w` pixels, until `n_lines` lines exist.
pub fn wrap_corpus(
    font: &FontVec,
    px: f32,
    max_w: f32,
    start: usize,
    n_lines: usize,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    let mut i = start;
    while lines.len() < n_lines {
        let sentence = CORPUS[i % CORPUS.len()];
        i += 1;
        for word in sentence.split(' ').filter(|w| !w.is_empty()) {
            let cand = if cur.is_empty() {
                word.to_string()
            } else {
                format!("{cur} {word}")
            };
            if text_width(font, px, &cand) > max_w && !cur.is_empty() {
                lines.push(std::mem::take(&mut cur));
                cur = word.to_string();
                if lines.len() >= n_lines {
                    return lines;
                }
            } else {
                cur = cand;
            }
        }
    }
    lines
}

/// A page of wrapped corpus text.
pub fn page(font: &FontVec, px: f32, width: u32, height: u32, start: usize) -> Page {
    let scaled = font.as_scaled(PxScale::from(px));
    let line_h = (scaled.height() + scaled.line_gap()).max(px) * 1.35;
    let margin = width as f32 * 0.06;
    let n = (((height as f32 - 2.0 * margin) / line_h).floor() as usize).max(1);
    let lines = wrap_corpus(font, px, width as f32 - 2.0 * margin, start, n);
    let image = render_lines(font, px, &lines, width, height);
    Page {
        image,
        text: lines.join("\n"),
    }
}

/// Rotates by `deg` degrees (counter-clockwise positive) about the centre,
/// keeping the size and filling with white: a page scanned a little askew.
pub fn skew(img: &RgbImage, deg: f32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (s, c) = deg.to_radians().sin_cos();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let sx = c * dx - s * dy + cx;
        let sy = s * dx + c * dy + cy;
        if sx < 0.0 || sy < 0.0 || sx >= (w - 1) as f32 || sy >= (h - 1) as f32 {
            return Rgb([255, 255, 255]);
        }
        let (x0, y0) = (sx.floor() as u32, sy.floor() as u32);
        let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
        let g = |xx: u32, yy: u32| img.get_pixel(xx, yy)[0] as f32;
        let v = g(x0, y0) * (1.0 - fx) * (1.0 - fy)
            + g(x0 + 1, y0) * fx * (1.0 - fy)
            + g(x0, y0 + 1) * (1.0 - fx) * fy
            + g(x0 + 1, y0 + 1) * fx * fy;
        let v = v.round() as u8;
        Rgb([v, v, v])
    })
}

/// Adds deterministic uniform noise of amplitude `amp` (xorshift PRNG).
pub fn noise(img: &RgbImage, amp: f32, seed: u64) -> RgbImage {
    let mut state = seed | 1;
    let mut out = img.clone();
    for p in out.pixels_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let r = (state % 10_000) as f32 / 10_000.0 * 2.0 - 1.0;
        let v = (p[0] as f32 + r * amp).clamp(0.0, 255.0) as u8;
        *p = Rgb([v, v, v]);
    }
    out
}

/// A dim, low-contrast capture: white becomes `white`, black becomes `black`.
pub fn dark(img: &RgbImage, black: u8, white: u8) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let t = p[0] as f32 / 255.0;
        let v = (black as f32 + t * (white as f32 - black as f32)) as u8;
        *p = Rgb([v, v, v]);
    }
    out
}

/// Collapses all whitespace to single spaces (line breaks are layout, not text).
pub fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Character error rate: edit distance over the reference length.
pub fn cer(reference: &str, hypothesis: &str) -> f64 {
    let r: Vec<char> = normalize(reference).chars().collect();
    let h: Vec<char> = normalize(hypothesis).chars().collect();
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    let mut cur = vec![0; h.len() + 1];
    for i in 1..=r.len() {
        cur[0] = i;
        for j in 1..=h.len() {
            let sub = prev[j - 1] + usize::from(r[i - 1] != h[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[h.len()] as f64 / r.len() as f64
}
