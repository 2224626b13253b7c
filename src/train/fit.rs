//! The training loop: data → loss → backward → clip → AdamW → EMA, with validation, TensorBoard,
//! `metrics.jsonl`, checkpoints, early stopping, the non-finite guard and graceful shutdown.
//!
//! Everything random comes from named streams of one [`Rng`] seeded by `seed` (`init`, `noise`;
//! the data order from `data.seed`), and every stream's state goes into each checkpoint, so a
//! resumed CPU run reproduces the uninterrupted run's losses bit for bit.

use crate::config::emit::to_yaml;
use crate::config::node::Node;
use crate::config::schema::{ScaleLr, TrainSettings};
use crate::data::{DataModule, SceneLoader};
use crate::dist::{effective_batch, injected_failure_step, DistError, World};
use crate::model::ema::Ema;
use crate::model::generative::{BatchSlot, GenerativeModule};
use crate::model::precision::effective_precision;
use crate::rng::Rng;
use crate::telemetry::{Console, ConsoleSettings, EventWriter, MetricsLog, ProgressStats};
use crate::train::budget::StepBudget;
use crate::train::checkpoint::{
    write_checkpoint, CheckpointPolicy, SaveReason, CHECKPOINT_DIR, LAST_FILE,
};
use crate::train::clip::{clip_grad_norm, total_grad_norm};
use crate::train::device::choose_device;
use crate::train::early_stopping::EarlyStopping;
use crate::train::error::TrainError;
use crate::train::lr::LrSchedule;
use crate::train::nan_guard::{NanAction, NanGuard};
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::shutdown::ShutdownSignal;

pub use crate::train::summary::{FitSummary, StopReason};

mod persist;
mod validating;
use candle_core::Tensor;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The directory of a run that holds its TensorBoard event files.
pub const TENSORBOARD_DIR: &str = "tensorboard";
/// The per-step metrics file of a run.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The variable naming optimizer steps (1-based) whose loss is replaced by NaN once, for testing
/// the non-finite policy end to end (e.g. `TRAIN_INJECT_NAN_AT=3,4`).
pub const INJECT_NAN_VAR: &str = "TRAIN_INJECT_NAN_AT";
/// Scenes shown as sample grids at each validation.
const GRID_SCENES: usize = 4;

/// What a run is asked to do.
pub struct FitRequest<'a> {
    /// The typed settings.
    pub settings: &'a TrainSettings,
    /// The resolved job config (written into checkpoints and TensorBoard).
    pub config: &'a Node,
    /// The run directory (exists, with its `.hydra/`).
    pub run_dir: &'a Path,
    /// The checkpoint to resume from.
    pub resume_from: Option<PathBuf>,
    /// How progress is shown.
    pub console: ConsoleSettings,
    /// The stop request set by SIGINT / SIGTERM.
    pub shutdown: &'a ShutdownSignal,
    /// The data-parallel job this process belongs to ([`World::single`] outside one).
    pub world: &'a World,
    /// The device chosen by the data-parallel setup; `None` lets the trainer settings choose.
    pub device: Option<candle_core::Device>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn inject_nan_steps() -> Vec<u64> {
    std::env::var(INJECT_NAN_VAR)
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Sums of one logging window.
#[derive(Default)]
struct Window {
    steps: u64,
    samples: u64,
    train_loss: f64,
    mse: f64,
    aux_dice: f64,
    grad_norm: f64,
}

/// What one optimizer step measured.
struct StepOutcome {
    samples: u64,
    train_loss: f64,
    mse: f64,
    aux_dice: f64,
    grad_norm: f64,
}

/// Where rank 0 reports; the other ranks of a data-parallel job write nothing.
struct Outputs {
    events: EventWriter,
    metrics: MetricsLog,
    console: Console,
}

/// The trainer's state between steps: everything a checkpoint holds, and where it reports.
struct Trainer<'a> {
    req: &'a FitRequest<'a>,
    settings: &'a TrainSettings,
    config_yaml: String,
    data: DataModule,
    module: GenerativeModule,
    params: Vec<(String, candle_core::Var)>,
    optimizer: AdamW,
    ema: Ema,
    schedule: LrSchedule,
    policy: CheckpointPolicy,
    early: Option<EarlyStopping>,
    nan_guard: NanGuard,
    noise: Rng,
    loader: SceneLoader,
    step: u64,
    best_scores: BTreeMap<String, f64>,
    checkpoint_dir: PathBuf,
    out: Option<Outputs>,
    injected_nan_steps: Vec<u64>,
    injected_failure: Option<u64>,
    stop_agreed: bool,
    warned_missing_monitor: bool,
    last_val_loss: Option<f64>,
}

