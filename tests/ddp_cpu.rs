//! Data-parallel training on the CPU through MPI (`--features mpi`, OpenMPI installed):
//! `train trainer=ddp_cpu` starting `mpirun` itself and `mpirun -np 2 train ...` joining as ranks.
//!
//! Checked: two ranks end with the weights of one process with twice the batch; only rank 0
//! writes; a killed or failing rank stops the whole job quickly, naming the rank; uneven data does
//! not stall; the effective batch is reported and recorded; resuming a two-rank run reproduces its
//! losses bit for bit; and the setup errors (world size, unreachable rank 0, resume with another
//! world size). Without the `mpi` feature, only the build hint is checked.

#[allow(dead_code)]
#[path = "support/tiny_run.rs"]
mod support;

#[cfg(not(feature = "mpi"))]
#[test]
fn ddp_cpu_without_the_mpi_feature_says_how_to_build_it() {
    let tmp = tempfile::tempdir().unwrap();
    let args = support::tiny(
        &tmp.path().join("cache"),
        &tmp.path().join("run"),
        &["trainer=ddp_cpu"],
    );
    let out = support::run(env!("CARGO_BIN_EXE_train"), tmp.path(), &args);
    assert_eq!(out.status.code(), Some(1));
    let text = support::text(&out);
    assert!(text.contains("--features mpi"), "{text}");
    assert!(text.contains("libopenmpi-dev"), "{text}");
    assert!(
        !tmp.path().join("run").exists(),
        "no run directory without a run"
    );
}

