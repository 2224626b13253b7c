//! The `.npy` array format inside `.npz` archives, as numpy's `np.savez` and
//! `np.savez_compressed` write it: reading 2-D numeric masks and writing boolean ones.
//!
//! Reading accepts little-, big- and native-endian bool, integer and float dtypes, and C or
//! Fortran order (a Fortran-order array is transposed back to row-major), so every way numpy
//! can save a mask loads. Structured, complex, object and string dtypes are rejected.

use std::io::{Read, Seek, Write};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The element type of a `.npy` array, as its `descr` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyDtype {
    /// `|b1`, numpy's bool.
    Bool,
    /// Unsigned integers of the given width in bytes.
    Unsigned(usize),
    /// Signed integers of the given width in bytes.
    Signed(usize),
    /// IEEE floats of the given width in bytes (2, 4 or 8).
    Float(usize),
}

/// A decoded numeric `.npy` array: its shape and its values, row-major, as `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The dimensions.
    pub shape: Vec<usize>,
    /// The dtype it was stored as.
    pub dtype: NpyDtype,
    /// The elements in row-major (C) order.
    pub values: NpyValues,
    /// The first element (row-major index and exact stored value) that is neither 0 nor 1,
    /// NaN included; checked on the stored value, before any narrowing to `f32`.
    pub first_non_binary: Option<(usize, f64)>,
}

/// The elements of an array: raw bytes for bool and uint8 (no copy), `f32` otherwise.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyValues {
    /// One byte per element (bool, uint8).
    Bytes(Vec<u8>),
    /// Every other dtype, narrowed to `f32`.
    Floats(Vec<f32>),
}

impl NpyValues {
    /// The elements as `f32`.
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            NpyValues::Bytes(bytes) => bytes.iter().map(|&b| f32::from(b)).collect(),
            NpyValues::Floats(values) => values.clone(),
        }
    }
}

/// Why a `.npy` member could not be decoded, phrased for the user, with a fix.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyProblem {
    /// What is wrong.
    pub reason: String,
    /// What to do.
    pub fix: String,
}

fn problem(reason: impl Into<String>, fix: impl Into<String>) -> NpyProblem {
    NpyProblem {
        reason: reason.into(),
        fix: fix.into(),
    }
}

const RESAVE: &str = "re-save the mask with np.savez(path, key=np.ascontiguousarray(mask))";

struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Decodes a whole `.npy` file held in memory.
pub fn decode_npy(bytes: &[u8]) -> Result<NpyArray, NpyProblem> {
    let (header, body) = split_header(bytes)?;
    let (dtype, big_endian) = parse_descr(&header.descr)?;
    let count: usize = header.shape.iter().product();
    let width = dtype_width(dtype);
    if body.len() < count * width {
        return Err(problem(
            format!(
                "array data is truncated: shape {:?} of '{}' needs {} bytes, found {}",
                header.shape,
                header.descr,
                count * width,
                body.len()
            ),
            RESAVE,
        ));
    }
    let data = &body[..count * width];
    let mut first_non_binary = None;
    if width == 1
        && dtype != NpyDtype::Signed(1)
        && !(header.fortran_order && header.shape.len() > 1)
    {
        if let Some(at) = data.iter().position(|&b| b > 1) {
            first_non_binary = Some((at, f64::from(data[at])));
        }
        return Ok(NpyArray {
            shape: header.shape,
            dtype,
            values: NpyValues::Bytes(data.to_vec()),
            first_non_binary,
        });
    }
    let mut values: Vec<f32> = {
        let mut values = Vec::with_capacity(count);
        for (at, chunk) in data.chunks_exact(width).enumerate() {
            let v = element(chunk, dtype, big_endian);
            if first_non_binary.is_none() && v != 0.0 && v != 1.0 {
                first_non_binary = Some((at, v));
            }
            values.push(v as f32);
        }
        values
    };
    if header.fortran_order && header.shape.len() > 1 {
        values = fortran_to_c(&values, &header.shape);
        first_non_binary =
            first_non_binary.map(|(at, v)| (fortran_index_to_c(at, &header.shape), v));
    }
    Ok(NpyArray {
        shape: header.shape,
        dtype,
        values: NpyValues::Floats(values),
        first_non_binary,
    })
}

