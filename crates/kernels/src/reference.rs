//! The reference ops: convolution and pooling from candle's own ops, with
//! correct gradients (and a faster conv backward on the CPU), on any device.
//!
//! candle 0.11.1 quirks worked around here:
//! * `Tensor::conv2d`'s backward computes the input gradient with
//!   `conv_transpose2d`, whose CPU kernel is a naive loop (3x slower than the
//!   forward conv for a 5x5 kernel, worse for 1x1). [`conv2d`] wraps the forward
//!   conv in a custom op whose backward uses an ordinary (im2col + gemm) `conv2d`
//!   with the flipped, transposed kernel for stride-1 convs.
//! * `max_pool2d`'s backward is wrong: it multiplies the gradient reaching the
//!   window's maximum by (number of maxima) / (k*k) instead of 1 / (number of
//!   maxima), i.e. 1/4 for a 2x2 pool with a single maximum. It also refuses
//!   kernel != stride. [`max_pool2`] and [`max_pool3_s2_p1`] are therefore built
//!   from `reshape` / `index_select` and `maximum`, whose gradients are right.
//! * `avg_pool2d`'s backward (via `upsample_nearest2d`) is only right when the input
//!   side is a multiple of the kernel: with a flooring pool on an odd side, the
//!   ignored last row / column receives gradient. [`avg_pool2`] first trims them.

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};

type Result<T> = candle_core::Result<T>;

/// `xs` (B, Cin, H, W) convolved with `w` (Cout, Cin, kh, kw), given padding and
/// stride, no dilation or groups. Same values as `Tensor::conv2d`; on the CPU in
/// f32 with gradients tracked it runs as [`Conv2dOp`] for a faster backward.
pub fn conv2d(xs: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    let custom = (xs.track_op() || w.track_op())
        && xs.device().is_cpu()
        && xs.dtype() == DType::F32
        && w.dtype() == DType::F32;
    if !custom {
        return xs.conv2d(w, padding, stride, 1, 1);
    }
    let xs = xs.contiguous()?;
    let w = w.contiguous()?;
    xs.apply_op2(&w, Conv2dOp { padding, stride })
}

/// Custom op: forward = candle's CPU conv2d, backward = conv-based gradients.
struct Conv2dOp {
    padding: usize,
    stride: usize,
}

/// A CPU tensor holding a copy of a contiguous f32 storage.
fn cpu_tensor(s: &CpuStorage, l: &Layout) -> candle_core::Result<Tensor> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((start, end))) => {
            Tensor::from_slice(&v[start..end], l.shape(), &Device::Cpu)
        }
        _ => candle_core::bail!("ferbayes conv2d op needs contiguous f32 input"),
    }
}

