//! The data pipeline: deterministic splits and shuffles, exact sampler restore, equal rank
//! shards covering the data, and prefetching that delivers the synchronous batches.

use flowrun::config::schema::{DataSettings, DataSource, OnBadFile};
use flowrun::data::dataset::validation_picks;
use flowrun::data::synthetic::cache::write_scenes;
use flowrun::data::synthetic::SyntheticParams;
use flowrun::data::{
    BatchPlan, DataModule, LoaderOptions, SamplerState, SceneBatch, SceneLoader, SceneSet, Shard,
    ShardSampler,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

const SCENES: usize = 23;

fn scene_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let params = SyntheticParams {
        resolution: 32,
        ..SyntheticParams::default()
    };
    write_scenes(dir.path(), &params, 5, SCENES, 2).unwrap();
    dir
}

fn settings(dir: &Path) -> DataSettings {
    DataSettings {
        source: DataSource::NamoNpz {
            data_dir: dir.to_path_buf(),
        },
        image_size: 16,
        val_fraction: 0.2,
        val_dir: None,
        num_workers: 2,
        cache: true,
        augment: true,
        subset: None,
        seed: 11,
        on_bad_file: OnBadFile::Error,
    }
}

fn ids(set: &SceneSet) -> Vec<String> {
    (0..set.len()).map(|i| set.scene(i).unwrap().id).collect()
}

fn values(batch: &SceneBatch) -> (Vec<String>, Vec<f32>, Vec<f32>) {
    (
        batch.ids.clone(),
        batch.context.flatten_all().unwrap().to_vec1().unwrap(),
        batch.target.flatten_all().unwrap().to_vec1().unwrap(),
    )
}

fn take(loader: &mut SceneLoader, n: usize) -> Vec<(Vec<String>, Vec<f32>, Vec<f32>)> {
    (0..n)
        .map(|_| values(&loader.next_batch().unwrap()))
        .collect()
}

#[test]
fn the_validation_split_depends_on_the_seed_only() {
    let dir = scene_folder();
    let a = DataModule::from_settings(&settings(dir.path()), 0, 1).unwrap();
    let b = DataModule::from_settings(&settings(dir.path()), 0, 1).unwrap();
    assert_eq!(ids(&a.val), ids(&b.val));
    assert_eq!(a.val.len(), 5);
    assert_eq!(a.train.len(), SCENES - 5);
    let all: BTreeSet<String> = ids(&a.train).into_iter().chain(ids(&a.val)).collect();
    assert_eq!(all.len(), SCENES);
    let picks = |seed| validation_picks(100, 0.1, seed).unwrap();
    assert_eq!(picks(1), picks(1));
    assert_ne!(picks(1), picks(2));
    assert_eq!(picks(1).iter().filter(|&&p| p).count(), 10);
    assert!(validation_picks(3, 0.9, 0).is_err());
}

#[test]
fn subset_and_val_dir_pick_the_scenes() {
    let dir = scene_folder();
    let val = scene_folder();
    let mut s = settings(dir.path());
    s.subset = Some(7);
    s.val_dir = Some(val.path().to_path_buf());
    let data = DataModule::from_settings(&s, 0, 1).unwrap();
    let first: Vec<String> = (0..7).map(|i| format!("scene_{i:06}")).collect();
    assert_eq!(ids(&data.train), first);
    assert_eq!(ids(&data.val), first);
}

#[test]
fn shuffles_repeat_per_seed_and_change_per_epoch() {
    let dir = scene_folder();
    let data = DataModule::from_settings(&settings(dir.path()), 0, 1).unwrap();
    let mut a = data.train_loader(4).unwrap();
    let mut b = data.train_loader(4).unwrap();
    assert_eq!(a.batches_per_epoch(), 4);
    let (first, second) = (take(&mut a, 8), take(&mut b, 8));
    assert_eq!(first, second);
    let epoch_ids = |batches: &[(Vec<String>, Vec<f32>, Vec<f32>)]| -> Vec<String> {
        batches.iter().flat_map(|b| b.0.clone()).collect()
    };
    assert_ne!(epoch_ids(&first[..4]), epoch_ids(&first[4..]));
    let val: Vec<String> = data
        .val_loader(2)
        .unwrap()
        .take(3)
        .flat_map(|b| b.unwrap().ids)
        .collect();
    assert_eq!(val, ids(&data.val));
}

