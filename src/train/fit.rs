//! The training loop: data → loss → backward → clip → AdamW → EMA, with validation, TensorBoard,
//! `metrics.jsonl`, checkpoints, early stopping, the non-finite guard and graceful shutdown.
//!
//! Everything random comes from named streams of one [`Rng`] seeded by `seed` (`init`, `noise`;
//! the data order from `data.seed`), and every stream's state goes into each checkpoint, so a
//! resumed CPU run reproduces the uninterrupted run's losses bit for bit.

use crate::config::emit::to_yaml;
use crate::config::node::Node;
use crate::config::schema::TrainSettings;
use crate::data::{DataModule, SamplerState, SceneLoader};
use crate::model::ema::Ema;
use crate::model::generative::GenerativeModule;
use crate::model::precision::effective_precision;
use crate::model::weights::WeightsError;
use crate::rng::Rng;
use crate::telemetry::{Console, ConsoleSettings, EventWriter, MetricsLog, ProgressStats};
use crate::train::budget::StepBudget;
use crate::train::checkpoint::{
    check_resume_yaml, load_checkpoint, write_checkpoint, Checkpoint, CheckpointAction,
    CheckpointMeta, CheckpointPolicy, SaveReason, CHECKPOINT_DIR, LAST_FILE,
};
use crate::train::clip::{clip_grad_norm, total_grad_norm};
use crate::train::device::choose_device;
use crate::train::early_stopping::{EarlyStopAction, EarlyStopping};
use crate::train::error::TrainError;
use crate::train::lr::LrSchedule;
use crate::train::nan_guard::{NanAction, NanGuard};
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::shutdown::ShutdownSignal;
use crate::train::validation::{validate, ValidationPlan};
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
}

/// Why a run ended without an error.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// The step or epoch budget is spent.
    Finished,
    /// Early stopping fired.
    EarlyStopping(String),
    /// SIGINT or SIGTERM asked for a stop.
    Interrupted(&'static str),
}

/// The end-of-run summary.
#[derive(Debug, Clone)]
pub struct FitSummary {
    /// Optimizer steps taken in total (including those before a resume).
    pub steps: u64,
    /// Epochs started.
    pub epochs: u64,
    /// Wall time of this process's training.
    pub wall_time: Duration,
    /// Mean training throughput of this process.
    pub samples_per_s: f64,
    /// The best monitored value and its checkpoint.
    pub best: Option<(f64, PathBuf)>,
    /// The last validation loss.
    pub last_val_loss: Option<f64>,
    /// Why the run ended.
    pub stop: StopReason,
}

impl FitSummary {
    /// The summary as console lines.
    pub fn render(&self, monitor: &str) -> String {
        let mut out = String::new();
        let how = match &self.stop {
            StopReason::Finished => "finished".to_string(),
            StopReason::EarlyStopping(why) => format!("stopped early: {why}"),
            StopReason::Interrupted(sig) => format!("interrupted by {sig}"),
        };
        out.push_str(&format!(
            "training {how} after {} steps ({} epochs) in {:.1} s, {:.1} samples/s\n",
            self.steps,
            self.epochs,
            self.wall_time.as_secs_f64(),
            self.samples_per_s
        ));
        if let Some((score, path)) = &self.best {
            out.push_str(&format!(
                "best {monitor}: {score:.6} ({})\n",
                path.display()
            ));
        } else if let Some(v) = self.last_val_loss {
            out.push_str(&format!("last val_loss: {v:.6}\n"));
        }
        out
    }
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
    events: EventWriter,
    metrics: MetricsLog,
    console: Console,
    injected_nan_steps: Vec<u64>,
    warned_missing_monitor: bool,
    last_val_loss: Option<f64>,
}

