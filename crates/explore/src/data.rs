//! The run's tables in memory: the ingest faces of the valid and test splits, each
//! arch × method's probabilities as running means over n = 1..T, and the conformal thresholds,
//! loaded once per [`RunKey`] (the manifest keys of the stages read) and read by every request.
//!
//! Everything is read through `core::layout` (paths) and `core::io::read_rows` (typed rows);
//! nothing is written.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferbayes_core::layout::Stage;
use ferbayes_core::plan::{self, Freshness};
use ferbayes_core::schema::SHOWN_ALPHA;
use ferbayes_core::schema::rows::{ConformalRow, FaceRow, InferRow};
use ferbayes_core::{Arch, Layout, Method, NUM_CLASSES, NUM_VOTES, Settings, Split};
use ferbayes_uq::{FaceSplit, RunningSplit};
use rayon::prelude::*;

/// The splits whose faces the pages show (the ones infer predicts).
pub const SPLITS: [Split; 2] = [Split::Test, Split::Valid];

/// Why a table cannot be shown: what is missing or wrong, and the recipe that makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub message: String,
    /// e.g. `just infer`.
    pub recipe: Option<String>,
}

impl Unavailable {
    fn new(message: impl Into<String>, recipe: Option<String>) -> Self {
        Unavailable {
            message: message.into(),
            recipe,
        }
    }
}

/// The manifest keys of the stages explore reads (ingest, each infer combination of the main
/// run, analyze), `missing` where a stage has not run: a rerun of any of them changes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunKey(Vec<(String, String)>);

impl RunKey {
    /// Reads the manifests now (a few small JSON files).
    pub fn read(layout: &Layout, settings: &Settings) -> RunKey {
        let mut dirs = vec![
            ("ingest".to_owned(), layout.stage_dir(Stage::Ingest)),
            ("analyze".to_owned(), layout.stage_dir(Stage::Analyze)),
        ];
        for (arch, method) in combos(settings) {
            dirs.push((
                format!("infer {arch}/{method}"),
                layout.infer_dir(arch, method),
            ));
        }
        RunKey(
            dirs.into_iter()
                .map(|(label, dir)| (label, manifest_key(&dir)))
                .collect(),
        )
    }

    /// The key of one stage (`ingest`, `analyze`, `infer alexnet/mc_dropout`).
    pub fn stage(&self, label: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, k)| k.as_str())
    }

    /// A short fingerprint of the whole key, for ETags and logs.
    pub fn short(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        format!("{:016x}", h.finish())
    }
}

/// The `key` of the manifest in `dir`, `missing` without one, `unreadable` when it cannot be
/// parsed.
pub fn manifest_key(dir: &std::path::Path) -> String {
    match plan::read_manifest(dir) {
        Ok(Some(m)) if !m.key.is_empty() => m.key,
        Ok(Some(_)) => "no key".into(),
        Ok(None) => "missing".into(),
        Err(_) => "unreadable".into(),
    }
}

/// The main run's arch × method combinations, in the profile's order.
pub fn combos(settings: &Settings) -> Vec<(Arch, Method)> {
    let t = &settings.train;
    t.archs
        .iter()
        .flat_map(|&a| t.methods.iter().map(move |&m| (a, m)))
        .collect()
}

/// The faces of one split, column by column, and where each image is.
#[derive(Debug)]
pub struct SplitFaces {
    pub split: Split,
    pub names: Vec<String>,
    index: HashMap<String, usize>,
    /// 2304 per face.
    pixels: Vec<u8>,
    pub votes: Vec<[u8; NUM_VOTES]>,
    pub majority: Vec<Option<u8>>,
    pub crowd: Vec<Option<[f32; NUM_CLASSES]>>,
    pub crowd_entropy: Vec<Option<f32>>,
}

