//! The f32 matrix multiply under the fused kernels: OpenBLAS's `cblas_sgemm` when the system has
//! it, else the `gemm` crate (candle's own CPU gemm).
//!
//! OpenBLAS is loaded at run time (`dlopen`), so the default build links no system library and
//! runs anywhere; with Debian's `libopenblas0` installed the DiT's matmuls run at about twice
//! candle's rate on the reference machine (210 against 111 GFLOP/s). OpenBLAS is pinned to one
//! thread and the work is split over rayon's pool, so only one set of worker threads exists.
//!
//! The choice is the `blas` setting (`FLOWRUN_BLAS`): `auto` (the default: OpenBLAS if it loads,
//! Debian's single-threaded `libopenblas0-serial` first), `on` (OpenBLAS, or an error), `off`
//! (the `gemm` crate always), or a library name or path to load, which must then load.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

use rayon::prelude::*;

/// Name of the environment variable (and machine setting `blas`) that picks the sgemm.
pub const BLAS_ENV: &str = "FLOWRUN_BLAS";

/// Libraries tried, in order, when the setting is `auto`: Debian's single-threaded build first
/// (a threaded OpenBLAS serialises calls made from several threads at once), then whichever
/// build the loader finds.
fn default_libraries() -> [String; 3] {
    [
        format!(
            "/usr/lib/{}-linux-gnu/openblas-serial/libopenblas.so.0",
            std::env::consts::ARCH
        ),
        "libopenblas.so.0".to_string(),
        "libopenblas.so".to_string(),
    ]
}

/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// `cblas_sgemm(layout, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)`.
type CblasSgemm = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f32,
    *const f32,
    c_int,
    *const f32,
    c_int,
    f32,
    *mut f32,
    c_int,
);

const CBLAS_ROW_MAJOR: c_int = 101;
const CBLAS_NO_TRANS: c_int = 111;
const CBLAS_TRANS: c_int = 112;

/// A loaded BLAS library.
struct Blas {
    sgemm: CblasSgemm,
    description: String,
}

/// The sgemm in use: a loaded BLAS, or `None` for the `gemm` crate.
static BACKEND: OnceLock<Option<Blas>> = OnceLock::new();

/// Why a requested BLAS library could not be used.
#[derive(Debug, thiserror::Error)]
#[error("flowrun setting 'blas': cannot load '{library}': {reason} (install Debian's libopenblas0, give a path to a CBLAS library, or set blas=off)")]
pub struct BlasLoadError {
    library: String,
    reason: String,
}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string owned by the loader.
    let msg = unsafe { libc::dlerror() };
    if msg.is_null() {
        "unknown loader error".to_string()
    } else {
        // SAFETY: non-null, NUL-terminated (above).
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    }
}

/// `dlsym` of `name` in `handle`, or null.
fn symbol(handle: *mut c_void, name: &str) -> *mut c_void {
    let name = CString::new(name).expect("symbol names have no NUL");
    // SAFETY: handle came from dlopen; name is NUL-terminated.
    unsafe { libc::dlsym(handle, name.as_ptr()) }
}

/// Loads `library` and resolves `cblas_sgemm`; pins OpenBLAS to one thread.
fn open(library: &str) -> Result<Blas, BlasLoadError> {
    let fail = |reason: String| BlasLoadError {
        library: library.to_string(),
        reason,
    };
    let name = CString::new(library).map_err(|_| fail("the name contains a NUL byte".into()))?;
    // SAFETY: loading a shared library runs its initialisers; a CBLAS library's are benign.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(fail(dl_error()));
    }
    let sgemm = symbol(handle, "cblas_sgemm");
    if sgemm.is_null() {
        return Err(fail("it has no cblas_sgemm".into()));
    }
    let set_threads = symbol(handle, "openblas_set_num_threads");
    if !set_threads.is_null() {
        // SAFETY: OpenBLAS's `void openblas_set_num_threads(int)`.
        let set: unsafe extern "C" fn(c_int) = unsafe { std::mem::transmute(set_threads) };
        // SAFETY: called before any sgemm of this process.
        unsafe { set(1) };
    }
    let config = symbol(handle, "openblas_get_config");
    let version = if config.is_null() {
        None
    } else {
        // SAFETY: OpenBLAS's `char *openblas_get_config(void)`, a static string.
        let get: unsafe extern "C" fn() -> *const c_char = unsafe { std::mem::transmute(config) };
        // SAFETY: a plain query.
        let text = unsafe { get() };
        // SAFETY: non-null, a static NUL-terminated string.
        (!text.is_null()).then(|| {
            unsafe { CStr::from_ptr(text) }
                .to_string_lossy()
                .into_owned()
        })
    };
    // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." → "OpenBLAS 0.3.21".
    let version = version
        .map(|v| v.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "CBLAS".to_string());
    let parallel = symbol(handle, "openblas_get_parallel");
    let threading = if parallel.is_null() {
        ""
    } else {
        // SAFETY: OpenBLAS's `int openblas_get_parallel(void)`.
        let get: unsafe extern "C" fn() -> c_int = unsafe { std::mem::transmute(parallel) };
        // SAFETY: a plain query.
        match unsafe { get() } {
            0 => "single-threaded build, ",
            _ => "threaded build: concurrent calls are serialised, install libopenblas0-serial; ",
        }
    };
    Ok(Blas {
        // SAFETY: `cblas_sgemm` has the standard CBLAS signature.
        sgemm: unsafe { std::mem::transmute::<*mut c_void, CblasSgemm>(sgemm) },
        description: format!("{version} ({threading}{library})"),
    })
}

