//! `--force`: every member a run covers is trained again, each once (a retrain, not a skip: its
//! recorded history, whose seconds are this run's, is new, and its weights are the same bits),
//! in one run and in the sharded form (shards, then the finishing pass, which trains nothing).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use ferbayes_core::cli::Selection;
use ferbayes_core::schema::rows::HistoryRow;
use ferbayes_core::{Arch, Layout, Method};
use ferbayes_train::{EpochRecord, TrainOptions};

use crate::support::{ingested, tiny};

/// The history a member's weights (or checkpoint) file records in its metadata.
fn recorded_history(path: &Path) -> Vec<EpochRecord> {
    let bytes = std::fs::read(path).expect("member file");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("safetensors");
    let meta = meta.metadata().clone().expect("metadata");
    serde_json::from_str(&meta["ferbayes.history"]).expect("history")
}

/// Every tensor's bits.
fn bits(path: &Path) -> HashMap<String, Vec<u32>> {
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(path, &Device::Cpu).expect("weights");
    tensors
        .into_iter()
        .map(|(name, t)| {
            let v: Vec<f32> = t.flatten_all().and_then(|t| t.to_vec1()).expect("values");
            (name, v.iter().map(|x| x.to_bits()).collect())
        })
        .collect()
}

/// Each member's recorded history and weights, by (method, member).
type Members = HashMap<(Method, usize), (Vec<EpochRecord>, HashMap<String, Vec<u32>>)>;

fn members(layout: &Layout, arch: Arch, methods: &[(Method, usize)]) -> Members {
    let mut out = HashMap::new();
    for &(method, n) in methods {
        for m in 0..n {
            let path = layout.member_weights(arch, method, m);
            out.insert((method, m), (recorded_history(&path), bits(&path)));
        }
    }
    out
}

/// Seconds of every epoch of a history (what tells one training from another).
fn seconds(h: &[EpochRecord]) -> Vec<u64> {
    h.iter().map(|r| r.seconds.to_bits()).collect()
}

#[test]
fn force_retrains_every_member_once_and_copies_the_twin_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = ingested(dir.path(), "force", 48);
    let settings = tiny(1, 2);
    let arch = Arch::AlexNet;
    let all = [
        (Method::McDropout, 1),
        (Method::McDropConnect, 1),
        (Method::Ensemble, 2),
    ];
    let opts = TrainOptions {
        selection: Selection {
            archs: vec![arch],
            methods: all.iter().map(|&(m, _)| m).collect(),
        },
        ..TrainOptions::default()
    };
    let first = ferbayes_train::run(&layout, &settings, &opts).expect("first");
    // Ensemble member 0 is the MC-Dropout network's copy.
    let trained: Vec<usize> = first.iter().map(|s| s.trained).collect();
    assert_eq!(trained, vec![1, 1, 1]);
    let before = members(&layout, arch, &all);

    // Without --force everything is up to date.
    let again = ferbayes_train::run(&layout, &settings, &opts).expect("again");
    assert!(again.iter().all(|s| s.skipped && s.trained == 0));
    assert_eq!(members(&layout, arch, &all), before);

    let force = TrainOptions {
        force: true,
        ..opts.clone()
    };
    let forced = ferbayes_train::run(&layout, &settings, &force).expect("forced");
    assert!(forced.iter().all(|s| !s.skipped && !s.interrupted));
    // Each member trained once: the twin (ensemble member 0) is copied from the MC-Dropout
    // network this run trained, not trained a second time.
    let trained: Vec<usize> = forced.iter().map(|s| s.trained).collect();
    assert_eq!(trained, vec![1, 1, 1]);
    let after = members(&layout, arch, &all);
    for (key, (history, weights)) in &after {
        let (old_history, old_weights) = &before[key];
        assert_eq!(history.len(), 1, "{key:?}");
        assert_ne!(seconds(history), seconds(old_history), "{key:?} retrained");
        assert_eq!(weights, old_weights, "{key:?}: the same bits again");
    }
    let twin = &after[&(Method::McDropout, 0)].0;
    assert_eq!(
        &after[&(Method::Ensemble, 0)].0,
        twin,
        "copied from this run's training"
    );
    // The combination's history table and summary are this run's.
    for s in &forced {
        let rows: Vec<HistoryRow> =
            ferbayes_core::io::read_rows(&layout.history(arch, s.method), None, "just train")
                .expect("history");
        for row in rows {
            let m = usize::from(row.member);
            let recorded = &after[&(s.method, m)].0[0];
            assert_eq!(row.seconds, recorded.seconds as f32, "{}/{m}", s.method);
        }
        assert_eq!(s.history.len(), s.members);
    }
}

