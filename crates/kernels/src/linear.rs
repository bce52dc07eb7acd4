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
use super::gemm::{Sums, View, sgemm};

/// `x` (B, in) times `w` (out, in) transposed, plus `b` (out).
///
/// With `members` > 1, packed (see [`crate::members`]): `x` (G·B, in), `w` (G·out, in),
/// `b` (G·out), member g's block of rows through member g's weights.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor, members: usize) -> candle_core::Result<Tensor> {
    let op = Linear {
        members: members.max(1),
        sums: Sums::for_inputs(&[Some(x), Some(w), Some(b)]),
    };
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, op)
}

/// (B, in, out) of a (B, in) input and an (out, in) weight.
fn dims(x: &Layout, w: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    match (x.dims(), w.dims()) {
        (&[n, i], &[o, i2]) if i == i2 => Ok((n, i, o)),
        (xd, wd) => candle_core::bail!("ferbayes linear: input {xd:?}, weight {wd:?}"),
    }
}

#[derive(Clone, Copy, Debug)]
struct Linear {
    members: usize,
    /// How the forward product sums: batch-independent when no input tracks gradients.
    sums: Sums,
}

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
        let m = self.members;
        if b.len() != o || n % m != 0 || o % m != 0 {
            candle_core::bail!(
                "ferbayes linear: input {:?}, weight {:?}, bias {:?} for {m} members",
                l1.dims(),
                l2.dims(),
                l3.dims()
            );
        }
        // One member's rows and outputs.
        let (nb, ob) = (n / m, o / m);
        let mut y = vec![0f32; n * ob];
        for (g, yg) in y.chunks_exact_mut((nb * ob).max(1)).enumerate() {
            let (xg, wg, bg) = (
                &x[g * nb * i..(g + 1) * nb * i],
                &w[g * ob * i..(g + 1) * ob * i],
                &b[g * ob..(g + 1) * ob],
            );
            // Wᵀ: element (r, c) = w[c·in + r].
            let xv = View {
                data: xg,
                rs: i,
                cs: 1,
            };
            let wt = View {
                data: wg,
                rs: 1,
                cs: i,
            };
            self.sums.sgemm(nb, ob, i, xv, wt, yg, ob, false, true);
            for row in yg.chunks_exact_mut(ob.max(1)) {
                row.iter_mut().zip(bg).for_each(|(v, &c)| *v += c);
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((n, ob))))
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
        let members = self.members;
        let run = |what: What, a: &Tensor, b: &Tensor| -> candle_core::Result<Tensor> {
            a.apply_op2_no_bwd(b, &LinearBwd { what, members })
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
    members: usize,
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
        let m = self.members;
        let (&[n, o], &[r2, i]) = (l1.dims(), l2.dims()) else {
            candle_core::bail!("ferbayes linear bwd: {:?} and {:?}", l1.dims(), l2.dims());
        };
        // One member's rows and outputs; `other` is the weight (G·out, in) or the input (G·B, in).
        let (nb, ob) = (n / m, o);
        let want = match self.what {
            What::Input => m * ob,
            What::Weight => n,
            What::Bias => n,
        };
        if n % m != 0 || r2 != want {
            candle_core::bail!("ferbayes linear bwd: grad {n}x{o}, other {r2}x{i}, {m} members");
        }
        match self.what {
            What::Input => {
                let mut dx = vec![0f32; n * i];
                for (g, dxg) in dx.chunks_exact_mut((nb * i).max(1)).enumerate() {
                    let dyv = View {
                        data: &dy[g * nb * o..(g + 1) * nb * o],
                        rs: o,
                        cs: 1,
                    };
                    let wv = View {
                        data: &other[g * ob * i..(g + 1) * ob * i],
                        rs: i,
                        cs: 1,
                    };
                    sgemm(nb, i, o, dyv, wv, dxg, i, false, true);
                }
                Ok((CpuStorage::F32(dx), Shape::from((n, i))))
            }
            What::Weight => {
                let mut dw = vec![0f32; m * o * i];
                for (g, dwg) in dw.chunks_exact_mut((o * i).max(1)).enumerate() {
                    let dyv = View {
                        data: &dy[g * nb * o..(g + 1) * nb * o],
                        rs: o,
                        cs: 1,
                    };
                    // candle's order: xᵀ·dy (in, out), then transposed into (out, in).
                    let mut t = vec![0f32; i * o];
                    let xt = View {
                        data: &other[g * nb * i..(g + 1) * nb * i],
                        rs: 1,
                        cs: i,
                    };
                    sgemm(i, o, nb, xt, dyv, &mut t, o, false, true);
                    for (r, row) in dwg.chunks_exact_mut(i.max(1)).enumerate() {
                        row.iter_mut()
                            .zip(t.iter().skip(r).step_by(o))
                            .for_each(|(d, &v)| *d = v);
                    }
                }
                Ok((CpuStorage::F32(dw), Shape::from((m * o, i))))
            }
            What::Bias => {
                let mut db = vec![0f32; m * o];
                for (g, dbg) in db.chunks_exact_mut(o.max(1)).enumerate() {
                    for row in dy[g * nb * o..(g + 1) * nb * o].chunks_exact(o.max(1)) {
                        dbg.iter_mut().zip(row).for_each(|(d, &v)| *d += v);
                    }
                }
                Ok((CpuStorage::F32(db), Shape::from(m * o)))
            }
        }
    }
}
