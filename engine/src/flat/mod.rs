//! The flat boundary of `sluice:transform@0.2.0` (docs/flat-batch-abi.md): an input batch is
//! written straight into the guest's memory ([`FlatBatch`]: one `realloc`, one pass), and the
//! guest's result buffer is read in place there ([`FlatResults`]) before the guest frees it.
//! Outputs that forward their input's key, value or headers carry no bytes back; they are
//! resolved against the host's input record afterwards ([`resolve`]), under the output limits.

mod batch;
mod resolve;
mod results;

pub(crate) use batch::FlatBatch;
pub(crate) use resolve::{output_bytes, resolve};
pub(crate) use results::{DecodedResult, FlatResults};
