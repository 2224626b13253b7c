//! TFRecord framing: `len: u64 LE`, `masked_crc32c(len)`, `data`, `masked_crc32c(data)`.

use std::io::{self, Read};

/// The constant TFRecord adds to a rotated CRC32C.
const MASK_DELTA: u32 = 0xa282_ead8;

/// TFRecord's masked CRC32C of `bytes`.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
        .rotate_right(15)
        .wrapping_add(MASK_DELTA)
}

/// Appends one framed record holding `payload` to `out`.
pub fn frame_record(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc32c(payload).to_le_bytes());
}

/// What reading the next record found.
#[derive(Debug, PartialEq)]
pub enum RecordRead {
    /// A whole record with valid checksums.
    Record(Vec<u8>),
    /// A clean end of file, between records.
    End,
    /// The file ends inside a record (a writer is still appending, or was killed mid-write).
    Truncated,
    /// A checksum mismatch.
    Corrupt {
        /// `length header` or `payload`.
        part: &'static str,
        /// The stored checksum.
        expected: u32,
        /// The computed checksum.
        found: u32,
    },
}

/// Reads bytes until `buf` is full or the input ends; returns how many were read.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads one record from `input`, checking both checksums.
pub fn read_record(input: &mut impl Read) -> io::Result<RecordRead> {
    let mut header = [0u8; 12];
    match read_up_to(input, &mut header)? {
        0 => return Ok(RecordRead::End),
        12 => {}
        _ => return Ok(RecordRead::Truncated),
    }
    let len_bytes: [u8; 8] = header[..8].try_into().expect("8-byte slice");
    let len_crc = u32::from_le_bytes(header[8..].try_into().expect("4-byte slice"));
    let computed = masked_crc32c(&len_bytes);
    if computed != len_crc {
        return Ok(RecordRead::Corrupt {
            part: "length header",
            expected: len_crc,
            found: computed,
        });
    }
    let len = u64::from_le_bytes(len_bytes);
    let mut payload = Vec::new();
    let got = input.by_ref().take(len).read_to_end(&mut payload)?;
    if (got as u64) < len {
        return Ok(RecordRead::Truncated);
    }
    let mut footer = [0u8; 4];
    if read_up_to(input, &mut footer)? < 4 {
        return Ok(RecordRead::Truncated);
    }
    let data_crc = u32::from_le_bytes(footer);
    let computed = masked_crc32c(&payload);
    if computed != data_crc {
        return Ok(RecordRead::Corrupt {
            part: "payload",
            expected: data_crc,
            found: computed,
        });
    }
    Ok(RecordRead::Record(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_value() {
        // CRC-32C of "123456789" is 0xE3069283 (RFC 3720, appendix B.4); masked by hand in
        // Python: ((c >> 15 | c << 17) & 0xffffffff) + 0xa282ead8, modulo 2^32.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
    }

    #[test]
    fn frames_round_trip() {
        let mut bytes = Vec::new();
        frame_record(b"hello", &mut bytes);
        frame_record(b"", &mut bytes);
        assert_eq!(bytes.len(), 16 + 5 + 16);
        let mut input = bytes.as_slice();
        assert_eq!(
            read_record(&mut input).unwrap(),
            RecordRead::Record(b"hello".to_vec())
        );
        assert_eq!(read_record(&mut input).unwrap(), RecordRead::Record(vec![]));
        assert_eq!(read_record(&mut input).unwrap(), RecordRead::End);
    }

    #[test]
    fn every_cut_inside_a_record_reads_as_truncated() {
        let mut bytes = Vec::new();
        frame_record(b"payload", &mut bytes);
        for cut in 1..bytes.len() {
            let mut input = &bytes[..cut];
            assert_eq!(
                read_record(&mut input).unwrap(),
                RecordRead::Truncated,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn flipped_bits_are_reported_as_corruption() {
        let mut bytes = Vec::new();
        frame_record(b"payload", &mut bytes);
        let mut in_length = bytes.clone();
        in_length[0] ^= 1;
        assert!(matches!(
            read_record(&mut in_length.as_slice()).unwrap(),
            RecordRead::Corrupt {
                part: "length header",
                ..
            }
        ));
        let mut in_payload = bytes.clone();
        in_payload[13] ^= 0x80;
        assert!(matches!(
            read_record(&mut in_payload.as_slice()).unwrap(),
            RecordRead::Corrupt {
                part: "payload",
                ..
            }
        ));
    }
}
