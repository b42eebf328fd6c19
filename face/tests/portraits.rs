//! The detector's accuracy on real portraits, against landmarks marked by hand.
//!
//! The set: scikit-image's `astronaut` (NASA, public domain; `pipeline/tests/fixtures/photos`)
//! and the six photographs face_recognition 1.3.0 ships in its PyPI sdist (official White House
//! photographs, public domain; `load/face/fetch-portraits.sh` fetches them, sha256-pinned, into
//! `target/face-portraits/`): a studio portrait, a speech at a lectern with a second person cut by
//! the frame, two full-length standing portraits with the face a tenth of the height (one head
//! tilted), and the studio portrait cut through the face by the left and by the right edge.
//!
//! The labels were marked by hand on each image at full size (a 10-px grid over a 2–3× crop):
//! the centres of both pupils, the nose tip, both mouth corners, and the lowest point of the
//! chin. The error of a landmark is its distance from the mark over the marked inter-pupil
//! distance (the "normalised mean error" of landmark benchmarks, e.g. 300-W); the chin estimate's
//! error is over the marked eye-to-chin distance. `cargo test --release -p rythmiq-face --test
//! portraits -- --nocapture` prints the table the README quotes.

use std::path::{Path, PathBuf};

use image::RgbImage;
use rythmiq_face::{DetectOptions, Detector, Face, Point};

/// One hand-labelled portrait.
struct Labelled {
    name: &'static str,
    /// The photo, from the repository's root.
    file: &'static str,
    /// Pupils (image left, image right), nose tip, mouth corners (image left, image right).
    points: [(f32, f32); 5],
    /// Lowest point of the chin, where it can be told from the neck.
    chin: Option<(f32, f32)>,
    /// The frame cuts through the face: landmarks are still held to [`MISS`], the roll is not
    /// (an eye at the edge moves the eye line by degrees).
    cut: bool,
}

/// `obama.jpg`'s marks (also `obama_partial_face2.jpg`'s, its left 551 columns).
const OBAMA: [(f32, f32); 5] = [
    (437.0, 213.0),
    (547.0, 212.0),
    (492.0, 275.0),
    (440.0, 322.0),
    (540.0, 320.0),
];

/// `obama.jpg`'s chin is dlib's (the 9th point of its 68-point model, as face_recognition's own
/// test asserts it); the partial faces are `obama.jpg` cut at x = 419 and x = 551.
const SET: [Labelled; 7] = [
    Labelled {
        name: "astronaut",
        file: "pipeline/tests/fixtures/photos/astronaut.jpg",
        points: [
            (202.5, 101.5),
            (245.0, 103.0),
            (222.0, 124.0),
            (204.0, 143.0),
            (242.0, 144.0),
        ],
        chin: Some((224.0, 178.0)),
        cut: false,
    },
    Labelled {
        name: "obama",
        file: "target/face-portraits/obama.jpg",
        points: OBAMA,
        chin: Some((495.0, 428.0)),
        cut: false,
    },
    Labelled {
        name: "obama2",
        file: "target/face-portraits/obama2.jpg",
        points: [
            (248.0, 369.0),
            (363.0, 378.0),
            (292.0, 443.0),
            (245.0, 513.0),
            (352.0, 520.0),
        ],
        chin: Some((290.0, 630.0)),
        cut: false,
    },
    Labelled {
        name: "obama3",
        file: "target/face-portraits/obama3.jpg",
        points: [
            (740.0, 383.0),
            (855.0, 393.0),
            (801.0, 444.0),
            (730.0, 513.0),
            (852.0, 521.0),
        ],
        chin: None,
        cut: false,
    },
    Labelled {
        name: "biden",
        file: "target/face-portraits/biden.jpg",
        points: [
            (535.0, 323.0),
            (650.0, 345.0),
            (612.0, 412.0),
            (518.0, 458.0),
            (627.0, 478.0),
        ],
        chin: None,
        cut: false,
    },
    Labelled {
        name: "obama_partial_face",
        file: "target/face-portraits/obama_partial_face.jpg",
        points: [
            (18.0, 213.0),
            (128.0, 212.0),
            (73.0, 275.0),
            (21.0, 322.0),
            (121.0, 320.0),
        ],
        chin: Some((76.0, 428.0)),
        cut: true,
    },
    Labelled {
        name: "obama_partial_face2",
        file: "target/face-portraits/obama_partial_face2.jpg",
        points: OBAMA,
        chin: Some((495.0, 428.0)),
        cut: true,
    },
];

