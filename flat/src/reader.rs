//! A bounds-checked cursor over a hostile buffer: every read says what it reads, so a short
//! buffer is an error naming the item, never a panic.

use crate::DecodeError;

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    pub(crate) fn at(&self) -> usize {
        self.at
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    pub(crate) fn take(&mut self, len: usize, item: &'static str) -> Result<&'a [u8], DecodeError> {
        let rest = &self.bytes[self.at..];
        if rest.len() < len {
            return Err(DecodeError::Truncated {
                at: self.at,
                wanted: len - rest.len(),
                item,
            });
        }
        self.at += len;
        Ok(&rest[..len])
    }

    fn array<const N: usize>(&mut self, item: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, item)?;
        let mut array = [0; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    pub(crate) fn u8(&mut self, item: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(item)?[0])
    }

    pub(crate) fn u16(&mut self, item: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(item)?))
    }

    pub(crate) fn u32(&mut self, item: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(item)?))
    }

    pub(crate) fn i64(&mut self, item: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array(item)?))
    }

    /// A `u32` length, then that many bytes.
    pub(crate) fn bytes(&mut self, item: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(item)? as usize;
        self.take(len, item)
    }

    /// A `u32` length, then that many bytes of UTF-8.
    pub(crate) fn text(&mut self, item: &'static str) -> Result<&'a str, DecodeError> {
        let at = self.at;
        let bytes = self.bytes(item)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8 { at, item })
    }

    /// A count of items each at least `min_size` bytes long, refused when the rest of the
    /// buffer cannot hold them (so no allocation is sized by a hostile count).
    pub(crate) fn count(
        &mut self,
        min_size: usize,
        item: &'static str,
    ) -> Result<usize, DecodeError> {
        let at = self.at;
        let count = self.u32(item)? as usize;
        let needed = count.saturating_mul(min_size);
        if needed > self.remaining() {
            return Err(DecodeError::Truncated {
                at,
                wanted: needed - self.remaining(),
                item,
            });
        }
        Ok(count)
    }

    /// The version header both buffers start with: `u16` version, `u16` reserved (zero).
    pub(crate) fn version(&mut self) -> Result<(), DecodeError> {
        let found = self.u16("layout version")?;
        if found != crate::LAYOUT_VERSION {
            return Err(DecodeError::Version { found });
        }
        let at = self.at;
        let reserved = self.u16("reserved")?;
        if reserved != 0 {
            return Err(DecodeError::Tag {
                at,
                found: reserved.to_le_bytes()[0] | reserved.to_le_bytes()[1],
                item: "reserved field (must be zero)",
            });
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::Trailing { extra }),
        }
    }
}

impl<'a> Reader<'a> {
    /// The `len` bytes from `start` that were read already.
    pub(crate) fn slice_back(&self, start: usize, len: usize) -> &'a [u8] {
        self.bytes.get(start..start + len).unwrap_or_default()
    }
}
