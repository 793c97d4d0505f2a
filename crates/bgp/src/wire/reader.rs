//! A bounds-checked cursor over message bytes: every read says which error a short read is.

use super::error::DecodeError;

/// Reads big-endian fields; a read past the end returns the error the caller chose.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    short: fn() -> DecodeError,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], short: fn() -> DecodeError) -> Reader<'a> {
        Reader { bytes, short }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.bytes.len() {
            return Err((self.short)());
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}
