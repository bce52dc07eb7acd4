//! The one way a stage writes its outputs: check the [`Plan`], skip it when it is up to date,
//! write every output under a temporary name, then commit them all and the manifest last.
//!
//! A stage asks [`Plan::begin`] whether to run. A [`StageRun`] then takes the stage's tables
//! ([`StageRun::write_table`]) and the files it wrote another way ([`StageRun::record`]),
//! names each in the manifest from the plan's outputs, and [`StageRun::finish`] renames the
//! pending files into place before it writes `manifest.json`. A stage that fails before
//! `finish` leaves the previous complete outputs, and a manifest always describes complete
//! files.
//!
//! [`Plan::begin`] first takes the folder's lock ([`crate::lock`]), before it checks anything,
//! and the [`StageRun`] holds it until it is finished or dropped: a second writer of the same
//! folder stops at once, naming the folder and the holder.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::error::Result;
use crate::io::{PendingFile, write_parquet};
use crate::layout::Layout;
use crate::lock::StageLock;
use crate::manifest::Manifest;
use crate::plan::{Check, Plan};

/// What [`Plan::begin`] decided.
#[derive(Debug)]
pub enum Begin<'p> {
    /// The outputs are up to date (manifest key and files); nothing is to be written.
    UpToDate(Check),
    /// The stage runs and writes through this.
    Run(Box<StageRun<'p>>),
}

impl Plan {
    /// Takes the output folder's lock, then checks the plan and, unless `force`, skips it when
    /// its outputs are up to date (logged with the plan's label, folder and key; the lock is
    /// released). Fails at once with [`crate::Error::Locked`] while another process writes the
    /// folder.
    pub fn begin(&self, force: bool) -> Result<Begin<'_>> {
        let lock = self.lock()?;
        let check = self.check()?;
        if check.up_to_date() && !force {
            tracing::info!(
                "{}: up to date ({}, key {})",
                self.label,
                self.dir.display(),
                check.short_key()
            );
            return Ok(Begin::UpToDate(check));
        }
        let mut run = StageRun::new(self, check);
        run.lock = Some(lock);
        Ok(Begin::Run(Box::new(run)))
    }

    /// The exclusive lock of the plan's output folder (`<dir>/.lock`).
    pub fn lock(&self) -> Result<StageLock> {
        crate::lock::acquire(&Layout::lock_in(&self.dir), &self.dir.display().to_string())
    }
}

/// One run of a plan: its outputs so far and the manifest that will describe them.
#[derive(Debug)]
pub struct StageRun<'p> {
    plan: &'p Plan,
    check: Check,
    manifest: Manifest,
    pending: Vec<PendingFile>,
    /// The output folder's lock, held until the run is finished or dropped.
    lock: Option<StageLock>,
}

impl<'p> StageRun<'p> {
    /// A run of `plan` after `check` that takes no lock: for train, whose processes lock the
    /// members they train instead (`Layout::member_lock`), since the shards of one run share
    /// a folder. Other stages use [`Plan::begin`] or [`StageRun::locked`].
    pub fn new(plan: &'p Plan, check: Check) -> Self {
        let manifest = plan.manifest(&check);
        StageRun {
            plan,
            check,
            manifest,
            pending: Vec::new(),
            lock: None,
        }
    }

    /// A run of `plan` that always writes (no up-to-date skip), holding the output folder's
    /// lock: taken before the check, so a second writer stops at once.
    pub fn locked(plan: &'p Plan) -> Result<Self> {
        let lock = plan.lock()?;
        let mut run = StageRun::new(plan, plan.check()?);
        run.lock = Some(lock);
        Ok(run)
    }

