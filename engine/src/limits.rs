//! Resource limits of one transform, and the store limiter that enforces the memory part.

use serde::Deserialize;
use sluice_record::validation::FieldLimits;

use super::state::{StateQuota, StateQuotaPolicy};

/// Limits for one transform (docs/sandbox.md). Every field has a safe default, so a config may
/// set only the ones it cares about. A record that breaks a limit is dead-lettered with the
/// matching [`FailureKind`](super::FailureKind) and the instance is replaced; the host and the
/// other records carry on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory the component may use, in MiB (all its memories together).
    ///
    /// Default 64: ample for per-record logic (a Rust or TinyGo transform of JSON records
    /// uses 1–5 MiB; a batch of 256 records of 64 KiB is 16 MiB in and as much out), while
    /// dozens of pipelines together stay within a small host.
    pub memory_mib: u32,
    /// Wall time one call into the component may take (one batch, or `init`), in ms. Enforced
    /// with epoch interruption at a 10 ms granularity.
    ///
    /// Default 1000: a batch of simple transforms takes microseconds per record, so one
    /// second only trips on runaway code, and a hung guest stalls its pipeline for at most
    /// about a second (plus one retry of the record alone) before its record is dead-lettered.
    pub batch_timeout_ms: u64,
    /// Outputs one input record may produce; more dead-letters the record.
    ///
    /// Default 10,000: fan-out (splitting an array into records) rarely needs more, and it
    /// keeps one record from flooding Kafka or the host's memory with outputs.
    pub max_outputs_per_record: u32,
    /// Bytes (keys, values, headers, topics) the outputs of one input record may hold; more
    /// dead-letters the record.
    ///
    /// Default 16 MiB: above Kafka's default largest message (1 MiB) with room for fan-out,
    /// and small enough that a runaway output cannot exhaust the host.
    pub max_output_bytes_per_record: u64,
    /// Bytes of an output's key; a longer key dead-letters the record (`invalid-output`).
    ///
    /// Default 65,536: keys are hashed for partitioning and kept by compaction; real ones
    /// (ids, Pulsar keys, Pub/Sub ordering keys of at most 1 KB) are far shorter.
    pub max_key_bytes: u64,
    /// Bytes of an output's value, if set; a larger value dead-letters the record.
    ///
    /// Default unset: the record's size as the producer counts it bounds the value
    /// (`message.max.bytes`, 1,000,000 by default; larger records are dead-lettered as
    /// `too-large`).
    pub max_value_bytes: Option<u64>,
    /// Headers of one output; more dead-letters the record.
    ///
    /// Default 1,000: tracing and routing use a handful; a runaway list costs every consumer.
    pub max_headers: u32,
    /// Bytes of one header name; a longer name dead-letters the record.
    ///
    /// Default 1,024: header names are short identifiers (Pub/Sub allows 256 bytes).
    pub max_header_name_bytes: u64,
    /// Bytes of one header value, if set; a larger value dead-letters the record.
    ///
    /// Default unset: the record's size as the producer counts it bounds header values.
    pub max_header_value_bytes: Option<u64>,
    /// Size of the component file, in MiB; a bigger file is refused at load, before it is
    /// read.
    ///
    /// Default 64: Rust, Go and JavaScript transforms are 0.1–15 MiB (a bundled JS engine
    /// is the big one); more is almost surely the wrong file, and compiling it would cost
    /// seconds of CPU and as much memory.
    pub max_component_mib: u32,
    /// Bytes of keyed state (names and values) the transform may keep under one record key
    /// (docs/state.md); a `set` beyond it is refused as `state_quota_exceeded` says.
    ///
    /// Default 65,536: counters, small aggregates and recent ids per key fit many times over.
    pub state_bytes_per_key: u64,
    /// Bytes of keyed state the transform may keep in one writer scope (one source partition,
    /// or the whole source when it is one stream).
    ///
    /// Default 256 MiB: a million small keys; the host keeps the state in memory, so this is
    /// what bounds it.
    pub state_bytes_per_transform: u64,
    /// What a `set` beyond a state quota does: `"dead-letter"` (the call gets the error, the
    /// record is dead-lettered with it) or `"trap"` (the call traps; the record is
    /// dead-lettered once found alone).
    pub state_quota_exceeded: StateQuotaPolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: 64,
            batch_timeout_ms: 1000,
            max_outputs_per_record: 10_000,
            max_output_bytes_per_record: 16 * 1024 * 1024,
            max_key_bytes: 65_536,
            max_value_bytes: None,
            max_headers: 1_000,
            max_header_name_bytes: 1_024,
            max_header_value_bytes: None,
            max_component_mib: 64,
            state_bytes_per_key: 65_536,
            state_bytes_per_transform: 256 * 1024 * 1024,
            state_quota_exceeded: StateQuotaPolicy::DeadLetter,
        }
    }
}

