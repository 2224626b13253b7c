//! 8-bit images in row-major HWC order, and their PNG encoding for TensorBoard.

use super::TelemetryError;

/// How many channels an [`Image`] has per pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    /// One luminance channel.
    Gray,
    /// Red, green, blue.
    Rgb,
}

impl ColorMode {
    /// Channels per pixel.
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Gray => 1,
            ColorMode::Rgb => 3,
        }
    }

    /// TensorBoard's `Summary.Image.colorspace` code (1 grayscale, 3 RGB).
    pub fn colorspace(self) -> i32 {
        match self {
            ColorMode::Gray => 1,
            ColorMode::Rgb => 3,
        }
    }
}

/// An 8-bit image, pixels row by row, channels interleaved (`pixels[(y * width + x) * c + k]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    width: u32,
    height: u32,
    mode: ColorMode,
    pixels: Vec<u8>,
}

impl Image {
    /// An image from interleaved pixels; fails when `pixels.len() != width * height * channels`.
    pub fn new(
        width: u32,
        height: u32,
        mode: ColorMode,
        pixels: Vec<u8>,
    ) -> Result<Self, TelemetryError> {
        let expected = width as usize * height as usize * mode.channels();
        if width == 0 || height == 0 || pixels.len() != expected {
            return Err(TelemetryError::BadImage {
                what: format!("{width}x{height} {mode:?}"),
                message: format!(
                    "expected a non-empty image with {expected} bytes (width * height * {} channels, row-major), got {}",
                    mode.channels(),
                    pixels.len()
                ),
            });
        }
        Ok(Image {
            width,
            height,
            mode,
            pixels,
        })
    }

    /// A grayscale image from `[0, 1]` floats in row-major order (clamped, rounded to 8 bits).
    pub fn gray_from_unit_floats(
        width: u32,
        height: u32,
        values: &[f32],
    ) -> Result<Self, TelemetryError> {
        Image::new(
            width,
            height,
            ColorMode::Gray,
            values.iter().map(|&v| unit_to_byte(v)).collect(),
        )
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Gray or RGB.
    pub fn mode(&self) -> ColorMode {
        self.mode
    }

    /// The interleaved pixel bytes.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The channel values of pixel (`x`, `y`), or `None` outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<&[u8]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let c = self.mode.channels();
        let start = (y as usize * self.width as usize + x as usize) * c;
        Some(&self.pixels[start..start + c])
    }

    /// The image as a PNG file.
    pub fn encode_png(&self) -> Result<Vec<u8>, TelemetryError> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
        encoder.set_color(match self.mode {
            ColorMode::Gray => png::ColorType::Grayscale,
            ColorMode::Rgb => png::ColorType::Rgb,
        });
        encoder.set_depth(png::BitDepth::Eight);
        let png_error = |e: png::EncodingError| TelemetryError::BadImage {
            what: format!("{}x{} {:?}", self.width, self.height, self.mode),
            message: format!("PNG encoding failed: {e}"),
        };
        let mut writer = encoder.write_header().map_err(png_error)?;
        writer.write_image_data(&self.pixels).map_err(png_error)?;
        writer.finish().map_err(png_error)?;
        Ok(out)
    }

    /// Decodes an 8-bit grayscale or RGB PNG file.
    pub fn decode_png(bytes: &[u8]) -> Result<Self, TelemetryError> {
        let bad = |message: String| TelemetryError::BadImage {
            what: "PNG".to_string(),
            message,
        };
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .map_err(|e| bad(format!("cannot read the PNG header: {e}")))?;
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| bad("the PNG is too large to decode".to_string()))?;
        let mut buf = vec![0u8; size];
        let info = reader
            .next_frame(&mut buf)
            .map_err(|e| bad(format!("cannot decode the PNG pixels: {e}")))?;
        if info.bit_depth != png::BitDepth::Eight {
            return Err(bad(format!(
                "expected 8-bit samples, got {:?}",
                info.bit_depth
            )));
        }
        let mode = match info.color_type {
            png::ColorType::Grayscale => ColorMode::Gray,
            png::ColorType::Rgb => ColorMode::Rgb,
            other => {
                return Err(bad(format!(
                    "expected a grayscale or RGB PNG, got {other:?}"
                )))
            }
        };
        buf.truncate(info.buffer_size());
        Image::new(info.width, info.height, mode, buf)
    }
}

/// Maps a `[0, 1]` float to a byte, clamping outside values and NaN to the nearest end (NaN to 0).
pub fn unit_to_byte(v: f32) -> u8 {
    if v.is_nan() {
        return 0;
    }
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_square_rgb_round_trips_through_png() {
        let (w, h) = (5u32, 3u32);
        let pixels: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 256) as u8).collect();
        let img = Image::new(w, h, ColorMode::Rgb, pixels.clone()).unwrap();
        let back = Image::decode_png(&img.encode_png().unwrap()).unwrap();
        assert_eq!(
            (back.width(), back.height(), back.mode()),
            (5, 3, ColorMode::Rgb)
        );
        assert_eq!(back.pixels(), pixels.as_slice());
        assert_eq!(
            back.pixel(4, 2).unwrap(),
            &pixels[(2 * 5 + 4) * 3..(2 * 5 + 4) * 3 + 3]
        );
        assert_eq!(back.pixel(5, 0), None);
    }

    #[test]
    fn grayscale_round_trips_through_png() {
        let img =
            Image::gray_from_unit_floats(2, 4, &[0.0, 1.0, 0.5, -3.0, 7.0, f32::NAN, 0.25, 0.75])
                .unwrap();
        assert_eq!(img.pixels(), &[0, 255, 128, 0, 255, 0, 64, 191]);
        let back = Image::decode_png(&img.encode_png().unwrap()).unwrap();
        assert_eq!(back, img);
    }

    #[test]
    fn a_wrong_pixel_count_is_an_error_not_a_panic() {
        let err = Image::new(4, 4, ColorMode::Rgb, vec![0; 47]).unwrap_err();
        assert!(err.to_string().contains("48 bytes"), "{err}");
        assert!(Image::new(0, 4, ColorMode::Gray, vec![]).is_err());
    }

    #[test]
    fn garbage_is_not_a_png() {
        assert!(Image::decode_png(b"not a png").is_err());
    }
}
