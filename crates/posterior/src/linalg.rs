//! The few dense `f64` operations the crate needs, through faer's low-level routines with
//! `Par::Seq` named at every call (so a faer built with rayon elsewhere in a build still runs
//! these on one thread, in a fixed order).

use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::linalg::evd::{self, ComputeEigenvectors};
use faer::{Accum, Mat, MatMut, MatRef, Par};

const PAR: Par = Par::Seq;

/// `dst = lhs · rhs` (`accumulate = false`) or `dst += lhs · rhs`.
pub(crate) fn matmul(
    dst: MatMut<'_, f64>,
    accumulate: bool,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
) {
    let accum = if accumulate {
        Accum::Add
    } else {
        Accum::Replace
    };
    faer::linalg::matmul::matmul(dst, accum, lhs, rhs, 1.0, PAR);
}

/// The lower Cholesky factor `L` of the symmetric positive definite `a` (`a = L Lᵀ`, only `a`'s
/// lower triangle is read; `L`'s upper triangle is zero), or the index of the first pivot that
/// was not positive.
pub(crate) fn cholesky(a: MatRef<'_, f64>) -> Result<Mat<f64>, usize> {
    let n = a.nrows();
    let mut l = Mat::from_fn(n, n, |i, j| if i >= j { a[(i, j)] } else { 0.0 });
    let mut mem = MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f64>(
        n,
        PAR,
        Default::default(),
    ));
    llt::factor::cholesky_in_place(
        l.as_mut(),
        Default::default(),
        PAR,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|llt::factor::LltError::NonPositivePivot { index }| index)?;
    for j in 1..n {
        for x in &mut l.col_as_slice_mut(j)[..j] {
            *x = 0.0;
        }
    }
    Ok(l)
}

/// `(L Lᵀ)⁻¹`, both triangles filled, from the lower Cholesky factor `L`.
pub(crate) fn cholesky_inverse(l: MatRef<'_, f64>) -> Mat<f64> {
    let n = l.nrows();
    let mut inv = Mat::<f64>::zeros(n, n);
    let mut mem = MemBuffer::new(llt::inverse::inverse_scratch::<f64>(n, PAR));
    llt::inverse::inverse(inv.as_mut(), l, PAR, MemStack::new(&mut mem));
    for j in 1..n {
        for i in 0..j {
            inv[(i, j)] = inv[(j, i)];
        }
    }
    inv
}

/// Solves `Lᵀ X = B` in place (`b` becomes `X`) for the lower triangular `L`.
pub(crate) fn solve_lower_transpose(l: MatRef<'_, f64>, b: MatMut<'_, f64>) {
    faer::linalg::triangular_solve::solve_upper_triangular_in_place(l.transpose(), b, PAR);
}

/// The eigendecomposition `a = U diag(s) Uᵀ` of the symmetric `a` (only its lower triangle is
/// read): eigenvalues in nondecreasing order and the orthonormal eigenvectors as `U`'s columns;
/// `None` if faer's solver did not converge.
pub(crate) fn symmetric_eigen(a: MatRef<'_, f64>) -> Option<(Vec<f64>, Mat<f64>)> {
    let n = a.nrows();
    let mut u = Mat::<f64>::zeros(n, n);
    let mut s = Diag::<f64>::zeros(n);
    let mut mem = MemBuffer::new(evd::self_adjoint_evd_scratch::<f64>(
        n,
        ComputeEigenvectors::Yes,
        PAR,
        Default::default(),
    ));
    evd::self_adjoint_evd(
        a,
        s.as_mut(),
        Some(u.as_mut()),
        PAR,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .ok()?;
    let s = s.column_vector().iter().copied().collect();
    Some((s, u))
}
