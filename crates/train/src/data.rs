//! Training and validation data from the ingest Parquet, preprocessed once to network input.

use std::path::Path;

use candle_core::{Device, Tensor};
use ferbayes_core::schema::rows::FaceRow;
use ferbayes_core::{LabelMode, NUM_CLASSES};
use ferbayes_models::preprocess;

use crate::error::{Result, TrainError};

/// Faces ready for a network: inputs in [0, 1] at the network's size, with their targets.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Side of each input.
    pub input_size: usize,
    /// `len · input_size²` values, face after face.
    pub inputs: Vec<f32>,
    /// Majority class of each face (faces without one are not in a majority-mode dataset;
    /// in the soft modes it is `u8::MAX` for faces without a majority label).
    pub majority: Vec<u8>,
    /// FER+ soft target of each face (all zero when absent; only the soft modes use it).
    pub soft: Vec<[f32; NUM_CLASSES]>,
}

impl Dataset {
    /// Number of faces.
    pub fn len(&self) -> usize {
        self.majority.len()
    }

    /// Whether there are no faces.
    pub fn is_empty(&self) -> bool {
        self.majority.is_empty()
    }

    /// Values per face.
    pub fn face_len(&self) -> usize {
        self.input_size * self.input_size
    }

    /// Reads an ingest split and keeps the faces usable under `mode`: faces with a majority
    /// label for `majority` (and for evaluation), faces with a soft target otherwise.
    pub fn load(path: &Path, mode: LabelMode, input_size: usize) -> Result<Dataset> {
        let faces: Vec<FaceRow> = ferbayes_core::io::read_rows(
            path,
            Some(&["pixels", "majority", "soft"]),
            "just ingest",
        )?;
        let mut data = Dataset {
            input_size,
            inputs: Vec::new(),
            majority: Vec::new(),
            soft: Vec::new(),
        };
        for face in faces {
            let keep = match mode {
                LabelMode::Majority => face.majority.is_some(),
                LabelMode::CrossEntropy | LabelMode::Probability => face.soft.is_some(),
            };
            if !keep {
                continue;
            }
            data.inputs.extend(preprocess(&face.pixels, input_size));
            data.majority.push(face.majority.unwrap_or(u8::MAX));
            data.soft.push(face.soft.unwrap_or([0.0; NUM_CLASSES]));
        }
        if data.is_empty() {
            return Err(TrainError::Data {
                path: path.to_owned(),
                message: format!("no faces usable with label_mode = \"{mode}\""),
            });
        }
        Ok(data)
    }
}

/// The faces of several index lists one after the other: a packed model's input
/// ((G·B, 1, S, S) for G lists of B indices).
pub(crate) fn gather_packed(data: &Dataset, lists: &[&[usize]], device: &Device) -> Result<Tensor> {
    let n = data.face_len();
    let total: usize = lists.iter().map(|l| l.len()).sum();
    let mut values = Vec::with_capacity(total * n);
    for &i in lists.iter().flat_map(|l| l.iter()) {
        values.extend_from_slice(&data.inputs[i * n..(i + 1) * n]);
    }
    Ok(Tensor::from_vec(
        values,
        (total, 1, data.input_size, data.input_size),
        device,
    )?)
}
