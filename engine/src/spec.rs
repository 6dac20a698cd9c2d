//! One transform of a pipeline as its config describes it: what the engine loads.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::capabilities::Capabilities;
use super::limits::Limits;

/// One transform of a pipeline, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformSpec {
    /// Name for logs, metrics and the `sluice.transform` header.
    pub name: String,
    /// The component file.
    pub component: PathBuf,
    /// Passed to the component's `init`.
    pub config: BTreeMap<String, String>,
    /// Resource limits of this transform.
    pub limits: Limits,
    /// What the transform may reach beyond its records (default: nothing).
    pub capabilities: Capabilities,
}