/// The backend for a `blas` setting value: `auto`, a switch (`off`, `on`), or a library.
fn resolve(setting: &str) -> Result<Option<Blas>, BlasLoadError> {
    let setting = setting.trim();
    match super::parse_switch(setting) {
        Some(false) => return Ok(None),
        Some(true) => {}
        None if setting.is_empty() || setting.eq_ignore_ascii_case("auto") => {}
        None => return open(setting).map(Some),
    }
    let mut last = None;
    for library in default_libraries() {
        match open(&library) {
            Ok(blas) => return Ok(Some(blas)),
            Err(e) => last = Some(e),
        }
    }
    match super::parse_switch(setting) {
        Some(true) => Err(last.expect("at least one library was tried")),
        _ => Ok(None),
    }
}

/// Picks the sgemm for this process from a `blas` setting value. `auto` is resolved at the
/// first product (so commands that multiply nothing never load a library); any other value is
/// resolved now, so that a library that does not load is reported up front. The first choice
/// stands: later calls change nothing.
pub fn set_blas(setting: &str) -> Result<(), BlasLoadError> {
    let trimmed = setting.trim();
    if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("auto") {
        return Ok(());
    }
    let chosen = resolve(trimmed)?;
    let _ = BACKEND.set(chosen);
    Ok(())
}

fn backend() -> Option<&'static Blas> {
    BACKEND
        .get_or_init(|| {
            let setting = std::env::var(BLAS_ENV).unwrap_or_default();
            resolve(&setting).unwrap_or_else(|e| {
                eprintln!("warning: {e}; using candle's gemm");
                None
            })
        })
        .as_ref()
}

/// A one-line description of the sgemm in use, e.g. `OpenBLAS 0.3.21 (single-threaded build,
/// /usr/lib/x86_64-linux-gnu/openblas-serial/libopenblas.so.0)`.
pub fn blas_description() -> String {
    match backend() {
        Some(blas) => blas.description.clone(),
        None => "candle's gemm crate".to_string(),
    }
}

/// A strided f32 matrix: element `(i, j)` at `ptr + i * row_stride + j * col_stride`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mat {
    pub ptr: *const f32,
    pub row_stride: usize,
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

    fn offset_rows(self, rows: usize) -> Mat {
        Mat {
            // SAFETY (of callers): the offset stays inside the operand.
            ptr: self.ptr.wrapping_add(rows * self.row_stride),
            ..self
        }
    }

    fn offset_cols(self, cols: usize) -> Mat {
        Mat {
            ptr: self.ptr.wrapping_add(cols * self.col_stride),
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

    fn offset_rows(self, rows: usize) -> MatMut {
        MatMut(self.0.offset_rows(rows))
    }

    fn offset_cols(self, cols: usize) -> MatMut {
        MatMut(self.0.offset_cols(cols))
    }
}

/// `dst (m×n) = [dst +] alpha · lhs (m×k) · rhs (k×n)` on the calling thread; `accumulate`
/// adds to `dst`, otherwise `dst` is only written (it may be uninitialised).
///
/// # Safety
/// Every operand must address its full strided matrix, and `dst` must not overlap the others.
pub(crate) unsafe fn sgemm(
    dims: (usize, usize, usize),
    dst: MatMut,
    lhs: Mat,
    rhs: Mat,
    alpha: f32,
    accumulate: bool,
) {
    product(backend(), dims, dst, lhs, rhs, alpha, accumulate)
}

/// [`sgemm`] through `blas`, or the `gemm` crate when `None`.
///
/// # Safety
/// As for [`sgemm`].
unsafe fn product(
    blas: Option<&Blas>,
    (m, n, k): (usize, usize, usize),
    dst: MatMut,
    lhs: Mat,
    rhs: Mat,
    alpha: f32,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if let (Some(blas), Some((ta, lda)), Some((tb, ldb)), true) =
        (blas, lhs.cblas(), rhs.cblas(), dst.0.col_stride == 1)
    {
        let beta = if accumulate { 1.0 } else { 0.0 };
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
            beta,
            dst.ptr(),
            dst.0.row_stride.max(1) as c_int,
        );
        return;
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
        gemm::Parallelism::None,
    );
}

