//! Reading NAMO scenes written by numpy: every writer and dtype, the legacy keys, the resize
//! against Pillow/numpy, and each bad input, as an error naming file and key or as a skip.

use flowrun::config::schema::{DataSettings, DataSource, OnBadFile};
use flowrun::data::npy::decode_npy;
use flowrun::data::scene::{read_scene, CHANNELS, CONTEXT_KEYS, TARGET_KEY};
use flowrun::data::{DataError, DataModule};
use std::io::Read;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/npz_scenes")
}

/// Mask `k` of every 16×16 fixture, recomputed here: on iff (r·7 + c·3 + k) mod 5 = 0.
fn pattern(k: usize) -> Vec<f32> {
    (0..256)
        .map(|i| {
            let (r, c) = (i / 16, i % 16);
            if (r * 7 + c * 3 + k) % 5 == 0 {
                1.0
            } else {
                -1.0
            }
        })
        .collect()
}

fn settings(dir: &Path, image_size: usize, on_bad_file: OnBadFile) -> DataSettings {
    DataSettings {
        source: DataSource::NamoNpz {
            data_dir: dir.to_path_buf(),
        },
        image_size,
        val_fraction: 0.0,
        val_dir: None,
        num_workers: 2,
        cache: true,
        augment: false,
        subset: None,
        seed: 0,
        on_bad_file,
    }
}

#[test]
fn every_writer_and_dtype_decodes_to_the_same_scene() {
    let good = fixtures().join("good");
    let mut names: Vec<_> = std::fs::read_dir(&good)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("full_size_224.npz"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 14, "{names:?}");
    for path in names {
        let scene = read_scene(&path, 16).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(scene.size, 16);
        for k in 0..CHANNELS {
            assert_eq!(
                &scene.pixels[k * 256..(k + 1) * 256],
                &pattern(k)[..],
                "{} channel {k}",
                path.display()
            );
        }
    }
}

fn expected(name: &str) -> Vec<f32> {
    let file = std::fs::File::open(fixtures().join("full_size_224_expected.npz")).unwrap();
    let mut archive = zip::ZipArchive::new(file).unwrap();
    let mut bytes = Vec::new();
    archive
        .by_name(&format!("{name}.npy"))
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    decode_npy(&bytes)
        .unwrap()
        .values
        .to_f32()
        .iter()
        .map(|&v| 2.0 * v - 1.0)
        .collect()
}

#[test]
fn full_size_scenes_resize_like_pillow_bilinear_and_numpy_block_means() {
    let path = fixtures().join("good/full_size_224.npz");
    for (size, prefix) in [(64, "bilinear64"), (56, "area56")] {
        let scene = read_scene(&path, size).unwrap();
        let plane = size * size;
        let keys = CONTEXT_KEYS.iter().chain([&TARGET_KEY]);
        for (k, key) in keys.enumerate() {
            let want = expected(&format!("{prefix}_{key}"));
            let got = &scene.pixels[k * plane..(k + 1) * plane];
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{prefix} {key}: differs by {worst}");
        }
    }
}

fn bad(name: &str) -> DataError {
    read_scene(&fixtures().join("bad").join(name), 16).unwrap_err()
}

#[test]
fn each_bad_file_is_an_error_naming_the_file_and_key() {
    let cases: &[(&str, Option<&str>, &str)] = &[
        (
            "missing_key.npz",
            Some("'target_goal' is missing"),
            "keys present: [robot_image",
        ),
        ("wrong_ndim.npz", Some("key 'goal_image'"), "(1, 16, 16)"),
        (
            "mismatched_shape.npz",
            Some("key 'static_objects_image'"),
            "differs from robot_image's",
        ),
        (
            "wrong_dtype.npz",
            Some("key 'movable_objects_image'"),
            "dtype '<c8'",
        ),
        (
            "not_binary.npz",
            Some("key 'static_objects_image'"),
            "value 2 at (row 3, col 4)",
        ),
        (
            "not_binary_float.npz",
            Some("key 'robot_image'"),
            "value 0.5 at (row 2, col 9)",
        ),
        (
            "nan.npz",
            Some("key 'target_goal'"),
            "NaN at (row 5, col 6)",
        ),
        (
            "corrupted_member.npz",
            Some("key 'target_goal'"),
            "corrupted",
        ),
        ("truncated.npz", None, "not a readable .npz archive"),
        ("not_a_zip.npz", None, "not a readable .npz archive"),
    ];
    for (file, key, detail) in cases {
        let message = bad(file).to_string();
        assert!(message.contains(file), "{file}: {message}");
        if let Some(key) = key {
            assert!(message.contains(key), "{file}: {message}");
        }
        assert!(message.contains(detail), "{file}: {message}");
    }
    let missing = bad("missing_key.npz").to_string();
    assert!(
        missing.contains("expected keys: [robot_image, goal_image"),
        "{missing}"
    );
}

