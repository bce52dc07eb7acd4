//! Training on real faces: learning, determinism, resume after a kill, skipping finished work.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use ferbayes_core::schema::rows::HistoryRow;
use ferbayes_core::{Arch, LabelMode, Layout, Method};
use ferbayes_train::TrainOptions;

use crate::support::{ingested, tiny};

fn only(arch: Arch, method: Method) -> TrainOptions {
    TrainOptions {
        selection: ferbayes_core::cli::Selection::only(arch, method),
        ..TrainOptions::default()
    }
}

fn weights(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).expect("weights")
}

fn assert_same_weights(a: &Path, b: &Path) {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(a.len(), b.len());
    for (name, ta) in &a {
        let va: Vec<f32> = ta.flatten_all().expect("flat").to_vec1().expect("values");
        let vb: Vec<f32> = b[name]
            .flatten_all()
            .expect("flat")
            .to_vec1()
            .expect("values");
        assert!(
            va.iter().zip(&vb).all(|(x, y)| x.to_bits() == y.to_bits()),
            "tensor {name} differs"
        );
    }
}

#[test]
fn a_small_model_overfits_256_real_faces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = ingested(dir.path(), "overfit", 256);
    let mut settings = tiny(12, 1);
    settings.train.alexnet.width = 0.25;
    settings.train.alexnet.drop_rate = 0.0;
    let out = ferbayes_train::run(&layout, &settings, &only(Arch::AlexNet, Method::Ensemble))
        .expect("train");
    let h = &out[0].history;
    assert_eq!(h.len(), 12);
    let (first, last) = (h[0].train_loss, h[11].train_loss);
    assert!(last < 0.3 * first, "train loss {first:.3} → {last:.3}");
    assert!(
        h[11].train_accuracy > 0.9,
        "train accuracy {}",
        h[11].train_accuracy
    );
}

#[test]
fn same_seed_same_weights_and_resume_after_a_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = ingested(dir.path(), "a", 96);
    let b = ingested(dir.path(), "b", 96);
    let c = ingested(dir.path(), "c", 96);
    let settings = tiny(3, 1);
    let opts = only(Arch::AlexNet, Method::McDropConnect);
    ferbayes_train::run(&a, &settings, &opts).expect("uninterrupted");
    ferbayes_train::run(&b, &settings, &opts).expect("second run");
    let member =
        |l: &ferbayes_core::Layout| l.member_weights(Arch::AlexNet, Method::McDropConnect, 0);
    assert_same_weights(&member(&a), &member(&b));

    // Killed after its first epoch: only the checkpoint exists; the rerun resumes from it.
    let killed = TrainOptions {
        stop_after_epochs: Some(1),
        ..opts.clone()
    };
    let out = ferbayes_train::run(&c, &settings, &killed).expect("killed run");
    assert!(out[0].interrupted);
    assert!(!member(&c).exists());
    assert!(
        c.member_checkpoint(Arch::AlexNet, Method::McDropConnect, 0)
            .exists()
    );
    let out = ferbayes_train::run(&c, &settings, &opts).expect("resumed run");
    assert!(!out[0].interrupted);
    assert_eq!(
        out[0].history.len(),
        3,
        "history keeps the epoch before the kill"
    );
    assert_same_weights(&member(&a), &member(&c));
    assert!(
        !c.train_dir(Arch::AlexNet, Method::McDropConnect)
            .join(".resume")
            .exists()
    );

    // A different seed gives different weights.
    let d = ingested(dir.path(), "d", 96);
    let mut other = settings.clone();
    other.seed += 1;
    ferbayes_train::run(&d, &other, &opts).expect("other seed");
    let (wa, wd) = (weights(&member(&a)), weights(&member(&d)));
    let diff = (&wa["classifier.fc1.weight"] - &wd["classifier.fc1.weight"])
        .expect("sub")
        .abs()
        .expect("abs")
        .sum_all()
        .expect("sum")
        .to_scalar::<f32>()
        .expect("scalar");
    assert!(diff > 0.0);
}

#[test]
fn finished_members_are_not_retrained_but_changed_settings_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = ingested(dir.path(), "skip", 64);
    let settings = tiny(1, 3);
    let opts = only(Arch::AlexNet, Method::Ensemble);
    let first = ferbayes_train::run(&layout, &settings, &opts).expect("first");
    assert_eq!((first[0].members, first[0].trained), (3, 3));
    let path = layout.member_weights(Arch::AlexNet, Method::Ensemble, 1);
    let before = std::fs::metadata(&path)
        .expect("meta")
        .modified()
        .expect("mtime");

    let again = ferbayes_train::run(&layout, &settings, &opts).expect("again");
    assert_eq!(again[0].trained, 0);
    assert_eq!(again[0].history, first[0].history);
    assert_eq!(
        std::fs::metadata(&path)
            .expect("meta")
            .modified()
            .expect("mtime"),
        before
    );

    let mut changed = settings.clone();
    changed.train.alexnet.learning_rate *= 0.5;
    let retrained = ferbayes_train::run(&layout, &changed, &opts).expect("changed");
    assert_eq!(retrained[0].trained, 3);
}