#[test]
fn force_starts_afresh_rather_than_from_a_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = ingested(dir.path(), "fresh", 48);
    let settings = tiny(2, 1);
    let (arch, method) = (Arch::AlexNet, Method::McDropConnect);
    let only = TrainOptions {
        selection: Selection::only(arch, method),
        ..TrainOptions::default()
    };
    let killed = TrainOptions {
        stop_after_epochs: Some(1),
        ..only.clone()
    };
    assert!(ferbayes_train::run(&layout, &settings, &killed).expect("killed")[0].interrupted);
    let checkpoint = layout.member_checkpoint(arch, method, 0);
    let epoch1 = recorded_history(&checkpoint);
    assert_eq!(epoch1.len(), 1);
    let force = TrainOptions {
        force: true,
        ..only.clone()
    };
    let out = ferbayes_train::run(&layout, &settings, &force).expect("forced");
    assert_eq!(out[0].trained, 1);
    let history = recorded_history(&layout.member_weights(arch, method, 0));
    assert_eq!(history.len(), 2);
    assert_ne!(
        history[0].seconds.to_bits(),
        epoch1[0].seconds.to_bits(),
        "epoch 1 trained again, not resumed"
    );
    assert!(!checkpoint.exists());
}

#[test]
fn forced_shards_retrain_their_members_and_the_finishing_pass_trains_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = ingested(dir.path(), "shards", 48);
    let settings = tiny(1, 3);
    let (arch, method) = (Arch::AlexNet, Method::Ensemble);
    let opts = TrainOptions {
        selection: Selection::only(arch, method),
        ..TrainOptions::default()
    };
    let shard = |k, force| TrainOptions {
        shard: Some((k, 2)),
        force,
        ..opts.clone()
    };
    let finish = |force| TrainOptions {
        finish: true,
        force,
        ..opts.clone()
    };
    // `just train`'s form: the shards, then the finishing pass.
    for k in 0..2 {
        ferbayes_train::run(&layout, &settings, &shard(k, false)).expect("shard");
    }
    let out = ferbayes_train::run(&layout, &settings, &finish(false)).expect("finish");
    assert_eq!((out[0].trained, out[0].history.len()), (0, 3));
    let all = [(method, 3)];
    let before = members(&layout, arch, &all);

    // With --force each shard retrains its own members (0 and 2, then 1), once.
    for (k, expected) in [(0, vec![0u16, 2]), (1, vec![1])] {
        let out = ferbayes_train::run(&layout, &settings, &shard(k, true)).expect("forced shard");
        assert_eq!(out[0].trained, expected.len(), "shard {k}");
        let trained: Vec<u16> = out[0].history.iter().map(|r| r.member).collect();
        assert_eq!(trained, expected, "shard {k}");
    }
    let manifest = Layout::manifest_in(&layout.train_dir(arch, method));
    let stamp = std::fs::read(&manifest).expect("manifest");
    // The finishing pass trains nothing and rewrites the history and manifest.
    let out = ferbayes_train::run(&layout, &settings, &finish(true)).expect("forced finish");
    assert_eq!((out[0].trained, out[0].skipped), (0, false));
    assert_ne!(std::fs::read(&manifest).expect("manifest"), stamp);
    let after = members(&layout, arch, &all);
    let rows: Vec<HistoryRow> =
        ferbayes_core::io::read_rows(&layout.history(arch, method), None, "just train")
            .expect("history");
    for m in 0..3 {
        let (history, weights) = &after[&(method, m)];
        assert_ne!(
            seconds(history),
            seconds(&before[&(method, m)].0),
            "member {m}"
        );
        assert_eq!(weights, &before[&(method, m)].1, "member {m}");
        assert_eq!(rows[m].seconds, history[0].seconds as f32, "member {m}");
    }

    // A finishing pass that finds a member missing fails naming it, and writes nothing.
    let missing = layout.member_weights(arch, method, 1);
    std::fs::remove_file(&missing).expect("remove");
    let stamp = std::fs::read(&manifest).expect("manifest");
    let err = ferbayes_train::run(&layout, &settings, &finish(true)).expect_err("missing member");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    assert!(!missing.exists());
    assert_eq!(std::fs::read(&manifest).expect("manifest"), stamp);
    // And a finishing pass takes no shard.
    let both = TrainOptions {
        shard: Some((0, 2)),
        ..finish(false)
    };
    assert!(ferbayes_train::run(&layout, &settings, &both).is_err());
}