#[cfg(feature = "mpi")]
mod with_mpi {
    use super::support::{self, tiny};
    use candle_core::Device;
    use flowrun::train::checkpoint::load_checkpoint;
    use serde_json::Value;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output, Stdio};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    const TRAIN: &str = env!("CARGO_BIN_EXE_train");

    /// One synthetic-scene cache for every test.
    fn cache() -> &'static Path {
        static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
        CACHE
            .get_or_init(|| {
                let dir = tempfile::tempdir().unwrap();
                let out = support::run(
                    TRAIN,
                    dir.path(),
                    &tiny(
                        dir.path(),
                        &dir.path().join("warmup"),
                        &["trainer.max_steps=0"],
                    ),
                );
                assert!(out.status.success(), "{}", support::text(&out));
                dir
            })
            .path()
    }

    fn mpi_env(cmd: &mut Command) -> &mut Command {
        cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env_remove("TRAIN_INJECT_FAIL_AT_RANK")
            .env_remove("TRAIN_INJECT_NAN_AT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
    }

    /// `train <tiny overrides> extra` in `cwd`, as one command (the launcher when ddp_cpu).
    fn train(cwd: &Path, run_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(TRAIN);
        mpi_env(&mut cmd)
            .current_dir(cwd)
            .args(tiny(cache(), run_dir, extra))
            .envs(env.iter().copied());
        cmd.output().unwrap()
    }

    /// `mpirun -np <n> train <tiny overrides> extra` in `cwd`.
    fn mpirun(cwd: &Path, n: usize, run_dir: &Path, mpi_args: &[&str], extra: &[&str]) -> Command {
        let mut cmd = Command::new("mpirun");
        mpi_env(&mut cmd)
            .current_dir(cwd)
            .args(["-np", &n.to_string(), "--oversubscribe"])
            .args(mpi_args)
            .arg(TRAIN)
            .args(tiny(cache(), run_dir, extra));
        cmd
    }

    /// Overrides of a two-rank run of batch 2 per rank (8 steps over 2 epochs).
    const DDP: &[&str] = &["trainer=ddp_cpu", "trainer.devices=2", "batch_size=2"];

    fn model_of(run_dir: &Path) -> BTreeMap<String, Vec<f32>> {
        let ckpt = load_checkpoint(&run_dir.join("checkpoints/last.ckpt"), &Device::Cpu).unwrap();
        ckpt.model
            .iter()
            .map(|(k, t)| (k.clone(), t.flatten_all().unwrap().to_vec1().unwrap()))
            .collect()
    }

    fn losses(run_dir: &Path) -> BTreeMap<u64, f64> {
        std::fs::read_to_string(run_dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .filter_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                Some((v["step"].as_u64()?, v.get("train_loss")?.as_f64()?))
            })
            .collect()
    }

    /// Every path below `dir`, relative to it.
    fn tree(dir: &Path) -> BTreeSet<PathBuf> {
        let mut out = BTreeSet::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
        out
    }

    fn assert_ok(out: &Output, what: &str) {
        assert!(
            out.status.success(),
            "{what} failed:\n{}",
            support::text(out)
        );
    }

    #[test]
    fn two_ranks_match_one_process_with_twice_the_batch_and_only_rank_0_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let (two, one) = (tmp.path().join("two"), tmp.path().join("one"));
        let started = Instant::now();
        let out = train(tmp.path(), &two, DDP, &[]);
        eprintln!("2-rank run: {:.1} s", started.elapsed().as_secs_f64());
        assert_ok(&out, "the 2-rank run");
        let text = support::text(&out);
        assert!(
            text.contains("effective batch 4 (batch_size 2 × 2 ranks × 1 accumulated)"),
            "{text}"
        );
        let out = train(tmp.path(), &one, &["trainer=cpu", "batch_size=4"], &[]);
        assert_ok(&out, "the 1-process run");

        let (a, b) = (model_of(&two), model_of(&one));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        let max_diff = a
            .iter()
            .flat_map(|(k, x)| x.iter().zip(&b[k]).map(|(p, q)| (p - q).abs()))
            .fold(0f32, f32::max);
        eprintln!("max |w_2ranks - w_1process| after 8 steps: {max_diff:e}");
        assert!(max_diff < 1e-5, "weights differ by {max_diff}");
        let (la, lb) = (losses(&two), losses(&one));
        assert_eq!(la.len(), 8);
        for (step, loss) in &la {
            assert!(
                (loss - lb[step]).abs() < 1e-4,
                "step {step}: {loss} vs {}",
                lb[step]
            );
        }

        // Rank 1 wrote nothing: the two runs hold the same files (one event file each), and
        // nothing else appeared beside them.
        let strip = |t: BTreeSet<PathBuf>| -> BTreeSet<PathBuf> {
            t.into_iter()
                .filter(|p| !p.starts_with("checkpoints") && !p.starts_with("tensorboard/"))
                .collect()
        };
        assert_eq!(strip(tree(&two)), strip(tree(&one)));
        assert_eq!(
            std::fs::read_dir(two.join("tensorboard")).unwrap().count(),
            1
        );
        let top: BTreeSet<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(top, BTreeSet::from(["one".to_string(), "two".to_string()]));
        let hydra = std::fs::read_to_string(two.join(".hydra/hydra.yaml")).unwrap();
        for needle in ["data_parallel:", "world_size: 2", "effective_batch_size: 4"] {
            assert!(
                hydra.contains(needle),
                "hydra.yaml lacks {needle:?}:\n{hydra}"
            );
        }
    }

    #[test]
    fn mpirun_ranks_join_and_accumulation_and_uneven_data_do_not_stall() {
        let tmp = tempfile::tempdir().unwrap();
        let run_dir = tmp.path().join("uneven");
        // 23 scenes leave 17 for training: the shards wrap to 9 each; 3 accumulated batches per
        // step end each epoch of 4 batches with a short step on both ranks alike.
        let extra = [
            "trainer=ddp_cpu",
            "batch_size=2",
            "data.num_scenes=23",
            "data.cache_dir=",
            "trainer.accumulate_grad_batches=3",
            "trainer.collective_timeout_s=60",
        ];
        let mut cmd = mpirun(tmp.path(), 2, &run_dir, &[], &extra);
        let cache23 = tmp.path().join("cache23");
        cmd.arg(format!("data.cache_dir={}", cache23.display()));
        let started = Instant::now();
        let out = cmd.output().unwrap();
        assert_ok(&out, "mpirun -np 2 train");
        assert!(started.elapsed() < Duration::from_secs(120));
        let text = support::text(&out);
        assert!(text.contains("effective batch 12"), "{text}");
        assert_eq!(losses(&run_dir).len(), 4, "2 epochs of 2 optimizer steps");
    }

    #[test]
    fn resuming_a_two_rank_run_reproduces_its_losses_bit_for_bit() {
        let tmp = tempfile::tempdir().unwrap();
        let full = tmp.path().join("full");
        let extra: Vec<&str> = DDP
            .iter()
            .copied()
            .chain(["checkpoint.every_n_steps=3"])
            .collect();
        assert_ok(
            &train(tmp.path(), &full, &extra, &[]),
            "the uninterrupted run",
        );
        let step3 = full.join("checkpoints/step3.ckpt");
        assert!(step3.exists(), "{:?}", tree(&full));

        let resumed = tmp.path().join("resumed");
        let ckpt = format!("ckpt_path={}", step3.display());
        let with_ckpt: Vec<&str> = extra.iter().copied().chain([ckpt.as_str()]).collect();
        let out = train(tmp.path(), &resumed, &with_ckpt, &[]);
        assert_ok(&out, "the resumed run");
        let (a, b) = (losses(&full), losses(&resumed));
        assert_eq!(
            b.keys().copied().collect::<Vec<_>>(),
            (4..=8).collect::<Vec<_>>()
        );
        for (step, loss) in &b {
            assert_eq!(
                loss.to_bits(),
                a[step].to_bits(),
                "step {step}: {loss} vs {}",
                a[step]
            );
        }

        let other = tmp.path().join("other");
        let out = train(
            tmp.path(),
            &other,
            &["trainer=cpu", "batch_size=2", &ckpt],
            &[],
        );
        assert_eq!(out.status.code(), Some(1));
        let text = support::text(&out);
        assert!(
            text.contains("written by a run of 2 rank(s) and this run has 1"),
            "{text}"
        );
        assert!(text.contains("trainer.devices=2"), "{text}");
    }

    /// The descendants of `pid`, from /proc.
    fn descendants(pid: u32) -> Vec<u32> {
        let mut parents: Vec<(u32, u32)> = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                let after = &stat[stat.rfind(')').unwrap_or(0) + 1..];
                if let Some(ppid) = after.split_whitespace().nth(1).and_then(|x| x.parse().ok()) {
                    parents.push((p, ppid));
                }
            }
        }
        let mut out = vec![pid];
        let mut i = 0;
        while i < out.len() {
            let parent = out[i];
            out.extend(
                parents
                    .iter()
                    .filter(|(_, pp)| *pp == parent)
                    .map(|(p, _)| *p),
            );
            i += 1;
        }
        out.remove(0);
        out
    }

    fn rank_pid(root: u32, rank: usize) -> Option<u32> {
        descendants(root).into_iter().find(|p| {
            std::fs::read(format!("/proc/{p}/environ")).is_ok_and(|env| {
                env.split(|&b| b == 0)
                    .any(|kv| kv == format!("OMPI_COMM_WORLD_RANK={rank}").as_bytes())
            })
        })
    }

    #[test]
    fn killing_one_rank_stops_the_job_within_60_s_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let run_dir = tmp.path().join("killed");
        let mut cmd = Command::new(TRAIN);
        mpi_env(&mut cmd).current_dir(tmp.path()).args(tiny(
            cache(),
            &run_dir,
            &[DDP, &["max_epochs=1000"]].concat(),
        ));
        let mut child = cmd.spawn().unwrap();
        let started = Instant::now();
        let victim = loop {
            let training = std::fs::read_to_string(run_dir.join("metrics.jsonl"))
                .is_ok_and(|m| m.lines().count() >= 2);
            if training {
                if let Some(pid) = rank_pid(child.id(), 1) {
                    break pid;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "training never started"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let killed = Instant::now();
        Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .unwrap();
        let out = loop {
            if child.try_wait().unwrap().is_some() {
                break child.wait_with_output().unwrap();
            }
            assert!(
                killed.elapsed() < Duration::from_secs(60),
                "the job outlived a dead rank"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        eprintln!(
            "job stopped {:.2} s after the kill",
            killed.elapsed().as_secs_f64()
        );
        assert!(!out.status.success());
        let text = support::text(&out);
        assert!(text.contains("rank 1"), "{text}");
    }

    #[test]
    fn a_failing_rank_stops_every_rank_with_its_error() {
        let tmp = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let out = train(
            tmp.path(),
            &tmp.path().join("failing"),
            &[DDP, &["max_epochs=1000"]].concat(),
            &[("TRAIN_INJECT_FAIL_AT_RANK", "1:3")],
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(1));
        let text = support::text(&out);
        assert!(
            text.contains("error: rank 1 failed: injected failure at step 3"),
            "{text}"
        );
        assert!(text.contains("rank 0 stops because rank 1 did"), "{text}");
    }

    #[test]
    fn setup_errors_name_the_mismatch() {
        let tmp = tempfile::tempdir().unwrap();
        let out = mpirun(
            tmp.path(),
            2,
            &tmp.path().join("a"),
            &[],
            &["trainer=ddp_cpu", "trainer.devices=3"],
        )
        .output()
        .unwrap();
        assert!(!out.status.success());
        let text = support::text(&out);
        assert!(
            text.contains("world size 2 from mpirun (OMPI_COMM_WORLD_SIZE=2) does not match trainer.devices × trainer.num_nodes = 3 × 1 = 3"),
            "{text}"
        );

        let out = train(
            tmp.path(),
            &tmp.path().join("b"),
            &["trainer=ddp_cpu"],
            &[("RANK", "0"), ("WORLD_SIZE", "2")],
        );
        assert_eq!(out.status.code(), Some(1));
        let text = support::text(&out);
        assert!(text.contains("MPI_COMM_WORLD has 1 process"), "{text}");
        assert!(text.contains("say rank 0 of 2"), "{text}");
    }

    #[test]
    fn an_unreachable_master_addr_times_out_with_a_message() {
        let tmp = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = Instant::now();
        let out = mpirun(
            tmp.path(),
            2,
            &tmp.path().join("run"),
            &[
                "-x",
                "MASTER_ADDR=10.255.255.1",
                "-x",
                &format!("MASTER_PORT={port}"),
            ],
            &["trainer=ddp_cpu", "trainer.collective_timeout_s=2"],
        )
        .output()
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(60));
        assert!(!out.status.success());
        let text = support::text(&out);
        assert!(
            text.contains(&format!(
                "rank 1 could not reach rank 0 at 10.255.255.1:{port} within 2 s"
            )),
            "{text}"
        );
        assert!(text.contains("MASTER_ADDR"), "{text}");
    }
}
