//! Tables and determinism (the sampler's own tests, of the prefix-cached path and ensemble
//! members, are `ferbayes_models::predictor`'s).

use std::path::Path;
use std::sync::OnceLock;

use ferbayes_core::schema::rows::{InferOodRow, InferRow, InferShiftRow};
use ferbayes_core::{Arch, Layout, Method, PipelineFile, Settings, Split};
use ferbayes_infer::{Faces, InferOptions};

const FACES: usize = 40;
const SAMPLES: usize = 4;
const MEMBERS: usize = 3;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn settings() -> Settings {
    let file = PipelineFile::load(&repo().join("pipeline.toml")).expect("pipeline.toml");
    let mut s = file.settings("smoke").expect("smoke");
    s.train.archs = vec![Arch::AlexNet, Arch::DenseNet121];
    s.train.ensemble_members = MEMBERS;
    s.infer.samples = SAMPLES;
    s.infer.batch_size = 16;
    for arch in Arch::ALL {
        let a = s.train.arch_mut(arch);
        a.width = 0.125;
        a.input_size = 48;
        a.epochs = 1;
    }
    s
}

/// One trained artifact root shared by the tests (ingest + train once).
fn trained() -> &'static (tempfile::TempDir, Layout, Settings) {
    static ROOT: OnceLock<(tempfile::TempDir, Layout, Settings)> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path(), "smoke");
        let s = settings();
        // The smoke profile's shift and OOD sets, so infer samples them too.
        let ingest = ferbayes_core::IngestSettings {
            max_per_split: Some(FACES),
            zstd_level: 1,
            ..s.ingest.clone()
        };
        ferbayes_ingest::run(&ferbayes_core::test_data_root(), &layout, &ingest).expect("ingest");
        ferbayes_train::run(&layout, &s, &ferbayes_train::TrainOptions::default()).expect("train");
        (dir, layout, s)
    })
}

fn infer_table(layout: &Layout, arch: Arch, method: Method, split: Split) -> Vec<InferRow> {
    ferbayes_core::io::read_rows(&layout.infer_split(arch, method, split), None, "just infer")
        .expect("infer table")
}

#[test]
fn tables_cover_every_face_and_sample_and_are_reproducible() {
    let (_dir, layout, s) = trained();
    ferbayes_infer::run(layout, s, &InferOptions::default()).expect("infer");
    let first = std::fs::read(layout.infer_split(Arch::AlexNet, Method::McDropout, Split::Test))
        .expect("read");
    for arch in [Arch::AlexNet, Arch::DenseNet121] {
        for method in [Method::McDropout, Method::McDropConnect, Method::Ensemble] {
            let samples = if method == Method::Ensemble {
                MEMBERS
            } else {
                SAMPLES
            };
            for split in [Split::Valid, Split::Test] {
                let t = infer_table(layout, arch, method, split);
                assert_eq!(t.len(), FACES * samples, "{arch}/{method}/{split}");
                for (row, r) in t.iter().enumerate() {
                    assert_eq!(usize::from(r.sample), row % samples);
                    assert_eq!(r.image, t[row - row % samples].image);
                    let sum: f32 = r.probs.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-5, "{arch}/{method}: sum {sum}");
                }
            }
        }
    }
    // The shift and OOD tables: every corrupted face / OOD image × every sample, tagged as in
    // the ingest tables, and exactly the probabilities `Predictor` gives their pixels.
    let (shift_faces, corruption, severity) =
        ferbayes_infer::load_shift(&layout.ingest_shift()).expect("ingest shift");
    assert_eq!(shift_faces.len(), s.ingest.shift.faces * 36);
    let (ood_faces, set) = ferbayes_infer::load_ood(&layout.ingest_ood()).expect("ingest ood");
    assert_eq!(
        ood_faces.len(),
        s.ingest.ood.faces * s.ingest.ood.generated.len()
    );
    for method in [Method::McDropout, Method::Ensemble] {
        let samples = if method == Method::Ensemble {
            MEMBERS
        } else {
            SAMPLES
        };
        let t: Vec<InferShiftRow> = ferbayes_core::io::read_rows(
            &layout.infer_shift(Arch::AlexNet, method),
            None,
            "just infer",
        )
        .expect("shift table");
        assert_eq!(t.len(), shift_faces.len() * samples);
        for (row, r) in t.iter().enumerate().step_by(samples) {
            assert_eq!(r.image, shift_faces.images[row / samples]);
            assert_eq!(r.corruption, corruption[row / samples]);
            assert_eq!(r.severity, severity[row / samples]);
        }
        let o: Vec<InferOodRow> = ferbayes_core::io::read_rows(
            &layout.infer_ood(Arch::AlexNet, method),
            None,
            "just infer",
        )
        .expect("ood table");
        assert_eq!(o.len(), ood_faces.len() * samples);
        assert!(
            o.iter()
                .enumerate()
                .all(|(row, r)| r.set == set[row / samples])
        );
    }

    // All faces of the split are there, labelled or not, in ingest order.
    let faces = Faces::load(&layout.ingest_split(Split::Test)).expect("faces");
    let t = infer_table(layout, Arch::DenseNet121, Method::Ensemble, Split::Test);
    for (i, name) in faces.images.iter().enumerate() {
        assert_eq!(&t[i * MEMBERS].image, name);
    }
    // A second run writes identical bytes.
    ferbayes_infer::run(
        layout,
        s,
        &InferOptions {
            selection: ferbayes_core::cli::Selection::only(Arch::AlexNet, Method::McDropout),
            force: true,
            ..InferOptions::default()
        },
    )
    .expect("rerun");
    let second = std::fs::read(layout.infer_split(Arch::AlexNet, Method::McDropout, Split::Test))
        .expect("read");
    assert!(first == second, "rerun changed the table");
}
