//! Writing synthetic scenes as `.npz` files, and the on-disk cache that reuses them.
//!
//! A cache entry is the folder `<cache_dir>/namo-<hash>`, where the hash covers the generator
//! parameters, the seed and the scene count; its `manifest.txt` (written last) spells them out.
//! An entry whose manifest matches is reused as is; anything else is regenerated.

use super::{generate_layout, scene_id, SyntheticParams};
use crate::data::error::DataError;
use crate::data::npy::write_npz;
use crate::data::scene::{CONTEXT_KEYS, TARGET_KEY};
use crate::run::atomic::atomic_write;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The name of a cache entry's manifest.
pub const MANIFEST: &str = "manifest.txt";

fn manifest(params: &SyntheticParams, seed: u64, num_scenes: usize) -> String {
    format!(
        "flowrun synthetic NAMO scenes v1\nseed={seed}\nnum_scenes={num_scenes}\n{}\n",
        params.describe()
    )
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The cache folder for these parameters, seed and count, generating it when absent or stale.
pub fn ensure_cached(
    cache_dir: &Path,
    params: &SyntheticParams,
    seed: u64,
    num_scenes: usize,
) -> Result<PathBuf, DataError> {
    let text = manifest(params, seed, num_scenes);
    let dir = cache_dir.join(format!("namo-{:016x}", fnv1a(&text)));
    let manifest_path = dir.join(MANIFEST);
    if std::fs::read_to_string(&manifest_path).is_ok_and(|found| found == text) {
        return Ok(dir);
    }
    write_scenes(&dir, params, seed, num_scenes, 2)?;
    atomic_write(&manifest_path, text.as_bytes())
        .map_err(|e| DataError::io(&manifest_path, "write", e))?;
    Ok(dir)
}

/// Writes scenes `0..num_scenes` of `seed` into `out` as `scene_NNNNNN.npz` (deflated, like
/// `np.savez_compressed`; boolean masks of side `params.resolution`), on `threads` threads.
pub fn write_scenes(
    out: &Path,
    params: &SyntheticParams,
    seed: u64,
    num_scenes: usize,
    threads: usize,
) -> Result<(), DataError> {
    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, "create", e))?;
    let next = AtomicUsize::new(0);
    let failure = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= num_scenes {
                    break;
                }
                if let Err(err) = write_one(out, params, seed, index) {
                    next.store(num_scenes, Ordering::Relaxed);
                    failure
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(err);
                }
            });
        }
    });
    match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// The bytes of scene `index` as an `.npz` file.
pub fn scene_npz(params: &SyntheticParams, seed: u64, index: usize) -> Result<Vec<u8>, DataError> {
    let masks = generate_layout(params, seed, index)?.masks(params.resolution);
    let shape = [params.resolution, params.resolution];
    let keys = CONTEXT_KEYS.iter().chain([&TARGET_KEY]);
    let arrays: Vec<(&str, &[usize], &[bool])> = keys
        .zip(&masks)
        .map(|(k, m)| (*k, &shape[..], &m[..]))
        .collect();
    let cursor =
        write_npz(Cursor::new(Vec::new()), &arrays, true).map_err(|e| DataError::Generator {
            index,
            reason: format!("cannot encode the .npz: {e}"),
        })?;
    Ok(cursor.into_inner())
}

fn write_one(
    out: &Path,
    params: &SyntheticParams,
    seed: u64,
    index: usize,
) -> Result<(), DataError> {
    let path = out.join(format!("{}.npz", scene_id(index)));
    let bytes = scene_npz(params, seed, index)?;
    atomic_write(&path, &bytes).map_err(|e| DataError::io(&path, "write", e))
}