fn fortran_index_to_c(at: usize, shape: &[usize]) -> usize {
    let mut rest = at;
    let mut index = vec![0usize; shape.len()];
    for (d, &n) in shape.iter().enumerate() {
        index[d] = rest % n;
        rest /= n;
    }
    index.iter().zip(shape).fold(0, |flat, (i, n)| flat * n + i)
}

fn split_header(bytes: &[u8]) -> Result<(Header, &[u8]), NpyProblem> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(problem("not a .npy array (no \\x93NUMPY magic)", RESAVE));
    }
    let major = bytes[6];
    let (len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => {
            return Err(problem(
                format!(".npy format version {major} is not supported (1, 2 and 3 are)"),
                RESAVE,
            ))
        }
    };
    let text = bytes
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| problem("the .npy header is truncated or not text", RESAVE))?;
    let header = parse_header(text)?;
    Ok((header, &bytes[start + len..]))
}

fn parse_header(text: &str) -> Result<Header, NpyProblem> {
    let bad = || problem(format!("cannot parse the .npy header {text:?}"), RESAVE);
    let descr = quoted_after(text, "'descr'").ok_or_else(bad)?;
    let fortran_order = match after(text, "'fortran_order'") {
        Some(rest) if rest.starts_with("True") => true,
        Some(rest) if rest.starts_with("False") => false,
        _ => return Err(bad()),
    };
    let shape_text = after(text, "'shape'")
        .and_then(|rest| rest.strip_prefix('('))
        .and_then(|rest| rest.split(')').next())
        .ok_or_else(bad)?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad())?;
    Ok(Header {
        descr,
        fortran_order,
        shape,
    })
}

fn after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let rest = &text[text.find(key)? + key.len()..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

fn quoted_after(text: &str, key: &str) -> Option<String> {
    let rest = after(text, key)?.strip_prefix('\'')?;
    Some(rest[..rest.find('\'')?].to_string())
}

fn parse_descr(descr: &str) -> Result<(NpyDtype, bool), NpyProblem> {
    let unsupported = || {
        problem(
            format!("dtype '{descr}' is not a mask dtype (expected bool, an integer type, float32 or float64)"),
            "save the mask as bool, uint8 or float32, e.g. mask.astype(np.uint8)",
        )
    };
    let mut chars = descr.chars();
    let order = chars.next().ok_or_else(unsupported)?;
    let big_endian = match order {
        '<' | '|' | '=' => false,
        '>' => true,
        _ => return Err(unsupported()),
    };
    let kind = chars.next().ok_or_else(unsupported)?;
    let width: usize = chars.as_str().parse().map_err(|_| unsupported())?;
    let dtype = match (kind, width) {
        ('b', 1) => NpyDtype::Bool,
        ('u', 1 | 2 | 4 | 8) => NpyDtype::Unsigned(width),
        ('i', 1 | 2 | 4 | 8) => NpyDtype::Signed(width),
        ('f', 2 | 4 | 8) => NpyDtype::Float(width),
        _ => return Err(unsupported()),
    };
    Ok((dtype, big_endian))
}

fn dtype_width(dtype: NpyDtype) -> usize {
    match dtype {
        NpyDtype::Bool => 1,
        NpyDtype::Unsigned(w) | NpyDtype::Signed(w) | NpyDtype::Float(w) => w,
    }
}

fn element(chunk: &[u8], dtype: NpyDtype, big_endian: bool) -> f64 {
    let mut b = [0u8; 8];
    let w = chunk.len();
    if big_endian {
        for (i, &byte) in chunk.iter().rev().enumerate() {
            b[i] = byte;
        }
    } else {
        b[..w].copy_from_slice(chunk);
    }
    match dtype {
        NpyDtype::Bool => f64::from(b[0]),
        NpyDtype::Unsigned(_) => u64::from_le_bytes(b) as f64,
        NpyDtype::Signed(width) => {
            let shift = 64 - 8 * width as u32;
            ((i64::from_le_bytes(b) << shift) >> shift) as f64
        }
        NpyDtype::Float(2) => half_to_f64(u16::from_le_bytes([b[0], b[1]])),
        NpyDtype::Float(4) => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        NpyDtype::Float(_) => f64::from_le_bytes(b),
    }
}

fn half_to_f64(bits: u16) -> f64 {
    let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let fraction = f64::from(bits & 0x3ff);
    match exponent {
        0 => sign * fraction * 2f64.powi(-24),
        31 if fraction == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + fraction / 1024.0) * 2f64.powi(exponent - 15),
    }
}

