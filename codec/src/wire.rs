//! Confluent's wire format: magic byte `0`, the schema id as a 4-byte big-endian integer, for
//! Protobuf the message-index list, then the encoded payload.
//!
//! Message indexes (Protobuf only) are zig-zag varints: the count, then each index, outermost
//! message first; the common `[0]` (the file's first message) is written as a single `0`.

use crate::avro::write_long;

/// The first byte of every Confluent-framed payload.
pub const MAGIC: u8 = 0;

/// Appends the header: magic byte, schema id, and the message indexes when given.
pub fn write_header(out: &mut Vec<u8>, id: u32, indexes: Option<&[i32]>) {
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    match indexes {
        None => {}
        Some([0]) => out.push(0),
        Some(indexes) => {
            write_long(out, indexes.len() as i64);
            for &index in indexes {
                write_long(out, i64::from(index));
            }
        }
    }
}

/// Splits a framed payload into the schema id and the rest.
///
/// # Errors
/// A reason when the payload is too short or does not start with the magic byte.
pub fn read_header(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    match bytes {
        [MAGIC, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        [] => Err("empty payload, expected Confluent's wire format".to_owned()),
        [first, ..] if *first != MAGIC => Err(format!(
            "first byte {first:#04x} is not Confluent's magic byte 0x00"
        )),
        _ => Err(format!(
            "{} bytes are too short for Confluent's 5-byte header",
            bytes.len()
        )),
    }
}

/// Reads the Protobuf message-index list after the header.
///
/// # Errors
/// A reason when the varints are cut short or absurd.
pub fn read_indexes(bytes: &[u8]) -> Result<(Vec<i32>, &[u8]), String> {
    let mut pos = 0;
    let count = read_varint(bytes, &mut pos)?;
    if count == 0 {
        return Ok((vec![0], &bytes[pos..]));
    }
    if !(1..=64).contains(&count) {
        return Err(format!("message-index count {count} out of range"));
    }
    let mut indexes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let index = read_varint(bytes, &mut pos)?;
        indexes.push(i32::try_from(index).map_err(|_| format!("message index {index} too large"))?);
    }
    Ok((indexes, &bytes[pos..]))
}

fn read_varint(bytes: &[u8], pos: &mut usize) -> Result<i64, String> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *bytes
            .get(*pos)
            .ok_or_else(|| "message indexes cut short".to_owned())?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err("message-index varint longer than 10 bytes".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let mut out = Vec::new();
        write_header(&mut out, 258, None);
        assert_eq!(out, [0, 0, 0, 1, 2]);
        out.push(42);
        assert_eq!(read_header(&out), Ok((258, &[42u8][..])));
    }

    #[test]
    fn first_message_is_one_zero_byte() {
        let mut out = Vec::new();
        write_header(&mut out, 1, Some(&[0]));
        assert_eq!(out, [0, 0, 0, 0, 1, 0]);
        assert_eq!(read_indexes(&out[5..]), Ok((vec![0], &[][..])));
    }

    #[test]
    fn nested_indexes_are_zigzag_varints() {
        let mut out = Vec::new();
        write_header(&mut out, 7, Some(&[1, 0, 70]));
        // count 3 → 6; 1 → 2; 0 → 0; 70 → 140 = 0x8c 0x01.
        assert_eq!(&out[5..], [6, 2, 0, 0x8c, 0x01]);
        assert_eq!(read_indexes(&out[5..]).unwrap().0, vec![1, 0, 70]);
    }

    #[test]
    fn bad_headers_are_explained() {
        assert!(read_header(&[]).unwrap_err().contains("empty"));
        assert!(read_header(&[1, 0, 0, 0, 1]).unwrap_err().contains("magic"));
        assert!(read_header(&[0, 0, 1]).unwrap_err().contains("too short"));
        assert!(read_indexes(&[0x80]).unwrap_err().contains("cut short"));
        assert!(
            read_indexes(&[200, 1])
                .unwrap_err()
                .contains("out of range")
        );
    }
}
