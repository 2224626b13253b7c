//! TensorBoard event files: what the writer logs (scalars, images, text) reads back exactly, two
//! writers never clobber each other, a live file is readable before the writer closes, and
//! corruption is reported with the file and offset.
//!
//! TensorBoard 2.x itself was checked by hand on the output of
//! `cargo run --example tensorboard_sample -- DIR` (see tests/tensorboard/README.md).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flowrun::telemetry::event_reader::{event_files, read_event_dir, read_images, read_texts};
use flowrun::telemetry::sample_grid::{validation_grid, SceneMasks};
use flowrun::telemetry::tensorboard::FILE_VERSION;
use flowrun::telemetry::{read_scalars, ColorMode, EventWriter, Image, TelemetryError};

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn scalars_read_back_with_their_tags_steps_and_f32_values() {
    let dir = tempfile::tempdir().unwrap();
    let before = now_secs();
    let mut writer = EventWriter::create(dir.path()).unwrap();
    let loss = |s: u64| 1.0 / (s as f64 + 3.0);
    for step in 0..50u64 {
        writer.add_scalar("train_loss", loss(step), step).unwrap();
        if step % 10 == 0 {
            writer
                .add_scalars(&[("lr", 1e-4 * step as f64), ("grad_norm", 0.1)], step)
                .unwrap();
        }
    }
    writer.add_scalar("val_loss", 0.3f32, 49).unwrap();
    writer.close().unwrap();
    let after = now_secs();

    let scalars = read_scalars(dir.path()).unwrap();
    assert_eq!(
        scalars.keys().collect::<Vec<_>>(),
        ["grad_norm", "lr", "train_loss", "val_loss"]
    );
    let train = &scalars["train_loss"];
    assert_eq!(train.len(), 50);
    for (step, point) in train.iter().enumerate() {
        assert_eq!(point.step, step as i64);
        assert_eq!(point.value, loss(step as u64) as f32);
        assert!(point.wall_time >= before - 1.0 && point.wall_time <= after + 1.0);
    }
    assert!(train.windows(2).all(|w| w[0].wall_time <= w[1].wall_time));
    let lr_steps: Vec<i64> = scalars["lr"].iter().map(|p| p.step).collect();
    assert_eq!(lr_steps, [0, 10, 20, 30, 40]);
    assert_eq!(scalars["lr"][4].value, 4e-3f64 as f32);
    assert_eq!(scalars["val_loss"][0].value, 0.3f32);
}

#[test]
fn non_square_rgb_and_grayscale_images_decode_with_the_right_size_and_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = EventWriter::create(dir.path()).unwrap();
    let (w, h) = (7u32, 3u32);
    let rgb: Vec<u8> = (0..w * h)
        .flat_map(|i| [(i * 11) as u8, (255 - i) as u8, (i % w * 30) as u8])
        .collect();
    let rgb_image = Image::new(w, h, ColorMode::Rgb, rgb).unwrap();
    let gray: Vec<u8> = (0..4 * 9).map(|i| (i * 7) as u8).collect();
    let gray_image = Image::new(4, 9, ColorMode::Gray, gray).unwrap();
    writer.add_image("wide_rgb", &rgb_image, 5).unwrap();
    writer.add_image("tall_gray", &gray_image, 6).unwrap();
    drop(writer);

    let images = read_images(dir.path()).unwrap();
    let wide = &images["wide_rgb"][0];
    assert_eq!(
        (wide.step, wide.width, wide.height, wide.colorspace),
        (5, 7, 3, 3)
    );
    assert_eq!(wide.decode().unwrap(), rgb_image);
    let tall = &images["tall_gray"][0];
    assert_eq!(
        (tall.step, tall.width, tall.height, tall.colorspace),
        (6, 4, 9, 1)
    );
    assert_eq!(tall.decode().unwrap(), gray_image);
}

