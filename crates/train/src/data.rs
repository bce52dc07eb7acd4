//! Training and validation data from the ingest Parquet, preprocessed once to network input.

use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt8Type};
use ferbayes_core::{IMAGE_PIXELS, LabelMode, NUM_CLASSES, schema};
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
        let batches = ferbayes_core::io::read_parquet(
            path,
            &schema::ingest(),
            Some(&["pixels", "majority", "soft"]),
            "just ingest",
        )?;
        let mut data = Dataset {
            input_size,
            inputs: Vec::new(),
            majority: Vec::new(),
            soft: Vec::new(),
        };
        for batch in &batches {
            let pixels = batch.column(0).as_fixed_size_list();
            let majority = batch.column(1).as_primitive::<UInt8Type>();
            let soft = batch.column(2).as_fixed_size_list();
            let pixel_values = pixels.values().as_primitive::<UInt8Type>().values();
            let soft_values = soft.values().as_primitive::<Float32Type>().values();
            for i in 0..batch.num_rows() {
                let keep = match mode {
                    LabelMode::Majority => majority.is_valid(i),
                    LabelMode::CrossEntropy | LabelMode::Probability => soft.is_valid(i),
                };
                if !keep {
                    continue;
                }
                let at = pixels.value_offset_at(i);
                let face = &pixel_values[at..at + IMAGE_PIXELS];
                data.inputs.extend(preprocess(face, input_size));
                data.majority.push(if majority.is_valid(i) {
                    majority.value(i)
                } else {
                    u8::MAX
                });
                let mut target = [0.0; NUM_CLASSES];
                if soft.is_valid(i) {
                    let at = soft.value_offset_at(i);
                    target.copy_from_slice(&soft_values[at..at + NUM_CLASSES]);
                }
                data.soft.push(target);
            }
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
