//! The CBLAS library behind the fused kernels' products: OpenBLAS, loaded at run time.
//!
//! `dlopen` keeps the default build free of system libraries: with Debian's `libopenblas0`
//! installed the DiT's matmuls run at about twice candle's rate on the reference machine (210
//! against 111 GFLOP/s); without it [`super::sgemm`] uses the `gemm` crate (candle's own CPU
//! gemm).
//!
//! Threading: rayon's pool is the only one that runs. The pthreads OpenBLAS build is pinned to
//! one thread and called from every rayon task at once (its buffer allocator takes a lock, so
//! concurrent calls are safe: 0 of 2×400 concurrent products differed in a C harness), and a
//! large product is split into blocks, one call per block. OpenBLAS's own worker threads would
//! otherwise spin in `sched_yield` between calls and take the cores from rayon's kernels (15% of
//! a NAMO64 training step's samples, measured). The single-threaded build shares its buffers
//! between callers (61–68 of 400 concurrent products differed), so its calls never overlap; so do
//! those of an OpenMP build, which was not checked.
//!
//! The choice is the `blas` setting (`FLOWRUN_BLAS`): `auto` (the default: a pthreads OpenBLAS
//! if one loads, Debian's `libopenblas0-pthread` first), `on` (OpenBLAS of any build, or an
//! error), `off` (the `gemm` crate always), or a library name or path to load, which must then
//! load.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

/// Name of the environment variable (and machine setting `blas`) that picks the sgemm.
pub const BLAS_ENV: &str = "FLOWRUN_BLAS";

/// Libraries tried, in order, when the setting is `auto`: Debian's threaded build first (it is
/// safe to call from several threads), then whichever build the loader finds.
pub(super) fn default_libraries() -> [String; 3] {
    [
        format!(
            "/usr/lib/{}-linux-gnu/openblas-pthread/libopenblas.so.0",
            std::env::consts::ARCH
        ),
        "libopenblas.so.0".to_string(),
        "libopenblas.so".to_string(),
    ]
}

/// `cblas_sgemm(layout, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)`.
pub(super) type CblasSgemm = unsafe extern "C" fn(
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

/// CBLAS `CblasRowMajor`.
pub(super) const CBLAS_ROW_MAJOR: c_int = 101;
/// CBLAS `CblasNoTrans`.
pub(super) const CBLAS_NO_TRANS: c_int = 111;
/// CBLAS `CblasTrans`.
pub(super) const CBLAS_TRANS: c_int = 112;

/// A loaded BLAS library.
pub(super) struct Blas {
    /// Its `cblas_sgemm`.
    pub(super) sgemm: CblasSgemm,
    /// Version, threading and file, for the run's log.
    description: String,
    /// Held during every call of a build that is not safe to call concurrently (OpenBLAS's
    /// single-threaded build shares its work buffers between callers); `None` for a threaded
    /// build, which every rayon task calls at once.
    pub(super) lock: Option<Mutex<()>>,
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

/// Loads `library` and resolves `cblas_sgemm`; pins a threaded OpenBLAS to one thread per call.
pub(super) fn open(library: &str) -> Result<Blas, BlasLoadError> {
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
    let build = if parallel.is_null() {
        None
    } else {
        // SAFETY: OpenBLAS's `int openblas_get_parallel(void)`: 0 single-threaded, 1 pthreads,
        // 2 OpenMP.
        let get: unsafe extern "C" fn() -> c_int = unsafe { std::mem::transmute(parallel) };
        // SAFETY: a plain query.
        Some(unsafe { get() })
    };
    let set_threads = symbol(handle, "openblas_set_num_threads");
    // Only the pthreads build was checked for concurrent calls (see the module docs).
    let concurrent = build == Some(1) && !set_threads.is_null();
    if concurrent {
        // SAFETY: OpenBLAS's `void openblas_set_num_threads(int)`.
        let set: unsafe extern "C" fn(c_int) = unsafe { std::mem::transmute(set_threads) };
        // SAFETY: called before any sgemm of this process.
        unsafe { set(1) };
    }
    let threading = match build {
        Some(1) if concurrent => "threaded build, one thread per call, calls side by side, ",
        Some(0) => "single-threaded build, one call at a time, ",
        Some(2) => "OpenMP build, one call at a time, ",
        Some(_) => "threaded build, one call at a time, ",
        None => "one call at a time, ",
    };
    Ok(Blas {
        // SAFETY: `cblas_sgemm` has the standard CBLAS signature.
        sgemm: unsafe { std::mem::transmute::<*mut c_void, CblasSgemm>(sgemm) },
        description: format!("{version} ({threading}{library})"),
        lock: (!concurrent).then(|| Mutex::new(())),
    })
}

/// The backend for a `blas` setting value: `auto`, a switch (`off`, `on`), or a library.
fn resolve(setting: &str) -> Result<Option<Blas>, BlasLoadError> {
    let required = match super::parse_switch(setting) {
        Some(false) => return Ok(None),
        Some(true) => true,
        None if is_auto(setting) => false,
        None => return open(setting.trim()).map(Some),
    };
    let mut last = None;
    for library in default_libraries() {
        match open(&library) {
            // `auto` passes over a build that takes one call at a time: on one thread it is
            // slower than the `gemm` crate on all of them.
            Ok(blas) if required || blas.lock.is_none() => return Ok(Some(blas)),
            Ok(_) => {}
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) if required => Err(e),
        _ => Ok(None),
    }
}

/// Whether a `blas` setting value is `auto` (or empty, its default).
fn is_auto(setting: &str) -> bool {
    let setting = setting.trim();
    setting.is_empty() || setting.eq_ignore_ascii_case("auto")
}

/// Picks the sgemm for this process from a `blas` setting value. `auto` is resolved at the
/// first product (so commands that multiply nothing never load a library); any other value is
/// resolved now, so that a library that does not load is reported up front. The first choice
/// stands: later calls change nothing.
pub fn set_blas(setting: &str) -> Result<(), BlasLoadError> {
    if is_auto(setting) {
        return Ok(());
    }
    let chosen = resolve(setting)?;
    let _ = BACKEND.set(chosen);
    Ok(())
}

/// The BLAS in use, chosen on first use (`FLOWRUN_BLAS`) unless [`set_blas`] chose it.
pub(super) fn backend() -> Option<&'static Blas> {
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

/// A one-line description of the sgemm in use, e.g. `OpenBLAS 0.3.21 (threaded build,
/// /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0)`.
pub fn blas_description() -> String {
    match backend() {
        Some(blas) => blas.description.clone(),
        None => "candle's gemm crate".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
