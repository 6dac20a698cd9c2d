//! Lowering an input batch: the host's records encoded straight into the guest's memory.
//!
//! wasmtime's public lowering of a `list<u8>` copies from a host buffer; this type instead
//! implements the lowering itself (wasmtime's `Lower` trait, whose methods are hidden from its
//! docs but implemented the same way by `bindgen!` output): it counts the encoding's size,
//! asks the guest's `realloc` for that much once, and encodes into that memory. One
//! allocation and one pass per batch, none per record or field.

use std::mem::MaybeUninit;

use sluice_flat::{ByteCounter, Sink, SliceWriter, SourceView, encode, source_kind};
use sluice_record::{InputRecord, SourceKind};
use wasmtime::ValRaw;
use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentType, Lower};

/// The `batch: list<u8>` argument of `transform-batch` in 0.2.0.
pub(crate) struct FlatBatch<'a> {
    inputs: &'a [InputRecord],
}

impl<'a> FlatBatch<'a> {
    pub(crate) fn new(inputs: &'a [InputRecord]) -> Self {
        Self { inputs }
    }

    /// Encodes the batch into `sink`: the source table (distinct kind and topic, usually one),
    /// then the records referring to it.
    fn encode(&self, sink: &mut impl Sink, sources: &[SourceView<'_>], indices: &[usize]) {
        encode::batch_header(sink, self.inputs.len(), sources);
        for (record, &source) in self.inputs.iter().zip(indices) {
            encode::record(
                sink,
                source,
                &record.source.message_id,
                record.key.as_deref(),
                record.value.as_deref(),
                record.event_time_ms,
                record.publish_time_ms,
                record.headers.len(),
            );
            for header in &record.headers {
                encode::header(sink, &header.name, &header.value);
            }
        }
    }

    /// The source table and each record's entry in it.
    fn sources(&self) -> (Vec<SourceView<'a>>, Vec<usize>) {
        let mut sources: Vec<SourceView<'a>> = Vec::new();
        let indices = self
            .inputs
            .iter()
            .map(|record| {
                let view = SourceView {
                    kind: match record.source.kind {
                        SourceKind::Pulsar => source_kind::PULSAR,
                        SourceKind::GcpPubsub => source_kind::GCP_PUBSUB,
                        SourceKind::Other => source_kind::OTHER,
                    },
                    topic: &record.source.topic,
                };
                // Records of a batch nearly always share their source: the last entry first.
                match sources.iter().rposition(|source| *source == view) {
                    Some(index) => index,
                    None => {
                        sources.push(view);
                        sources.len() - 1
                    }
                }
            })
            .collect();
        (sources, indices)
    }

    /// Writes the batch into guest memory; its address and length.
    fn store<T>(&self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<(usize, usize)> {
        let (sources, indices) = self.sources();
        let mut counter = ByteCounter::default();
        self.encode(&mut counter, &sources, &indices);
        let size = counter.0;
        let ptr = cx.realloc(0, 0, 1, size)?;
        let memory = cx
            .as_slice_mut()
            .get_mut(ptr..)
            .and_then(|memory| memory.get_mut(..size))
            .ok_or_else(|| wasmtime::Error::msg("realloc returned memory out of bounds"))?;
        let mut writer = SliceWriter::new(memory);
        self.encode(&mut writer, &sources, &indices);
        if writer.overflow() != 0 || writer.written() != size {
            return Err(wasmtime::Error::msg(
                "flat batch: the encoding did not fill its counted size",
            ));
        }
        Ok((ptr, size))
    }
}

// SAFETY: the representation is exactly `list<u8>`'s (a pointer and a length, both lowered
// as `i64` like wasmtime's own lists), and the type check is `list<u8>`'s.
unsafe impl ComponentType for FlatBatch<'_> {
    type Lower = <[u8] as ComponentType>::Lower;

    const ABI: CanonicalAbiInfo = <[u8] as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[u8] as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: writes only the memory `realloc` handed out (bounds-checked) and a pointer pair.
unsafe impl Lower for FlatBatch<'_> {
    fn linear_lower_to_flat<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        dst: &mut MaybeUninit<Self::Lower>,
    ) -> wasmtime::Result<()> {
        let (ptr, len) = self.store(cx)?;
        // Pointers and lengths are lowered as `i64` whatever the memory's width, as wasmtime's.
        dst.write([ValRaw::i64(ptr as i64), ValRaw::i64(len as i64)]);
        Ok(())
    }

    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        let (ptr, len) = self.store(cx)?;
        *cx.get::<4>(offset) = u32::try_from(ptr)?.to_le_bytes();
        *cx.get::<4>(offset + 4) = u32::try_from(len)?.to_le_bytes();
        Ok(())
    }
}