    pub fn plan(&self) -> &'p Plan {
        self.plan
    }

    pub fn check(&self) -> &Check {
        &self.check
    }

    /// The manifest being built, for what a stage adds to its inputs or settings.
    pub fn manifest_mut(&mut self) -> &mut Manifest {
        &mut self.manifest
    }

    /// Adds `key` to the manifest's settings object (what the run found out, such as timings).
    pub fn note(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        if let serde_json::Value::Object(map) = &mut self.manifest.settings {
            map.insert(key.to_owned(), value.into());
        }
    }

    /// Writes `batches` as zstd Parquet at `path`, one of the plan's outputs, under a temporary
    /// name that [`StageRun::finish`] renames into place; returns the number of rows.
    pub fn write_table(
        &mut self,
        path: impl Into<PathBuf>,
        schema: &SchemaRef,
        batches: Vec<RecordBatch>,
        zstd_level: i32,
    ) -> Result<u64> {
        let path = path.into();
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let entry = self.plan.output(&path, rows)?;
        self.pending
            .push(write_parquet(path, schema, batches, zstd_level)?);
        self.manifest.outputs.push(entry);
        Ok(rows)
    }

    /// Records an output the stage has already written and committed itself (weights saved as
    /// training went, figures): one of the plan's outputs.
    pub fn record(&mut self, path: &Path, rows: u64) -> Result<()> {
        let entry = self.plan.output(path, rows)?;
        self.manifest.outputs.push(entry);
        Ok(())
    }

    /// Records a file in the plan's folder that the plan does not list one by one (analyze's
    /// figures).
    pub fn record_file(&mut self, path: &Path, rows: u64) -> Result<()> {
        let entry = self.plan.file_entry(path, rows)?;
        self.manifest.outputs.push(entry);
        Ok(())
    }

    /// Renames every pending output into place, then writes the manifest; returns its path.
    /// The lock is released after the manifest is written.
    pub fn finish(self) -> Result<PathBuf> {
        for file in self.pending {
            file.commit()?;
        }
        let written = self.manifest.finish(&Layout::manifest_in(&self.plan.dir));
        drop(self.lock);
        written
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int32Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema, SchemaRef};

    use super::*;
    use crate::layout::Stage;
    use crate::plan::{PlanInput, read_manifest};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]))
    }

    fn batch(values: &[i32]) -> RecordBatch {
        RecordBatch::try_new(schema(), vec![Arc::new(Int32Array::from(values.to_vec()))])
            .expect("test step")
    }

    /// A plan with one input file and two table outputs in a temporary folder.
    fn plan(root: &Path) -> Plan {
        let input = root.join("input.txt");
        std::fs::write(&input, b"faces").expect("test step");
        Plan {
            stage: Stage::Infer,
            label: "infer test".into(),
            profile: "smoke".into(),
            dir: root.join("out"),
            settings: serde_json::json!({"samples": 3}),
            inputs: vec![PlanInput::File {
                path: input,
                name: "input.txt".into(),
                from: None,
            }],
            outputs: vec!["a.parquet".into(), "b.parquet".into()],
        }
    }

    fn run_both(plan: &Plan, force: bool) -> Option<PathBuf> {
        let mut stage = match plan.begin(force).expect("test step") {
            Begin::UpToDate(_) => return None,
            Begin::Run(stage) => *stage,
        };
        assert_eq!(
            stage
                .write_table(
                    plan.dir.join("a.parquet"),
                    &schema(),
                    vec![batch(&[1, 2])],
                    3
                )
                .expect("test step"),
            2
        );
        stage
            .write_table(plan.dir.join("b.parquet"), &schema(), vec![batch(&[3])], 3)
            .expect("test step");
        stage.note("seconds", 1.5);
        Some(stage.finish().expect("test step"))
    }

    #[test]
    fn outputs_and_manifest_then_the_skip() {
        let tmp = tempfile::tempdir().expect("test step");
        let plan = plan(tmp.path());
        let manifest = run_both(&plan, false).expect("a first run writes");
        assert_eq!(manifest, Layout::manifest_in(&plan.dir));
        let m = read_manifest(&plan.dir)
            .expect("test step")
            .expect("test step");
        let outputs: Vec<(&str, u64)> = m
            .outputs
            .iter()
            .map(|o| (o.file.as_str(), o.rows))
            .collect();
        assert_eq!(outputs, [("a.parquet", 2), ("b.parquet", 1)]);
        assert_eq!(m.settings["seconds"], 1.5);
        assert_eq!(m.settings["samples"], 3);
        assert_eq!(m.input_hashes.len(), 1);
        assert!(plan.dir.join("a.parquet").is_file() && plan.dir.join("b.parquet").is_file());

        // Up to date: skipped; forced: rewritten; a changed input: rewritten.
        assert!(run_both(&plan, false).is_none());
        assert!(run_both(&plan, true).is_some());
        std::fs::write(tmp.path().join("input.txt"), b"other faces").expect("test step");
        assert!(run_both(&plan, false).is_some());
    }

    #[test]
    fn a_run_that_fails_before_finish_leaves_the_previous_outputs() {
        let tmp = tempfile::tempdir().expect("test step");
        let plan = plan(tmp.path());
        run_both(&plan, false).expect("test step");
        let before = std::fs::read(plan.dir.join("a.parquet")).expect("test step");
        let manifest_before = std::fs::read(Layout::manifest_in(&plan.dir)).expect("test step");
        {
            let Begin::Run(mut stage) = plan.begin(true).expect("test step") else {
                panic!("forced runs run");
            };
            stage
                .write_table(plan.dir.join("a.parquet"), &schema(), vec![batch(&[9])], 3)
                .expect("test step");
            // A file the plan does not list is refused, naming it.
            let err = stage
                .write_table(plan.dir.join("c.parquet"), &schema(), vec![batch(&[9])], 3)
                .expect_err("c.parquet is not in the plan")
                .to_string();
            assert!(
                err.contains("c.parquet") && err.contains("not among the outputs"),
                "{err}"
            );
            // Dropped without finish: as if the stage failed here.
        }
        assert_eq!(
            std::fs::read(plan.dir.join("a.parquet")).expect("test step"),
            before
        );
        assert_eq!(
            std::fs::read(Layout::manifest_in(&plan.dir)).expect("test step"),
            manifest_before
        );
        let leftovers: Vec<_> = std::fs::read_dir(&plan.dir)
            .expect("test step")
            .map(|e| {
                e.expect("test step")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_running_stage_holds_its_folder_against_a_second_writer() {
        let tmp = tempfile::tempdir().expect("test step");
        let plan = plan(tmp.path());
        let Begin::Run(first) = plan.begin(false).expect("first writer") else {
            panic!("nothing written yet: it runs");
        };
        for second in [
            plan.begin(true).map(|_| ()),
            StageRun::locked(&plan).map(|_| ()),
        ] {
            let err = second.expect_err("a second writer").to_string();
            assert!(
                err.contains(&plan.dir.display().to_string())
                    && err.contains(&format!("pid {}", std::process::id())),
                "{err}"
            );
        }
        first.finish().expect("test step");
        // Finished (without its tables, so stale): the lock is free for the next writer, and
        // an up-to-date check takes and releases it.
        assert!(run_both(&plan, false).is_some());
        assert!(run_both(&plan, false).is_none());
        assert!(run_both(&plan, true).is_some());
        assert!(Layout::lock_in(&plan.dir).is_file());
    }

    #[test]
    fn recorded_files_are_checked_against_the_plan() {
        let tmp = tempfile::tempdir().expect("test step");
        let plan = plan(tmp.path());
        let mut stage = StageRun::new(&plan, plan.check().expect("test step"));
        stage
            .record(&plan.dir.join("a.parquet"), 7)
            .expect("test step");
        assert!(stage.record(&plan.dir.join("weights.bin"), 1).is_err());
        stage
            .record_file(&plan.dir.join("figures/x.png"), 1)
            .expect("test step");
        assert!(
            stage
                .record_file(&tmp.path().join("elsewhere.png"), 1)
                .is_err()
        );
        let files: Vec<&str> = stage
            .manifest
            .outputs
            .iter()
            .map(|o| o.file.as_str())
            .collect();
        assert_eq!(files, ["a.parquet", "figures/x.png"]);
    }
}
