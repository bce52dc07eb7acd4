//! Packed networks: the N members of an ensemble (or any N networks of one shape)
//! run as one network whose every op does all members' work in one call.
//!
//! Layout: member-major blocks. A packed activation is (G·B, ...): member g's B
//! samples are rows g·B..(g+1)·B, so each member's block is contiguous and an op
//! on it is exactly the op of that member alone. A packed parameter stacks the
//! members' own tensors on dim 0: a conv weight (G·Cout, Cin, kh, kw), a linear
//! weight (G·out, in), a bias or BatchNorm vector (G·C). Ops that act per sample
//! (ReLU, pooling, DenseNet's concatenation, the dropout product) need no change;
//! convolution, BatchNorm in training and the fully connected layers take a
//! `members` count and run each member's block on the kernels of one network,
//! the blocks in parallel. Each member's values and gradients are therefore bit
//! for bit those of the member alone.

use candle_core::Tensor;

/// The dims of one member's block of a packed tensor with `members` blocks on dim 0.
pub fn block_dims(dims: &[usize], members: usize) -> candle_core::Result<Vec<usize>> {
    match dims.first() {
        Some(&n) if members > 0 && n % members == 0 => {
            let mut block = dims.to_vec();
            block[0] = n / members;
            Ok(block)
        }
        _ => candle_core::bail!(
            "ferbayes packed op: dims {dims:?} do not split into {members} members"
        ),
    }
}

/// `f` applied to each member's blocks and the results stacked on dim 0: `xs` are
/// packed activations (split on dim 0 into `members` blocks of samples), `params` and
/// `bias` packed parameters (split on dim 0 into `members` blocks). With one member,
/// `f` of the tensors themselves. The generic (any device, any op) form of a packed
/// op: G ops and a concatenation, where the fused kernels do one op.
pub fn per_member(
    members: usize,
    xs: &[&Tensor],
    params: &[&Tensor],
    bias: Option<&Tensor>,
    f: impl Fn(&[&Tensor], &[&Tensor], Option<&Tensor>) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Tensor> {
    if members <= 1 {
        return f(xs, params, bias);
    }
    let block = |t: &Tensor, g: usize| -> candle_core::Result<Tensor> {
        let n = block_dims(t.dims(), members)?[0];
        t.narrow(0, g * n, n)
    };
    let mut out = Vec::with_capacity(members);
    for g in 0..members {
        let xs: Vec<Tensor> = xs
            .iter()
            .map(|t| block(t, g))
            .collect::<candle_core::Result<_>>()?;
        let ps: Vec<Tensor> = params
            .iter()
            .map(|t| block(t, g))
            .collect::<candle_core::Result<_>>()?;
        let b = bias.map(|t| block(t, g)).transpose()?;
        let xr: Vec<&Tensor> = xs.iter().collect();
        let pr: Vec<&Tensor> = ps.iter().collect();
        out.push(f(&xr, &pr, b.as_ref())?);
    }
    Tensor::cat(&out, 0)
}