fn fortran_to_c(values: &[f32], shape: &[usize]) -> Vec<f32> {
    let n = shape.len();
    let mut f_strides = vec![1usize; n];
    for d in 1..n {
        f_strides[d] = f_strides[d - 1] * shape[d - 1];
    }
    let mut out = Vec::with_capacity(values.len());
    let mut index = vec![0usize; n];
    for _ in 0..values.len() {
        let at: usize = index.iter().zip(&f_strides).map(|(i, s)| i * s).sum();
        out.push(values[at]);
        for d in (0..n).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

/// Encodes a boolean mask (nonzero = true) as a `.npy` file of dtype `|b1`.
pub fn encode_bool_npy(shape: &[usize], mask: &[bool]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '|b1', 'fortran_order': False, 'shape': {shape_text}, }}");
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + mask.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(mask.iter().map(|&m| u8::from(m)));
    out
}

/// Writes named boolean masks as an `.npz` archive (deflated when `compressed`, like
/// `np.savez_compressed`), with fixed timestamps so equal scenes give equal bytes.
pub fn write_npz<W: Write + Seek>(
    sink: W,
    arrays: &[(&str, &[usize], &[bool])],
    compressed: bool,
) -> zip::result::ZipResult<W> {
    let method = if compressed {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .last_modified_time(zip::DateTime::default());
    let mut zip = zip::ZipWriter::new(sink);
    for (name, shape, mask) in arrays {
        zip.start_file(format!("{name}.npy"), options)?;
        zip.write_all(&encode_bool_npy(shape, mask))?;
    }
    zip.finish()
}

/// Reads one member of an open archive fully into memory.
pub fn read_member<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    member: &str,
) -> Result<Vec<u8>, NpyProblem> {
    let mut file = archive.by_name(member).map_err(|e| {
        problem(
            format!("cannot open the archive member: {e}"),
            "re-save the scene; the archive is damaged",
        )
    })?;
    let mut bytes = Vec::with_capacity(file.size() as usize);
    file.read_to_end(&mut bytes).map_err(|e| {
        problem(
            format!("the archive member is corrupted ({e})"),
            "re-save the scene; the archive is damaged",
        )
    })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, body: &[u8]) -> Vec<u8> {
        let header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}\n",
            if fortran { "True" } else { "False" }
        );
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn bool_round_trips_through_the_encoder() {
        let mask = [true, false, false, true, true, false];
        let array = decode_npy(&encode_bool_npy(&[2, 3], &mask)).unwrap();
        assert_eq!(array.shape, vec![2, 3]);
        assert_eq!(array.dtype, NpyDtype::Bool);
        assert_eq!(array.values.to_f32(), vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
        assert_eq!(array.first_non_binary, None);
        assert_eq!(encode_bool_npy(&[2, 3], &mask).len() % 64, 6);
    }

    #[test]
    fn big_endian_signed_and_fortran_order_decode_to_row_major() {
        let body: Vec<u8> = [1i16, -2, 3, 4]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let array = decode_npy(&npy(">i2", true, "(2, 2)", &body)).unwrap();
        assert_eq!(array.values.to_f32(), vec![1.0, 3.0, -2.0, 4.0]);
        assert_eq!(array.first_non_binary, Some((2, -2.0)));
    }

    #[test]
    fn half_floats_and_unsupported_dtypes() {
        let body: Vec<u8> = [0x3c00u16, 0x0000, 0x7e00]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let array = decode_npy(&npy("<f2", false, "(3,)", &body)).unwrap();
        let values = array.values.to_f32();
        assert_eq!(&values[..2], &[1.0, 0.0]);
        assert!(values[2].is_nan());
        let err = decode_npy(&npy("<c8", false, "(1,)", &[0; 8])).unwrap_err();
        assert!(err.reason.contains("'<c8'"), "{err:?}");
        let err = decode_npy(&npy("<f4", false, "(4,)", &[0; 8])).unwrap_err();
        assert!(err.reason.contains("truncated"), "{err:?}");
    }
}