impl Trainer<'_> {
    fn epoch(&self) -> u64 {
        self.loader.state().epoch
    }

    fn snapshot(&self) -> Result<Checkpoint, TrainError> {
        let position = self.loader.state();
        let mut meta = CheckpointMeta::new(self.step, position.epoch, self.config_yaml.clone());
        meta.batches_seen_in_epoch = position.batch as u64;
        meta.rng.insert("noise".to_string(), self.noise.state());
        meta.data_sampler = serde_json::to_value(position).unwrap_or(serde_json::Value::Null);
        meta.lr_schedule = Some(self.schedule);
        meta.checkpoint_policy = self.policy.state().clone();
        meta.early_stopping = self.early.as_ref().map(|e| e.state().clone());
        meta.nan_guard = self.nan_guard.state().clone();
        meta.best_scores = self.best_scores.clone();
        Ok(Checkpoint {
            model: self.module.state_dict().into_iter().collect(),
            ema: self.ema.state_tensors()?,
            optim: self.optimizer.state_tensors()?,
            meta,
        })
    }

    fn restore(&mut self, path: &Path) -> Result<(), TrainError> {
        let ckpt = load_checkpoint(path, self.module.device())?;
        let changes = check_resume_yaml(&ckpt.meta.config_yaml, self.req.config)?;
        self.module.load_tensors(&ckpt.model).map_err(|e| match e {
            WeightsError::Mismatch { report, .. } => WeightsError::Mismatch {
                path: path.to_path_buf(),
                report,
            },
            other => other,
        })?;
        self.ema.load_state(&ckpt.ema)?;
        self.optimizer.load_state(&ckpt.optim)?;
        let meta = ckpt.meta;
        self.step = meta.step;
        if let Some(state) = meta.rng.get("noise") {
            self.noise = Rng::from_state(*state);
        }
        let position: SamplerState =
            serde_json::from_value(meta.data_sampler).map_err(|e| TrainError::Budget {
                message: format!("{}: unreadable data-sampler state: {e}", path.display()),
                hint: "resume from another checkpoint of the run".to_string(),
            })?;
        self.loader.restore(position)?;
        self.policy = self.policy.clone().with_state(meta.checkpoint_policy);
        if let (Some(early), Some(state)) = (self.early.as_mut(), meta.early_stopping) {
            *early = early.clone().with_state(state);
        }
        self.nan_guard = self.nan_guard.clone().with_state(meta.nan_guard);
        self.best_scores = meta.best_scores;
        self.console.println(&format!(
            "resumed from {} at step {} (epoch {}, batch {})",
            path.display(),
            self.step,
            position.epoch,
            position.batch
        ))?;
        for change in changes {
            self.console
                .println(&format!("changed on resume: {change}"))?;
        }
        Ok(())
    }

    fn apply(&mut self, actions: Vec<CheckpointAction>) -> Result<(), TrainError> {
        let mut snapshot: Option<Checkpoint> = None;
        for action in actions {
            match action {
                CheckpointAction::Save { file, reason } => {
                    let ckpt = match snapshot.as_mut() {
                        Some(ckpt) => ckpt,
                        None => snapshot.insert(self.snapshot()?),
                    };
                    ckpt.meta.saved_as = reason;
                    write_checkpoint(&self.checkpoint_dir.join(&file), ckpt)?;
                }
                CheckpointAction::Delete { file } => {
                    let path = self.checkpoint_dir.join(&file);
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err(&path)(e)),
                    }
                }
            }
        }
        Ok(())
    }

    /// One optimizer step over up to `accumulate_grad_batches` batches (fewer at an epoch end).
    fn train_step(&mut self) -> Result<StepOutcome, TrainError> {
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
            let terms = self
                .module
                .loss(&batch.context, &batch.target, &mut self.noise)?;
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
            out.samples += batch.context.dim(0)? as u64;
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
                self.console.println(&format!(
                    "step {step_number}: non-finite loss or gradient, step skipped ({} so far; \
                     trainer.nan_policy=skip)",
                    self.nan_guard.state().skipped_total
                ))?;
            }
            NanAction::Abort { step, reason } => {
                let saved = self.checkpoint_dir.join(LAST_FILE);
                let mut ckpt = self.snapshot()?;
                ckpt.meta.saved_as = SaveReason::Last;
                write_checkpoint(&saved, &ckpt)?;
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
        self.events.add_scalars(&scalars, self.step)?;
        self.metrics.append(self.step, self.epoch(), &scalars)?;
        *window = Window::default();
        *started = Instant::now();
        Ok(())
    }

    /// Validates, logs, ranks the checkpoint, and returns the early-stopping reason if it fired.
    fn validate_now(&mut self) -> Result<Option<String>, TrainError> {
        if self.data.val.is_empty() {
            return Ok(None);
        }
        let module = self.module.for_evaluation(Some(&self.ema))?;
        let result = validate(
            &module,
            &self.data,
            ValidationPlan {
                batch_size: self.settings.batch_size,
                seed: self.settings.seed,
                grid_scenes: GRID_SCENES,
            },
        )?;
        let best = self
            .best_scores
            .get("val_loss")
            .map_or(result.val_loss, |b| b.min(result.val_loss));
        self.best_scores.insert("val_loss".to_string(), best);
        self.last_val_loss = Some(result.val_loss);
        let (step, epoch) = (self.step, self.epoch());
        let scalars = [
            ("val_loss", result.val_loss),
            ("val_loss_best", best),
            ("val_mse", result.val_mse),
            ("val_aux_dice", result.val_aux_dice),
        ];
        self.events.add_scalars(&scalars, step)?;
        for (i, grid) in result.grids.iter().enumerate() {
            self.events
                .add_image(&format!("Validation_Samples_{i}"), grid, step)?;
        }
        self.metrics.append(step, epoch, &scalars)?;
        self.console.println(&format!(
            "validation at step {step} (epoch {epoch}): val_loss {:.6}, best {best:.6}, {} scenes, \
             {} sampler evaluations",
            result.val_loss, result.scenes, result.sample_nfe
        ))?;
        let metrics: BTreeMap<String, f64> =
            scalars.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let finished_epoch = if self.loader.state().batch == 0 {
            epoch.saturating_sub(1)
        } else {
            epoch
        };
        match self.policy.on_validation(finished_epoch, step, &metrics) {
            Ok(actions) => self.apply(actions)?,
            Err(missing) => self.warn_missing_monitor(&missing.monitor, &missing.logged)?,
        }
        let Some(early) = self.early.as_mut() else {
            return Ok(None);
        };
        let Some(&value) = metrics.get(early.monitor()) else {
            let monitor = early.monitor().to_string();
            self.warn_missing_monitor(&monitor, "val_loss, val_loss_best, val_mse, val_aux_dice")?;
            return Ok(None);
        };
        Ok(match early.update(value, step) {
            EarlyStopAction::Continue => None,
            EarlyStopAction::Stop { reason } => Some(reason),
        })
    }

    fn warn_missing_monitor(&mut self, monitor: &str, logged: &str) -> Result<(), TrainError> {
        if !self.warned_missing_monitor {
            self.warned_missing_monitor = true;
            self.console.println(&format!(
                "warning: the monitored metric '{monitor}' is not logged at validation \
                 (logged: {logged}); set checkpoint.monitor / early_stopping.monitor to one of them"
            ))?;
        }
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
    let choice = choose_device(&s.trainer)?;
    notices.extend(choice.notice.clone());
    let device = choice.device;
    let precision = effective_precision(s.trainer.precision, &device);
    notices.extend(precision.notice.clone());

    let data = DataModule::from_settings(&s.data, 0, 1)?;
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
    let optimizer = AdamW::new(
        params.clone(),
        AdamWConfig {
            lr: s.optimizer.lr,
            beta1: s.optimizer.betas[0],
            beta2: s.optimizer.betas[1],
            eps: s.optimizer.eps,
            weight_decay: s.optimizer.weight_decay,
        },
    )?;
    let ema = Ema::for_module(&module, s.model.ema_decay, s.model.ema_warmup)?;
    let schedule = LrSchedule::new(&s.scheduler, s.optimizer.lr, budget.total_steps)?;

    let checkpoint_dir = req.run_dir.join(CHECKPOINT_DIR);
    std::fs::create_dir_all(&checkpoint_dir).map_err(io_err(&checkpoint_dir))?;
    let flush = Duration::from_secs_f64(s.trainer.flush_secs);
    let events =
        EventWriter::create_with_flush_interval(&req.run_dir.join(TENSORBOARD_DIR), flush)?;
    let metrics = MetricsLog::open(&req.run_dir.join(METRICS_FILE))?;
    let console = Console::new(req.run_dir, budget.total_steps, req.console)?;

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
        events,
        metrics,
        console,
        injected_nan_steps: inject_nan_steps(),
        warned_missing_monitor: false,
        last_val_loss: None,
    };
    for line in notices {
        t.console.println(&line)?;
    }
    if let Some(path) = &req.resume_from {
        t.restore(path)?;
    }
    let n_params: usize = t.params.iter().map(|(_, v)| v.elem_count()).sum();
    t.console.println(&format!(
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
    t.events.add_config_yaml("config", &t.config_yaml, t.step)?;

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
        t.console.update(&ProgressStats {
            epoch,
            step: t.step,
            loss: outcome.train_loss,
            lr: t.optimizer.lr(),
            samples_per_s: window.samples as f64 / window_started.elapsed().as_secs_f64().max(1e-9),
            data_wait_frac: t.loader.wait_stats().waited.as_secs_f64()
                / window_started.elapsed().as_secs_f64().max(1e-9),
        })?;
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
        if req.shutdown.requested() {
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
    t.events.flush()?;
    t.metrics.flush()?;
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
    t.console.finish(text.trim_end())?;
    Ok(summary)
}