/// A landmark error over the inter-pupil distance that benchmarks count as a miss.
const MISS: f32 = 0.2;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load(file: &str) -> RgbImage {
    let path = root().join(file);
    image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run load/face/fetch-portraits.sh)", path.display()))
        .into_rgb8()
}

fn dist(a: Point, b: (f32, f32)) -> f32 {
    (a.x - b.0).hypot(a.y - b.1)
}

fn landmarks(f: &Face) -> [Point; 5] {
    [f.left_eye, f.right_eye, f.nose, f.mouth_left, f.mouth_right]
}

#[test]
fn landmarks_match_the_hand_marked_ones() {
    let detector = Detector::load(&root().join("models")).expect("run scripts/fetch-models.sh");
    println!(
        "{:<20} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}",
        "portrait",
        "side",
        "faces",
        "score",
        "eyes",
        "nose",
        "mouth",
        "NME",
        "chin",
        "roll°",
        "marked"
    );
    let images: Vec<RgbImage> = SET.iter().map(|l| load(l.file)).collect();
    // The detector's two sizes in the pipeline: 320 px for the photo, 640 px for the framed copy.
    for side in [320, 640] {
        let opts = DetectOptions {
            max_side: side,
            ..DetectOptions::default()
        };
        let mut nmes = Vec::new();
        for (l, img) in SET.iter().zip(&images) {
            let faces = detector.detect_with(img, &opts).expect("detect");
            assert_eq!(faces.len(), 1, "{} at {side}: {faces:#?}", l.name);
            let f = &faces[0];
            let (le, re) = (l.points[0], l.points[1]);
            let iod = (le.0 - re.0).hypot(le.1 - re.1);
            let errs: Vec<f32> = landmarks(f)
                .iter()
                .zip(&l.points)
                .map(|(p, m)| dist(*p, *m) / iod)
                .collect();
            let nme = errs.iter().sum::<f32>() / 5.0;
            // The chin estimate's error over the marked eye-line-to-chin distance.
            let chin = l.chin.map(|c| {
                let eye_y = (le.1 + re.1) / 2.0;
                dist(f.chin, c) / (c.1 - eye_y)
            });
            // The roll a level eye line needs, from the marked pupils.
            let marked_roll = (re.1 - le.1).atan2(re.0 - le.0).to_degrees();
            println!(
                "{:<20} {side:>5} {:>6} {:>6.2} {:>6.3} {:>6.3} {:>6.3} {nme:>6.3} {:>6} {:>6.1} {marked_roll:>6.1}",
                l.name,
                faces.len(),
                f.score,
                (errs[0] + errs[1]) / 2.0,
                errs[2],
                (errs[3] + errs[4]) / 2.0,
                chin.map_or("-".into(), |c| format!("{c:.3}")),
                f.roll_degrees,
            );
            assert!(
                errs.iter().all(|&e| e < MISS),
                "{} at {side}: a landmark {errs:?} inter-pupil distances from its mark",
                l.name
            );
            assert!(
                chin.is_none_or(|c| c < 0.1),
                "{} at {side}: chin {chin:?}",
                l.name
            );
            assert!(
                l.cut || (f.roll_degrees - marked_roll).abs() < 4.0,
                "{} at {side}: roll {} against {marked_roll} marked",
                l.name,
                f.roll_degrees
            );
            nmes.push(nme);
        }
        let mean = nmes.iter().sum::<f32>() / nmes.len() as f32;
        println!(
            "{:<20} {side:>5} mean NME {mean:.3} over {} portraits",
            "all",
            nmes.len()
        );
        assert!(mean < 0.1, "mean NME {mean} at {side}");
    }
}
