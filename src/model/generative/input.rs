//! The network input: context masks, two coordinate channels and the noisy target.
//!
//! Channel order (as in the golden DiT inputs, `tests/golden/dit/README.md`): the context masks
//! first, then the row coordinate (constant along a row, `linspace(-1, 1, H)` down the rows), then
//! the column coordinate (`linspace(-1, 1, W)` across the columns), then the noisy target.

use crate::path::diffusion::torch_linspace_f32;
use candle_core::{DType, Device, Tensor};

use super::error::GenerativeError;

/// Number of coordinate channels between the context and the noisy target.
pub const COORDINATE_CHANNELS: usize = 2;

/// The channel layout of a network input, checked against the batches it is given.
#[derive(Debug, Clone)]
pub struct InputLayout {
    /// Context channels (5 masks for NAMO).
    pub context_channels: usize,
    /// Channels of the target (and of the network output).
    pub target_channels: usize,
    /// Image side (square inputs).
    pub size: usize,
    coordinates: Tensor,
}

impl InputLayout {
    /// The layout for a network with `in_channels` inputs and `out_channels` outputs on
    /// `size x size` images: `in_channels - 2 - out_channels` context channels.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        size: usize,
        device: &Device,
    ) -> Result<Self, GenerativeError> {
        let context_channels = in_channels
            .checked_sub(COORDINATE_CHANNELS + out_channels)
            .ok_or_else(|| GenerativeError::InvalidSetting {
                key: "model.net.in_channels",
                message: format!(
                    "{in_channels} input channels cannot hold the 2 coordinate channels and the \
                     {out_channels}-channel noisy target; set it to context channels + 2 + \
                     out_channels (8 for 5 NAMO masks)"
                ),
            })?;
        Ok(Self {
            context_channels,
            target_channels: out_channels,
            size,
            coordinates: coordinate_channels(size, size, device)?,
        })
    }

    /// The `(1, 2, H, W)` coordinate channels: rows, then columns.
    pub fn coordinates(&self) -> &Tensor {
        &self.coordinates
    }

    /// Checks that `context` is `(B, context_channels, size, size)`; returns `B`.
    pub fn check_context(&self, context: &Tensor) -> Result<usize, GenerativeError> {
        self.check("context", context, self.context_channels, None)
    }

    /// Checks that `target` is `(batch, target_channels, size, size)`.
    pub fn check_target(&self, target: &Tensor, batch: usize) -> Result<(), GenerativeError> {
        self.check("target", target, self.target_channels, Some(batch))
            .map(|_| ())
    }

    fn check(
        &self,
        what: &'static str,
        t: &Tensor,
        channels: usize,
        batch: Option<usize>,
    ) -> Result<usize, GenerativeError> {
        let s = self.size;
        let bad = || GenerativeError::BadShape {
            what,
            expected: match batch {
                Some(b) => format!("({b}, {channels}, {s}, {s}) (batch, channels, height, width)"),
                None => format!("(batch, {channels}, {s}, {s}) (batch, channels, height, width)"),
            },
            got: t.dims().to_vec(),
        };
        match *t.dims() {
            [b, c, h, w] if c == channels && h == s && w == s && b > 0 => match batch {
                Some(expected) if expected != b => Err(bad()),
                _ => Ok(b),
            },
            _ => Err(bad()),
        }
    }

    /// The network input `(B, in_channels, H, W)`: `[context, rows, columns, noisy]` in the
    /// dtype of `noisy`.
    pub fn assemble(&self, context: &Tensor, noisy: &Tensor) -> Result<Tensor, GenerativeError> {
        let batch = self.check_context(context)?;
        self.check_target(noisy, batch)?;
        Ok(self.concat(context, noisy)?)
    }

    /// [`InputLayout::assemble`] without the shape checks, for inputs already checked.
    pub(crate) fn concat(&self, context: &Tensor, noisy: &Tensor) -> candle_core::Result<Tensor> {
        let batch = noisy.dim(0)?;
        let dtype = noisy.dtype();
        let coords = self.coordinates.to_dtype(dtype)?.broadcast_as((
            batch,
            COORDINATE_CHANNELS,
            self.size,
            self.size,
        ))?;
        Tensor::cat(&[&context.to_dtype(dtype)?, &coords, noisy], 1)
    }
}

/// `torch.linspace(-1, 1, n, dtype=float32)`, bit for bit.
fn linspace_unit(n: usize) -> Vec<f32> {
    torch_linspace_f32(-1.0, 1.0, n)
}

/// The `(1, 2, height, width)` f32 coordinate channels: row coordinate, then column coordinate.
pub fn coordinate_channels(
    height: usize,
    width: usize,
    device: &Device,
) -> Result<Tensor, GenerativeError> {
    let rows = Tensor::from_vec(linspace_unit(height), (height, 1), device)?
        .broadcast_as((height, width))?;
    let cols = Tensor::from_vec(linspace_unit(width), (1, width), device)?
        .broadcast_as((height, width))?;
    Ok(Tensor::stack(&[rows, cols], 0)?
        .unsqueeze(0)?
        .to_dtype(DType::F32)?
        .contiguous()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_run_down_rows_then_across_columns() -> Result<(), GenerativeError> {
        let c = coordinate_channels(3, 5, &Device::Cpu)?;
        assert_eq!(c.dims(), [1, 2, 3, 5]);
        let rows = c.get(0)?.get(0)?.to_vec2::<f32>()?;
        let cols = c.get(0)?.get(1)?.to_vec2::<f32>()?;
        assert_eq!(rows[0], vec![-1.0; 5]);
        assert_eq!(rows[2], vec![1.0; 5]);
        assert_eq!(rows[1][3], 0.0);
        assert_eq!(cols[1], vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        Ok(())
    }

    #[test]
    fn assemble_orders_channels_and_checks_shapes() -> Result<(), GenerativeError> {
        let dev = Device::Cpu;
        let layout = InputLayout::new(8, 1, 4, &dev)?;
        assert_eq!(layout.context_channels, 5);
        let context = Tensor::full(0.5f32, (2, 5, 4, 4), &dev)?;
        let noisy = Tensor::full(7f32, (2, 1, 4, 4), &dev)?;
        let x = layout.assemble(&context, &noisy)?;
        assert_eq!(x.dims(), [2, 8, 4, 4]);
        let at = |c: usize, i: usize, j: usize| -> candle_core::Result<f32> {
            x.get(1)?.get(c)?.get(i)?.get(j)?.to_scalar::<f32>()
        };
        assert_eq!(at(4, 0, 0)?, 0.5);
        assert_eq!((at(5, 0, 3)?, at(5, 3, 0)?), (-1.0, 1.0));
        assert_eq!((at(6, 0, 3)?, at(6, 3, 0)?), (1.0, -1.0));
        assert_eq!(at(7, 2, 2)?, 7.0);
        let wrong = Tensor::zeros((2, 4, 4, 4), DType::F32, &dev)?;
        let err = layout.assemble(&wrong, &noisy).unwrap_err();
        assert!(err.to_string().contains("context"), "{err}");
        let other_batch = Tensor::zeros((3, 1, 4, 4), DType::F32, &dev)?;
        assert!(layout.assemble(&context, &other_batch).is_err());
        assert!(InputLayout::new(2, 1, 4, &dev).is_err());
        Ok(())
    }
}