impl Trainer<'_> {
    fn epoch(&self) -> u64 {
        self.loader.state().epoch
    }

    fn world(&self) -> &World {
        self.req.world
    }

    /// A console line (rank 0 only).
    fn say(&mut self, line: &str) -> Result<(), TrainError> {
        if let Some(out) = self.out.as_mut() {
            out.console.println(line)?;
        }
        Ok(())
    }

    /// Scalars to TensorBoard and `metrics.jsonl` (rank 0 only).
    fn log_scalars(&mut self, scalars: &[(&str, f64)], step: u64) -> Result<(), TrainError> {
        let epoch = self.epoch();
        if let Some(out) = self.out.as_mut() {
            out.events.add_scalars(scalars, step)?;
            out.metrics.append(step, epoch, scalars)?;
        }
        Ok(())
    }

    /// One optimizer step over up to `accumulate_grad_batches` batches (fewer at an epoch end).
    /// In a data-parallel job the gradients, the logged loss terms and the stop request are
    /// averaged over the ranks once, before the step, so every rank takes the same step.
    fn train_step(&mut self) -> Result<StepOutcome, TrainError> {
        let slot = BatchSlot {
            rank: self.world().rank(),
            world: self.world().size(),
        };
        let accumulate = self.settings.trainer.accumulate_grad_batches.max(1);
        let epoch = self.epoch();
        let mut grads: HashMap<String, Tensor> = HashMap::new();
        let mut out = StepOutcome {
            samples: 0,
            train_loss: 0.0,
            mse: 0.0,
            aux_dice: 0.0,
            grad_norm: 0.0,
        };
        let mut micro = 0;
        while micro < accumulate {
            let batch = self.loader.next_batch()?;
            let terms = self.module.loss_in_global_batch(
                &batch.context,
                &batch.target,
                &mut self.noise,
                slot,
            )?;
            let store = (&terms.total / accumulate as f64)?.backward()?;
            for (name, var) in &self.params {
                if let Some(g) = store.get(var.as_tensor()) {
                    let sum = match grads.remove(name) {
                        Some(prev) => (prev + g)?,
                        None => g.clone(),
                    };
                    grads.insert(name.clone(), sum);
                }
            }
            micro += 1;
            out.samples += (batch.context.dim(0)? * slot.world) as u64;
            out.train_loss += terms.train_loss;
            out.mse += terms.mse;
            out.aux_dice += terms.aux_dice;
            if self.epoch() != epoch {
                break;
            }
        }
        let n = micro as f64;
        out.train_loss /= n;
        out.mse /= n;
        out.aux_dice /= n;
        let step_number = self.step + 1;
        if let Some(i) = self
            .injected_nan_steps
            .iter()
            .position(|&s| s == step_number)
        {
            self.injected_nan_steps.swap_remove(i);
            out.train_loss = f64::NAN;
        }
        if self.injected_failure == Some(step_number) {
            return Err(DistError::Injected {
                rank: slot.rank,
                step: step_number,
            }
            .into());
        }
        let mut stats = [
            out.train_loss,
            out.mse,
            out.aux_dice,
            f64::from(u8::from(self.req.shutdown.requested())),
        ];
        self.world().average(&self.params, &mut grads, &mut stats)?;
        [out.train_loss, out.mse, out.aux_dice] = [stats[0], stats[1], stats[2]];
        self.stop_agreed = stats[3] > 0.0;
        out.grad_norm = match self.settings.trainer.gradient_clip_val {
            Some(max) if out.train_loss.is_finite() => clip_grad_norm(&mut grads, max)?,
            _ => total_grad_norm(&grads)?,
        };
        match self
            .nan_guard
            .check(step_number, out.train_loss, Some(out.grad_norm))
        {
            NanAction::Continue => {
                self.optimizer.set_lr(self.schedule.lr_at(self.step))?;
                self.optimizer.step_with(&grads)?;
                self.ema.update(&self.params)?;
                self.step = step_number;
            }
            NanAction::SkipStep => {
                self.say(&format!(
                    "step {step_number}: non-finite loss or gradient, step skipped ({} so far; \
                     trainer.nan_policy=skip)",
                    self.nan_guard.state().skipped_total
                ))?;
            }
            NanAction::Abort { step, reason } => {
                let saved = self.checkpoint_dir.join(LAST_FILE);
                self.world().barrier()?;
                if self.world().is_main() {
                    let mut ckpt = self.snapshot()?;
                    ckpt.meta.saved_as = SaveReason::Last;
                    write_checkpoint(&saved, &ckpt)?;
                }
                self.world().barrier()?;
                return Err(TrainError::NonFinite {
                    step,
                    reason,
                    saved: Some(saved),
                });
            }
        }
        Ok(out)
    }

    fn log_window(&mut self, window: &mut Window, started: &mut Instant) -> Result<(), TrainError> {
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        let waited = self.loader.take_wait_stats().waited.as_secs_f64();
        let steps = window.steps.max(1) as f64;
        let scalars = [
            ("train_loss", window.train_loss / steps),
            ("train_mse", window.mse / steps),
            ("train_aux_dice", window.aux_dice / steps),
            ("lr", self.optimizer.lr()),
            ("grad_norm", window.grad_norm / steps),
            ("samples_per_s", window.samples as f64 / elapsed),
            ("data_wait_frac", (waited / elapsed).min(1.0)),
            ("nan_skipped", self.nan_guard.state().skipped_total as f64),
        ];
        self.log_scalars(&scalars, self.step)?;
        *window = Window::default();
        *started = Instant::now();
        Ok(())
    }
}

