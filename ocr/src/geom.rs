//! Quadrilateral geometry: corner ordering, rotation of boxes with the page,
//! and perspective-correct cropping of text lines.

use image::RgbImage;

/// A quadrilateral as four `[x, y]` corners: top-left, top-right,
/// bottom-right, bottom-left (as seen in upright text).
pub type Quad = [[f32; 2]; 4];

/// Orders four corners like PP-OCR's `get_mini_boxes`: the two left-most
/// points give top-left/bottom-left (by y), the two right-most give
/// top-right/bottom-right. Keeping PP-OCR's convention keeps the crop
/// orientation (and thus the tall-crop rotation rule) identical to upstream.
pub fn order_corners(mut pts: [[f32; 2]; 4]) -> Quad {
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (tl, bl) = if pts[0][1] <= pts[1][1] {
        (pts[0], pts[1])
    } else {
        (pts[1], pts[0])
    };
    let (tr, br) = if pts[2][1] <= pts[3][1] {
        (pts[2], pts[3])
    } else {
        (pts[3], pts[2])
    };
    [tl, tr, br, bl]
}

fn dist(a: [f32; 2], b: [f32; 2]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// Width and height of the rectified crop for `q` (PP-OCR's
/// `get_rotate_crop_image` rule: the longer of each pair of opposite edges).
pub fn crop_size(q: &Quad) -> (f32, f32) {
    let w = dist(q[0], q[1]).max(dist(q[3], q[2]));
    let h = dist(q[0], q[3]).max(dist(q[1], q[2]));
    (w, h)
}

/// Maps a quad through a 180° rotation of a `w`×`h` image, keeping the
/// corner order meaningful (what was bottom-right becomes top-left).
pub fn rotate_quad_180(q: &Quad, w: f32, h: f32) -> Quad {
    let r = |p: [f32; 2]| [w - p[0], h - p[1]];
    [r(q[2]), r(q[3]), r(q[0]), r(q[1])]
}

/// Solves the 3×3 homography mapping the unit-free rectangle
/// `(0,0),(w,0),(w,h),(0,h)` onto `quad`. Returns `None` for degenerate quads.
fn homography(quad: &Quad, w: f32, h: f32) -> Option<[f64; 9]> {
    let src = [
        [0.0, 0.0],
        [w as f64, 0.0],
        [w as f64, h as f64],
        [0.0, h as f64],
    ];
    // 8 unknowns (h33 = 1), two equations per correspondence.
    let mut a = [[0f64; 9]; 8];
    for i in 0..4 {
        let (x, y) = (src[i][0], src[i][1]);
        let (u, v) = (quad[i][0] as f64, quad[i][1] as f64);
        a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
        a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
    }
    // Gaussian elimination with partial pivoting on the augmented matrix.
    for col in 0..8 {
        let pivot = (col..8).max_by(|&r1, &r2| a[r1][col].abs().total_cmp(&a[r2][col].abs()))?;
        if a[pivot][col].abs() < 1e-9 {
            return None;
        }
        a.swap(col, pivot);
        for row in 0..8 {
            if row != col {
                let f = a[row][col] / a[col][col];
                if f != 0.0 {
                    let pivot_row = a[col];
                    for (dst, src) in a[row][col..].iter_mut().zip(&pivot_row[col..]) {
                        *dst -= f * src;
                    }
                }
            }
        }
    }
    let mut hm = [0f64; 9];
    for i in 0..8 {
        hm[i] = a[i][8] / a[i][i];
    }
    hm[8] = 1.0;
    Some(hm)
}

/// Samples `img` bilinearly at (x, y), replicating edge pixels.
#[inline]
fn sample(img: &RgbImage, x: f32, y: f32) -> [u8; 3] {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let x0 = x.floor() as i64;
    let y0 = y.floor() as i64;
    let x1 = (x0 + 1).min(w - 1);
    let y1 = (y0 + 1).min(h - 1);
    let fx = x - x0 as f32;
    let fy = y - y0 as f32;
    let raw = img.as_raw();
    let stride = w as usize * 3;
    let at = |xx: i64, yy: i64, c: usize| raw[yy as usize * stride + xx as usize * 3 + c] as f32;
    let mut out = [0u8; 3];
    for (c, o) in out.iter_mut().enumerate() {
        let top = at(x0, y0, c) * (1.0 - fx) + at(x1, y0, c) * fx;
        let bot = at(x0, y1, c) * (1.0 - fx) + at(x1, y1, c) * fx;
        *o = (top * (1.0 - fy) + bot * fy).round().clamp(0.0, 255.0) as u8;
    }
    out
}

/// Cuts the text line `quad` out of `img` with a perspective warp into an
/// upright `w`×`h` image (sizes from [`crop_size`]). A crop at least 1.5×
/// taller than wide is rotated 90° counter-clockwise, as PP-OCR does, because
/// such a box holds a line of text running top-to-bottom.
pub fn crop_line(img: &RgbImage, quad: &Quad) -> Option<RgbImage> {
    let (w, h) = crop_size(quad);
    let (cw, ch) = (w.round().max(1.0) as u32, h.round().max(1.0) as u32);
    let hm = homography(quad, cw as f32, ch as f32)?;
    let mut out = RgbImage::new(cw, ch);
    for oy in 0..ch {
        for ox in 0..cw {
            // Sample at pixel centres so the crop is not shifted half a pixel.
            let (x, y) = (ox as f64 + 0.5, oy as f64 + 0.5);
            let d = hm[6] * x + hm[7] * y + hm[8];
            if d.abs() < 1e-12 {
                continue;
            }
            let u = (hm[0] * x + hm[1] * y + hm[2]) / d - 0.5;
            let v = (hm[3] * x + hm[4] * y + hm[5]) / d - 0.5;
            out.put_pixel(ox, oy, image::Rgb(sample(img, u as f32, v as f32)));
        }
    }
    if ch as f32 >= 1.5 * cw as f32 {
        out = image::imageops::rotate270(&out);
    }
    Some(out)
}

/// Reading order, as rows of indices into `quads`: rows top-to-bottom,
/// boxes left-to-right within a row, and multi-column text column by column.
///
/// The boxes are cut recursively, as in an XY-cut on the line boxes: into
/// columns where no box spans a vertical gap *and* every side is a column of
/// text (see [`is_text_column`]), else into bands where no box spans a
/// horizontal gap; whatever no cut splits is read in rows. Without the
/// column cut a two-column brochure reads as rows joining a left-column line
/// to the right-column line beside it (a real scan's CER 0.36 instead of
/// 0.01), while a form's label and value boxes, which also have a vertical
/// gap between them, must still read row by row.
///
/// The boxes are first turned by the page's skew ([`skew`]), so that a page photographed a few
/// degrees off square reads in rows: at 4° the centre of a short title at the left and that of
/// the full-width line under it, which the rows compare, can be level, and the two were read as
/// one row.
pub fn reading_order(quads: &[Quad]) -> Vec<Vec<usize>> {
    let (sin, cos) = (-skew(quads)).sin_cos();
    let boxes: Vec<LineBox> = quads
        .iter()
        .map(|q| LineBox::of(&q.map(|[x, y]| [cos * x - sin * y, sin * x + cos * y])))
        .collect();
    let mut rows = Vec::new();
    xy_cut(&boxes, (0..quads.len()).collect(), &mut rows);
    rows
}

/// The page's skew in radians (positive: lines run down to the right): the median, weighted
/// by length, of the direction of the lines at least twice as wide as high (short boxes, digits
/// and bullets, have no reliable direction). 0 when there are none.
pub fn skew(quads: &[Quad]) -> f32 {
    let mut angles: Vec<(f32, f32)> = quads
        .iter()
        .filter_map(|q| {
            let (w, h) = crop_size(q);
            // Top and bottom edges together: each corner's error counts half.
            let dx = q[1][0] - q[0][0] + q[2][0] - q[3][0];
            let dy = q[1][1] - q[0][1] + q[2][1] - q[3][1];
            let a = dy.atan2(dx);
            // Only near-horizontal lines: a page on its side is turned before this is asked.
            (w >= 2.0 * h && a.abs() < std::f32::consts::FRAC_PI_4).then_some((a, w))
        })
        .collect();
    angles.sort_by(|a, b| a.0.total_cmp(&b.0));
    let half = angles.iter().map(|a| a.1).sum::<f32>() / 2.0;
    let mut acc = 0.0;
    for (a, w) in &angles {
        acc += w;
        if acc >= half {
            return *a;
        }
    }
    0.0
}

/// A line's axis-aligned extent, centre and height.
struct LineBox {
    left: f32,
    right: f32,
    top: f32,
    bottom: f32,
    cx: f32,
    cy: f32,
    height: f32,
}

impl LineBox {
    fn of(q: &Quad) -> Self {
        let xs = q.map(|p| p[0]);
        let ys = q.map(|p| p[1]);
        let min = |v: [f32; 4]| v.into_iter().fold(f32::INFINITY, f32::min);
        let max = |v: [f32; 4]| v.into_iter().fold(f32::NEG_INFINITY, f32::max);
        Self {
            left: min(xs),
            right: max(xs),
            top: min(ys),
            bottom: max(ys),
            // The mean of the corners, so a slightly skewed long line still
            // has a sensible centre.
            cx: xs.iter().sum::<f32>() / 4.0,
            cy: ys.iter().sum::<f32>() / 4.0,
            height: crop_size(q).1.max(1.0),
        }
    }
}

/// Splits `set` into groups along one axis wherever no box's extent
/// (`span`) covers the gap; groups in increasing order.
fn split_at_gaps(
    boxes: &[LineBox],
    mut set: Vec<usize>,
    span: impl Fn(&LineBox) -> (f32, f32),
) -> Vec<Vec<usize>> {
    set.sort_by(|&a, &b| span(&boxes[a]).0.total_cmp(&span(&boxes[b]).0));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut reach = f32::NEG_INFINITY;
    for i in set {
        let (lo, hi) = span(&boxes[i]);
        match groups.last_mut() {
            Some(g) if lo <= reach => g.push(i),
            _ => groups.push(vec![i]),
        }
        reach = reach.max(hi);
    }
    groups
}

/// Whether a group of boxes beside another is a column of running text: at
/// least three lines and at least 12 line heights wide (some 25 characters).
/// A form's labels, a table's cells or a caption beside a picture are
/// narrower or shorter and stay in rows with what is beside them.
fn is_text_column(boxes: &[LineBox], group: &[usize], line_height: f32) -> bool {
    let left = group
        .iter()
        .map(|&i| boxes[i].left)
        .fold(f32::INFINITY, f32::min);
    let right = group
        .iter()
        .map(|&i| boxes[i].right)
        .fold(f32::NEG_INFINITY, f32::max);
    group.len() >= 3 && right - left >= 12.0 * line_height
}

fn median_height(boxes: &[LineBox], set: &[usize]) -> f32 {
    let mut h: Vec<f32> = set.iter().map(|&i| boxes[i].height).collect();
    h.sort_by(f32::total_cmp);
    h.get(h.len() / 2).copied().unwrap_or(1.0)
}

/// Column cuts come before band cuts, so that paragraph breaks level in
/// both columns do not cut the page into bands read across the columns. The
/// band cut is at every horizontal gap (lines of one column often have a
/// pixel between them), and consecutive bands that share a vertical gap (the
/// gutter between two columns, each band holding a few lines of each) are
/// joined again into one region before the regions are cut in turn.
fn xy_cut(boxes: &[LineBox], set: Vec<usize>, rows: &mut Vec<Vec<usize>>) {
    let line_height = median_height(boxes, &set);
    let columns = split_at_gaps(boxes, set, |b| (b.left, b.right));
    if columns.len() > 1
        && columns
            .iter()
            .all(|c| is_text_column(boxes, c, line_height))
    {
        for column in columns {
            xy_cut(boxes, column, rows);
        }
        return;
    }
    let bands = split_at_gaps(boxes, columns.concat(), |b| (b.top, b.bottom));
    let mut regions: Vec<Vec<usize>> = Vec::new();
    let mut open = false;
    let has_gap =
        |set: &[usize]| split_at_gaps(boxes, set.to_vec(), |b| (b.left, b.right)).len() > 1;
    for band in bands {
        let gapped = has_gap(&band);
        match regions.last_mut() {
            Some(region) if open && gapped && has_gap(&[region.as_slice(), &band].concat()) => {
                region.extend(band);
            }
            _ => regions.push(band),
        }
        open = gapped;
    }
    if regions.len() == 1 {
        rows.extend(in_rows(boxes, regions.concat()));
        return;
    }
    for region in regions {
        xy_cut(boxes, region, rows);
    }
}

/// Groups boxes into rows (boxes whose vertical centres fall within each
/// other's extent), rows top-to-bottom, boxes left-to-right.
fn in_rows(boxes: &[LineBox], mut set: Vec<usize>) -> Vec<Vec<usize>> {
    set.sort_by(|&a, &b| boxes[a].cy.total_cmp(&boxes[b].cy));
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut row_cy = 0f32;
    let mut row_h = 0f32;
    for i in set {
        let LineBox { cy, height, .. } = boxes[i];
        // Same row when the centres are closer than half the smaller height:
        // robust to a few degrees of skew and to mixed font sizes.
        match rows.last_mut() {
            Some(r) if (cy - row_cy).abs() < 0.5 * height.min(row_h) => {
                r.push(i);
                row_cy += (cy - row_cy) / r.len() as f32;
                row_h = row_h.max(height);
            }
            _ => {
                rows.push(vec![i]);
                row_cy = cy;
                row_h = height;
            }
        }
    }
    for r in &mut rows {
        r.sort_by(|&a, &b| boxes[a].cx.total_cmp(&boxes[b].cx));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homography_maps_corners() {
        let q: Quad = [[10.0, 20.0], [110.0, 25.0], [108.0, 60.0], [8.0, 55.0]];
        let hm = homography(&q, 100.0, 35.0).expect("non-degenerate");
        let map = |x: f64, y: f64| {
            let d = hm[6] * x + hm[7] * y + hm[8];
            (
                (hm[0] * x + hm[1] * y + hm[2]) / d,
                (hm[3] * x + hm[4] * y + hm[5]) / d,
            )
        };
        let (u, v) = map(100.0, 35.0);
        assert!((u - 108.0).abs() < 1e-3 && (v - 60.0).abs() < 1e-3);
    }

    #[test]
    fn rows_left_to_right() {
        let b = |x: f32, y: f32| -> Quad {
            [[x, y], [x + 50.0, y], [x + 50.0, y + 20.0], [x, y + 20.0]]
        };
        let rows = reading_order(&[b(200.0, 102.0), b(10.0, 100.0), b(10.0, 10.0)]);
        assert_eq!(rows, vec![vec![2], vec![1, 0]]);
    }

    /// A line box `x0..x1` wide, 20 px high, its top at `y`.
    fn line(x0: f32, x1: f32, y: f32) -> Quad {
        [[x0, y], [x1, y], [x1, y + 20.0], [x0, y + 20.0]]
    }

    #[test]
    fn two_columns_read_column_by_column_between_full_width_lines() {
        // A heading across the page, two columns of five lines whose rows
        // are offset by a few pixels (as on a real brochure), then a
        // full-width footer.
        let mut quads = vec![line(0.0, 1000.0, 0.0)];
        for k in 0..5 {
            let y = 40.0 + 24.0 * k as f32;
            quads.push(line(0.0, 480.0, y));
            quads.push(line(520.0, 1000.0, y + 6.0));
        }
        quads.push(line(0.0, 1000.0, 200.0));
        let order: Vec<Vec<usize>> = reading_order(&quads);
        let left: Vec<Vec<usize>> = (0..5).map(|k| vec![1 + 2 * k]).collect();
        let right: Vec<Vec<usize>> = (0..5).map(|k| vec![2 + 2 * k]).collect();
        let want: Vec<Vec<usize>> = std::iter::once(vec![0])
            .chain(left)
            .chain(right)
            .chain(std::iter::once(vec![11]))
            .collect();
        assert_eq!(order, want);

        // Paragraph breaks level in both columns: still column by column.
        let mut quads = Vec::new();
        for k in 0..8 {
            let y = 24.0 * k as f32 + if k >= 4 { 30.0 } else { 0.0 };
            quads.push(line(0.0, 480.0, y));
            quads.push(line(520.0, 1000.0, y));
        }
        let order: Vec<usize> = reading_order(&quads).concat();
        let want: Vec<usize> = (0..8)
            .map(|k| 2 * k)
            .chain((0..8).map(|k| 2 * k + 1))
            .collect();
        assert_eq!(order, want);
    }

    #[test]
    fn a_skewed_page_reads_a_short_title_and_the_long_line_under_it_as_two_rows() {
        // A page turned 4° (lines run up to the right, as in a phone capture): a short title at
        // the left, then full-width lines 42 px apart. In the image the title's centre and the
        // long line's are 3 px apart vertically, so without deskewing both land in one row.
        let (s, c) = (-4f32).to_radians().sin_cos();
        let turn = |q: Quad| q.map(|[x, y]| [c * x - s * y, s * x + c * y]);
        let box_at =
            |x0: f32, x1: f32, y: f32| turn([[x0, y], [x1, y], [x1, y + 28.0], [x0, y + 28.0]]);
        let quads = [
            box_at(0.0, 400.0, 0.0),
            box_at(0.0, 1680.0, 42.0),
            box_at(0.0, 1680.0, 84.0),
        ];
        assert!((skew(&quads).to_degrees() + 4.0).abs() < 0.1);
        assert_eq!(reading_order(&quads), vec![vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn a_form_reads_label_and_value_in_one_row() {
        // Labels (short) and values beside them with a wide gap between:
        // not columns of text, so each label stays with its value.
        let mut quads = Vec::new();
        for k in 0..4 {
            let y = 24.0 * k as f32;
            quads.push(line(0.0, 150.0, y));
            quads.push(line(400.0, 900.0, y + 2.0));
        }
        let order = reading_order(&quads);
        assert_eq!(order, vec![vec![0, 1], vec![2, 3], vec![4, 5], vec![6, 7]]);
    }
}

/// A rotated rectangle: centre, unit axis `u` along its width, and extents.
#[derive(Debug, Clone, Copy)]
pub struct RotRect {
    /// Centre `[x, y]`.
    pub center: [f32; 2],
    /// Unit vector along the width.
    pub u: [f32; 2],
    /// Extent along `u`.
    pub w: f32,
    /// Extent perpendicular to `u`.
    pub h: f32,
}

impl RotRect {
    /// The corners (unordered; see [`order_corners`]).
    pub fn corners(&self) -> [[f32; 2]; 4] {
        let v = [-self.u[1], self.u[0]];
        let (hw, hh) = (self.w / 2.0, self.h / 2.0);
        let c = self.center;
        let p = |a: f32, b: f32| {
            [
                c[0] + a * self.u[0] + b * v[0],
                c[1] + a * self.u[1] + b * v[1],
            ]
        };
        [p(-hw, -hh), p(hw, -hh), p(hw, hh), p(-hw, hh)]
    }

    /// The same rectangle grown by `d` on every side.
    pub fn grown(&self, d: f32) -> Self {
        Self {
            w: self.w + 2.0 * d,
            h: self.h + 2.0 * d,
            ..*self
        }
    }

    /// Whether `[x, y]` lies inside (with tolerance `tol` on every side).
    pub fn contains(&self, x: f32, y: f32, tol: f32) -> bool {
        let (dx, dy) = (x - self.center[0], y - self.center[1]);
        let a = dx * self.u[0] + dy * self.u[1];
        let b = -dx * self.u[1] + dy * self.u[0];
        a.abs() <= self.w / 2.0 + tol && b.abs() <= self.h / 2.0 + tol
    }
}

fn cross(o: [f32; 2], a: [f32; 2], b: [f32; 2]) -> f32 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Convex hull (Andrew's monotone chain), counter-clockwise, no collinear points.
pub fn convex_hull(points: &[[f32; 2]]) -> Vec<[f32; 2]> {
    let mut pts = points.to_vec();
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let mut hull: Vec<[f32; 2]> = Vec::with_capacity(pts.len() * 2);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &[f32; 2]>> = if pass == 0 {
            Box::new(pts.iter())
        } else {
            Box::new(pts.iter().rev())
        };
        for &p in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        // The last point of each chain is the first of the next.
        hull.pop();
    }
    hull
}

/// Minimum-area enclosing rectangle (rotating calipers over hull edges),
/// like OpenCV's `minAreaRect`. `None` for an empty input.
pub fn min_area_rect(points: &[[f32; 2]]) -> Option<RotRect> {
    let hull = convex_hull(points);
    let first = *hull.first()?;
    if hull.len() < 3 {
        let last = *hull.last()?;
        let (dx, dy) = (last[0] - first[0], last[1] - first[1]);
        let len = (dx * dx + dy * dy).sqrt();
        let u = if len > 0.0 {
            [dx / len, dy / len]
        } else {
            [1.0, 0.0]
        };
        return Some(RotRect {
            center: [(first[0] + last[0]) / 2.0, (first[1] + last[1]) / 2.0],
            u,
            w: len,
            h: 0.0,
        });
    }
    let mut best: Option<(f32, RotRect)> = None;
    for i in 0..hull.len() {
        let (a, b) = (hull[i], hull[(i + 1) % hull.len()]);
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len = (dx * dx + dy * dy).sqrt();
        if len == 0.0 {
            continue;
        }
        let u = [dx / len, dy / len];
        let (mut amin, mut amax, mut bmin, mut bmax) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
        for p in &hull {
            let pa = p[0] * u[0] + p[1] * u[1];
            let pb = -p[0] * u[1] + p[1] * u[0];
            amin = amin.min(pa);
            amax = amax.max(pa);
            bmin = bmin.min(pb);
            bmax = bmax.max(pb);
        }
        let area = (amax - amin) * (bmax - bmin);
        if best.as_ref().is_none_or(|(ba, _)| area < *ba) {
            let (ca, cb) = ((amin + amax) / 2.0, (bmin + bmax) / 2.0);
            let center = [ca * u[0] - cb * u[1], ca * u[1] + cb * u[0]];
            best = Some((
                area,
                RotRect {
                    center,
                    u,
                    w: amax - amin,
                    h: bmax - bmin,
                },
            ));
        }
    }
    best.map(|(_, r)| r)
}

#[cfg(test)]
mod rect_tests {
    use super::*;

    #[test]
    fn min_rect_of_long_thin_blob() {
        let mut pts = Vec::new();
        for x in 0..1000 {
            pts.push([x as f32, 10.0]);
            pts.push([x as f32, 19.0]);
        }
        let r = min_area_rect(&pts).expect("rect");
        let (w, h) = (r.w.max(r.h), r.w.min(r.h));
        assert!((w - 999.0).abs() < 1e-3 && (h - 9.0).abs() < 1e-3, "{r:?}");
    }

    #[test]
    fn min_rect_rotated_square() {
        let pts = [[0.0, 5.0], [5.0, 0.0], [10.0, 5.0], [5.0, 10.0]];
        let r = min_area_rect(&pts).expect("rect");
        assert!((r.w * r.h - 50.0).abs() < 1e-3, "{r:?}");
    }
}
