//! Two runs' artifacts, file by file: what `just verify` (binary `ferbayes-compare`) reports.
//!
//! Every file under one profile folder is compared with the same file under the other:
//!
//! - Parquet tables column by column, values bit for bit (a column named `seconds`, a timing,
//!   may differ);
//! - safetensors weight files tensor by tensor, bytes bit for bit, and their metadata key by key
//!   (the training history's `seconds` and the `ferbayes.machine` provenance may differ, and the
//!   keys' order in the file is not reproducible);
//! - `manifest.json` field by field, leaving out what is not reproducible by design: the times
//!   (`started`, `finished`, `settings.seconds`), the artifact paths (`inputs`), the machine, and
//!   the input hashes (and so the key) of input files whose data compared equal;
//! - `report.md` and `report.html` byte for byte up to their last section, the machines
//!   appendix;
//! - every other file byte for byte.
//!
//! Hidden files (locks, temporary files, `.resume/` checkpoints) are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::error::{Error, Result};

/// How one file of run A compares with the same file of run B.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Byte for byte the same.
    Identical,
    /// The same data; the bytes differ only in what this says (times, provenance, order).
    SameData(String),
    /// Different data: what differs.
    Differs(String),
}

impl Verdict {
    /// Whether the data are the same (byte-identical or not).
    pub fn same(&self) -> bool {
        !matches!(self, Verdict::Differs(_))
    }
}

/// One file's comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compared {
    /// The path relative to the compared folders.
    pub file: String,
    pub verdict: Verdict,
}

/// Compares every file under `a` with the same file under `b` (and names files only one has).
pub fn compare_trees(a: &Path, b: &Path) -> Result<Vec<Compared>> {
    let (fa, fb) = (files(a)?, files(b)?);
    let all: BTreeSet<&String> = fa.iter().chain(&fb).collect();
    let mut out: Vec<Compared> = Vec::new();
    // Manifests last: their input hashes are judged by how their inputs compared.
    let (manifests, data): (Vec<&String>, Vec<&String>) =
        all.into_iter().partition(|f| f.ends_with("manifest.json"));
    for file in data.into_iter().chain(manifests) {
        let verdict = match (fa.contains(file), fb.contains(file)) {
            (true, false) => Verdict::Differs(format!("only in {}", a.display())),
            (false, true) => Verdict::Differs(format!("only in {}", b.display())),
            _ => {
                let (pa, pb) = (a.join(file), b.join(file));
                compare_file(&pa, &pb, &out)?
            }
        };
        out.push(Compared {
            file: file.clone(),
            verdict,
        });
    }
    out.sort_by(|x, y| x.file.cmp(&y.file));
    Ok(out)
}

/// The files under `root`, relative, skipping hidden files and folders.
fn files(root: &Path) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    Ok(out)
}

fn compare_file(a: &Path, b: &Path, done: &[Compared]) -> Result<Verdict> {
    let (ba, bb) = (read(a)?, read(b)?);
    if ba == bb {
        return Ok(Verdict::Identical);
    }
    let name = a.to_string_lossy();
    if name.ends_with(".parquet") {
        compare_parquet(a, b)
    } else if name.ends_with(".safetensors") {
        Ok(compare_safetensors(&ba, &bb).unwrap_or_else(Verdict::Differs))
    } else if name.ends_with("manifest.json") {
        Ok(compare_manifest(&ba, &bb, done))
    } else if name.ends_with("report.md") || name.ends_with("report.html") {
        Ok(compare_report(&ba, &bb))
    } else {
        Ok(Verdict::Differs(format!(
            "bytes differ ({} vs {} bytes)",
            ba.len(),
            bb.len()
        )))
    }
}

/// The heading of the report's last section, which describes the machines that made the
/// artifacts (provenance, like a manifest's `machine`).
const MACHINES_APPENDIX: &[u8] = b"Appendix: machines";