#[test]
fn a_restored_loader_continues_with_the_uninterrupted_batches() {
    let dir = scene_folder();
    let data = DataModule::from_settings(&settings(dir.path()), 0, 1).unwrap();
    let uninterrupted = take(&mut data.train_loader(4).unwrap(), 10);
    let mut first = data.train_loader(4).unwrap();
    assert_eq!(take(&mut first, 6), uninterrupted[..6]);
    let saved = serde_json::to_string(&first.state()).unwrap();
    assert_eq!(first.state(), SamplerState { epoch: 1, batch: 2 });
    drop(first);
    let mut resumed = data.train_loader(4).unwrap();
    resumed
        .restore(serde_json::from_str(&saved).unwrap())
        .unwrap();
    assert_eq!(take(&mut resumed, 4), uninterrupted[6..]);
    let err = resumed
        .restore(SamplerState { epoch: 0, batch: 9 })
        .unwrap_err();
    assert!(
        err.to_string().contains("batch 9 is past the 4 batches"),
        "{err}"
    );
}

#[test]
fn rank_shards_are_equal_and_cover_every_scene() {
    let plan = BatchPlan {
        batch_size: 2,
        drop_last: true,
        shuffle: true,
    };
    for world in [1, 2, 3, 4, 7] {
        let shards: Vec<Vec<usize>> = (0..world)
            .map(|rank| {
                ShardSampler::new(SCENES, Shard { rank, world }, plan, 3)
                    .unwrap()
                    .epoch_order(2)
            })
            .collect();
        let len = SCENES.div_ceil(world);
        assert!(shards.iter().all(|s| s.len() == len), "world {world}");
        let covered: BTreeSet<usize> = shards.iter().flatten().copied().collect();
        assert_eq!(covered.len(), SCENES, "world {world}");
        assert_eq!(
            shards.iter().flatten().count() - SCENES,
            len * world - SCENES
        );
    }
}

#[test]
fn prefetching_threads_deliver_the_synchronous_batches() {
    let dir = scene_folder();
    let data = DataModule::from_settings(&settings(dir.path()), 0, 1).unwrap();
    let plan = BatchPlan {
        batch_size: 3,
        drop_last: false,
        shuffle: true,
    };
    let loader = |workers| {
        let sampler =
            ShardSampler::new(data.train.len(), Shard { rank: 1, world: 2 }, plan, 4).unwrap();
        SceneLoader::new(
            Arc::clone(&data.train),
            sampler,
            LoaderOptions::with_workers(workers),
        )
    };
    let mut sync = loader(0);
    let mut threaded = loader(3);
    assert_eq!(sync.batches_per_epoch(), 3);
    let expected = take(&mut sync, 9);
    assert_eq!(take(&mut threaded, 9), expected);
    assert_eq!(expected[2].0.len(), 3, "shard of 9 in batches of 3");
    assert_eq!(threaded.wait_stats().batches, 9);
    let mut restarted = loader(2);
    restarted
        .restore(SamplerState { epoch: 1, batch: 1 })
        .unwrap();
    assert_eq!(take(&mut restarted, 5), expected[4..]);
}

#[test]
fn batches_have_the_promised_shapes_and_range() {
    let dir = scene_folder();
    let data = DataModule::from_settings(&settings(dir.path()), 0, 1).unwrap();
    let batch = data.train_loader(4).unwrap().next_batch().unwrap();
    assert_eq!(batch.context.dims(), &[4, 5, 16, 16]);
    assert_eq!(batch.target.dims(), &[4, 1, 16, 16]);
    let v: Vec<f32> = batch.context.flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
    assert!(v.iter().any(|&x| x > 0.0) && v.iter().any(|&x| x < 0.0));
}

#[test]
fn augmentation_applies_one_symmetry_to_every_channel_per_scene_and_epoch() {
    use flowrun::data::scene::Symmetry;
    let dir = scene_folder();
    let mut plain = settings(dir.path());
    plain.augment = false;
    let augmented = DataModule::from_settings(&settings(dir.path()), 0, 1).unwrap();
    let plain = DataModule::from_settings(&plain, 0, 1).unwrap();
    let symmetries: Vec<Symmetry> = (0..8u8)
        .map(|k| Symmetry {
            flip: k >= 4,
            rotations: k % 4,
        })
        .collect();
    let mut drawn = BTreeSet::new();
    for epoch in 0..3 {
        for index in 0..plain.train.len() {
            let base = plain.train.sample(index, epoch).unwrap();
            let seen = augmented.train.sample(index, epoch).unwrap();
            assert_eq!(seen, augmented.train.sample(index, epoch).unwrap());
            let k = symmetries
                .iter()
                .position(|s| s.apply(&base.pixels, 16)[..] == seen.pixels[..])
                .expect("the augmented scene is one symmetry of the original, all channels alike");
            drawn.insert(k);
        }
    }
    assert!(drawn.len() >= 6, "symmetries drawn: {drawn:?}");
}
