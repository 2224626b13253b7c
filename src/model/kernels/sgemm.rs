//! The f32 matrix products of the fused kernels: `cblas_sgemm` of the loaded BLAS
//! ([`super::blas`]) when there is one, else the `gemm` crate (candle's own CPU gemm), on the
//! calling thread or on every thread of rayon's pool ([`sgemm`] with [`Threads`]).

use std::ffi::c_int;

use rayon::prelude::*;

use super::blas::{backend, Blas, CBLAS_NO_TRANS, CBLAS_ROW_MAJOR, CBLAS_TRANS};

/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 18;
/// Blocks of a split product start at multiples of this many rows or columns.
const BLOCK_ALIGN: usize = 16;

/// A strided f32 matrix: element `(i, j)` at `ptr + i * row_stride + j * col_stride`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mat {
    /// Element `(0, 0)`.
    pub ptr: *const f32,
    /// Distance between rows, in elements.
    pub row_stride: usize,
    /// Distance between columns, in elements.
    pub col_stride: usize,
}

/// A strided mutable f32 matrix (same addressing as [`Mat`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatMut(Mat);

// SAFETY: the kernels hand disjoint blocks of one buffer to different tasks, and the buffers
// outlive the parallel loops that use them.
unsafe impl Send for Mat {}
unsafe impl Sync for Mat {}

impl Mat {
    /// A row-major `(rows, cols)` matrix with row stride `ld`.
    pub fn rows(data: &[f32], ld: usize) -> Mat {
        Mat {
            ptr: data.as_ptr(),
            row_stride: ld,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with row stride `ld`.
    pub fn transposed(data: &[f32], ld: usize) -> Mat {
        Mat {
            ptr: data.as_ptr(),
            row_stride: 1,
            col_stride: ld,
        }
    }

    /// The same matrix starting `elements` further on.
    fn offset(self, elements: usize) -> Mat {
        Mat {
            // SAFETY (of later reads): callers offset within the matrix the caller addressed.
            ptr: self.ptr.wrapping_add(elements),
            ..self
        }
    }

    /// CBLAS transpose flag and leading dimension, if the layout is one CBLAS takes.
    fn cblas(&self) -> Option<(c_int, c_int)> {
        if self.col_stride == 1 {
            Some((CBLAS_NO_TRANS, self.row_stride.max(1) as c_int))
        } else if self.row_stride == 1 {
            Some((CBLAS_TRANS, self.col_stride.max(1) as c_int))
        } else {
            None
        }
    }
}

impl MatMut {
    /// A row-major `(rows, cols)` matrix with row stride `ld`.
    pub fn rows(ptr: *mut f32, ld: usize) -> MatMut {
        MatMut::strided(ptr, ld, 1)
    }

    /// Element `(i, j)` at `ptr + i * row_stride + j * col_stride`.
    pub fn strided(ptr: *mut f32, row_stride: usize, col_stride: usize) -> MatMut {
        MatMut(Mat {
            ptr,
            row_stride,
            col_stride,
        })
    }

    fn ptr(&self) -> *mut f32 {
        self.0.ptr.cast_mut()
    }

    /// The same matrix starting `elements` further on.
    fn offset(self, elements: usize) -> MatMut {
        MatMut(self.0.offset(elements))
    }
}

/// Which threads run one product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// The calling thread alone: for the small products that tasks of the pool run side by side.
    Caller,
    /// Every thread of rayon's pool.
    Pool,
}

/// `dst (m×n) = [dst +] alpha · lhs (m×k) · rhs (k×n)`; `accumulate` adds to `dst`, otherwise
/// `dst` is only written (it may be uninitialised).
///
/// On the calling thread, the loaded BLAS is used when it may be called concurrently, else the
/// `gemm` crate. On the pool: row or column blocks, one BLAS call each, when the BLAS may be
/// called concurrently; one call under its lock when it may not; the `gemm` crate's own rayon
/// parallelism without a BLAS.
///
/// # Safety
/// Every operand must address its full strided matrix, and `dst` must not overlap the others.
pub(crate) unsafe fn sgemm(
    threads: Threads,
    dims: (usize, usize, usize),
    dst: MatMut,
    lhs: Mat,
    rhs: Mat,
    alpha: f32,
    accumulate: bool,
) {
    product(backend(), dims, dst, lhs, rhs, alpha, accumulate, threads)
}

/// CBLAS transpose flags and leading dimensions of a product's two operands: the same for every
/// block of a split product.
#[derive(Debug, Clone, Copy)]
struct CblasLayout {
    lhs: (c_int, c_int),
    rhs: (c_int, c_int),
}

/// [`sgemm`] through `blas`, or the `gemm` crate when `None`, when an operand's layout is not
/// one CBLAS takes, or when `blas` takes one call at a time and the caller is a task of the pool
/// ([`Threads::Caller`]).
///
/// # Safety
/// As for [`sgemm`].
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    blas: Option<&Blas>,
    (m, n, k): (usize, usize, usize),
    dst: MatMut,
    lhs: Mat,
    rhs: Mat,
    alpha: f32,
    accumulate: bool,
    threads: Threads,
) {
    if m == 0 || n == 0 {
        return;
    }
    let cblas = match (blas, lhs.cblas(), rhs.cblas()) {
        (Some(blas), Some(lhs), Some(rhs)) if dst.0.col_stride == 1 => {
            Some((blas, CblasLayout { lhs, rhs }))
        }
        _ => None,
    };
    if let Some((blas, layout)) = cblas {
        match (&blas.lock, threads) {
            (None, Threads::Pool) => {
                let (by_rows, blocks) = blocks(m, n, k, rayon::current_num_threads());
                blocks.into_par_iter().for_each(|(start, len)| {
                    let (dims, dst, lhs, rhs) = if by_rows {
                        let lhs = lhs.offset(start * lhs.row_stride);
                        ((len, n, k), dst.offset(start * dst.0.row_stride), lhs, rhs)
                    } else {
                        let rhs = rhs.offset(start * rhs.col_stride);
                        ((m, len, k), dst.offset(start), lhs, rhs)
                    };
                    // SAFETY: the blocks tile `dst` without overlap and address parts of the
                    // caller's operands.
                    unsafe { cblas_sgemm(blas, layout, dims, dst, lhs, rhs, alpha, accumulate) };
                });
                return;
            }
            (None, Threads::Caller) => {
                return cblas_sgemm(blas, layout, (m, n, k), dst, lhs, rhs, alpha, accumulate);
            }
            (Some(lock), Threads::Pool) => {
                let _one_call_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
                return cblas_sgemm(blas, layout, (m, n, k), dst, lhs, rhs, alpha, accumulate);
            }
            (Some(_), Threads::Caller) => {}
        }
    }
    if k == 0 && !accumulate {
        for i in 0..m {
            for j in 0..n {
                *dst.ptr().add(i * dst.0.row_stride + j * dst.0.col_stride) = 0.0;
            }
        }
        return;
    }
    gemm::gemm(
        m,
        n,
        k,
        dst.ptr(),
        dst.0.col_stride as isize,
        dst.0.row_stride as isize,
        accumulate,
        lhs.ptr,
        lhs.col_stride as isize,
        lhs.row_stride as isize,
        rhs.ptr,
        rhs.col_stride as isize,
        rhs.row_stride as isize,
        if accumulate { 1.0 } else { 0.0 },
        alpha,
        false,
        false,
        false,
        if threads == Threads::Pool && m * n * k >= PARALLEL_MIN_WORK {
            gemm::Parallelism::Rayon(rayon::current_num_threads())
        } else {
            gemm::Parallelism::None
        },
    );
}