#[test]
fn an_unreadable_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("dangling.npz");
    std::os::unix::fs::symlink(dir.path().join("gone.npz"), &link).unwrap();
    let err = read_scene(&link, 16).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains("dangling.npz: read failed"),
        "{err}"
    );
}

#[test]
fn empty_folders_and_folders_without_scenes_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err =
        DataModule::from_settings(&settings(dir.path(), 16, OnBadFile::Error), 0, 1).unwrap_err();
    assert!(matches!(err, DataError::EmptyFolder { .. }), "{err}");
    std::fs::write(dir.path().join("notes.txt"), "hi").unwrap();
    let err =
        DataModule::from_settings(&settings(dir.path(), 16, OnBadFile::Error), 0, 1).unwrap_err();
    assert!(
        err.to_string()
            .contains("ignored 1 other entries: notes.txt"),
        "{err}"
    );
    let missing = settings(&dir.path().join("nope"), 16, OnBadFile::Error);
    let err = DataModule::from_settings(&missing, 0, 1).unwrap_err();
    assert!(err.to_string().contains("nope: list failed"), "{err}");
}

fn mixed_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "compressed_bool.npz",
        "savez_float32.npz",
        "legacy_keys.npz",
    ] {
        std::fs::copy(fixtures().join("good").join(name), dir.path().join(name)).unwrap();
    }
    for name in ["nan.npz", "truncated.npz"] {
        std::fs::copy(fixtures().join("bad").join(name), dir.path().join(name)).unwrap();
    }
    std::fs::write(dir.path().join("README.md"), "scenes").unwrap();
    dir
}

#[test]
fn skip_mode_leaves_bad_files_out_and_lists_them_while_error_mode_stops() {
    let dir = mixed_folder();
    let err =
        DataModule::from_settings(&settings(dir.path(), 16, OnBadFile::Error), 0, 1).unwrap_err();
    assert!(
        err.to_string().contains("nan.npz") || err.to_string().contains("truncated.npz"),
        "{err}"
    );
    let data = DataModule::from_settings(&settings(dir.path(), 16, OnBadFile::Skip), 0, 1).unwrap();
    assert_eq!(data.train.len(), 3);
    let skipped: Vec<_> = data
        .report
        .skipped
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(skipped, ["nan.npz", "truncated.npz"]);
    let warnings = data.report.warnings().join("\n");
    assert!(
        warnings.contains("skipped 2 bad scene file(s)"),
        "{warnings}"
    );
    assert!(
        warnings.contains("ignored 1 non-.npz entries: README.md"),
        "{warnings}"
    );
    let ids: Vec<_> = (0..3).map(|i| data.train.scene(i).unwrap().id).collect();
    assert_eq!(ids, ["compressed_bool", "legacy_keys", "savez_float32"]);
}

#[test]
fn a_folder_of_only_bad_files_is_an_error_even_when_skipping() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures().join("bad/nan.npz"), dir.path().join("nan.npz")).unwrap();
    let err =
        DataModule::from_settings(&settings(dir.path(), 16, OnBadFile::Skip), 0, 1).unwrap_err();
    assert!(
        matches!(err, DataError::AllSkipped { count: 1, .. }),
        "{err}"
    );
}