#[test]
fn all_nine_combinations_train_and_write_their_artifacts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = ingested(dir.path(), "nine", 48);
    let settings = tiny(2, 2);
    let out = ferbayes_train::run(&layout, &settings, &TrainOptions::default()).expect("train");
    assert_eq!(out.len(), 9);
    for s in &out {
        let (arch, method) = (s.arch, s.method);
        let members = if s.method == Method::Ensemble { 2 } else { 1 };
        assert_eq!(s.members, members, "{arch}/{method}");
        for m in 0..members {
            assert!(
                layout.member_weights(arch, method, m).is_file(),
                "{arch}/{method} member {m}"
            );
        }
        let dir = layout.train_dir(arch, method);
        assert!(dir.join("manifest.json").is_file());
        assert!(!dir.join(".resume").exists());
        let history: Vec<HistoryRow> =
            ferbayes_core::io::read_rows(&layout.history(arch, method), None, "just train")
                .expect("history");
        assert_eq!(history.len(), members * 2, "{arch}/{method}");
        for row in &history {
            assert!(usize::from(row.member) < members);
            assert!((0.0..=1.0).contains(&row.valid_accuracy));
            assert!(row.valid_loss.is_finite() && row.valid_loss > 0.0);
        }
    }
}

#[test]
fn soft_label_modes_train() {
    for mode in [LabelMode::CrossEntropy, LabelMode::Probability] {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = ingested(dir.path(), "soft", 64);
        let mut settings = tiny(2, 1);
        settings.train.label_mode = mode;
        let out = ferbayes_train::run(&layout, &settings, &only(Arch::AlexNet, Method::McDropout))
            .expect("train");
        let h = &out[0].history;
        assert_eq!(h.len(), 2, "{mode}");
        assert!(
            h.iter()
                .all(|r| r.train_loss.is_finite() && r.train_loss > 0.0),
            "{mode}"
        );
    }
}

#[test]
fn sharded_processes_train_the_same_members_as_one_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = ingested(dir.path(), "one", 64);
    let sharded = ingested(dir.path(), "sharded", 64);
    let settings = tiny(1, 3);
    let opts = only(Arch::AlexNet, Method::Ensemble);
    ferbayes_train::run(&one, &settings, &opts).expect("one run");

    // Shard 0 of 2 trains members 0 and 2, shard 1 member 1; neither writes the combination's
    // history or manifest.
    for (k, expected) in [(0, vec![0, 2]), (1, vec![1])] {
        let out = ferbayes_train::run(
            &sharded,
            &settings,
            &TrainOptions {
                shard: Some((k, 2)),
                ..opts.clone()
            },
        )
        .expect("shard");
        assert_eq!(out[0].trained, expected.len());
        let members: Vec<u16> = out[0].history.iter().map(|r| r.member).collect();
        assert_eq!(
            members,
            expected.iter().map(|&m| m as u16).collect::<Vec<_>>()
        );
    }
    let dir_of = |l: &Layout| l.train_dir(Arch::AlexNet, Method::Ensemble);
    assert!(!sharded.history(Arch::AlexNet, Method::Ensemble).exists());
    assert!(!Layout::manifest_in(&dir_of(&sharded)).exists());

    // The finishing pass trains nothing and writes history and manifest.
    let finish = TrainOptions {
        finish: true,
        ..opts.clone()
    };
    let out = ferbayes_train::run(&sharded, &settings, &finish).expect("final");
    assert_eq!(out[0].trained, 0);
    assert_eq!(out[0].history.len(), 3);
    assert!(sharded.history(Arch::AlexNet, Method::Ensemble).is_file());
    assert!(Layout::manifest_in(&dir_of(&sharded)).is_file());
    for m in 0..3 {
        assert_same_weights(
            &one.member_weights(Arch::AlexNet, Method::Ensemble, m),
            &sharded.member_weights(Arch::AlexNet, Method::Ensemble, m),
        );
    }
}

#[test]
fn shards_agree_on_members_when_one_finds_a_combination_already_done() {
    // Shard 1 finds mc_dropout finished (by shard 0, say) before it starts: it must still count
    // that member, or both shards would train the same ensemble members and leave the others.
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = ingested(dir.path(), "s", 48);
    let settings = tiny(1, 2);
    let both = TrainOptions {
        selection: ferbayes_core::cli::Selection {
            archs: vec![Arch::AlexNet],
            methods: vec![Method::McDropout, Method::Ensemble],
        },
        ..TrainOptions::default()
    };
    let shard = |k| TrainOptions {
        shard: Some((k, 2)),
        ..both.clone()
    };
    // Shard 0 (slots 0 and 2): mc_dropout and ensemble member 1.
    let out0 = ferbayes_train::run(&layout, &settings, &shard(0)).expect("shard 0");
    assert_eq!((out0[0].trained, out0[1].trained), (1, 1));
    // Shard 1 (slot 1): ensemble member 0 only, although mc_dropout is now up to date (and,
    // since member 0 trains exactly as mc_dropout, it is a copy of it rather than trained).
    let out1 = ferbayes_train::run(&layout, &settings, &shard(1)).expect("shard 1");
    assert!(out1[0].skipped);
    assert_eq!(out1[1].trained, 0);
    assert!(
        layout
            .member_weights(Arch::AlexNet, Method::Ensemble, 0)
            .is_file()
    );
    let members: Vec<u16> = out1[1].history.iter().map(|r| r.member).collect();
    assert_eq!(members, vec![0]);
    // Nothing is left for the finishing pass.
    let finish = TrainOptions {
        finish: true,
        ..both.clone()
    };
    let last = ferbayes_train::run(&layout, &settings, &finish).expect("final");
    assert_eq!(last[1].trained, 0);
    assert!(layout.history(Arch::AlexNet, Method::Ensemble).is_file());
}