/// A report byte for byte up to its machines appendix (its last section).
fn compare_report(a: &[u8], b: &[u8]) -> Verdict {
    let body = |x: &'_ [u8]| -> Option<usize> {
        x.windows(MACHINES_APPENDIX.len())
            .rposition(|w| w == MACHINES_APPENDIX)
    };
    match (body(a), body(b)) {
        (Some(i), Some(j)) if a[..i] == b[..j] => {
            Verdict::SameData("differs only in its machines appendix".into())
        }
        _ => Verdict::Differs(format!("bytes differ ({} vs {} bytes)", a.len(), b.len())),
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// A Parquet file's schema and batches.
fn batches(path: &Path) -> Result<Vec<RecordBatch>> {
    let bad = |e: parquet::errors::ParquetError| Error::Parquet {
        path: path.to_owned(),
        message: format!("not a readable Parquet file: {e}"),
    };
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(bad)?
        .build()
        .map_err(bad)?;
    reader
        .map(|b| {
            b.map_err(|e| Error::Parquet {
                path: path.to_owned(),
                message: e.to_string(),
            })
        })
        .collect()
}

/// Column by column (values bit for bit); a differing `seconds` column is a timing.
fn compare_parquet(a: &Path, b: &Path) -> Result<Verdict> {
    let (xa, xb) = (batches(a)?, batches(b)?);
    let rows = |x: &[RecordBatch]| x.iter().map(RecordBatch::num_rows).sum::<usize>();
    if rows(&xa) != rows(&xb) {
        return Ok(Verdict::Differs(format!(
            "{} vs {} rows",
            rows(&xa),
            rows(&xb)
        )));
    }
    let schema = |x: &[RecordBatch]| x.first().map(|b| b.schema());
    let (sa, sb) = (schema(&xa), schema(&xb));
    if sa != sb {
        return Ok(Verdict::Differs("schemas differ".into()));
    }
    let Some(schema) = sa else {
        return Ok(Verdict::SameData("no rows; the files' bytes differ".into()));
    };
    let mut timing = Vec::new();
    let mut differs = Vec::new();
    for field in schema.fields() {
        let name = field.name();
        let column = |x: &[RecordBatch]| -> Vec<ArrayRef> {
            x.iter()
                .filter_map(|b| b.column_by_name(name).cloned())
                .collect()
        };
        let (ca, cb) = (column(&xa), column(&xb));
        if ca.len() != cb.len() || ca.iter().zip(&cb).any(|(p, q)| p.len() != q.len()) {
            differs.push(format!("{name}: row groups differ"));
            continue;
        }
        let mut changed = 0usize;
        let mut max_abs = 0f64;
        for (p, q) in ca.iter().zip(&cb) {
            if p.as_ref() == q.as_ref() {
                continue;
            }
            let (n, d) = row_differences(p.as_ref(), q.as_ref());
            changed += n;
            max_abs = max_abs.max(d.unwrap_or(0.0));
        }
        if changed == 0 {
            continue;
        }
        if name == "seconds" {
            timing.push(format!("column `{name}`"));
        } else {
            let delta = if max_abs > 0.0 {
                format!(", largest difference {max_abs:.3e}")
            } else {
                String::new()
            };
            differs.push(format!(
                "column `{name}`: {changed} of {} rows{delta}",
                rows(&xa)
            ));
        }
    }
    Ok(if !differs.is_empty() {
        Verdict::Differs(differs.join("; "))
    } else if !timing.is_empty() {
        Verdict::SameData(format!("timing only: {}", timing.join(", ")))
    } else {
        Verdict::SameData("values equal; the files' bytes differ".into())
    })
}

/// Rows of two equal-length arrays that differ, and the largest absolute difference of their
/// float values (f32/f64 columns and fixed-size lists of them).
fn row_differences(a: &dyn Array, b: &dyn Array) -> (usize, Option<f64>) {
    let n = a.len();
    let changed = (0..n)
        .filter(|&i| a.slice(i, 1).as_ref() != b.slice(i, 1).as_ref())
        .count();
    let (fa, fb) = (floats(a), floats(b));
    let delta = match (fa, fb) {
        (Some(x), Some(y)) if x.len() == y.len() => Some(
            x.iter()
                .zip(&y)
                .map(|(p, q)| (p - q).abs())
                .filter(|d| d.is_finite())
                .fold(0f64, f64::max),
        ),
        _ => None,
    };
    (changed, delta)
}

/// The float values of an f32/f64 array or a fixed-size list of them, flattened.
fn floats(a: &dyn Array) -> Option<Vec<f64>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Float64Type};
    match a.data_type() {
        DataType::Float32 => Some(
            a.as_primitive::<Float32Type>()
                .values()
                .iter()
                .map(|&v| f64::from(v))
                .collect(),
        ),
        DataType::Float64 => Some(a.as_primitive::<Float64Type>().values().to_vec()),
        DataType::FixedSizeList(_, _) => floats(a.as_fixed_size_list().values().as_ref()),
        _ => None,
    }
}

