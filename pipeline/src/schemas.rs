//! Schemas at the pipeline's edges (docs/schemas.md): each source record decoded before the
//! transforms (`[pipeline.decode]`), each output encoded before the sink (`[pipeline.encode]`).
//!
//! Both run in the transform lane, around the chain, so they are spread over the lanes like
//! the transforms. A record whose payload does not fit its schema (malformed bytes, an unknown
//! schema version or id) is dead-lettered with kind `schema` before any guest sees it; a record
//! with an output that does not fit its subject's schema (or that the registry refuses as
//! incompatible) is dead-lettered whole with kind `schema`: no output of it is written, so
//! nothing goes out half-encoded. A schema service that does not answer is retried with
//! backoff, never a reason to dead-letter.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use sluice_codec::{Attributes, Decoded, Decoder, Encoder, Schema, SourceMessage};
use sluice_engine::{FailureKind, RecordOutcome, TransformId};
use sluice_record::{Bytes, Header, InputRecord, OutputRecord};
use tokio_util::sync::CancellationToken;

/// The header carrying the identity of the schema a record was decoded with (e.g.
/// `pulsar:persistent://public/default/orders@3`), on the record the guest sees. WIT 0.1.0's
/// `source-info` is frozen, so the identity travels as a header there.
pub const SCHEMA_HEADER: &str = "sluice.schema";

/// Who dead-letters a record that does not fit a schema: the decoding before the transforms…
const DECODING: &str = "source";
/// …or the encoding after them.
const ENCODING: &str = "sink";

/// Longest wait between two attempts while a schema service does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// The codecs of one pipeline; both optional (none: bytes through unchanged).
#[derive(Debug, Clone, Default)]
pub struct Schemas {
    pub decoder: Option<Arc<Decoder>>,
    pub encoder: Option<Arc<Encoder>>,
    /// The sink's topic: the subject of outputs that name no topic of their own.
    pub default_topic: String,
}

/// A record prepared for the chain: what the guest sees and the schema it was decoded with.
pub(crate) struct Prepared {
    pub(crate) view: InputRecord,
    pub(crate) schema: Option<Arc<Schema>>,
}

/// The headers of a record as attributes (Pub/Sub attributes arrive as headers).
struct HeaderAttributes<'a>(&'a [Header]);

impl Attributes for HeaderAttributes<'_> {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| &*h.name == name)
            .and_then(|h| std::str::from_utf8(&h.value).ok())
    }
}

/// The id under which the codecs dead-letter (`sluice.transform` is `source` or `sink`).
fn codec_id(name: &str) -> TransformId {
    TransformId {
        name: name.to_owned(),
        digest: String::new(),
    }
}

fn schema_dead_letter(by: &str, reason: String) -> RecordOutcome {
    RecordOutcome::DeadLetter {
        transform: codec_id(by),
        kind: FailureKind::Schema,
        reason,
    }
}

/// Waits before attempt `attempt + 1`; false when the lanes are aborted meanwhile.
async fn back_off(attempt: u32, abort: &CancellationToken) -> bool {
    let wait = Duration::from_millis(250u64.saturating_mul(1 << attempt.min(5))).min(MAX_BACKOFF);
    tokio::select! {
        biased;
        _ = abort.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

impl Schemas {
    /// Whether records and outputs pass unchanged (no codec configured).
    pub(crate) fn is_passthrough(&self) -> bool {
        self.decoder.as_ref().is_none_or(|d| d.is_passthrough())
            && self.encoder.as_ref().is_none_or(|e| e.is_passthrough())
    }

    /// Decodes `record`: what the guest sees, or the outcome of a record that does not fit
    /// its schema. `None` when the lanes were aborted while a schema service did not answer.
    pub(crate) async fn decode(
        &self,
        record: &InputRecord,
        abort: &CancellationToken,
    ) -> Option<Result<Prepared, RecordOutcome>> {
        let Some(decoder) = &self.decoder else {
            return Some(Ok(Prepared {
                view: record.clone(),
                schema: None,
            }));
        };
        let Some(payload) = &record.value else {
            // A tombstone has no payload to decode.
            return Some(Ok(Prepared {
                view: record.clone(),
                schema: None,
            }));
        };
        let message = SourceMessage {
            topic: &record.source.topic,
            payload,
            schema_version: record.source.schema_version.as_deref(),
            attributes: &HeaderAttributes(&record.headers),
        };
        let mut attempt = 0;
        let decoded: Decoded = loop {
            match decoder.decode(&message).await {
                Ok(decoded) => break decoded,
                Err(error) if error.is_transient() => {
                    tracing::warn!(topic = %record.source.topic, %error, attempt, "schema service unavailable; retrying");
                    if !back_off(attempt, abort).await {
                        return None;
                    }
                    attempt += 1;
                }
                Err(error) => {
                    return Some(Err(schema_dead_letter(DECODING, error.to_string())));
                }
            }
        };
        let mut view = record.clone();
        if let Some(json) = decoded.json {
            view.value = Some(json.into());
        }
        if let Some(schema) = &decoded.schema {
            view.headers
                .push(Header::new(SCHEMA_HEADER, schema.id.as_str().as_bytes()));
        }
        Some(Ok(Prepared {
            view,
            schema: decoded.schema,
        }))
    }

    /// Encodes the outputs of one record (all of them or none: the first that does not fit
    /// dead-letters the record). `None` when the lanes were aborted while the registry did
    /// not answer.
    pub(crate) async fn encode(
        &self,
        outcome: RecordOutcome,
        source_schema: Option<&Arc<Schema>>,
        abort: &CancellationToken,
    ) -> Option<RecordOutcome> {
        let (Some(encoder), RecordOutcome::Outputs(outputs)) = (&self.encoder, &outcome) else {
            return Some(outcome);
        };
        let mut encoded = Vec::with_capacity(outputs.len());
        for (index, output) in outputs.iter().enumerate() {
            let topic = output.topic.as_deref().unwrap_or(&self.default_topic);
            let mut attempt = 0;
            let parts = loop {
                match encoder
                    .encode(
                        topic,
                        output.key.as_deref(),
                        output.value.as_deref(),
                        source_schema,
                    )
                    .await
                {
                    Ok(parts) => {
                        break (
                            shared(output.key.as_ref(), parts.key),
                            shared(output.value.as_ref(), parts.value),
                        );
                    }
                    Err(error) if error.is_transient() => {
                        tracing::warn!(topic, %error, attempt, "schema registry unavailable; retrying");
                        if !back_off(attempt, abort).await {
                            return None;
                        }
                        attempt += 1;
                    }
                    Err(error) => {
                        return Some(schema_dead_letter(
                            ENCODING,
                            format!("output {index}: {error}"),
                        ));
                    }
                }
            };
            encoded.push(OutputRecord {
                key: parts.0,
                value: parts.1,
                ..output.clone()
            });
        }
        Some(RecordOutcome::Outputs(encoded))
    }
}

/// An encoded key or value: what the encoder left as it was shares the output's bytes.
fn shared(original: Option<&Bytes>, encoded: Option<Cow<'_, [u8]>>) -> Option<Bytes> {
    Some(match encoded? {
        Cow::Owned(bytes) => Bytes::from(bytes),
        Cow::Borrowed(bytes) => match original {
            Some(original) if std::ptr::eq(&original[..], bytes) => original.clone(),
            _ => Bytes::copy_from_slice(bytes),
        },
    })
}
