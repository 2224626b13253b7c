//! The console: off a terminal, one plain progress line per interval (not one per step) with
//! epoch, step, loss, lr, samples/s, data-wait and ETA; every printed line also lands in
//! `<run>/train.log`, which a resumed run appends to.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowrun::telemetry::console::TRAIN_LOG_FILE;
use flowrun::telemetry::{Console, ConsoleSettings, DisplayMode, ProgressStats};

/// A `Write` whose bytes the test can read afterwards.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn plain(interval: Duration) -> ConsoleSettings {
    ConsoleSettings {
        mode: DisplayMode::Plain,
        plain_interval: interval,
    }
}

fn stats(step: u64) -> ProgressStats {
    ProgressStats {
        epoch: step / 10,
        step,
        loss: 1.0 / (step as f64 + 1.0),
        lr: 3e-4,
        samples_per_s: 250.0,
        data_wait_frac: 0.125,
    }
}

fn train_log(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join(TRAIN_LOG_FILE)).unwrap()
}

#[test]
fn off_a_terminal_progress_is_one_line_per_interval_and_train_log_matches() {
    let dir = tempfile::tempdir().unwrap();
    let out = Captured::default();
    let mut console = Console::with_plain_output(
        dir.path(),
        100,
        plain(Duration::from_secs(3600)),
        Box::new(out.clone()),
    )
    .unwrap();
    assert!(!console.uses_bar());
    console.println("training on cpu").unwrap();
    for step in 1..=100 {
        console.update(&stats(step)).unwrap();
    }
    console.finish("best val_loss 0.1 at step 100").unwrap();

    let printed = out.text();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 4, "{printed}");
    assert_eq!(lines[0], "training on cpu");
    assert!(
        lines[1].starts_with("epoch 0 | step 1/100 (1.0%) | loss 0.5000 | lr 3.00e-4"),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with("eta ?"), "{}", lines[1]);
    assert!(
        lines[2].starts_with("epoch 10 | step 100/100 (100.0%) | loss 0.0099"),
        "{}",
        lines[2]
    );
    assert!(
        lines[2].contains("250.0 samples/s | data-wait 12.5%"),
        "{}",
        lines[2]
    );
    assert!(lines[2].ends_with("eta 0:00:00"), "{}", lines[2]);
    assert_eq!(lines[3], "best val_loss 0.1 at step 100");
    assert_eq!(train_log(dir.path()), printed);
}

#[test]
fn a_zero_interval_prints_every_update() {
    let dir = tempfile::tempdir().unwrap();
    let out = Captured::default();
    let mut console =
        Console::with_plain_output(dir.path(), 5, plain(Duration::ZERO), Box::new(out.clone()))
            .unwrap();
    for step in 1..=5 {
        console.update(&stats(step)).unwrap();
    }
    console.finish("done").unwrap();
    let printed = out.text();
    let steps: Vec<&str> = printed
        .lines()
        .filter_map(|l| l.split(" | ").nth(1))
        .collect();
    assert_eq!(
        steps,
        [
            "step 1/5 (20.0%)",
            "step 2/5 (40.0%)",
            "step 3/5 (60.0%)",
            "step 4/5 (80.0%)",
            "step 5/5 (100.0%)"
        ]
    );
    assert_eq!(train_log(dir.path()), printed);
}

#[test]
fn a_line_is_printed_again_once_the_interval_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let out = Captured::default();
    let mut console = Console::with_plain_output(
        dir.path(),
        10,
        plain(Duration::from_millis(500)),
        Box::new(out.clone()),
    )
    .unwrap();
    console.update(&stats(1)).unwrap();
    console.update(&stats(2)).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    console.update(&stats(3)).unwrap();
    let printed = out.text();
    let steps: Vec<&str> = printed
        .lines()
        .filter_map(|l| l.split(" | ").nth(1))
        .collect();
    assert_eq!(
        steps,
        ["step 1/10 (10.0%)", "step 3/10 (30.0%)"],
        "{printed}"
    );
}

#[test]
fn a_terminal_console_still_writes_periodic_lines_and_messages_to_train_log() {
    let dir = tempfile::tempdir().unwrap();
    let settings = ConsoleSettings {
        mode: DisplayMode::Terminal,
        plain_interval: Duration::from_secs(3600),
    };
    let mut console = Console::new(dir.path(), 50, settings).unwrap();
    assert!(console.uses_bar());
    console.println("resumed from last.ckpt").unwrap();
    for step in 1..=50 {
        console.update(&stats(step)).unwrap();
    }
    console.finish("summary line").unwrap();
    let log = train_log(dir.path());
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 4, "{log}");
    assert_eq!(lines[0], "resumed from last.ckpt");
    assert!(lines[1].contains("step 1/50"), "{log}");
    assert!(lines[2].contains("step 50/50"), "{log}");
    assert_eq!(lines[3], "summary line");
}

#[test]
fn a_resumed_run_appends_to_train_log() {
    let dir = tempfile::tempdir().unwrap();
    for message in ["first run", "resumed run"] {
        let mut console = Console::with_plain_output(
            dir.path(),
            10,
            plain(Duration::ZERO),
            Box::new(std::io::sink()),
        )
        .unwrap();
        console.println(message).unwrap();
    }
    assert_eq!(train_log(dir.path()), "first run\nresumed run\n");
}

#[test]
fn a_missing_run_directory_is_an_error_naming_train_log() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-run");
    let Err(err) = Console::new(&missing, 10, plain(Duration::ZERO)) else {
        panic!("opened train.log in a missing directory");
    };
    let msg = err.to_string();
    assert!(msg.contains("no-such-run/train.log"), "{msg}");
    assert!(msg.contains("hint:"), "{msg}");
}