/// One `cblas_sgemm` of `blas` on the calling thread.
///
/// # Safety
/// As for [`sgemm`]; `layout` must be that of `lhs` and `rhs`, and `dst` row-major.
#[allow(clippy::too_many_arguments)]
unsafe fn cblas_sgemm(
    blas: &Blas,
    layout: CblasLayout,
    (m, n, k): (usize, usize, usize),
    dst: MatMut,
    lhs: Mat,
    rhs: Mat,
    alpha: f32,
    accumulate: bool,
) {
    let ((ta, lda), (tb, ldb)) = (layout.lhs, layout.rhs);
    (blas.sgemm)(
        CBLAS_ROW_MAJOR,
        ta,
        tb,
        m as c_int,
        n as c_int,
        k as c_int,
        alpha,
        lhs.ptr,
        lda,
        rhs.ptr,
        ldb,
        if accumulate { 1.0 } else { 0.0 },
        dst.ptr(),
        dst.0.row_stride.max(1) as c_int,
    );
}

/// How an `m×n×k` product is split over `threads`: by rows of the output when it has at least
/// as many rows as columns, else by columns, into `(start, len)` blocks of similar size (one
/// block when the product is small).
fn blocks(m: usize, n: usize, k: usize, threads: usize) -> (bool, Vec<(usize, usize)>) {
    let by_rows = m >= n;
    let extent = if by_rows { m } else { n };
    let parts = if m * n * k < PARALLEL_MIN_WORK {
        1
    } else {
        threads.clamp(1, extent.div_ceil(BLOCK_ALIGN))
    };
    let step = extent.div_ceil(parts).next_multiple_of(BLOCK_ALIGN);
    let blocks = (0..extent)
        .step_by(step)
        .map(|start| (start, step.min(extent - start)))
        .collect();
    (by_rows, blocks)
}

