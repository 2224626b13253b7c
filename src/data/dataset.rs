//! Scene sets (a split's scenes, read on demand or kept decoded) and the [`DataModule`] that
//! builds the train and validation sets from [`DataSettings`].
//!
//! The validation split: with `val_dir`, that folder is the validation set and `data_dir` is all
//! training. Otherwise the sorted scenes (after `subset`) are shuffled with the data seed and the
//! first `round(len × val_fraction)` go to validation; both splits keep sorted file order.

use super::error::DataError;
use super::folder::{check_scenes, names, scan_folder, SkippedFile};
use super::loader::{LoaderOptions, SceneBatch, SceneLoader};
use super::sampler::{BatchPlan, Shard, ShardSampler};
use super::scene::{read_scene, Scene, Symmetry, CHANNELS};
use super::synthetic::cache::ensure_cached;
use super::synthetic::SyntheticParams;
use crate::config::schema::{DataSettings, DataSource};
use crate::rng::Rng;
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Where a set's scenes live.
#[derive(Debug)]
enum Origin {
    /// Files, read (and optionally cached) on demand.
    Files {
        paths: Vec<PathBuf>,
        cache: Option<Vec<OnceLock<Scene>>>,
    },
    /// Decoded scenes held in memory.
    Memory(Vec<Scene>),
}

/// The scenes of one split, at one image size, with optional augmentation.
#[derive(Debug)]
pub struct SceneSet {
    origin: Origin,
    image_size: usize,
    augment: Option<Rng>,
}

impl SceneSet {
    /// Scenes read from `paths` on demand; `cache` keeps each decoded scene after its first read.
    pub fn from_files(paths: Vec<PathBuf>, image_size: usize, cache: bool) -> Self {
        let cache = cache.then(|| paths.iter().map(|_| OnceLock::new()).collect());
        SceneSet {
            origin: Origin::Files { paths, cache },
            image_size,
            augment: None,
        }
    }

    /// Scenes already decoded (all of the same size).
    pub fn from_scenes(scenes: Vec<Scene>) -> Self {
        let image_size = scenes.first().map_or(0, |s| s.size);
        SceneSet {
            origin: Origin::Memory(scenes),
            image_size,
            augment: None,
        }
    }

    /// Applies a random symmetry of the square per scene and epoch, drawn from `seed`.
    pub fn with_augmentation(mut self, seed: u64) -> Self {
        self.augment = Some(Rng::new(seed).fork(b"data-augment"));
        self
    }

    /// The number of scenes.
    pub fn len(&self) -> usize {
        match &self.origin {
            Origin::Files { paths, .. } => paths.len(),
            Origin::Memory(scenes) => scenes.len(),
        }
    }

    /// Whether the set holds no scene.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Side of the masks, in pixels.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// The decoded scene `index`, before augmentation.
    pub fn scene(&self, index: usize) -> Result<Scene, DataError> {
        match &self.origin {
            Origin::Memory(scenes) => Ok(scenes[index].clone()),
            Origin::Files { paths, cache: None } => read_scene(&paths[index], self.image_size),
            Origin::Files {
                paths,
                cache: Some(cache),
            } => {
                if let Some(scene) = cache[index].get() {
                    return Ok(scene.clone());
                }
                let scene = read_scene(&paths[index], self.image_size)?;
                Ok(cache[index].get_or_init(|| scene).clone())
            }
        }
    }

    /// Seeds the set's cache with scenes decoded while checking the files.
    fn prefill(&self, scenes: Vec<Scene>) {
        if let Origin::Files {
            cache: Some(cache), ..
        } = &self.origin
        {
            for (slot, scene) in cache.iter().zip(scenes) {
                let _ = slot.set(scene);
            }
        }
    }

