//! 2x2 max pool, stride 2, output size floored (PyTorch's default). The
//! gradient goes to the window's first maximum (row-major), as in PyTorch.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

use super::{contiguous_f32, par_chunks_mut};

/// (planes B·C, H, W) of a 4-d layout.
fn planes(dims: &[usize]) -> candle_core::Result<(usize, usize, usize)> {
    let &[b, c, h, w] = dims else {
        candle_core::bail!("ferbayes max pool: want a 4-d tensor, got {dims:?}");
    };
    Ok((b * c, h, w))
}

/// Planes per parallel job: about 16k input elements.
fn per_job(h: usize, w: usize) -> usize {
    (16384 / (h * w).max(1)).max(1)
}

/// 2x2 / stride-2 max pool of a (B, C, H, W) CPU f32 tensor.
pub(crate) fn max_pool2(xs: &Tensor) -> candle_core::Result<Tensor> {
    xs.contiguous()?.apply_op1(MaxPool2)
}

#[derive(Clone, Copy, Debug)]
struct MaxPool2;

impl CustomOp1 for MaxPool2 {
    fn name(&self) -> &'static str {
        "ferbayes-fast-maxpool2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l)?;
        let (np, h, w) = planes(l.dims())?;
        let (ho, wo) = (h / 2, w / 2);
        let mut y = vec![0f32; np * ho * wo];
        if !y.is_empty() {
            let k = per_job(h, w);
            par_chunks_mut(&mut y, k * ho * wo, |j, ys| {
                let xs = &x[j * k * h * w..];
                for (yp, xp) in ys.chunks_mut(ho * wo).zip(xs.chunks(h * w)) {
                    // Row pairs, branch-free: the window's maximum is the value at its
                    // first maximum (where the backward sends the gradient).
                    for (yr, rows) in yp.chunks_exact_mut(wo).zip(xp.chunks_exact(2 * w)) {
                        let (r0, r1) = rows.split_at(w);
                        for ((y, a), b) in yr
                            .iter_mut()
                            .zip(r0.chunks_exact(2))
                            .zip(r1.chunks_exact(2))
                        {
                            *y = a[0].max(a[1]).max(b[0].max(b[1]));
                        }
                    }
                }
            });
        }
        let d = l.dims();
        Ok((CpuStorage::F32(y), Shape::from((d[0], d[1], ho, wo))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            x.contiguous()?
                .apply_op2_no_bwd(&grad.contiguous()?, &MaxPool2Bwd)?,
        ))
    }
}

/// (x, dy) -> dx: each dy to its window's first maximum.
#[derive(Clone, Copy, Debug)]
struct MaxPool2Bwd;

impl CustomOp2 for MaxPool2Bwd {
    fn name(&self) -> &'static str {
        "ferbayes-fast-maxpool2-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, dy) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let (np, h, w) = planes(l1.dims())?;
        let (ho, wo) = (h / 2, w / 2);
        if dy.len() != np * ho * wo {
            candle_core::bail!("ferbayes max pool bwd: grad {:?}", l2.dims());
        }
        let mut dx = vec![0f32; x.len()];
        if !dy.is_empty() {
            let k = per_job(h, w);
            par_chunks_mut(&mut dx, k * h * w, |j, dxs| {
                let (xs, dys) = (&x[j * k * h * w..], &dy[j * k * ho * wo..]);
                for ((dp, xp), gp) in dxs
                    .chunks_mut(h * w)
                    .zip(xs.chunks(h * w))
                    .zip(dys.chunks(ho * wo))
                {
                    // Windows do not overlap: each writes its own 2x2 block, the
                    // gradient at its first maximum in row-major order (strict `>`,
                    // found with selects instead of branches) and 0 at the other three.
                    for ((rows, drows), gr) in xp
                        .chunks_exact(2 * w)
                        .zip(dp.chunks_exact_mut(2 * w))
                        .zip(gp.chunks_exact(wo))
                    {
                        let (x0, x1) = rows.split_at(w);
                        let (d0, d1) = drows.split_at_mut(w);
                        for (ox, &g) in gr.iter().enumerate() {
                            let (a, b) = (x0[2 * ox], x0[2 * ox + 1]);
                            let (c, d) = (x1[2 * ox], x1[2 * ox + 1]);
                            let ib = b > a;
                            let m = if ib { b } else { a };
                            let ic = c > m;
                            let id = d > if ic { c } else { m };
                            d1[2 * ox + 1] = if id { g } else { 0.0 };
                            d1[2 * ox] = if !id && ic { g } else { 0.0 };
                            d0[2 * ox + 1] = if !id && !ic && ib { g } else { 0.0 };
                            d0[2 * ox] = if !id && !ic && !ib { g } else { 0.0 };
                        }
                    }
                }
            });
        }
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}