impl SplitFaces {
    fn from_rows(split: Split, rows: Vec<FaceRow>) -> SplitFaces {
        let n = rows.len();
        let mut faces = SplitFaces {
            split,
            names: Vec::with_capacity(n),
            index: HashMap::with_capacity(n),
            pixels: Vec::with_capacity(n * ferbayes_core::IMAGE_PIXELS),
            votes: Vec::with_capacity(n),
            majority: Vec::with_capacity(n),
            crowd: Vec::with_capacity(n),
            crowd_entropy: Vec::with_capacity(n),
        };
        for (i, r) in rows.into_iter().enumerate() {
            faces.index.insert(r.image.clone(), i);
            faces.names.push(r.image);
            faces.pixels.extend_from_slice(&r.pixels);
            faces.votes.push(r.votes);
            faces.majority.push(r.majority);
            faces.crowd.push(r.crowd);
            faces.crowd_entropy.push(r.crowd_entropy);
        }
        faces
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The index of the face called `image`.
    pub fn find(&self, image: &str) -> Option<usize> {
        self.index.get(image).copied()
    }

    /// The 48x48 pixels of face `i`.
    pub fn pixels(&self, i: usize) -> &[u8] {
        let p = ferbayes_core::IMAGE_PIXELS;
        &self.pixels[i * p..(i + 1) * p]
    }
}

/// One arch × method on one split: for every face and n = 1..T, the mean of the first n
/// samples' probabilities and the mean of their entropies (the aleatoric part at n), as a
/// [`RunningSplit`] holds them after n samples.
#[derive(Debug)]
pub struct ComboStats {
    pub arch: Arch,
    pub method: Method,
    /// T: MC passes or ensemble members in the table.
    pub samples: usize,
    /// Face-major: entry `i · T + (n − 1)`.
    means: Vec<[f32; NUM_CLASSES]>,
    /// Same layout: mean entropy (nats) of samples 0..n−1.
    aleatoric: Vec<f64>,
}

/// A face's prediction from its first n samples: `ferbayes_uq`'s split (mean probabilities,
/// entropy, aleatoric and epistemic parts), bit for bit what analyze computes for the same
/// samples, with [`FaceSplit::predicted`] and [`FaceSplit::epistemic_share`].
pub type AtN = FaceSplit<NUM_CLASSES>;

impl ComboStats {
    /// Builds the running means from the rows of an infer table over `faces`; every face must
    /// have samples 0..T−1 exactly once.
    fn from_rows(
        arch: Arch,
        method: Method,
        faces: &SplitFaces,
        rows: &[InferRow],
        path: &std::path::Path,
    ) -> Result<ComboStats, Unavailable> {
        let recipe = Some(plan::recipe(Stage::Infer));
        let samples = rows.iter().map(|r| usize::from(r.sample) + 1).max();
        let Some(t) = samples else {
            return Err(Unavailable::new(
                format!("{} has no rows", path.display()),
                recipe,
            ));
        };
        let n = faces.len();
        let mut probs = vec![[f32::NAN; NUM_CLASSES]; n * t];
        let mut seen = vec![false; n * t];
        for r in rows {
            let Some(i) = faces.find(&r.image) else {
                return Err(Unavailable::new(
                    format!(
                        "{} names face {} that ingest's {} table lacks: it predates the ingest tables",
                        path.display(),
                        r.image,
                        faces.split
                    ),
                    recipe,
                ));
            };
            let slot = i * t + usize::from(r.sample);
            if std::mem::replace(&mut seen[slot], true) {
                return Err(Unavailable::new(
                    format!(
                        "{} holds sample {} of {} twice",
                        path.display(),
                        r.sample,
                        r.image
                    ),
                    recipe,
                ));
            }
            probs[slot] = r.probs;
        }
        if let Some(slot) = seen.iter().position(|s| !s) {
            return Err(Unavailable::new(
                format!(
                    "{} lacks sample {} of face {} (of {} faces × {t} samples)",
                    path.display(),
                    slot % t,
                    faces.names[slot / t],
                    n
                ),
                recipe,
            ));
        }
        let mut means = Vec::with_capacity(n * t);
        let mut aleatoric = Vec::with_capacity(n * t);
        for face in probs.chunks_exact(t) {
            let mut running = RunningSplit::new();
            for p in face {
                running.push(p);
                means.push(running.mean());
                aleatoric.push(running.aleatoric());
            }
        }
        Ok(ComboStats {
            arch,
            method,
            samples: t,
            means,
            aleatoric,
        })
    }

    /// Face `i`'s prediction from its first `n` samples (1 ≤ n ≤ T): [`RunningSplit::split`]
    /// after n samples.
    pub fn at(&self, i: usize, n: usize) -> AtN {
        let slot = i * self.samples + (n.clamp(1, self.samples) - 1);
        FaceSplit::new(self.means[slot], self.aleatoric[slot])
    }
}

/// The split-conformal thresholds q̂ at α = [`SHOWN_ALPHA`] by (arch, method, n), and whether the
/// analyze stage that wrote them is up to date.
#[derive(Debug, Default)]
pub struct Conformal {
    qhat: HashMap<(Arch, Method, usize), f64>,
    /// Why there are no sets (missing or stale analyze tables), None when there are.
    pub unavailable: Option<String>,
}

impl Conformal {
    /// q̂ for a combination at n, when the analyze tables are current and have the row.
    pub fn qhat(&self, arch: Arch, method: Method, n: usize) -> Option<f64> {
        if self.unavailable.is_some() {
            return None;
        }
        self.qhat.get(&(arch, method, n)).copied()
    }

