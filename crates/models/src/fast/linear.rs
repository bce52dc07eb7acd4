//! Fully connected layer `y = x·Wᵀ + b` on the same gemm as candle's matmul, but
//! split over rayon's threads: with candle's thread count at 1 (see
//! `crate::runtime`) its matmul runs single-threaded, ~5 % of a cpu-profile
//! AlexNet training step for the three FC layers. The arithmetic is candle's:
//! one gemm per product (each output summed over the inner dimension in the
//! same order), the bias added in a separate pass (as `broadcast_add`) and its
//! gradient summed over the batch from 0 in order, so values and gradients are
//! bit for bit those of `x.matmul(&w.t())?.broadcast_add(&b)` (tested).

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::contiguous_f32;
use super::gemm::{View, sgemm};

/// `x` (B, in) times `w` (out, in) transposed, plus `b` (out).
pub(crate) fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, Linear)
}

/// (B, in, out) of a (B, in) input and an (out, in) weight.
fn dims(x: &Layout, w: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    match (x.dims(), w.dims()) {
        (&[n, i], &[o, i2]) if i == i2 => Ok((n, i, o)),
        (xd, wd) => candle_core::bail!("ferbayes linear: input {xd:?}, weight {wd:?}"),
    }
}

#[derive(Clone, Copy, Debug)]
struct Linear;

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "ferbayes-fast-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w, b) = (
            contiguous_f32(s1, l1)?,
            contiguous_f32(s2, l2)?,
            contiguous_f32(s3, l3)?,
        );
        let (n, i, o) = dims(l1, l2)?;
        if b.len() != o {
            candle_core::bail!("ferbayes linear: bias {:?} for {o} outputs", l3.dims());
        }
        let mut y = vec![0f32; n * o];
        // Wᵀ: element (r, c) = w[c·in + r].
        let xv = View {
            data: x,
            rs: i,
            cs: 1,
        };
        let wt = View {
            data: w,
            rs: 1,
            cs: i,
        };
        sgemm(n, o, i, xv, wt, &mut y, o, false, true);
        for row in y.chunks_exact_mut(o.max(1)) {
            row.iter_mut().zip(b).for_each(|(v, &c)| *v += c);
        }
        Ok((CpuStorage::F32(y), Shape::from((n, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let run = |what: What, a: &Tensor, b: &Tensor| -> candle_core::Result<Tensor> {
            a.apply_op2_no_bwd(b, &LinearBwd { what })
        };
        let dx = if x.track_op() {
            Some(run(What::Input, &grad, &w.contiguous()?)?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(run(What::Weight, &grad, &x.contiguous()?)?)
        } else {
            None
        };
        let db = if b.track_op() {
            Some(run(What::Bias, &grad, &grad)?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

#[derive(Clone, Copy, Debug)]
enum What {
    /// (dy, w) -> dx = dy·W
    Input,
    /// (dy, x) -> dW = (xᵀ·dy)ᵀ
    Weight,
    /// (dy, dy) -> db = Σ over the batch
    Bias,
}

#[derive(Clone, Copy, Debug)]
struct LinearBwd {
    what: What,
}

impl candle_core::CustomOp2 for LinearBwd {
    fn name(&self) -> &'static str {
        "ferbayes-fast-linear-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (dy, other) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let &[n, o] = l1.dims() else {
            candle_core::bail!("ferbayes linear bwd: grad {:?}", l1.dims());
        };
        let dyv = View {
            data: dy,
            rs: o,
            cs: 1,
        };
        match self.what {
            What::Input => {
                let &[o2, i] = l2.dims() else {
                    candle_core::bail!("ferbayes linear bwd: weight {:?}", l2.dims());
                };
                if o2 != o {
                    candle_core::bail!("ferbayes linear bwd: grad {n}x{o}, weight {o2}x{i}");
                }
                let mut dx = vec![0f32; n * i];
                let wv = View {
                    data: other,
                    rs: i,
                    cs: 1,
                };
                sgemm(n, i, o, dyv, wv, &mut dx, i, false, true);
                Ok((CpuStorage::F32(dx), Shape::from((n, i))))
            }
            What::Weight => {
                let &[n2, i] = l2.dims() else {
                    candle_core::bail!("ferbayes linear bwd: input {:?}", l2.dims());
                };
                if n2 != n {
                    candle_core::bail!("ferbayes linear bwd: grad {n}x{o}, input {n2}x{i}");
                }
                // candle's order: xᵀ·dy (in, out), then transposed into (out, in).
                let mut t = vec![0f32; i * o];
                let xt = View {
                    data: other,
                    rs: 1,
                    cs: i,
                };
                sgemm(i, o, n, xt, dyv, &mut t, o, false, true);
                let mut dw = vec![0f32; o * i];
                for (r, row) in dw.chunks_exact_mut(i.max(1)).enumerate() {
                    row.iter_mut()
                        .zip(t.iter().skip(r).step_by(o))
                        .for_each(|(d, &v)| *d = v);
                }
                Ok((CpuStorage::F32(dw), Shape::from((o, i))))
            }
            What::Bias => {
                let mut db = vec![0f32; o];
                for row in dy.chunks_exact(o.max(1)) {
                    db.iter_mut().zip(row).for_each(|(d, &v)| *d += v);
                }
                Ok((CpuStorage::F32(db), Shape::from(o)))
            }
        }
    }
}
