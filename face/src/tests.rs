//! Detection on real photos (scikit-image's public-domain / CC0 samples, see
//! `pipeline/tests/fixtures/photos/README.md`), with positions checked by hand on the images.

use super::*;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn photo(name: &str) -> RgbImage {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipeline/tests/fixtures/photos")
        .join(name);
    image::open(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .into_rgb8()
}

fn detector() -> Detector {
    Detector::load(&models()).expect("run scripts/fetch-models.sh first")
}

fn near(p: Point, x: f32, y: f32, tol: f32) -> bool {
    (p.x - x).abs() <= tol && (p.y - y).abs() <= tol
}

#[test]
fn astronaut_face_and_landmarks_where_a_person_sees_them() {
    let faces = detector().detect(&photo("astronaut.jpg")).expect("detect");
    assert_eq!(faces.len(), 1, "{faces:#?}");
    let f = &faces[0];
    assert!(f.score > 0.8, "score {}", f.score);
    // Hand-checked on the 512×512 image: eyes at (203, 101) and (247, 102), nose tip (222, 124),
    // mouth corners (204, 143) and (242, 144), hair top at y ≈ 16, chin at y ≈ 178.
    assert!(near(f.left_eye, 203.0, 101.0, 5.0), "{:?}", f.left_eye);
    assert!(near(f.right_eye, 247.0, 102.0, 5.0), "{:?}", f.right_eye);
    assert!(near(f.nose, 222.0, 124.0, 6.0), "{:?}", f.nose);
    assert!(near(f.mouth_left, 204.0, 143.0, 6.0), "{:?}", f.mouth_left);
    assert!(
        near(f.mouth_right, 242.0, 144.0, 6.0),
        "{:?}",
        f.mouth_right
    );
    assert!((f.crown.y - 16.0).abs() < 15.0, "crown {:?}", f.crown);
    assert!((f.chin.y - 178.0).abs() < 10.0, "chin {:?}", f.chin);
    assert!(f.roll_degrees.abs() < 5.0, "roll {}", f.roll_degrees);
    let [x0, y0, x1, y1] = f.bbox;
    assert!(
        x0 > 165.0 && x1 < 285.0 && y0 > 40.0 && y1 < 195.0,
        "{:?}",
        f.bbox
    );
}

#[test]
fn a_tilted_head_reports_its_roll() {
    use imageproc::geometric_transformations::{Interpolation, rotate_about_center};
    let upright = detector().detect(&photo("astronaut.jpg")).expect("detect")[0].roll_degrees;
    for tilt in [-20.0f32, 15.0] {
        // imageproc turns clockwise (image y down) for a positive angle.
        let img = rotate_about_center(
            &photo("astronaut.jpg"),
            tilt.to_radians(),
            Interpolation::Bilinear,
            image::Rgb([128, 128, 128]),
        );
        let faces = detector().detect(&img).expect("detect");
        assert_eq!(faces.len(), 1, "tilt {tilt}: {faces:#?}");
        let roll = faces[0].roll_degrees;
        // CenterFace's landmarks lean toward upright: at ±20° the eye line reads 12–21°.
        assert!(
            (roll - upright - tilt).abs() < 7.0,
            "tilt {tilt}: roll {roll}"
        );
        assert!(
            roll.signum() == tilt.signum() && roll.abs() > 10.0,
            "tilt {tilt}: roll {roll}"
        );
    }
}

#[test]
fn no_face_in_a_cat_a_cup_or_a_rocket() {
    let det = detector();
    // At a quarter of the default threshold, to show the margin: the best non-face candidates
    // score below 0.3 while portraits score above 0.85.
    let loose = DetectOptions {
        min_score: 0.3,
        ..DetectOptions::default()
    };
    for name in ["chelsea.jpg", "coffee.jpg", "rocket.jpg"] {
        let faces = det.detect_with(&photo(name), &loose).expect("detect");
        assert!(faces.is_empty(), "{name}: {faces:#?}");
    }
}

#[test]
fn two_people_give_two_faces_largest_first() {
    let one = photo("astronaut.jpg");
    let small = image::imageops::thumbnail(&one, 256, 256);
    let mut two = RgbImage::from_pixel(1024, 512, image::Rgb([200, 200, 200]));
    image::imageops::replace(&mut two, &one, 0, 0);
    image::imageops::replace(&mut two, &small, 700, 200);
    let faces = detector().detect(&two).expect("detect");
    assert_eq!(faces.len(), 2, "{faces:#?}");
    assert!(faces[0].area() > 3.0 * faces[1].area());
    assert!(faces[1].left_eye.x > 700.0);
}

#[test]
fn a_wrong_file_is_reported_as_corrupt() {
    let dir = std::env::temp_dir().join("rythmiq-face-bad-model");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(FACE_MODEL), b"not a model").expect("write");
    let err = Detector::load(&dir).expect_err("must fail");
    assert!(matches!(err, FaceError::ModelCorrupt { .. }), "{err}");
    let err = Detector::load(&dir.join("nowhere")).expect_err("must fail");
    assert!(err.to_string().contains("fetch-models.sh"), "{err}");
}