    fn load(layout: &Layout, settings: &Settings) -> Conformal {
        let path = layout.conformal();
        let how = format!(
            "run `just all` (or `just analyze` once infer is done) for profile `{}`",
            layout.profile()
        );
        if !path.is_file() {
            return Conformal {
                unavailable: Some(format!(
                    "no prediction sets: {} does not exist; {how}",
                    path.display()
                )),
                ..Conformal::default()
            };
        }
        let fresh = plan::analyze(layout, settings).check();
        match fresh.map(|c| c.freshness) {
            Ok(Freshness::UpToDate) => {}
            Ok(other) => {
                return Conformal {
                    unavailable: Some(format!(
                        "no prediction sets: the analyze stage is {other}; {how}"
                    )),
                    ..Conformal::default()
                };
            }
            Err(e) => {
                return Conformal {
                    unavailable: Some(format!("no prediction sets: {e}")),
                    ..Conformal::default()
                };
            }
        }
        let columns = ["arch", "method", "n", "alpha", "qhat"];
        let rows: Vec<ConformalRow> = match ferbayes_core::io::read_rows(
            &path,
            Some(&columns),
            &plan::recipe(Stage::Analyze),
        ) {
            Ok(rows) => rows,
            Err(e) => {
                return Conformal {
                    unavailable: Some(format!("no prediction sets: {e}")),
                    ..Conformal::default()
                };
            }
        };
        let mut qhat = HashMap::new();
        for r in rows {
            if (r.alpha - SHOWN_ALPHA).abs() > 1e-12 {
                continue;
            }
            qhat.insert((r.arch, r.method, usize::from(r.n)), r.qhat);
        }
        Conformal {
            qhat,
            unavailable: None,
        }
    }
}

/// Everything the pages read, for one [`RunKey`].
#[derive(Debug)]
pub struct RunData {
    pub key: RunKey,
    faces: HashMap<Split, Result<Arc<SplitFaces>, Unavailable>>,
    stats: HashMap<(Arch, Method, Split), Result<Arc<ComboStats>, Unavailable>>,
    pub conformal: Conformal,
    /// How long loading took.
    pub loaded_in: Duration,
}

impl RunData {
    /// The faces of `split`, or why there are none.
    pub fn faces(&self, split: Split) -> Result<&Arc<SplitFaces>, Unavailable> {
        match self.faces.get(&split) {
            Some(Ok(f)) => Ok(f),
            Some(Err(e)) => Err(e.clone()),
            None => Err(Unavailable::new(
                format!("the {split} split is not shown (only valid and test are inferred)"),
                None,
            )),
        }
    }

    /// The statistics of `arch`/`method` on `split`, or why there are none.
    pub fn stats(
        &self,
        arch: Arch,
        method: Method,
        split: Split,
    ) -> Result<&Arc<ComboStats>, Unavailable> {
        match self.stats.get(&(arch, method, split)) {
            Some(Ok(s)) => Ok(s),
            Some(Err(e)) => Err(e.clone()),
            None => Err(Unavailable::new(
                format!("{arch}/{method} is not a combination of this profile"),
                None,
            )),
        }
    }

