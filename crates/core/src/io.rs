//! Atomic artifact writes and checked Parquet reads.
//!
//! Every artifact is written under a temporary name in its final folder and renamed into place
//! only once complete, so a killed stage leaves the previous complete file or none, never a torn
//! one. A [`PendingFile`] dropped without [`PendingFile::commit`] removes its temporary file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::schema::Row;

/// A file written under a temporary name, renamed to its destination by [`PendingFile::commit`].
#[derive(Debug)]
pub struct PendingFile {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl PendingFile {
    /// Creates the destination's folder and an empty temporary file beside the destination.
    pub fn create(dest: impl Into<PathBuf>) -> Result<(Self, File)> {
        let dest = dest.into();
        let dir = dest.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "artifact".to_owned());
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok((
            PendingFile {
                tmp,
                dest,
                committed: false,
            },
            file,
        ))
    }

    /// The final path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flushes the temporary file to disk and renames it over the destination.
    pub fn commit(mut self) -> Result<PathBuf> {
        File::open(&self.tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        self.committed = true;
        Ok(self.dest.clone())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `dest` atomically.
pub fn write_atomic(dest: impl Into<PathBuf>, bytes: &[u8]) -> Result<PathBuf> {
    use std::io::Write;
    let (pending, mut file) = PendingFile::create(dest)?;
    file.write_all(bytes)
        .map_err(|e| Error::io(&pending.tmp, e))?;
    drop(file);
    pending.commit()
}

/// zstd level of the train and infer stages' Parquet tables (ingest and analyze use
/// `ingest.zstd_level`).
pub const TABLE_ZSTD_LEVEL: i32 = 3;

/// Writes record batches as a zstd-compressed Parquet file under a temporary name; the caller
/// commits the returned [`PendingFile`] (possibly together with sibling files).
pub fn write_parquet(
    dest: impl Into<PathBuf>,
    schema: &SchemaRef,
    batches: impl IntoIterator<Item = RecordBatch>,
    zstd_level: i32,
) -> Result<PendingFile> {
    let (pending, file) = PendingFile::create(dest)?;
    let parquet_err = |e: parquet::errors::ParquetError| Error::Parquet {
        path: pending.dest.clone(),
        message: e.to_string(),
    };
    let level = ZstdLevel::try_new(zstd_level).map_err(parquet_err)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(8192))
        .build();
    let mut writer =
        ArrowWriter::try_new(file, Arc::clone(schema), Some(props)).map_err(parquet_err)?;
    for batch in batches {
        writer.write(&batch).map_err(parquet_err)?;
    }
    writer.close().map_err(parquet_err)?;
    Ok(pending)
}

/// Reads a whole Parquet file, optionally only the named columns, and checks that the columns
/// read have the types of `expected` (a missing or retyped column names the file and the recipe
/// that rebuilds it).
pub fn read_parquet(
    path: &Path,
    expected: &Schema,
    columns: Option<&[&str]>,
    recipe: &str,
) -> Result<Vec<RecordBatch>> {
    let hint = || Some(format!("run `{recipe}` to rebuild it"));
    let file = File::open(path).map_err(|e| Error::Artifact {
        path: path.to_owned(),
        message: e.to_string(),
        hint: hint(),
    })?;
    let unreadable = |e: parquet::errors::ParquetError| Error::Artifact {
        path: path.to_owned(),
        message: format!("not a readable Parquet file: {e}"),
        hint: hint(),
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(unreadable)?;
    let file_schema = Arc::clone(builder.schema());
    let wanted: Vec<&str> = match columns {
        Some(c) => c.to_vec(),
        None => expected
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect(),
    };
    let mut indices = Vec::with_capacity(wanted.len());
    for name in &wanted {
        let want = expected
            .field_with_name(name)
            .map_err(|_| Error::Artifact {
                path: path.to_owned(),
                message: format!("column `{name}` is not part of the expected schema"),
                hint: None,
            })?;
        let (idx, got) = file_schema
            .column_with_name(name)
            .ok_or_else(|| Error::Artifact {
                path: path.to_owned(),
                message: format!("missing column `{name}`"),
                hint: hint(),
            })?;
        if got.data_type() != want.data_type() {
            return Err(Error::Artifact {
                path: path.to_owned(),
                message: format!(
                    "column `{name}` has type {} but {} was expected",
                    got.data_type(),
                    want.data_type()
                ),
                hint: hint(),
            });
        }
        indices.push(idx);
    }
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), indices);
    let reader = builder.with_projection(mask).build().map_err(unreadable)?;
    reader
        .map(|b| {
            b.map_err(|e| Error::Artifact {
                path: path.to_owned(),
                message: format!("not a readable Parquet file: {e}"),
                hint: hint(),
            })
        })
        .collect()
}

/// Reads a whole Parquet table as its rows, optionally only the named columns (the other fields
/// keep their defaults, see [`Row::from_batch_columns`]); a missing or retyped column names the
/// file and the recipe that rebuilds it.
pub fn read_rows<R: Row>(path: &Path, columns: Option<&[&str]>, recipe: &str) -> Result<Vec<R>> {
    let batches = read_parquet(path, &R::schema(), columns, recipe)?;
    let mut rows = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in &batches {
        rows.extend(
            R::from_batch_columns(batch, columns).map_err(|e| Error::Artifact {
                path: path.to_owned(),
                message: e.to_string(),
                hint: Some(format!("run `{recipe}` to rebuild it")),
            })?,
        );
    }
    Ok(rows)
}

/// The record batch of `rows`; a failure (a list of the wrong length) names `path`, the file the
/// batch is for.
pub fn rows_batch<R: Row>(path: &Path, rows: &[R]) -> Result<RecordBatch> {
    R::to_batch(rows).map_err(|e| Error::Parquet {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_file_commits_or_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("sub/out.bin");
        {
            let (pending, _file) = PendingFile::create(&dest).expect("create");
            assert!(!dest.exists());
            // dropped without commit
            drop(pending);
        }
        assert!(!dest.exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub"))
                .expect("dir")
                .count(),
            0
        );

        write_atomic(&dest, b"first").expect("write");
        assert_eq!(std::fs::read(&dest).expect("read"), b"first");
        write_atomic(&dest, b"second").expect("overwrite");
        assert_eq!(std::fs::read(&dest).expect("read"), b"second");
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub"))
                .expect("dir")
                .count(),
            1
        );
    }
}