/// Kernel flipped along both spatial dims.
fn flip_hw(w: &Tensor) -> candle_core::Result<Tensor> {
    let (_, _, kh, kw) = w.dims4()?;
    let rev = |n: usize| Tensor::from_vec((0..n as u32).rev().collect::<Vec<u32>>(), n, w.device());
    w.index_select(&rev(kh)?, 2)?.index_select(&rev(kw)?, 3)
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "ferbayes-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = cpu_tensor(s1, l1)?;
        let w = cpu_tensor(s2, l2)?;
        let ys = xs.conv2d(&w, self.padding, self.stride, 1, 1)?;
        let shape = ys.shape().clone();
        let data = ys.flatten_all()?.to_vec1::<f32>()?;
        Ok((CpuStorage::F32(data), shape))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (p, s) = (self.padding, self.stride);
        let (_, _, kh, kw) = w.dims4()?;
        let grad_xs = if xs.track_op() {
            if s == 1 && kh == kw && p < kh {
                // Stride 1: the input gradient is the full correlation of the output
                // gradient with the flipped kernel, channels swapped.
                let wt = flip_hw(w)?.transpose(0, 1)?.contiguous()?;
                Some(grad.conv2d(&wt, kh - 1 - p, 1, 1, 1)?)
            } else {
                // As candle's own backward, except that candle's single output
                // padding would serve both dims: transpose with the larger of the
                // two, then drop the other dim's surplus trailing rows (positions
                // past the input's edge).
                let (_, _, h, wd) = xs.dims4()?;
                let (_, _, gh, gw) = grad.dims4()?;
                let pad_h = h - ((gh - 1) * s + kh - 2 * p);
                let pad_w = wd - ((gw - 1) * s + kw - 2 * p);
                let gx = grad.conv_transpose2d(w, p, pad_h.max(pad_w), s, 1)?;
                Some(gx.narrow(2, 0, h)?.narrow(3, 0, wd)?)
            }
        } else {
            None
        };
        let grad_w = if !w.track_op() {
            None
        } else if kh == 1 && kw == 1 && s == 1 && p == 0 {
            // 1x1: a plain matmul (Cout, B*H*W) x (B*H*W, Cin).
            let (b, cin, h, wd) = xs.dims4()?;
            let cout = grad.dim(1)?;
            let g2 = grad.transpose(0, 1)?.reshape((cout, b * h * wd))?;
            let x2 = xs.transpose(0, 1)?.reshape((cin, b * h * wd))?;
            Some(g2.matmul(&x2.t()?)?.reshape((cout, cin, 1, 1))?)
        } else {
            // As candle's own backward: correlate input with output gradient.
            let gw = xs
                .transpose(0, 1)?
                .conv2d(&grad.transpose(0, 1)?, p, 1, s, 1)?
                .transpose(0, 1)?;
            let (_, _, g0, g1) = gw.dims4()?;
            let gw = if g0 != kh || g1 != kw {
                gw.narrow(2, 0, kh)?.narrow(3, 0, kw)?
            } else {
                gw
            };
            Some(gw)
        };
        Ok((grad_xs, grad_w))
    }
}

/// Trims dims 2 and 3 to multiples of `k` (what a flooring k x k, stride-k pool
/// reads anyway).
fn trim(xs: &Tensor, k: usize) -> Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    let (h2, w2) = (h / k * k, w / k * k);
    let xs = if h2 != h {
        xs.narrow(2, 0, h2)?
    } else {
        xs.clone()
    };
    Ok(if w2 != w { xs.narrow(3, 0, w2)? } else { xs })
}

/// 2x2 max pool, stride 2, output size floored. Built from `maximum` over the
/// four window positions (ties share the gradient equally).
pub fn max_pool2(xs: &Tensor) -> Result<Tensor> {
    let xs = trim(xs, 2)?.contiguous()?;
    let (b, c, h, w) = xs.dims4()?;
    let (h2, w2) = (h / 2, w / 2);
    let a = xs.reshape((b, c, h2, 2, w2, 2))?;
    let rows = a.narrow(3, 0, 1)?.maximum(&a.narrow(3, 1, 1)?)?;
    let cols = rows.narrow(5, 0, 1)?.maximum(&rows.narrow(5, 1, 1)?)?;
    cols.reshape((b, c, h2, w2))
}

/// 2x2 average pool, stride 2, output size floored.
pub fn avg_pool2(xs: &Tensor) -> Result<Tensor> {
    trim(xs, 2)?.avg_pool2d(2)
}

/// Row / column indices `start + stride * i` for i < n.
fn strided_ids(start: usize, stride: usize, n: usize, device: &Device) -> Result<Tensor> {
    let ids: Vec<u32> = (0..n).map(|i| (start + stride * i) as u32).collect();
    Tensor::from_vec(ids, n, device)
}