/// Trains as `req` says and returns the summary; the run directory receives `checkpoints/`,
/// `tensorboard/`, `metrics.jsonl` and `train.log`.
pub fn fit(req: &FitRequest<'_>) -> Result<FitSummary, TrainError> {
    let s = req.settings;
    if s.trainer.max_steps == Some(0) {
        return Ok(FitSummary {
            steps: 0,
            epochs: 0,
            wall_time: Duration::ZERO,
            samples_per_s: 0.0,
            best: None,
            last_val_loss: None,
            stop: StopReason::Finished,
        });
    }
    let mut notices = Vec::new();
    let world = req.world;
    let device = match &req.device {
        Some(device) => device.clone(),
        None => {
            let choice = choose_device(&s.trainer)?;
            notices.extend(choice.notice.clone());
            choice.device
        }
    };
    let precision = effective_precision(s.trainer.precision, &device);
    notices.extend(precision.notice.clone());
    if device.is_cpu() && crate::model::kernels::fused() {
        notices.push(format!(
            "CPU matmuls: {} (machine setting `blas`)",
            crate::model::kernels::blas_description()
        ));
    }

    // Rank 0 first, so that only one process writes a synthetic-scene cache.
    if !world.is_main() {
        world.barrier()?;
    }
    let data = DataModule::from_settings(&s.data, world.rank(), world.size())?;
    if world.is_main() {
        world.barrier()?;
    }
    notices.extend(
        data.report
            .warnings()
            .into_iter()
            .map(|w| format!("warning: {w}")),
    );
    let loader = data.train_loader(s.batch_size)?;
    let budget = StepBudget::new(&s.trainer, loader.batches_per_epoch())
        .map_err(|(message, hint)| TrainError::Budget { message, hint })?;

    let root = Rng::new(s.seed);
    let mut module = GenerativeModule::new(&s.model, &device, &mut root.fork(b"init"))?;
    module.set_compute_dtype(precision.compute_dtype)?;
    let params = module.parameters();
    world.broadcast_vars(&params)?;
    let lr = match s.trainer.scale_lr {
        ScaleLr::None => s.optimizer.lr,
        ScaleLr::Linear => s.optimizer.lr * world.size() as f64,
    };
    let optimizer = AdamW::new(
        params.clone(),
        AdamWConfig {
            lr,
            beta1: s.optimizer.betas[0],
            beta2: s.optimizer.betas[1],
            eps: s.optimizer.eps,
            weight_decay: s.optimizer.weight_decay,
        },
    )?;
    let mut ema = Ema::for_module(&module, s.model.ema_decay, s.model.ema_warmup)?;
    let mut ema_state = ema.state_tensors()?;
    world.broadcast_tensors(&mut ema_state)?;
    ema.load_state(&ema_state)?;
    let schedule = LrSchedule::new(&s.scheduler, lr, budget.total_steps)?;

    let checkpoint_dir = req.run_dir.join(CHECKPOINT_DIR);
    let out = if world.is_main() {
        std::fs::create_dir_all(&checkpoint_dir).map_err(io_err(&checkpoint_dir))?;
        let flush = Duration::from_secs_f64(s.trainer.flush_secs);
        Some(Outputs {
            events: EventWriter::create_with_flush_interval(
                &req.run_dir.join(TENSORBOARD_DIR),
                flush,
            )?,
            metrics: MetricsLog::open(&req.run_dir.join(METRICS_FILE))?,
            console: Console::new(req.run_dir, budget.total_steps, req.console)?,
        })
    } else {
        None
    };

    let mut t = Trainer {
        req,
        settings: s,
        config_yaml: to_yaml(req.config),
        data,
        module,
        params,
        optimizer,
        ema,
        schedule,
        policy: CheckpointPolicy::new(&s.checkpoint),
        early: s
            .early_stopping
            .enabled
            .then(|| EarlyStopping::new(&s.early_stopping)),
        nan_guard: NanGuard::new(s.trainer.nan_policy, s.trainer.max_consecutive_nan_steps),
        noise: root.fork(b"noise"),
        loader,
        step: 0,
        best_scores: BTreeMap::new(),
        checkpoint_dir,
        out,
        injected_nan_steps: inject_nan_steps(),
        injected_failure: injected_failure_step(world.rank()),
        stop_agreed: false,
        warned_missing_monitor: false,
        last_val_loss: None,
    };
    for line in notices {
        t.say(&line)?;
    }
    if let Some(path) = &req.resume_from {
        t.restore(path)?;
    }
    let n_params: usize = t.params.iter().map(|(_, v)| v.elem_count()).sum();
    t.say(&format!(
        "training {} steps ({} epochs of {} steps, batch {}, {} train / {} val scenes), \
         {:.2} M parameters",
        budget.total_steps,
        budget.total_steps.div_ceil(budget.steps_per_epoch),
        budget.steps_per_epoch,
        s.batch_size,
        t.data.train.len(),
        t.data.val.len(),
        n_params as f64 / 1e6
    ))?;
    if world.size() > 1 {
        let accumulate = s.trainer.accumulate_grad_batches.max(1);
        t.say(&format!(
            "data-parallel: {} ranks, effective batch {} (batch_size {} × {} ranks × {} \
             accumulated), lr {lr:e} (trainer.scale_lr={})",
            world.size(),
            effective_batch(s.batch_size, world.size(), accumulate),
            s.batch_size,
            world.size(),
            accumulate,
            match s.trainer.scale_lr {
                ScaleLr::None => "none",
                ScaleLr::Linear => "linear",
            }
        ))?;
    }
    let (config_yaml, step) = (t.config_yaml.clone(), t.step);
    if let Some(out) = t.out.as_mut() {
        out.events.add_config_yaml("config", &config_yaml, step)?;
    }

    let started = Instant::now();
    let start_step = t.step;
    let mut samples_total = 0u64;
    let mut window = Window::default();
    let mut window_started = Instant::now();
    let mut stop = StopReason::Finished;
    let mut validated_at = None;
    let log_every = s.trainer.log_every_n_steps.max(1) as u64;
    while t.step < budget.total_steps {
        let epoch = t.epoch();
        let before = t.step;
        let outcome = t.train_step()?;
        samples_total += outcome.samples;
        if t.step == before {
            continue;
        }
        window.steps += 1;
        window.samples += outcome.samples;
        window.train_loss += outcome.train_loss;
        window.mse += outcome.mse;
        window.aux_dice += outcome.aux_dice;
        window.grad_norm += outcome.grad_norm;
        let stats = ProgressStats {
            epoch,
            step: t.step,
            loss: outcome.train_loss,
            lr: t.optimizer.lr(),
            samples_per_s: window.samples as f64 / window_started.elapsed().as_secs_f64().max(1e-9),
            data_wait_frac: t.loader.wait_stats().waited.as_secs_f64()
                / window_started.elapsed().as_secs_f64().max(1e-9),
        };
        if let Some(out) = t.out.as_mut() {
            out.console.update(&stats)?;
        }
        if t.step % log_every == 0 {
            t.log_window(&mut window, &mut window_started)?;
        }
        let actions = t.policy.on_step(t.step);
        t.apply(actions)?;
        let mut early_reason = None;
        if budget.validates_after_step(t.step) {
            early_reason = t.validate_now()?;
            validated_at = Some(t.step);
        }
        if t.epoch() != epoch {
            if budget.validates_after_epoch(&s.trainer, epoch) && validated_at != Some(t.step) {
                early_reason = t.validate_now()?;
                validated_at = Some(t.step);
            }
            let actions = t.policy.on_epoch_end(epoch, t.step);
            t.apply(actions)?;
        }
        if let Some(reason) = early_reason {
            stop = StopReason::EarlyStopping(reason);
            break;
        }
        if t.stop_agreed || (world.size() == 1 && req.shutdown.requested()) {
            stop = StopReason::Interrupted(req.shutdown.signal_name().unwrap_or("a stop request"));
            break;
        }
    }
    if stop == StopReason::Finished && validated_at != Some(t.step) && t.step > start_step {
        t.validate_now()?;
    }
    if window.steps > 0 {
        t.log_window(&mut window, &mut window_started)?;
    }
    let actions = t.policy.on_end(t.step);
    t.apply(actions)?;
    if let Some(out) = t.out.as_mut() {
        out.events.flush()?;
        out.metrics.flush()?;
    }
    world.finish()?;
    let wall_time = started.elapsed();
    let summary = FitSummary {
        steps: t.step,
        epochs: t.epoch() + u64::from(t.loader.state().batch > 0),
        wall_time,
        samples_per_s: samples_total as f64 / wall_time.as_secs_f64().max(1e-9),
        best: t
            .policy
            .best()
            .map(|b| (b.score, t.checkpoint_dir.join(&b.file))),
        last_val_loss: t.last_val_loss,
        stop,
    };
    let text = summary.render(t.policy.monitor());
    if let Some(out) = t.out.as_mut() {
        out.console.finish(text.trim_end())?;
    }
    Ok(summary)
}