/// An ensemble trained in one pack of three equals, bit for bit, the same ensemble trained one
/// member at a time, for a BatchNorm network and DenseNet's dropout inside; a packed run killed
/// after its first epoch resumes to the same bits.
#[test]
fn packed_ensembles_equal_one_at_a_time_and_resume_after_a_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = tiny(2, 3);
    for arch in [Arch::AlexNet, Arch::DenseNet121] {
        let opts = only(arch, Method::Ensemble);
        let a = arch;
        let root = dir.path().join(a.as_str());
        let single = ingested(&root, "single", 64);
        let packed = ingested(&root, "packed", 64);
        let killed = ingested(&root, "killed", 64);
        settings.train.pack_members = 1;
        ferbayes_train::run(&single, &settings, &opts).expect("one at a time");
        settings.train.pack_members = 3;
        let out = ferbayes_train::run(&packed, &settings, &opts).expect("packed");
        assert_eq!(out[0].trained, 3);
        let stop = TrainOptions {
            stop_after_epochs: Some(1),
            ..opts.clone()
        };
        let out = ferbayes_train::run(&killed, &settings, &stop).expect("killed");
        assert!(out[0].interrupted);
        for m in 0..3 {
            assert!(killed.member_checkpoint(a, Method::Ensemble, m).is_file());
            assert!(!killed.member_weights(a, Method::Ensemble, m).exists());
        }
        let out = ferbayes_train::run(&killed, &settings, &opts).expect("resumed");
        assert!(!out[0].interrupted);
        assert_eq!(out[0].history.len(), 6, "two epochs of three members");
        for m in 0..3 {
            let w = |l: &Layout| l.member_weights(a, Method::Ensemble, m);
            assert_same_weights(&w(&single), &w(&packed));
            assert_same_weights(&w(&packed), &w(&killed));
        }
    }
}

/// Shards of packs (members 0 and 2 packed in one process, member 1 in another) give the
/// members one packed process gives.
#[test]
fn shards_of_packs_train_the_same_members_as_one_packed_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = ingested(dir.path(), "one", 64);
    let sharded = ingested(dir.path(), "sharded", 64);
    let mut settings = tiny(1, 3);
    settings.train.pack_members = 3;
    let opts = only(Arch::AlexNet, Method::Ensemble);
    ferbayes_train::run(&one, &settings, &opts).expect("one run");
    for k in 0..2 {
        let shard = TrainOptions {
            shard: Some((k, 2)),
            ..opts.clone()
        };
        ferbayes_train::run(&sharded, &settings, &shard).expect("shard");
    }
    let finish = TrainOptions {
        finish: true,
        ..opts.clone()
    };
    let out = ferbayes_train::run(&sharded, &settings, &finish).expect("final");
    assert_eq!(out[0].trained, 0);
    for m in 0..3 {
        assert_same_weights(
            &one.member_weights(Arch::AlexNet, Method::Ensemble, m),
            &sharded.member_weights(Arch::AlexNet, Method::Ensemble, m),
        );
    }
}

/// The MC-Dropout network and ensemble member 0 train identically (same seed, dropout on the
/// activations): once one exists the other is copied, not trained again, and equals the
/// member trained on its own bit for bit, whichever comes first.
#[test]
fn mc_dropout_and_ensemble_member_0_are_trained_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = tiny(1, 2);
    let alone = ingested(dir.path(), "alone", 48);
    ferbayes_train::run(&alone, &settings, &only(Arch::AlexNet, Method::Ensemble)).expect("alone");
    for (first, then) in [
        (Method::McDropout, Method::Ensemble),
        (Method::Ensemble, Method::McDropout),
    ] {
        let l = ingested(dir.path(), &format!("{first}-first"), 48);
        ferbayes_train::run(&l, &settings, &only(Arch::AlexNet, first)).expect("first");
        let out = ferbayes_train::run(&l, &settings, &only(Arch::AlexNet, then)).expect("then");
        let trained_then = if then == Method::Ensemble { 1 } else { 0 };
        assert_eq!(
            out[0].trained, trained_then,
            "{then} after {first}: member 0 copied"
        );
        for m in [Method::McDropout, Method::Ensemble] {
            assert_same_weights(
                &alone.member_weights(Arch::AlexNet, Method::Ensemble, 0),
                &l.member_weights(Arch::AlexNet, m, 0),
            );
        }
    }
}