    /// Scene `index` as seen in `epoch`: the augmentation (if any) depends on both only.
    pub fn sample(&self, index: usize, epoch: u64) -> Result<Scene, DataError> {
        let scene = self.scene(index)?;
        let Some(augment) = &self.augment else {
            return Ok(scene);
        };
        let mut key = epoch.to_le_bytes().to_vec();
        key.extend_from_slice(&(index as u64).to_le_bytes());
        let symmetry = Symmetry::draw(&mut augment.fork(&key));
        Ok(Scene {
            pixels: symmetry.apply(&scene.pixels, scene.size).into(),
            ..scene
        })
    }

    /// Stacks the scenes `indices` of `epoch` into a batch.
    pub fn batch(&self, indices: &[usize], epoch: u64) -> Result<SceneBatch, DataError> {
        let n = self.image_size;
        let plane = n * n;
        let mut context = Vec::with_capacity(indices.len() * (CHANNELS - 1) * plane);
        let mut target = Vec::with_capacity(indices.len() * plane);
        let mut ids = Vec::with_capacity(indices.len());
        for &index in indices {
            let scene = self.sample(index, epoch)?;
            context.extend_from_slice(&scene.pixels[..(CHANNELS - 1) * plane]);
            target.extend_from_slice(&scene.pixels[(CHANNELS - 1) * plane..]);
            ids.push(scene.id);
        }
        let b = indices.len();
        Ok(SceneBatch {
            context: Tensor::from_vec(context, (b, CHANNELS - 1, n, n), &Device::Cpu)?,
            target: Tensor::from_vec(target, (b, 1, n, n), &Device::Cpu)?,
            ids,
            indices: indices.to_vec(),
        })
    }
}

/// What opening the data found: the files left out and the entries ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Bad scene files left out under `on_bad_file: skip`.
    pub skipped: Vec<SkippedFile>,
    /// Entries of the scene folders that are not `.npz` files (never read).
    pub ignored: Vec<PathBuf>,
}

impl LoadReport {
    /// Human-readable warnings, one per line; empty when nothing was skipped or ignored.
    pub fn warnings(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.skipped.is_empty() {
            lines.push(format!(
                "data: skipped {} bad scene file(s) (data.on_bad_file=skip):",
                self.skipped.len()
            ));
            lines.extend(self.skipped.iter().map(|s| format!("  {}", s.reason)));
        }
        if !self.ignored.is_empty() {
            lines.push(format!(
                "data: ignored {} non-.npz entries: {}",
                self.ignored.len(),
                names(&self.ignored, 8)
            ));
        }
        lines
    }
}

/// The train and validation sets of a run, and how to batch them on this rank.
#[derive(Debug)]
pub struct DataModule {
    /// The training scenes (augmented when `data.augment`).
    pub train: Arc<SceneSet>,
    /// The validation scenes.
    pub val: Arc<SceneSet>,
    /// What was skipped or ignored while opening.
    pub report: LoadReport,
    shard: Shard,
    seed: u64,
    num_workers: usize,
}