/// [`sgemm`] split over rayon's threads: by rows of `dst` when it has at least as many rows
/// as columns, else by columns; each block is one single-threaded product.
///
/// # Safety
/// As for [`sgemm`].
pub(crate) unsafe fn sgemm_parallel(
    dims: (usize, usize, usize),
    dst: MatMut,
    lhs: Mat,
    rhs: Mat,
    alpha: f32,
    accumulate: bool,
) {
    product_parallel(backend(), dims, dst, lhs, rhs, alpha, accumulate)
}

/// [`sgemm_parallel`] through `blas`, or the `gemm` crate when `None`.
///
/// # Safety
/// As for [`sgemm`].
unsafe fn product_parallel(
    blas: Option<&Blas>,
    (m, n, k): (usize, usize, usize),
    dst: MatMut,
    lhs: Mat,
    rhs: Mat,
    alpha: f32,
    accumulate: bool,
) {
    let threads = rayon::current_num_threads();
    if threads <= 1 || m * n * k < PARALLEL_MIN_WORK {
        return product(blas, (m, n, k), dst, lhs, rhs, alpha, accumulate);
    }
    let by_rows = m >= n;
    let extent = if by_rows { m } else { n };
    let block = extent.div_ceil(threads).next_multiple_of(16).min(extent);
    (0..extent.div_ceil(block)).into_par_iter().for_each(|b| {
        let start = b * block;
        let len = block.min(extent - start);
        // SAFETY: each task's block of `dst` is disjoint; its operand views stay inside the
        // caller's matrices.
        unsafe {
            if by_rows {
                product(
                    blas,
                    (len, n, k),
                    dst.offset_rows(start),
                    lhs.offset_rows(start),
                    rhs,
                    alpha,
                    accumulate,
                )
            } else {
                product(
                    blas,
                    (m, len, k),
                    dst.offset_cols(start),
                    lhs,
                    rhs.offset_cols(start),
                    alpha,
                    accumulate,
                )
            }
        }
    });
}

#[cfg(test)]
mod tests {
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

    fn check_products(blas: Option<&Blas>) {
        for (m, n, k) in [(3, 5, 7), (130, 70, 40), (64, 300, 33)] {
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
                for accumulate in [false, true] {
                    let mut c = vec![1f32; m * n];
                    // SAFETY: the operands address full (m×k), (k×n), (m×n) matrices.
                    unsafe {
                        product_parallel(
                            blas,
                            (m, n, k),
                            MatMut::rows(c.as_mut_ptr(), n),
                            lhs,
                            rhs,
                            0.5,
                            accumulate,
                        )
                    };
                    for (got, want) in c.iter().zip(&want) {
                        let want = 0.5 * want + if accumulate { 1.0 } else { 0.0 };
                        assert!(
                            (*got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "{m}x{n}x{k} a_t={a_t} b_t={b_t} acc={accumulate}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_missing_library_is_a_clear_error() {
        let err = resolve("/nonexistent/libcblas.so")
            .err()
            .expect("cannot load");
        let text = err.to_string();
        assert!(
            text.contains("'blas'") && text.contains("/nonexistent/libcblas.so"),
            "{text}"
        );
        assert!(text.contains("blas=off"), "{text}");
        assert!(resolve("off").expect("off never fails").is_none());
    }
}
