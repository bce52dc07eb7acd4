//! The valid split's majority-label NLL and accuracy, per member of a packed network.

use candle_core::{DType, Device, Tensor};
use ferbayes_models::{Mode, Model, Noise};

use crate::data::{Dataset, gather_packed};
use crate::error::Result;

/// Faces per forward pass when evaluating.
pub(crate) const EVAL_BATCH: usize = 256;

/// Majority-label NLL and accuracy of the deterministic network on `data`.
pub fn evaluate(model: &Model, data: &Dataset, device: &Device) -> Result<(f64, f64)> {
    Ok(evaluate_packed(model, data, device)?[0])
}

/// [`evaluate`] for every member of a packed model: each sees all of `data`.
///
/// Each pass leaves every face's log-probability of its label and whether the argmax hit it on
/// the device; they are read once at the end and summed on the host in face order.
pub fn evaluate_packed(model: &Model, data: &Dataset, device: &Device) -> Result<Vec<(f64, f64)>> {
    let members = model.members();
    let mut noise: Vec<Noise> = (0..members).map(|_| Noise::new(0)).collect();
    let indices: Vec<usize> = (0..data.len()).collect();
    // About EVAL_BATCH faces per pass whatever the pack size (bounded memory).
    let per_member = EVAL_BATCH.div_ceil(members).max(16);
    let mut passes: Vec<(usize, Tensor)> = Vec::new();
    for batch in indices.chunks(per_member) {
        let lists = vec![batch; members];
        let xs = gather_packed(data, &lists, device)?;
        let logits = model.forward_packed(&xs, Mode::EVAL, &mut noise)?;
        let log_probs = candle_nn::ops::log_softmax(&logits, 1)?;
        let labels: Vec<u32> = (0..members)
            .flat_map(|_| batch.iter().map(|&i| u32::from(data.majority[i])))
            .collect();
        let labels = Tensor::from_slice(&labels, labels.len(), device)?;
        let picked = log_probs.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?;
        let hit = log_probs.argmax(1)?.eq(&labels)?.to_dtype(DType::F32)?;
        passes.push((batch.len(), Tensor::stack(&[picked, hit], 0)?.detach()));
    }
    let mut sums = vec![(0.0f64, 0usize); members];
    if !passes.is_empty() {
        let all: Vec<&Tensor> = passes.iter().map(|(_, t)| t).collect();
        let values: Vec<f32> = Tensor::cat(&all, 1)?.flatten_all()?.to_vec1()?;
        let width = values.len() / 2;
        let (picked, hit) = values.split_at(width);
        let mut at = 0;
        for (len, _) in &passes {
            for (g, sum) in sums.iter_mut().enumerate() {
                for k in at + g * len..at + (g + 1) * len {
                    sum.0 -= f64::from(picked[k]);
                    sum.1 += usize::from(hit[k] > 0.0);
                }
            }
            at += members * len;
        }
    }
    let n = data.len() as f64;
    Ok(sums
        .into_iter()
        .map(|(nll, correct)| (nll / n, correct as f64 / n))
        .collect())
}