/// A safetensors file: its JSON header and its data bytes.
fn safetensors_parts(bytes: &[u8]) -> std::result::Result<(Value, &[u8]), String> {
    let len: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or("not a safetensors file (too short)")?;
    let n = usize::try_from(u64::from_le_bytes(len)).map_err(|e| e.to_string())?;
    let header = bytes
        .get(8..8 + n)
        .ok_or("not a safetensors file (header past the end)")?;
    let header: Value =
        serde_json::from_slice(header).map_err(|e| format!("unreadable header: {e}"))?;
    Ok((header, &bytes[8 + n..]))
}

/// Tensor by tensor (bytes) and metadata key by key.
fn compare_safetensors(a: &[u8], b: &[u8]) -> std::result::Result<Verdict, String> {
    let ((ha, da), (hb, db)) = (safetensors_parts(a)?, safetensors_parts(b)?);
    let empty = serde_json::Map::new();
    let (ha, hb) = (
        ha.as_object().unwrap_or(&empty),
        hb.as_object().unwrap_or(&empty),
    );
    let mut differs = Vec::new();
    let mut same_but = BTreeSet::new();
    let names: BTreeSet<&String> = ha.keys().chain(hb.keys()).collect();
    let mut tensors = 0;
    for name in names {
        if name == "__metadata__" {
            continue;
        }
        tensors += 1;
        let (Some(ta), Some(tb)) = (ha.get(name), hb.get(name)) else {
            differs.push(format!("tensor `{name}` only in one file"));
            continue;
        };
        if ta.get("dtype") != tb.get("dtype") || ta.get("shape") != tb.get("shape") {
            differs.push(format!("tensor `{name}`: dtype or shape"));
            continue;
        }
        let slice = |t: &Value, data: &[u8]| -> Option<Vec<u8>> {
            let off = t.get("data_offsets")?.as_array()?;
            let (s, e) = (off.first()?.as_u64()?, off.get(1)?.as_u64()?);
            data.get(usize::try_from(s).ok()?..usize::try_from(e).ok()?)
                .map(<[u8]>::to_vec)
        };
        let (xa, xb) = (slice(ta, da), slice(tb, db));
        if xa.is_none() || xa != xb {
            let detail = match (&xa, &xb, ta.get("dtype").and_then(Value::as_str)) {
                (Some(p), Some(q), Some("F32")) => {
                    let f = |b: &[u8]| -> Vec<f32> {
                        b.chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect()
                    };
                    let (p, q) = (f(p), f(q));
                    let n = p
                        .iter()
                        .zip(&q)
                        .filter(|(x, y)| x.to_bits() != y.to_bits())
                        .count();
                    let d = p
                        .iter()
                        .zip(&q)
                        .map(|(x, y)| f64::from((x - y).abs()))
                        .fold(0f64, f64::max);
                    format!(": {n} of {} values, largest difference {d:.3e}", p.len())
                }
                _ => String::new(),
            };
            differs.push(format!("tensor `{name}`{detail}"));
        }
    }
    let meta = |h: &serde_json::Map<String, Value>| -> BTreeMap<String, String> {
        h.get("__metadata__")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (ma, mb) = (meta(ha), meta(hb));
    let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    for key in keys {
        let (va, vb) = (ma.get(key), mb.get(key));
        if va == vb {
            continue;
        }
        match key.as_str() {
            "ferbayes.machine" => {
                same_but.insert("the machine it trained on".to_owned());
            }
            "ferbayes.history" => {
                let parse = |v: Option<&String>| {
                    v.and_then(|s| serde_json::from_str::<Value>(s).ok())
                        .map(|v| without(v, &["seconds"]))
                };
                if parse(va).is_some() && parse(va) == parse(vb) {
                    same_but.insert("the history's training seconds".to_owned());
                } else {
                    differs.push("metadata `ferbayes.history`".to_owned());
                }
            }
            _ => differs.push(format!("metadata `{key}`")),
        }
    }
    if !differs.is_empty() {
        return Ok(Verdict::Differs(differs.join("; ")));
    }
    if same_but.is_empty() {
        same_but.insert("the order of the metadata keys".to_owned());
    }
    Ok(Verdict::SameData(format!(
        "{tensors} tensors byte-identical; metadata differs only in {}",
        same_but.into_iter().collect::<Vec<_>>().join(" and ")
    )))
}

/// `value` with every object key in `keys` removed, at any depth.
fn without(value: Value, keys: &[&str]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| !keys.contains(&k.as_str()))
                .map(|(k, v)| (k, without(v, keys)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| without(v, keys)).collect()),
        other => other,
    }
}