impl Limits {
    /// The memory limit in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(u64::from(self.memory_mib) * 1024 * 1024).unwrap_or(usize::MAX)
    }

    /// The limits every output of the transform is checked against
    /// (`sluice_record::validation`).
    pub fn output_fields(&self) -> FieldLimits {
        FieldLimits {
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
            max_headers: self.max_headers.into(),
            max_header_name_bytes: self.max_header_name_bytes,
            max_header_value_bytes: self.max_header_value_bytes,
        }
    }

    /// The state quotas.
    pub(crate) fn state_quota(&self) -> StateQuota {
        StateQuota {
            bytes_per_key: self.state_bytes_per_key,
            bytes_per_transform: self.state_bytes_per_transform,
            policy: self.state_quota_exceeded,
        }
    }

    /// The component size limit in bytes.
    pub fn max_component_bytes(&self) -> u64 {
        u64::from(self.max_component_mib) * 1024 * 1024
    }
}

/// Table elements a component may allocate in total per table. Rust, Python and JS guests
/// need a few thousand; this only stops a guest from growing tables without bound.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;
/// Core instances, tables and memories per store. A component instantiates a handful of
/// core modules (its own, shims, adapters); these are generous caps, not tuning knobs.
const MAX_INSTANCES: usize = 100;
const MAX_TABLES: usize = 100;
const MAX_MEMORIES: usize = 16;

/// Enforces [`Limits::memory_mib`] over all memories of a store and remembers whether it
/// refused a memory growth, so a trap that follows can be told apart as out-of-memory (a Rust
/// guest whose allocation fails aborts with `unreachable`, exactly like a panic).
#[derive(Debug)]
pub(crate) struct GuestLimiter {
    memory_limit_bytes: usize,
    /// Sum of the sizes of all memories of the store (each memory starts at 0 and reports
    /// its initial size through `memory_growing` too).
    memory_in_use_bytes: usize,
    /// The growth last allowed, taken back if the growth then fails.
    last_growth_bytes: usize,
    refused_memory_growth: bool,
}

impl GuestLimiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            memory_limit_bytes: limits.memory_bytes(),
            memory_in_use_bytes: 0,
            last_growth_bytes: 0,
            refused_memory_growth: false,
        }
    }

    /// Whether a memory growth was refused since the last [`GuestLimiter::reset_refusal`].
    pub(crate) fn refused_memory_growth(&self) -> bool {
        self.refused_memory_growth
    }

    pub(crate) fn reset_refusal(&mut self) {
        self.refused_memory_growth = false;
    }
}

impl wasmtime::ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let in_use_after = self.memory_in_use_bytes.saturating_add(growth);
        let allow =
            in_use_after <= self.memory_limit_bytes && maximum.is_none_or(|max| desired <= max);
        if allow {
            self.memory_in_use_bytes = in_use_after;
            self.last_growth_bytes = growth;
        } else {
            self.refused_memory_growth = true;
        }
        Ok(allow)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        tracing::debug!(error = %error, "a guest memory growth failed after it was allowed");
        self.memory_in_use_bytes = self
            .memory_in_use_bytes
            .saturating_sub(self.last_growth_bytes);
        self.last_growth_bytes = 0;
        self.refused_memory_growth = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn memory_limit_covers_all_memories_and_remembers_refusals() {
        let mut limiter = GuestLimiter::new(&Limits {
            memory_mib: 4,
            ..Limits::default()
        });
        assert!(limiter.memory_growing(0, 3 * MIB, None).unwrap());
        assert!(!limiter.refused_memory_growth());
        // A second memory may only take what is left.
        assert!(!limiter.memory_growing(0, 2 * MIB, None).unwrap());
        assert!(limiter.refused_memory_growth());
        limiter.reset_refusal();
        assert!(limiter.memory_growing(0, MIB, None).unwrap());
        assert!(!limiter.memory_growing(3 * MIB, 3 * MIB + 1, None).unwrap());
        assert!(limiter.refused_memory_growth());
    }

    #[test]
    fn failed_growth_is_given_back() {
        let mut limiter = GuestLimiter::new(&Limits {
            memory_mib: 2,
            ..Limits::default()
        });
        assert!(limiter.memory_growing(0, 2 * MIB, None).unwrap());
        limiter
            .memory_grow_failed(wasmtime::Error::msg("mmap failed"))
            .unwrap();
        assert!(limiter.memory_growing(0, 2 * MIB, None).unwrap());
    }

    #[test]
    fn limits_deserialize_with_defaults_and_refuse_unknown_fields() {
        let limits: Limits = serde_json::from_str(r#"{"memory_mib": 8}"#).unwrap();
        assert_eq!(
            limits,
            Limits {
                memory_mib: 8,
                ..Limits::default()
            }
        );
        let error = serde_json::from_str::<Limits>(r#"{"memory": 8}"#).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `memory`"),
            "{error}"
        );
    }
}