    /// Reads every table the pages need (in parallel); a missing or broken table becomes an
    /// [`Unavailable`] naming it and the recipe that makes it, never an error of the whole.
    pub fn load(layout: &Layout, settings: &Settings, key: RunKey) -> RunData {
        let start = Instant::now();
        let faces: HashMap<Split, Result<Arc<SplitFaces>, Unavailable>> = SPLITS
            .par_iter()
            .map(|&split| (split, load_faces(layout, split).map(Arc::new)))
            .collect();
        let jobs: Vec<(Arch, Method, Split)> = combos(settings)
            .into_iter()
            .flat_map(|(a, m)| SPLITS.iter().map(move |&s| (a, m, s)))
            .collect();
        let (stats, conformal) = rayon::join(
            || {
                jobs.par_iter()
                    .map(|&(a, m, split)| {
                        let got = match &faces[&split] {
                            Ok(f) => load_stats(layout, a, m, f).map(Arc::new),
                            Err(e) => Err(e.clone()),
                        };
                        ((a, m, split), got)
                    })
                    .collect()
            },
            || Conformal::load(layout, settings),
        );
        let loaded_in = start.elapsed();
        tracing::info!(
            "explore: loaded the tables of profile `{}` in {:.2} s (run {})",
            layout.profile(),
            loaded_in.as_secs_f64(),
            &key.short()[..8]
        );
        RunData {
            key,
            faces,
            stats,
            conformal,
            loaded_in,
        }
    }
}

fn load_faces(layout: &Layout, split: Split) -> Result<SplitFaces, Unavailable> {
    let path = layout.ingest_split(split);
    let recipe = plan::recipe(Stage::Ingest);
    if !path.is_file() {
        return Err(Unavailable::new(
            format!(
                "no faces yet: {} does not exist (the ingest stage has not run for profile `{}`)",
                path.display(),
                layout.profile()
            ),
            Some(recipe),
        ));
    }
    let columns = [
        "image",
        "pixels",
        "votes",
        "majority",
        "crowd",
        "crowd_entropy",
    ];
    let rows: Vec<FaceRow> = ferbayes_core::io::read_rows(&path, Some(&columns), &recipe)
        .map_err(|e| Unavailable::new(e.to_string(), Some(recipe.clone())))?;
    Ok(SplitFaces::from_rows(split, rows))
}

fn load_stats(
    layout: &Layout,
    arch: Arch,
    method: Method,
    faces: &SplitFaces,
) -> Result<ComboStats, Unavailable> {
    let path = layout.infer_split(arch, method, faces.split);
    let recipe = plan::recipe(Stage::Infer);
    if !path.is_file() {
        return Err(Unavailable::new(
            format!(
                "no predictions of {arch}/{method} yet: {} does not exist",
                path.display()
            ),
            Some(recipe),
        ));
    }
    let rows: Vec<InferRow> = ferbayes_core::io::read_rows(&path, None, &recipe)
        .map_err(|e| Unavailable::new(e.to_string(), Some(recipe.clone())))?;
    ComboStats::from_rows(arch, method, faces, &rows, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faces(names: &[&str]) -> SplitFaces {
        let rows = names
            .iter()
            .map(|n| FaceRow {
                image: (*n).to_owned(),
                pixels: vec![0; ferbayes_core::IMAGE_PIXELS],
                ..FaceRow::default()
            })
            .collect();
        SplitFaces::from_rows(Split::Test, rows)
    }

    fn row(image: &str, sample: u16, probs: [f32; 8]) -> InferRow {
        InferRow {
            image: image.into(),
            sample,
            probs,
        }
    }

    #[test]
    fn running_means_and_the_entropy_split_by_hand() {
        let f = faces(&["a.png"]);
        // Two opposite sure samples: the mean is (0.5, 0.5), entropy ln 2, all of it epistemic.
        let mut p0 = [0.0; 8];
        p0[0] = 1.0;
        let mut p1 = [0.0; 8];
        p1[1] = 1.0;
        let rows = [row("a.png", 1, p1), row("a.png", 0, p0)];
        let s = ComboStats::from_rows(
            Arch::AlexNet,
            Method::Ensemble,
            &f,
            &rows,
            std::path::Path::new("t"),
        )
        .expect("stats");
        assert_eq!(s.samples, 2);
        let one = s.at(0, 1);
        assert_eq!(one.probs, p0);
        assert_eq!((one.entropy, one.aleatoric, one.epistemic), (0.0, 0.0, 0.0));
        let two = s.at(0, 2);
        assert_eq!(&two.probs[..2], &[0.5, 0.5]);
        let ln2 = std::f64::consts::LN_2;
        assert!((two.entropy - ln2).abs() < 1e-7, "{two:?}");
        assert_eq!(two.aleatoric, 0.0);
        assert!((two.epistemic_share() - 1.0).abs() < 1e-7);
        // Exactly uq's split of the first n samples.
        assert_eq!(one, ferbayes_uq::face_split(&[p0]));
        assert_eq!(two, ferbayes_uq::face_split(&[p0, p1]));
    }

    #[test]
    fn an_incomplete_table_names_what_is_missing() {
        let f = faces(&["a.png", "b.png"]);
        let p = [0.125; 8];
        let path = std::path::Path::new("infer/alexnet/mc_dropout/test.parquet");
        let missing = ComboStats::from_rows(
            Arch::AlexNet,
            Method::McDropout,
            &f,
            &[row("a.png", 0, p), row("a.png", 1, p), row("b.png", 0, p)],
            path,
        )
        .expect_err("b lacks sample 1");
        assert!(
            missing.message.contains("lacks sample 1 of face b.png"),
            "{missing:?}"
        );
        assert_eq!(missing.recipe.as_deref(), Some("just infer"));
        let stranger = ComboStats::from_rows(
            Arch::AlexNet,
            Method::McDropout,
            &f,
            &[row("c.png", 0, p)],
            path,
        )
        .expect_err("c is no face of the split");
        assert!(stranger.message.contains("c.png"), "{stranger:?}");
    }
}
