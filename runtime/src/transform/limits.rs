//! Resource limits of one transform, and the store limiter that enforces the memory part.

use serde::Deserialize;

/// Limits for one transform (DESIGN §4). Every field has a safe default, so a config may set
/// only the ones it cares about.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory the component may use, in MiB (all its memories together).
    pub memory_mib: u32,
    /// Wall time one call into the component may take (one batch, or `init`), in ms. Enforced
    /// with epoch interruption at a 10 ms granularity.
    pub batch_timeout_ms: u64,
    /// Outputs one input record may produce; more dead-letters the record.
    pub max_outputs_per_record: u32,
    /// Bytes (keys, values, headers, topics) the outputs of one input record may hold; more
    /// dead-letters the record.
    pub max_output_bytes_per_record: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: 64,
            batch_timeout_ms: 1000,
            max_outputs_per_record: 10_000,
            max_output_bytes_per_record: 16 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// The memory limit in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(u64::from(self.memory_mib) * 1024 * 1024).unwrap_or(usize::MAX)
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