/// 3x3 max pool, stride 2, padding 1, for inputs >= 0 (zero padding then equals
/// PyTorch's -inf padding). Output side `(H - 1) / 2 + 1`.
pub fn max_pool3_s2_p1(xs: &Tensor) -> Result<Tensor> {
    let xs = xs.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
    let mut out = xs;
    for dim in [2, 3] {
        let n = (out.dim(dim)? - 3) / 2 + 1;
        let pick = |k: usize| -> Result<Tensor> {
            out.index_select(&strided_ids(k, 2, n, out.device())?, dim)
        };
        let m = pick(0)?.maximum(&pick(1)?)?.maximum(&pick(2)?)?;
        out = m;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Shapes, distinct as rand, grads_of as grads, rel_close, to_vec};
    use candle_core::Var;

    fn close(a: &Tensor, b: &Tensor, tol: f32) {
        assert_eq!(a.dims(), b.dims());
        let d = to_vec(a)
            .iter()
            .zip(to_vec(b))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(d < tol, "max diff {d}");
    }

    /// Checks the analytic gradient of `sum(f(x) * up)` with respect to `x`
    /// against central finite differences at every coordinate (in f64 via the
    /// f32 forward; f is piecewise linear here so a small step is exact).
    fn check_grad(what: &str, x: &Var, f: &dyn Fn(&Tensor) -> Tensor, up: &Tensor) {
        // The loss is summed in f64: f32 summation rounding would swamp the
        // finite difference.
        let up64 = up.to_dtype(DType::F64).expect("f64");
        let loss = |t: &Tensor| -> f64 {
            let y = f(t).to_dtype(DType::F64).expect("f64");
            let v = (y * &up64).expect("mul").sum_all().expect("sum");
            v.to_scalar::<f64>().expect("scalar")
        };
        let g = loss_grad(x, f, up);
        let base = to_vec(x.as_tensor());
        let eps = 2e-4f32;
        for i in 0..base.len() {
            let mut plus = base.clone();
            plus[i] += eps;
            let mut minus = base.clone();
            minus[i] -= eps;
            let tp = Tensor::from_vec(plus, x.shape(), &Device::Cpu).expect("t");
            let tm = Tensor::from_vec(minus, x.shape(), &Device::Cpu).expect("t");
            let fd = (loss(&tp) - loss(&tm)) / (2.0 * f64::from(eps));
            let tol = 2e-3 * (1.0 + fd.abs());
            assert!(
                (fd - f64::from(g[i])).abs() < tol,
                "{what} coord {i}: fd {fd} vs grad {}",
                g[i]
            );
        }
    }

    fn loss_grad(x: &Var, f: &dyn Fn(&Tensor) -> Tensor, up: &Tensor) -> Vec<f32> {
        let y = f(x.as_tensor());
        let grads = (y * up)
            .expect("mul")
            .sum_all()
            .expect("sum")
            .backward()
            .expect("bwd");
        to_vec(grads.get(x.as_tensor()).expect("grad"))
    }

    #[test]
    fn conv_op_values_and_gradients() {
        // The last three are stride 2 with H and W of different parity, where candle's
        // own conv2d backward fails with a shape error: checked by finite differences.
        for (cin, cout, k, p, s, h, wd) in [
            (3, 4, 5, 2, 1, 7, 7),
            (4, 3, 3, 1, 1, 6, 6),
            (5, 3, 1, 0, 1, 5, 5),
            (2, 3, 7, 3, 2, 9, 9),
            (2, 3, 7, 3, 2, 10, 10),
            (2, 3, 3, 1, 2, 7, 8),
            (2, 3, 3, 1, 2, 8, 7),
            (2, 2, 5, 0, 2, 9, 12),
        ] {
            let x = Var::from_tensor(&rand(&[2, cin, h, wd], 1)).expect("var");
            let w =
                Var::from_tensor(&(rand(&[cout, cin, k, k], 2) - 0.5).expect("w")).expect("var");
            let (ho, wo) = ((h + 2 * p - k) / s + 1, (wd + 2 * p - k) / s + 1);
            let up = (rand(&[2, cout, ho, wo], 3) - 0.5).expect("up");

            let ours = conv2d(x.as_tensor(), w.as_tensor(), p, s).expect("ours");
            let theirs = x
                .as_tensor()
                .conv2d(w.as_tensor(), p, s, 1, 1)
                .expect("candle");
            close(&ours, &theirs, 1e-5);

            let wt = w.as_tensor().clone();
            check_grad("conv x", &x, &|t| conv2d(t, &wt, p, s).expect("conv"), &up);
            let xt = x.as_tensor().clone();
            check_grad("conv w", &w, &|t| conv2d(&xt, t, p, s).expect("conv"), &up);
        }
    }

    #[test]
    fn pools_values_and_gradients() {
        // The reference ops and the fused kernels alike.
        for backend in [crate::Backend::Reference, crate::Backend::Winograd] {
            for h in [5, 6, 7, 12] {
                let x = Var::from_tensor(&rand(&[2, 3, h, h], 4)).expect("var");
                // 3x3 / 2 / pad 1 against candle's forward on an explicitly padded input.
                let ours = backend.max_pool3_s2_p1(x.as_tensor()).expect("pool");
                let padded = x
                    .as_tensor()
                    .pad_with_zeros(2, 1, 1)
                    .and_then(|t| t.pad_with_zeros(3, 1, 1))
                    .expect("pad");
                close(
                    &ours,
                    &padded.max_pool2d_with_stride(3, 2).expect("pool"),
                    1e-7,
                );
                assert_eq!(ours.dim(2).expect("dim"), (h - 1) / 2 + 1);
                let up = rand(ours.dims(), 5);
                check_grad(
                    "max3",
                    &x,
                    &|t| backend.max_pool3_s2_p1(t).expect("pool"),
                    &up,
                );

                // 2x2 pools floor: against candle's forward on the trimmed input.
                let trimmed = trim(x.as_tensor(), 2).expect("trim");
                let mp = backend.max_pool2(x.as_tensor()).expect("pool");
                close(&mp, &trimmed.max_pool2d(2).expect("pool"), 1e-7);
                let ap = backend.avg_pool2(x.as_tensor()).expect("pool");
                close(&ap, &trimmed.avg_pool2d(2).expect("pool"), 1e-6);
                assert_eq!(mp.dims(), [2, 3, h / 2, h / 2]);
                let up = rand(mp.dims(), 6);
                check_grad("max2", &x, &|t| backend.max_pool2(t).expect("pool"), &up);
                check_grad("avg2", &x, &|t| backend.avg_pool2(t).expect("pool"), &up);
            }
        }
    }

    // ----- Against candle's reference implementation -----------------------------------------

    /// Reference pool gradient by direct scatter: each output's upstream gradient goes to the
    /// window's (unique) maximum, or in equal parts to the whole window for `avg`. Windows
    /// `k` x `k`, stride 2, `pad` zero rows / columns in front, output `ho` x `wo`.
    #[allow(clippy::too_many_arguments)]
    fn scatter_grad(
        x: &[f32],
        up: &[f32],
        (bc, h, w): (usize, usize, usize),
        (ho, wo): (usize, usize),
        k: usize,
        pad: usize,
        avg: bool,
    ) -> Vec<f32> {
        let mut g = vec![0.0f32; x.len()];
        for n in 0..bc {
            for i in 0..ho {
                for j in 0..wo {
                    let u = up[(n * ho + i) * wo + j];
                    let cells: Vec<usize> = (0..k * k)
                        .filter_map(|d| {
                            let r = (2 * i + d / k).checked_sub(pad)?;
                            let c = (2 * j + d % k).checked_sub(pad)?;
                            (r < h && c < w).then_some((n * h + r) * w + c)
                        })
                        .collect();
                    if avg {
                        for &c in &cells {
                            g[c] += u / (k * k) as f32;
                        }
                    } else {
                        let best = cells
                            .iter()
                            .copied()
                            .max_by(|&a, &b| x[a].total_cmp(&x[b]))
                            .expect("window");
                        g[best] += u;
                    }
                }
            }
        }
        g
    }

    /// The pools against candle's forward (`max_pool2d` / `avg_pool2d` on the trimmed or
    /// padded input) and their gradients against the direct scatter above (candle's own
    /// `max_pool2d` backward is wrong, see the module docs) and, for `avg_pool2` on even
    /// sides, against candle's `avg_pool2d` backward. Random shapes, batch 1-3, odd sides.
    #[test]
    fn pools_match_reference() {
        // The reference ops and the fused kernels alike.
        for backend in [crate::Backend::Reference, crate::Backend::Winograd] {
            let mut shapes = Shapes(0x0b0e_5eed);
            for case in 0..12u64 {
                let b = [1, 2, 3][case as usize % 3];
                let c = shapes.range(1, 4);
                let mut h = shapes.range(2, 13);
                if case % 2 == 0 && h.is_multiple_of(2) {
                    h += 1;
                }
                let w = shapes.range(2, 13);
                let what = format!("b{b} c{c} {h}x{w}");
                let x = Var::from_tensor(&rand(&[b, c, h, w], 50 + case)).expect("var");
                let xv = to_vec(x.as_tensor());
                let shape = (b * c, h, w);

                let mp = backend.max_pool2(x.as_tensor()).expect("pool");
                let trimmed = trim(x.as_tensor(), 2).expect("trim");
                rel_close(&what, &mp, &trimmed.max_pool2d(2).expect("pool"));
                let up = rand(mp.dims(), 60 + case);
                let g = grads(&mp, &up, &[x.as_tensor()]);
                let want = scatter_grad(&xv, &to_vec(&up), shape, (h / 2, w / 2), 2, 0, false);
                let want = Tensor::from_vec(want, x.shape(), &Device::Cpu).expect("t");
                rel_close(&format!("{what}: max2 gradient"), &g[0], &want);

                let ap = backend.avg_pool2(x.as_tensor()).expect("pool");
                rel_close(&what, &ap, &trimmed.avg_pool2d(2).expect("pool"));
                let g = grads(&ap, &up, &[x.as_tensor()]);
                let want = scatter_grad(&xv, &to_vec(&up), shape, (h / 2, w / 2), 2, 0, true);
                let want = Tensor::from_vec(want, x.shape(), &Device::Cpu).expect("t");
                rel_close(&format!("{what}: avg2 gradient"), &g[0], &want);
                if h.is_multiple_of(2) && w.is_multiple_of(2) {
                    let xr = Var::from_tensor(x.as_tensor()).expect("var");
                    let theirs = xr.as_tensor().avg_pool2d(2).expect("pool");
                    let gr = grads(&theirs, &up, &[xr.as_tensor()]);
                    rel_close(&format!("{what}: avg2 vs candle gradient"), &g[0], &gr[0]);
                }

                let m3 = backend.max_pool3_s2_p1(x.as_tensor()).expect("pool");
                let padded = x
                    .as_tensor()
                    .pad_with_zeros(2, 1, 1)
                    .and_then(|t| t.pad_with_zeros(3, 1, 1))
                    .expect("pad");
                rel_close(
                    &what,
                    &m3,
                    &padded.max_pool2d_with_stride(3, 2).expect("pool"),
                );
                let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
                assert_eq!(m3.dims(), [b, c, ho, wo]);
                let up = rand(m3.dims(), 70 + case);
                let g = grads(&m3, &up, &[x.as_tensor()]);
                let want = scatter_grad(&xv, &to_vec(&up), shape, (ho, wo), 3, 1, false);
                let want = Tensor::from_vec(want, x.shape(), &Device::Cpu).expect("t");
                rel_close(&format!("{what}: max3 gradient"), &g[0], &want);
            }
        }
    }
}
