//! Member files: the per-epoch resume checkpoints (`.resume/member-NN.safetensors`), the
//! finished weights with their metadata (fingerprint, history, where they trained), and
//! safetensors reading and writing.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use ferbayes_core::{Arch, Layout, Method};

use crate::EpochRecord;
use crate::error::{Result, TrainError};
use crate::fingerprint::MemberJob;
use crate::network::Network;

/// Metadata keys of member weight and checkpoint files.
pub(crate) const META_FINGERPRINT: &str = "ferbayes.fingerprint";
pub(crate) const META_EPOCHS: &str = "ferbayes.epochs_done";
pub(crate) const META_STEP: &str = "ferbayes.step";
pub(crate) const META_HISTORY: &str = "ferbayes.history";
pub(crate) const META_COMPLETE: &str = "ferbayes.complete";
/// Where a finished member trained (`core::machine::Machine::summary`): shards of one run may
/// train on other machines than the run that writes the combination's manifest.
pub(crate) const META_MACHINE: &str = "ferbayes.machine";

/// A member's state after its last completed epoch, from its checkpoint.
#[derive(Debug)]
pub(crate) struct Resume {
    /// Weights and optimiser state, under the member's own names.
    pub(crate) tensors: HashMap<String, Tensor>,
    pub(crate) epochs_done: usize,
    pub(crate) step: u64,
    pub(crate) history: Vec<EpochRecord>,
}

impl MemberJob {
    /// Removes the member's checkpoint once its final weights are written.
    pub(crate) fn remove_checkpoint(&self) -> Result<()> {
        if self.checkpoint.is_file() {
            std::fs::remove_file(&self.checkpoint)
                .map_err(|e| ferbayes_core::Error::io(&self.checkpoint, e))?;
        }
        Ok(())
    }

    /// The member's checkpoint, if one made with the same fingerprint is readable.
    pub(crate) fn resume(&self, device: &Device) -> Option<Resume> {
        let path = &self.checkpoint;
        if !path.is_file() {
            return None;
        }
        match read_safetensors(path, device) {
            Ok((tensors, meta)) if meta.get(META_FINGERPRINT) == Some(&self.fingerprint) => {
                let parse = |key: &str| meta.get(key).and_then(|v| v.parse::<u64>().ok());
                let (Some(epochs), Some(step)) = (parse(META_EPOCHS), parse(META_STEP)) else {
                    tracing::warn!("{}: metadata incomplete; starting afresh", path.display());
                    return None;
                };
                let history = meta
                    .get(META_HISTORY)
                    .and_then(|h| serde_json::from_str(h).ok())
                    .unwrap_or_default();
                Some(Resume {
                    tensors,
                    epochs_done: epochs as usize,
                    step,
                    history,
                })
            }
            Ok(_) => {
                tracing::info!(
                    "{}: made with other settings; starting member {:02} afresh",
                    path.display(),
                    self.member
                );
                None
            }
            Err(e) => {
                tracing::warn!("ignoring unreadable checkpoint: {e}");
                None
            }
        }
    }
}

/// A safetensors file's tensors and metadata.
pub(crate) fn read_safetensors(
    path: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| ferbayes_core::Error::io(path, e))?;
    let bad = |message: String| TrainError::Checkpoint {
        path: path.to_owned(),
        message,
    };
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
    Ok((tensors, metadata))
}

/// Writes tensors with metadata atomically.
pub(crate) fn write_safetensors(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let mut named: Vec<(&String, &Tensor)> = tensors.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    let bytes =
        safetensors::serialize(named, Some(metadata)).map_err(|e| TrainError::Checkpoint {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    ferbayes_core::io::write_atomic(path, &bytes)?;
    Ok(())
}

/// The histories recorded in every member of an up-to-date combination (None if one is
/// unreadable, and the combination is then trained as usual).
pub(crate) fn finished_history(
    layout: &Layout,
    arch: Arch,
    method: Method,
    members: usize,
) -> Option<Vec<EpochRecord>> {
    let mut history = Vec::new();
    for m in 0..members {
        let path = layout.member_weights(arch, method, m);
        let bytes = std::fs::read(&path).ok()?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
        let meta = meta.metadata().clone()?;
        if meta.get(META_COMPLETE).map(String::as_str) != Some("true") {
            return None;
        }
        let h: Vec<EpochRecord> = serde_json::from_str(meta.get(META_HISTORY)?).ok()?;
        history.extend(h);
    }
    Some(history)
}

/// Loads a finished member's weights file if its fingerprint matches, returning its history.
pub(crate) fn finished_member(path: &Path, fingerprint: &str) -> Option<Vec<EpochRecord>> {
    if !path.is_file() {
        return None;
    }
    let (_, meta) = read_safetensors(path, &Device::Cpu).ok()?;
    if meta.get(META_FINGERPRINT).map(String::as_str) != Some(fingerprint)
        || meta.get(META_COMPLETE).map(String::as_str) != Some("true")
    {
        return None;
    }
    serde_json::from_str(meta.get(META_HISTORY)?).ok()
}

/// The metadata of a safetensors file, reading only its header (the 8-byte length and the JSON
/// it gives), not the tensors.
pub(crate) fn header_metadata(path: &Path) -> Option<HashMap<String, String>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    // safetensors' own bound on a header: 100 MB.
    let len = usize::try_from(u64::from_le_bytes(len))
        .ok()
        .filter(|&n| n <= 100_000_000)?;
    let mut header = vec![0u8; len];
    file.read_exact(&mut header).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&header).ok()?;
    serde_json::from_value(json.get("__metadata__")?.clone()).ok()
}

/// Writes each member's checkpoint after an epoch (weights, optimiser state copied once for the
/// whole pack, history, epoch and step), or its final weights after the last epoch.
pub(crate) fn save_pack(
    net: &Network,
    jobs: &[MemberJob],
    histories: &[Vec<EpochRecord>],
    (epoch, last): (usize, bool),
    machine: &str,
) -> Result<()> {
    let mut states = if last {
        Vec::new()
    } else {
        net.member_states()?
    }
    .into_iter();
    for (g, job) in jobs.iter().enumerate() {
        let mut tensors = net.member_weights(g)?;
        let mut meta = HashMap::from([
            (META_FINGERPRINT.to_owned(), job.fingerprint.clone()),
            (
                META_HISTORY.to_owned(),
                serde_json::to_string(&histories[g]).unwrap_or_default(),
            ),
        ]);
        if last {
            meta.insert(META_COMPLETE.to_owned(), "true".to_owned());
            meta.insert(META_MACHINE.to_owned(), machine.to_owned());
            write_safetensors(&job.weights, &tensors, meta)?;
        } else {
            tensors.extend(states.next().unwrap_or_default());
            meta.insert(META_EPOCHS.to_owned(), (epoch + 1).to_string());
            meta.insert(META_STEP.to_owned(), net.optimizer.step.to_string());
            write_safetensors(&job.checkpoint, &tensors, meta)?;
        }
    }
    Ok(())
}
