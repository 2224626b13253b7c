//! Choosing the device a run trains on, from `trainer.accelerator`, `trainer.devices` and
//! `trainer.strategy`, with a one-line notice when `auto` falls back to the CPU.

use crate::config::schema::{Accelerator, Strategy, TrainerSettings};
use candle_core::Device;

/// Why the configured trainer cannot run in this build or on this machine.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A GPU was asked for, but this binary was built without CUDA.
    #[error(
        "trainer.accelerator=gpu needs a CUDA build of flowrun, but this binary was built without \
         the `cuda` feature"
    )]
    NoCudaBuild,
    /// A GPU was asked for, but CUDA could not open one.
    #[error("trainer.accelerator=gpu: no usable CUDA device: {0}")]
    NoCudaDevice(String),
    /// More devices were asked for than a single process uses.
    #[error("trainer.devices={0} with trainer.strategy=auto: one process trains on one device")]
    TooManyDevices(usize),
}

impl DeviceError {
    /// What to type instead.
    pub fn hint(&self) -> &'static str {
        match self {
            DeviceError::NoCudaBuild => {
                "build with `cargo build --release --features cuda,nccl`, or train on this machine's \
                 CPU with trainer=cpu (or trainer.accelerator=auto)"
            }
            DeviceError::NoCudaDevice(_) => {
                "check CUDA_VISIBLE_DEVICES and the driver, or use trainer.accelerator=auto to fall \
                 back to the CPU"
            }
            DeviceError::TooManyDevices(_) => {
                "set trainer.devices=1, or trainer=multi_gpu for data-parallel training"
            }
        }
    }
}

/// The device chosen for a run and, when the choice was a fallback, the line that says so.
#[derive(Debug)]
pub struct DeviceChoice {
    /// Where tensors live.
    pub device: Device,
    /// A one-line notice for the console (e.g. the CPU fallback of `accelerator: auto`).
    pub notice: Option<String>,
}

fn cuda_device() -> Result<Device, DeviceError> {
    if !candle_core::utils::cuda_is_available() {
        return Err(DeviceError::NoCudaBuild);
    }
    Device::new_cuda(0).map_err(|e| DeviceError::NoCudaDevice(e.to_string()))
}

/// Picks the device for a single-process run (data-parallel ranks get theirs from
/// [`crate::dist::connect`]).
pub fn choose_device(trainer: &TrainerSettings) -> Result<DeviceChoice, DeviceError> {
    if trainer.strategy != Strategy::Ddp {
        if let Some(n) = trainer.devices.count().filter(|&n| n > 1) {
            return Err(DeviceError::TooManyDevices(n));
        }
    }
    match trainer.accelerator {
        Accelerator::Cpu => Ok(DeviceChoice {
            device: Device::Cpu,
            notice: None,
        }),
        Accelerator::Gpu => Ok(DeviceChoice {
            device: cuda_device()?,
            notice: None,
        }),
        Accelerator::Auto => match cuda_device() {
            Ok(device) => Ok(DeviceChoice {
                device,
                notice: None,
            }),
            Err(reason) => Ok(DeviceChoice {
                device: Device::Cpu,
                notice: Some(format!(
                    "no CUDA device ({}); training on the CPU",
                    match reason {
                        DeviceError::NoCudaBuild => "built without the `cuda` feature".to_string(),
                        other => other.to_string(),
                    }
                )),
            }),
        },
    }
}