#[test]
fn a_validation_grid_is_logged_as_a_decodable_png() {
    let dir = tempfile::tempdir().unwrap();
    let (batch, h, w) = (3, 8, 12);
    let context: Vec<f32> = (0..batch * 5 * h * w)
        .map(|i| if i % 13 == 0 { 1.0 } else { -1.0 })
        .collect();
    let generated: Vec<f32> = (0..batch * h * w)
        .map(|i| (i % 5) as f32 / 2.0 - 1.0)
        .collect();
    let ground_truth: Vec<f32> = generated.iter().map(|v| -v).collect();
    let grid = validation_grid(&SceneMasks {
        context: &context,
        generated: &generated,
        ground_truth: &ground_truth,
        batch,
        height: h,
        width: w,
    })
    .unwrap();
    let mut writer = EventWriter::create(dir.path()).unwrap();
    writer
        .add_image("Validation_Samples_0", &grid, 100)
        .unwrap();
    drop(writer);
    let images = read_images(dir.path()).unwrap();
    let logged = &images["Validation_Samples_0"][0];
    let decoded = logged.decode().unwrap();
    assert_eq!((decoded.width(), decoded.height()), (3 * 12 + 4, 3 * 8 + 4));
    assert_eq!(
        (logged.width, logged.height),
        (decoded.width(), decoded.height())
    );
    assert_eq!(decoded, grid);
}

#[test]
fn text_reads_back_verbatim_and_the_config_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "model:\n  net:\n    depth: 4\nname: \"café ✓\"\n";
    let mut writer = EventWriter::create(dir.path()).unwrap();
    writer.add_text("note", "plain *markdown*", 0).unwrap();
    writer.add_config_yaml("config", yaml, 0).unwrap();
    drop(writer);
    let texts = read_texts(dir.path()).unwrap();
    assert_eq!(texts["note"][0].text, "plain *markdown*");
    let config = &texts["config"][0].text;
    assert!(
        config.starts_with("```yaml\n") && config.ends_with("\n```"),
        "{config}"
    );
    assert!(config.contains(yaml.trim_end()), "{config}");
}

#[test]
fn two_writers_in_the_same_second_and_directory_keep_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = EventWriter::create(dir.path()).unwrap();
    let mut b = EventWriter::create(dir.path()).unwrap();
    assert_ne!(a.path(), b.path());
    a.add_scalar("a", 1.0f32, 1).unwrap();
    b.add_scalar("b", 2.0f32, 1).unwrap();
    drop(a);
    drop(b);
    assert_eq!(event_files(dir.path()).unwrap().len(), 2);
    let log = read_event_dir(dir.path()).unwrap();
    assert_eq!(log.file_versions, [FILE_VERSION, FILE_VERSION]);
    assert_eq!(log.scalars["a"][0].value, 1.0);
    assert_eq!(log.scalars["b"][0].value, 2.0);
}

#[test]
fn a_live_writer_is_readable_within_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer =
        EventWriter::create_with_flush_interval(dir.path(), Duration::from_millis(50)).unwrap();
    for step in 0..10u64 {
        writer.add_scalar("loss", step as f32, step).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = read_scalars(dir.path())
            .unwrap()
            .get("loss")
            .map_or(0, Vec::len);
        if seen == 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "saw {seen} of 10 scalars"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    writer.add_scalar("loss", 10.0f32, 10).unwrap();
    writer.close().unwrap();
    assert_eq!(read_scalars(dir.path()).unwrap()["loss"].len(), 11);
}

#[test]
fn a_cut_off_file_reads_up_to_its_last_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = EventWriter::create(dir.path()).unwrap();
    for step in 0..5u64 {
        writer.add_scalar("loss", step as f32, step).unwrap();
    }
    let path = writer.path().to_path_buf();
    writer.close().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    let log = read_event_dir(dir.path()).unwrap();
    assert_eq!(log.scalars["loss"].len(), 4);
    assert_eq!(log.truncated_files, [path]);
}

#[test]
fn a_flipped_byte_is_reported_as_corruption_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = EventWriter::create(dir.path()).unwrap();
    writer.add_scalar("loss", 1.0f32, 1).unwrap();
    let path = writer.path().to_path_buf();
    writer.close().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 6;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = read_event_dir(dir.path()).unwrap_err();
    assert!(matches!(err, TelemetryError::CorruptRecord { .. }), "{err}");
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    assert!(err.to_string().contains(&name), "{err}");
}
