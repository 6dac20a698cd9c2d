//! Lifting a result batch: read in place from the guest's memory, before the guest frees it.
//!
//! wasmtime frees a returned list (the guest's post-return) before `call` returns, so a
//! `WasmList` cannot be read afterwards. This type implements the lifting itself (wasmtime's
//! `Lift` trait, hidden from its docs but the one `bindgen!` output implements): it checks
//! the buffer against the layout where it lies and copies out only the bytes the outputs
//! carry. A buffer that breaks the layout fails the call, a trap of the batch.

use std::sync::Arc;

use sluice_flat::{FieldView, ResultView, decode_results};
use sluice_record::{Bytes, Header};
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift, WasmList};

use crate::bindings::TransformError;

/// An output's key or value, as the guest sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Field {
    Absent,
    Bytes(Bytes),
    /// The input record's own (key or value), unchanged.
    FromInput,
}

/// One output, its bytes out of the guest's memory; [`Field::FromInput`] and
/// `input_headers` still to resolve against the input record.
#[derive(Debug, Clone)]
pub(crate) struct DecodedOutput {
    pub(crate) key: Field,
    pub(crate) value: Field,
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) topic: Option<String>,
    pub(crate) input_headers: bool,
    pub(crate) headers: Vec<Header>,
}

/// The result for one input record.
pub(crate) type DecodedResult = Result<Vec<DecodedOutput>, TransformError>;

/// The `list<u8>` result of `transform-batch` in 0.2.0, decoded.
pub(crate) struct FlatResults(pub(crate) Vec<DecodedResult>);

impl FlatResults {
    fn read(memory: &[u8], ptr: usize, len: usize) -> wasmtime::Result<Self> {
        let buffer = memory
            .get(ptr..)
            .and_then(|memory| memory.get(..len))
            .ok_or_else(|| {
                wasmtime::Error::msg(format!(
                    "flat results at {ptr} ({len} bytes) lie outside the guest's memory"
                ))
            })?;
        let view = decode_results(buffer)?;
        let mut owner = Owner {
            buffer,
            copy: Bytes::copy_from_slice(buffer),
            names: Vec::new(),
        };
        Ok(Self(view.iter().map(|result| owner.own(result)).collect()))
    }
}

/// Takes the outputs' bytes out of the guest's memory: the buffer is copied once, and every
/// key, value and header value is a slice of that copy (one allocation per batch, none per
/// field); header names repeat from record to record, so each distinct one is made once.
struct Owner<'a> {
    buffer: &'a [u8],
    copy: Bytes,
    names: Vec<Arc<str>>,
}

impl Owner<'_> {
    /// `bytes`, a slice of the guest's buffer, as the same slice of the copy.
    fn bytes(&self, bytes: &[u8]) -> Bytes {
        let offset = (bytes.as_ptr() as usize).wrapping_sub(self.buffer.as_ptr() as usize);
        match offset.checked_add(bytes.len()) {
            Some(end) if end <= self.copy.len() => self.copy.slice(offset..end),
            // Views always borrow the buffer; should one not, it is copied on its own.
            _ => Bytes::copy_from_slice(bytes),
        }
    }

    fn name(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.names.iter().rev().find(|known| ***known == *name) {
            return known.clone();
        }
        let made: Arc<str> = Arc::from(name);
        self.names.push(made.clone());
        made
    }

    fn field(&self, field: FieldView<'_>) -> Field {
        match field {
            FieldView::Absent => Field::Absent,
            FieldView::Inline(bytes) => Field::Bytes(self.bytes(bytes)),
            FieldView::FromInput => Field::FromInput,
        }
    }

    fn own(&mut self, result: ResultView<'_, '_>) -> DecodedResult {
        match result {
            ResultView::Outputs(outputs) => Ok(outputs
                .iter()
                .map(|output| DecodedOutput {
                    key: self.field(output.key),
                    value: self.field(output.value),
                    timestamp_ms: output.timestamp_ms,
                    topic: output.topic.map(str::to_owned),
                    input_headers: output.input_headers,
                    headers: output
                        .headers
                        .iter()
                        .map(|(name, value)| Header::shared(self.name(name), self.bytes(value)))
                        .collect(),
                })
                .collect()),
            ResultView::Skip(reason) => Err(TransformError::Skip(reason.to_owned())),
            ResultView::DeadLetter(reason) => Err(TransformError::DeadLetter(reason.to_owned())),
            ResultView::Fatal(reason) => Err(TransformError::Fatal(reason.to_owned())),
        }
    }
}

// SAFETY: the representation and type check are exactly `list<u8>`'s.
unsafe impl ComponentType for FlatResults {
    type Lower = <WasmList<u8> as ComponentType>::Lower;

    const ABI: CanonicalAbiInfo = <WasmList<u8> as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <WasmList<u8> as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: reads guest memory through bounds-checked slices only.
unsafe impl Lift for FlatResults {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        _ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        let ptr = src[0].get_u32() as usize;
        let len = src[1].get_u32() as usize;
        Self::read(cx.memory(), ptr, len)
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        _ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        let word = |at: usize| {
            bytes
                .get(at..at + 4)
                .and_then(|word| <[u8; 4]>::try_from(word).ok())
                .map(|word| u32::from_le_bytes(word) as usize)
                .ok_or_else(|| wasmtime::Error::msg("flat results: short pointer pair"))
        };
        Self::read(cx.memory(), word(0)?, word(4)?)
    }
}