impl DataModule {
    /// Opens the data the settings describe (generating synthetic scenes into their cache
    /// first), checks every scene file and splits. Nothing is printed: the caller logs
    /// [`LoadReport::warnings`] of [`DataModule::report`] (skipped and ignored files).
    pub fn from_settings(
        settings: &DataSettings,
        rank: usize,
        world: usize,
    ) -> Result<DataModule, DataError> {
        let data_dir = match &settings.source {
            DataSource::NamoNpz { data_dir } => data_dir.clone(),
            DataSource::SyntheticNamo {
                num_scenes,
                cache_dir,
            } => ensure_cached(
                cache_dir,
                &SyntheticParams::default(),
                settings.seed,
                *num_scenes,
            )?,
        };
        let mut report = LoadReport::default();
        let (mut train_paths, train_scenes) = open_folder(&data_dir, settings, &mut report)?;
        if matches!(settings.source, DataSource::SyntheticNamo { .. }) {
            report
                .ignored
                .retain(|p| !p.ends_with(super::synthetic::cache::MANIFEST));
        }
        let (val_paths, val_scenes, train_scenes) = match &settings.val_dir {
            Some(val_dir) => {
                let (paths, scenes) = open_folder(val_dir, settings, &mut report)?;
                (paths, scenes, train_scenes)
            }
            None => {
                let picked =
                    validation_picks(train_paths.len(), settings.val_fraction, settings.seed)?;
                let mut val_paths = Vec::new();
                let mut kept_paths = Vec::new();
                let (mut val_scenes, mut kept_scenes) = (Vec::new(), Vec::new());
                let mut scenes = train_scenes.map(|s| s.into_iter());
                for (i, path) in train_paths.drain(..).enumerate() {
                    let scene = scenes.as_mut().and_then(|s| s.next());
                    if picked[i] {
                        val_paths.push(path);
                        val_scenes.extend(scene);
                    } else {
                        kept_paths.push(path);
                        kept_scenes.extend(scene);
                    }
                }
                train_paths = kept_paths;
                let cached = settings.cache;
                (
                    val_paths,
                    cached.then_some(val_scenes),
                    cached.then_some(kept_scenes),
                )
            }
        };
        let mut train = SceneSet::from_files(train_paths, settings.image_size, settings.cache);
        if settings.augment {
            train = train.with_augmentation(settings.seed);
        }
        let val = SceneSet::from_files(val_paths, settings.image_size, settings.cache);
        train.prefill(train_scenes.unwrap_or_default());
        val.prefill(val_scenes.unwrap_or_default());
        Ok(DataModule {
            train: Arc::new(train),
            val: Arc::new(val),
            report,
            shard: Shard { rank, world },
            seed: settings.seed,
            num_workers: settings.num_workers,
        })
    }

    /// The endless training stream: shuffled per epoch, incomplete last batches dropped,
    /// prefetched by `data.num_workers` threads.
    pub fn train_loader(&self, batch_size: usize) -> Result<SceneLoader, DataError> {
        self.loader(&self.train, batch_size, true, true)
    }

    /// The validation stream: file order, the last incomplete batch kept, no augmentation.
    pub fn val_loader(&self, batch_size: usize) -> Result<SceneLoader, DataError> {
        self.loader(&self.val, batch_size, false, false)
    }

    fn loader(
        &self,
        set: &Arc<SceneSet>,
        batch_size: usize,
        shuffle: bool,
        drop_last: bool,
    ) -> Result<SceneLoader, DataError> {
        let plan = BatchPlan {
            batch_size,
            drop_last,
            shuffle,
        };
        let sampler = ShardSampler::new(set.len(), self.shard, plan, self.seed)?;
        Ok(SceneLoader::new(
            Arc::clone(set),
            sampler,
            LoaderOptions::with_workers(self.num_workers),
        ))
    }
}

fn open_folder(
    dir: &Path,
    settings: &DataSettings,
    report: &mut LoadReport,
) -> Result<(Vec<PathBuf>, Option<Vec<Scene>>), DataError> {
    let mut scan = scan_folder(dir)?;
    if let Some(n) = settings.subset {
        scan.scenes.truncate(n);
    }
    let checked = check_scenes(
        dir,
        &scan.scenes,
        settings.image_size,
        settings.on_bad_file,
        settings.cache,
        settings.num_workers,
    )?;
    report.skipped.extend(checked.skipped);
    report.ignored.extend(scan.ignored);
    Ok((checked.paths, checked.scenes))
}

/// Which of `len` scenes go to validation: `round(len × fraction)` of them, picked by the seed.
pub fn validation_picks(len: usize, fraction: f64, seed: u64) -> Result<Vec<bool>, DataError> {
    let count = (len as f64 * fraction).round() as usize;
    if count >= len {
        return Err(DataError::Setting {
            key: "data.val_fraction".into(),
            reason: format!("{fraction} of {len} scenes leaves no training scene"),
            fix: "lower data.val_fraction, add scenes, or set data.val_dir".into(),
        });
    }
    let mut order: Vec<usize> = (0..len).collect();
    Rng::new(seed).fork(b"data-val-split").shuffle(&mut order);
    let mut picked = vec![false; len];
    for &i in &order[..count] {
        picked[i] = true;
    }
    Ok(picked)
}
