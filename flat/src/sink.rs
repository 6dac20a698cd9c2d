//! Where an encoder writes: a counter (to size the buffer first), a slice (the guest's memory,
//! written in place) or a `Vec`.

/// A byte destination for the encoders of [`crate::encode`].
pub trait Sink {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Counts the bytes an encoding needs without writing them: encode once into a counter, once
/// into a buffer of exactly that size.
#[derive(Debug, Default, Clone, Copy)]
pub struct ByteCounter(pub usize);

impl Sink for ByteCounter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Writes into a slice sized beforehand with a [`ByteCounter`]. Bytes beyond the slice are
/// dropped and counted in [`SliceWriter::overflow`], so a size that does not match the
/// encoding is detected rather than a panic.
#[derive(Debug)]
pub struct SliceWriter<'a> {
    slice: &'a mut [u8],
    at: usize,
    overflow: usize,
}

impl<'a> SliceWriter<'a> {
    /// A writer at the start of `slice`.
    pub fn new(slice: &'a mut [u8]) -> Self {
        Self {
            slice,
            at: 0,
            overflow: 0,
        }
    }

    /// Bytes written.
    pub fn written(&self) -> usize {
        self.at
    }

    /// Bytes that did not fit.
    pub fn overflow(&self) -> usize {
        self.overflow
    }
}

impl Sink for SliceWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        match self.slice.get_mut(self.at..self.at + bytes.len()) {
            Some(target) => {
                target.copy_from_slice(bytes);
                self.at += bytes.len();
            }
            None => self.overflow += bytes.len(),
        }
    }
}