#[cfg(test)]
mod tests {
    use super::super::blas::{default_libraries, open};
    use super::*;

    /// Reference product in f64.
    fn naive(m: usize, n: usize, k: usize, a: &[f32], a_t: bool, b: &[f32], b_t: bool) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    let x = if a_t { a[p * m + i] } else { a[i * k + p] };
                    let y = if b_t { b[j * k + p] } else { b[p * n + j] };
                    s += x as f64 * y as f64;
                }
                out[i * n + j] = s;
            }
        }
        out
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn every_transpose_combination_matches_the_reference() {
        let openblas = default_libraries().iter().find_map(|l| open(l).ok());
        if openblas.is_none() {
            eprintln!("OpenBLAS is not installed: only the gemm crate is checked");
        }
        for blas in [None, openblas.as_ref()] {
            check_products(blas);
        }
    }

    #[test]
    fn blocks_tile_the_split_dimension() {
        for (m, n, k, threads) in [
            (4096, 768, 256, 2),
            (70, 130, 40, 2),
            (100, 10, 1000, 3),
            (8, 8, 8, 4),
        ] {
            let (by_rows, blocks) = blocks(m, n, k, threads);
            assert_eq!(by_rows, m >= n);
            let extent = if by_rows { m } else { n };
            let mut next = 0;
            for (start, len) in &blocks {
                assert_eq!((*start, *start % BLOCK_ALIGN), (next, 0));
                assert!(*len > 0);
                next = start + len;
            }
            assert_eq!(next, extent);
            assert!(blocks.len() <= threads);
        }
        assert_eq!(
            blocks(8, 8, 8, 4).1.len(),
            1,
            "a small product is not split"
        );
        assert_eq!(blocks(4096, 768, 256, 2).1, vec![(0, 2048), (2048, 2048)]);
    }

    #[test]
    fn concurrent_calls_give_the_same_bits() {
        let (m, n, k) = (64, 48, 32);
        let a = data(m * k, 3);
        let b = data(n * k, 4);
        let product_of = || {
            let mut c = vec![0f32; m * n];
            // SAFETY: the operands address full (m×k), (k×n)ᵀ and (m×n) matrices.
            unsafe {
                sgemm(
                    Threads::Pool,
                    (m, n, k),
                    MatMut::rows(c.as_mut_ptr(), n),
                    Mat::rows(&a, k),
                    Mat::transposed(&b, k),
                    1.0,
                    false,
                )
            };
            c
        };
        let want = product_of();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..400).all(|_| product_of() == want)))
                .collect();
            for w in workers {
                assert!(w.join().expect("no panic"), "a concurrent product differed");
            }
        });
    }

    fn check_products(blas: Option<&Blas>) {
        for (m, n, k) in [(3, 5, 7), (130, 70, 40), (64, 300, 33), (70, 130, 40)] {
            for (a_t, b_t) in [(false, false), (false, true), (true, false), (true, true)] {
                let a = data(m * k, 1);
                let b = data(k * n, 2);
                let lhs = if a_t {
                    Mat::transposed(&a, m)
                } else {
                    Mat::rows(&a, k)
                };
                let rhs = if b_t {
                    Mat::transposed(&b, k)
                } else {
                    Mat::rows(&b, n)
                };
                let want = naive(m, n, k, &a, a_t, &b, b_t);
                for (accumulate, threads) in [
                    (false, Threads::Caller),
                    (true, Threads::Caller),
                    (false, Threads::Pool),
                    (true, Threads::Pool),
                ] {
                    let mut c = vec![1f32; m * n];
                    // SAFETY: the operands address full (m×k), (k×n), (m×n) matrices.
                    unsafe {
                        product(
                            blas,
                            (m, n, k),
                            MatMut::rows(c.as_mut_ptr(), n),
                            lhs,
                            rhs,
                            0.5,
                            accumulate,
                            threads,
                        )
                    };
                    for (got, want) in c.iter().zip(&want) {
                        let want = 0.5 * want + if accumulate { 1.0 } else { 0.0 };
                        assert!(
                            (*got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "{m}x{n}x{k} a_t={a_t} b_t={b_t} acc={accumulate} {threads:?}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
