//! The device ops against candle's own ops (the BatchNorm, convolution and dropout ops are
//! checked through the layers and whole networks in ferbayes-models).

use candle_core::{DType, Device, Tensor, Var};

use super::bias_relu::ChannelSums;
use super::*;
use crate::testing::{close, grads_of, rel_close, same_bits, to_vec, uniform};

/// The loss and its gradient against candle-nn's `log_softmax` with `nll`, and against
/// `-(t · log_softmax).sum(1).mean(0)` for soft targets (rows of total mass 1 and below).
#[test]
fn cross_entropy_matches_log_softmax_and_nll() {
    let (n, k) = (5, 8);
    let logits = Var::from_tensor(&(uniform(&[n, k], 1) * 3.0).expect("x")).expect("v");
    let classes = Tensor::new(&[3u32, 0, 7, 7, 2], &Device::Cpu).expect("y");
    let ours = cross_entropy(logits.as_tensor(), &classes, Target::Classes).expect("ours");
    let lp = candle_nn::ops::log_softmax(logits.as_tensor(), 1).expect("lsm");
    let theirs = candle_nn::loss::nll(&lp, &classes).expect("nll");
    close("classes: loss", &ours, &theirs);
    let one = Tensor::ones((), DType::F32, &Device::Cpu).expect("1");
    let g = grads_of(&ours, &one, &[logits.as_tensor()]);
    let r = grads_of(&theirs, &one, &[logits.as_tensor()]);
    rel_close("classes: gradient", &g[0], &r[0]);

    let raw = (uniform(&[n, k], 2) + 1.0).expect("t");
    let mass = Tensor::new(&[[1f32], [1.0], [0.5], [1.0], [0.25]], &Device::Cpu).expect("m");
    let soft = raw
        .broadcast_div(&raw.sum_keepdim(1).expect("sum"))
        .and_then(|t| t.broadcast_mul(&mass))
        .expect("soft");
    let ours = cross_entropy(logits.as_tensor(), &soft, Target::Soft).expect("ours");
    let theirs = (&soft * &lp)
        .and_then(|t| t.sum(1))
        .and_then(|t| t.mean(0))
        .and_then(|t| t.neg())
        .expect("reference");
    close("soft: loss", &ours, &theirs);
    let g = grads_of(&ours, &one, &[logits.as_tensor()]);
    let r = grads_of(&theirs, &one, &[logits.as_tensor()]);
    rel_close("soft: gradient", &g[0], &r[0]);
    assert!(cross_entropy(logits.as_tensor(), &soft, Target::Classes).is_err());
}

/// `bias_relu` is candle's `broadcast_add` then `relu` bit for bit, gradients included, with
/// pre-activations of exactly 0 (where candle's `relu` passes the gradient).
#[test]
fn bias_relu_is_add_then_relu() {
    let (b, c, s) = (3, 4, 5);
    let bias = Var::from_tensor(&uniform(&[c], 3)).expect("b");
    let mut x = to_vec(&uniform(&[b, c, s, 1], 4));
    let bv = to_vec(bias.as_tensor());
    for i in (0..x.len()).step_by(7) {
        x[i] = -bv[(i / s) % c];
    }
    let x =
        Var::from_tensor(&Tensor::from_vec(x, (b, c, s, 1), &Device::Cpu).expect("x")).expect("v");
    let ours = bias_relu(x.as_tensor(), bias.as_tensor()).expect("ours");
    let theirs = x
        .as_tensor()
        .broadcast_add(&bias.as_tensor().reshape((1, c, 1, 1)).expect("r"))
        .and_then(|t| t.relu())
        .expect("theirs");
    same_bits("values", &ours, &theirs);
    let up = uniform(&[b, c, s, 1], 5);
    let vars = [x.as_tensor(), bias.as_tensor()];
    let (g, r) = (grads_of(&ours, &up, &vars), grads_of(&theirs, &up, &vars));
    same_bits("input gradient", &g[0], &r[0]);
    close("bias gradient", &g[1], &r[1]);
}

/// `cat_dropout(a, b)` is `cat(a, dropout(b))` bit for bit, values and both gradients, for a
/// packed pair of members.
#[test]
fn cat_dropout_is_dropout_then_cat() {
    let streams: Vec<MaskStream> = (0..2)
        .map(|g| MaskStream {
            key: [g + 1, 2, 3, 4, 5, 6, 7, 8],
            stream: 0,
            word: 16 * g as u128 + 5,
        })
        .collect();
    let a = Var::from_tensor(&uniform(&[4, 3, 2, 2], 6)).expect("a");
    let b = Var::from_tensor(&uniform(&[4, 2, 2, 2], 7)).expect("b");
    let ours = cat_dropout(a.as_tensor(), b.as_tensor(), &streams, 0.7).expect("ours");
    let dropped = dropout(b.as_tensor(), &streams, 0.7).expect("dropout");
    let theirs = Tensor::cat(&[a.as_tensor(), &dropped], 1).expect("cat");
    same_bits("values", &ours, &theirs);
    let up = uniform(ours.dims(), 8);
    let vars = [a.as_tensor(), b.as_tensor()];
    let (g, r) = (grads_of(&ours, &up, &vars), grads_of(&theirs, &up, &vars));
    same_bits("first input gradient", &g[0], &r[0]);
    same_bits("second input gradient", &g[1], &r[1]);
    let kept = to_vec(&dropped).iter().filter(|&&v| v != 0.0).count();
    assert!(kept > 0 && kept < 32, "{kept} of 32 kept");
}

/// The channel sums (the bias gradient) against candle's sums, over more than one chunk.
#[test]
fn channel_sums_match_candle() {
    let x = uniform(&[3, 2, 30, 20], 9);
    let ours = x.apply_op1_no_bwd(&ChannelSums).expect("ours");
    let theirs = x
        .sum_keepdim(0)
        .and_then(|t| t.sum_keepdim(2))
        .and_then(|t| t.sum_keepdim(3))
        .and_then(|t| t.flatten_all())
        .expect("theirs");
    close("sums", &ours, &theirs);
}