/// Field by field, leaving out times, paths, the machine, and the input hashes (and key) of
/// inputs whose data compared equal in `done`.
fn compare_manifest(a: &[u8], b: &[u8], done: &[Compared]) -> Verdict {
    let (Ok(ja), Ok(jb)) = (
        serde_json::from_slice::<Value>(a),
        serde_json::from_slice::<Value>(b),
    ) else {
        return Verdict::Differs("unreadable manifest".into());
    };
    // Input names are relative to the profile folder; the compared files to the compared
    // folders (the profile folders, or a folder above them).
    let verdict_of = |input: &str| {
        done.iter()
            .find(|c| c.file == input || c.file.ends_with(&format!("/{input}")))
            .map(|c| c.verdict.same())
    };
    let mut notes = BTreeSet::new();
    let mut differs = Vec::new();
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            for k in [
                "started",
                "finished",
                "inputs",
                "machine",
                "key",
                "input_hashes",
            ] {
                m.remove(k);
            }
            if let Some(s) = m.get_mut("settings").and_then(Value::as_object_mut) {
                s.remove("seconds");
                s.remove("trained_on");
            }
        }
        v
    };
    if strip(&ja) != strip(&jb) {
        let (sa, sb) = (strip(&ja), strip(&jb));
        let fields: Vec<String> = sa
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, v)| sb.get(k.as_str()) != Some(*v))
                    .map(|(k, _)| format!("`{k}`"))
                    .collect()
            })
            .unwrap_or_default();
        differs.push(format!("fields {}", fields.join(", ")));
    }
    for k in ["started", "finished"] {
        if ja.get(k) != jb.get(k) {
            notes.insert("times");
        }
    }
    let seconds = |j: &Value| j.get("settings").and_then(|s| s.get("seconds")).cloned();
    if seconds(&ja) != seconds(&jb) {
        notes.insert("times");
    }
    if ja.get("inputs") != jb.get("inputs") {
        notes.insert("artifact paths");
    }
    if ja.get("machine") != jb.get("machine") {
        notes.insert("the machine");
    }
    let trained = |j: &Value| j.get("settings").and_then(|s| s.get("trained_on")).cloned();
    if trained(&ja) != trained(&jb) {
        notes.insert("the machine");
    }
    // Input hashes: a differing one is explained when that input's data compared equal.
    let hashes = |j: &Value| -> BTreeMap<String, Value> {
        j.get("input_hashes")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|h| Some((h.get("file")?.as_str()?.to_owned(), h.clone())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (ha, hb) = (hashes(&ja), hashes(&jb));
    let mut explained = false;
    for file in ha.keys().chain(hb.keys()).collect::<BTreeSet<_>>() {
        if ha.get(file) == hb.get(file) {
            continue;
        }
        if ha.contains_key(file) && hb.contains_key(file) && verdict_of(file) == Some(true) {
            explained = true;
            notes.insert("hashes of inputs whose data are equal");
        } else {
            differs.push(format!("input hash of {file}"));
        }
    }
    // The key hashes the settings, versions and input hashes: when those compared equal or
    // explained, a differing key follows from the explained input hashes, and only then.
    if ja.get("key") != jb.get("key") && differs.is_empty() && !explained {
        differs.push("key".into());
    }
    if !differs.is_empty() {
        return Verdict::Differs(differs.join("; "));
    }
    Verdict::SameData(format!(
        "differs only in {}",
        notes.into_iter().collect::<Vec<_>>().join(", ")
    ))
}

/// The report `ferbayes-compare` prints: counts, the files whose bytes differ grouped by why,
/// and every file whose data differ. Returns the text and whether all data are equal.
pub fn report(a: &Path, b: &Path, results: &[Compared]) -> (String, bool) {
    let identical = results
        .iter()
        .filter(|c| c.verdict == Verdict::Identical)
        .count();
    let mut same: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut differ = Vec::new();
    for c in results {
        match &c.verdict {
            Verdict::Identical => {}
            Verdict::SameData(why) => same.entry(why).or_default().push(&c.file),
            Verdict::Differs(what) => differ.push(format!("  {}: {what}", c.file)),
        }
    }
    let mut text = format!(
        "{} files compared ({} and {}): {identical} byte-identical, {} the same data, {} differ\n",
        results.len(),
        a.display(),
        b.display(),
        same.values().map(Vec::len).sum::<usize>(),
        differ.len()
    );
    for (why, files) in &same {
        text.push_str(&format!(
            "same data, bytes differ ({} files; {why}): {}{}\n",
            files.len(),
            files.iter().take(3).copied().collect::<Vec<_>>().join(", "),
            if files.len() > 3 { ", ..." } else { "" }
        ));
    }
    if !differ.is_empty() {
        text.push_str("DIFFERENT DATA:\n");
        for line in &differ {
            text.push_str(line);
            text.push('\n');
        }
    }
    (text, differ.is_empty())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float32Array, StringArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn table(path: &Path, probs: &[f32], seconds: &[f32]) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("image", DataType::Utf8, false),
            Field::new("probs", DataType::Float32, false),
            Field::new("seconds", DataType::Float32, false),
        ]));
        let names: Vec<String> = (0..probs.len()).map(|i| format!("f{i}")).collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(names)),
                Arc::new(Float32Array::from(probs.to_vec())),
                Arc::new(Float32Array::from(seconds.to_vec())),
            ],
        )
        .expect("batch");
        crate::io::write_parquet(path, &schema, [batch], 3)
            .expect("write")
            .commit()
            .expect("commit");
    }

    /// A safetensors file by hand: one f32 tensor and the given metadata, keys in this order.
    fn weights(values: &[f32], meta: &[(&str, &str)]) -> Vec<u8> {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let meta: Vec<String> = meta
            .iter()
            .map(|(k, v)| format!("{}:{}", Value::from(*k), Value::from(*v)))
            .collect();
        let header = format!(
            "{{\"__metadata__\":{{{}}},\"w\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[0,{}]}}}}",
            meta.join(","),
            values.len(),
            data.len()
        );
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn tables_weights_and_manifests_are_told_apart_by_what_differs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for root in [&a, &b] {
            std::fs::create_dir_all(root.join("t")).expect("mkdir");
            std::fs::write(root.join("report.md"), "same").expect("write");
            std::fs::write(
                root.join("t/report.html"),
                format!(
                    "<a>Appendix: machines</a> body <h2>Appendix: machines</h2> {}",
                    root.display()
                ),
            )
            .expect("write");
            std::fs::write(root.join(".lock"), root.display().to_string()).expect("write");
        }
        // Equal data, other timings.
        table(&a.join("t/history.parquet"), &[0.25, 0.5], &[1.0, 2.0]);
        table(&b.join("t/history.parquet"), &[0.25, 0.5], &[1.5, 2.0]);
        // Other values: one row, by 2^-23 relative.
        table(&a.join("t/test.parquet"), &[0.25, 0.5], &[0.0, 0.0]);
        table(
            &b.join("t/test.parquet"),
            &[0.25, 0.500_000_06],
            &[0.0, 0.0],
        );
        let hist = |s: f64| format!("[{{\"epoch\":1,\"valid_loss\":0.5,\"seconds\":{s}}}]");
        let (h1, h2) = (hist(1.0), hist(3.0));
        std::fs::write(
            a.join("t/member-00.safetensors"),
            weights(
                &[1.0, 2.0],
                &[("ferbayes.history", &h1), ("ferbayes.complete", "true")],
            ),
        )
        .expect("write");
        std::fs::write(
            b.join("t/member-00.safetensors"),
            weights(
                &[1.0, 2.0],
                &[("ferbayes.complete", "true"), ("ferbayes.history", &h2)],
            ),
        )
        .expect("write");
        std::fs::write(a.join("t/member-01.safetensors"), weights(&[1.0, 2.0], &[]))
            .expect("write");
        std::fs::write(b.join("t/member-01.safetensors"), weights(&[1.0, 2.5], &[]))
            .expect("write");
        let manifest = |root: &Path, started: u64, hash: &str| {
            serde_json::json!({
                "stage": "infer", "started": started, "finished": started + 1,
                "inputs": [root.join("t/member-00.safetensors")],
                "input_hashes": [{"file": "t/member-00.safetensors", "sha256": hash, "bytes": 1}],
                "key": hash, "settings": {"samples": 3, "seconds": started},
            })
        };
        std::fs::write(
            a.join("t/manifest.json"),
            manifest(&a, 10, "aa").to_string(),
        )
        .expect("write");
        std::fs::write(
            b.join("t/manifest.json"),
            manifest(&b, 20, "bb").to_string(),
        )
        .expect("write");
        std::fs::write(b.join("extra.txt"), "new").expect("write");
        // A key that differs with nothing to explain it (same settings and input hashes).
        for (root, key) in [(&a, "k1"), (&b, "k2")] {
            std::fs::create_dir_all(root.join("u")).expect("mkdir");
            let m = serde_json::json!({"stage": "ingest", "key": key, "input_hashes": []});
            std::fs::write(root.join("u/manifest.json"), m.to_string()).expect("write");
        }

        let got = compare_trees(&a, &b).expect("compare");
        let verdict = |f: &str| {
            got.iter()
                .find(|c| c.file == f)
                .map(|c| c.verdict.clone())
                .unwrap_or_else(|| panic!("{f} not compared: {got:?}"))
        };
        assert!(!got.iter().any(|c| c.file.contains(".lock")), "{got:?}");
        assert_eq!(verdict("report.md"), Verdict::Identical);
        assert_eq!(
            verdict("t/report.html"),
            Verdict::SameData("differs only in its machines appendix".into())
        );
        assert_eq!(
            verdict("t/history.parquet"),
            Verdict::SameData("timing only: column `seconds`".into())
        );
        let Verdict::Differs(what) = verdict("t/test.parquet") else {
            panic!("values differ");
        };
        assert!(
            what.contains("column `probs`: 1 of 2 rows") && what.contains("5.960e-8"),
            "{what}"
        );
        let Verdict::SameData(why) = verdict("t/member-00.safetensors") else {
            panic!("same tensors");
        };
        assert!(why.contains("training seconds"), "{why}");
        let Verdict::Differs(what) = verdict("t/member-01.safetensors") else {
            panic!("a tensor differs");
        };
        assert!(
            what.contains("1 of 2 values, largest difference 5.000e-1"),
            "{what}"
        );
        // The manifest's input hash differs, but that input's data are equal.
        let Verdict::SameData(why) = verdict("t/manifest.json") else {
            panic!("manifest differs only in explained fields: {got:?}");
        };
        assert!(
            why.contains("times") && why.contains("artifact paths") && why.contains("hashes"),
            "{why}"
        );
        assert!(matches!(verdict("extra.txt"), Verdict::Differs(w) if w.contains("only in")));
        assert_eq!(verdict("u/manifest.json"), Verdict::Differs("key".into()));

        let (text, ok) = report(&a, &b, &got);
        assert!(!ok);
        assert!(
            text.contains("9 files compared")
                && text.contains("1 byte-identical")
                && text.contains("4 the same data, 4 differ"),
            "{text}"
        );
        assert!(
            text.contains("t/member-01.safetensors: tensor `w`"),
            "{text}"
        );
    }
}
