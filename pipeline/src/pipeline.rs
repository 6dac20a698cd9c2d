//! One pipeline: source → transform chain → sink, over bounded channels.
//!
//! ```text
//! source task ──records──▶ transform lanes ──outcomes──▶ sink stage ──settlements──▶ ack stage
//!     ▲                                                                                 │
//!     └──────────────────────── ack (after every output is in the sink) ◀──────────────┘
//! ```
//! A record is acked only after every output it produced (or its dead-letter copy) is
//! acknowledged by the sink, and acks go out in source order, so a filtered record is acked
//! only once every earlier record is settled. The source's in-flight budget bounds memory end
//! to end.
//!
//! This file makes a pipeline ready (transforms loaded, sink connected); `running.rs` runs it,
//! and `restart.rs` decides what a broker failure renews.

use std::sync::Arc;

use sluice_connectors::sink::ConnectSink;
use sluice_connectors::source::ConnectSource;
use sluice_engine::{TransformChain, TransformEngine, TransformObserver, TransformSpec};

use crate::control::PipelineControl;
use crate::error::PipelineError;
use crate::exactly_once;
use crate::schemas::Schemas;
use crate::settings::{Guarantee, PipelineSettings};
use crate::stats::PipelineStats;

/// What a pipeline is made of: its settings, where records come from, the transforms they go
/// through, and where they go.
pub struct PipelineParts<C: ConnectSink> {
    pub settings: PipelineSettings,
    pub source: Arc<dyn ConnectSource>,
    pub transforms: Vec<TransformSpec>,
    pub sink: C,
}

/// A pipeline whose transforms are loaded and whose sink is connected, ready to run.
pub struct Pipeline<C: ConnectSink> {
    pub(crate) settings: PipelineSettings,
    pub(crate) source: Arc<dyn ConnectSource>,
    pub(crate) connect_sink: C,
    /// One chain per transform lane.
    pub(crate) chains: Vec<TransformChain>,
    pub(crate) sink: Arc<C::Sink>,
    pub(crate) control: Arc<PipelineControl>,
    /// Decoding before the transforms, encoding after them (none by default).
    pub(crate) schemas: Arc<Schemas>,
}

impl<C: ConnectSink> Pipeline<C> {
    /// Loads and initialises the transforms and connects the sink, in `control` (which
    /// outlives the pipeline and is shared with the admin API); the source connects in
    /// [`Pipeline::run`]. Fails fast on bad components and missing topics.
    pub async fn prepare(
        parts: PipelineParts<C>,
        engine: &TransformEngine,
        control: Arc<PipelineControl>,
    ) -> Result<Self, PipelineError> {
        let PipelineParts {
            settings,
            source,
            transforms,
            sink,
        } = parts;
        let name = settings.name.clone();
        let observers: Vec<Arc<dyn TransformObserver>> = transforms
            .iter()
            .map(|spec| control.stats.transform(&spec.name) as Arc<dyn TransformObserver>)
            .collect();
        let (engine, lanes) = (engine.clone(), settings.parallelism);
        let exactly_once = settings.guarantee == Guarantee::ExactlyOnce;
        let loading = name.clone();
        let mut chains = tokio::task::spawn_blocking(move || {
            let mut chains = (0..lanes)
                .map(|_| TransformChain::new(&engine, &transforms))
                .collect::<Result<Vec<_>, _>>()?;
            if exactly_once {
                exactly_once::make_deterministic(&loading, &mut chains)?;
            }
            Ok(chains)
        })
        .await
        .map_err(|_| PipelineError::TransformThread {
            pipeline: name.clone(),
        })?
        .map_err(|source| PipelineError::Transform {
            pipeline: name.clone(),
            source,
        })?;
        for chain in &mut chains {
            chain.observe(observers.clone());
        }
        control.set_transforms(chains[0].transforms());
        control.set_lanes(lanes);
        let connected = connect_sink(&sink, &name).await?;
        Ok(Self {
            settings,
            source,
            connect_sink: sink,
            chains,
            sink: connected,
            control,
            schemas: Arc::default(),
        })
    }

    /// Decodes source records before the transforms and encodes outputs after them
    /// (docs/schemas.md).
    pub fn with_schemas(mut self, schemas: Schemas) -> Self {
        self.schemas = Arc::new(schemas);
        self
    }

    pub fn stats(&self) -> Arc<PipelineStats> {
        self.control.stats.clone()
    }

    pub fn control(&self) -> Arc<PipelineControl> {
        self.control.clone()
    }

    pub fn settings(&self) -> &PipelineSettings {
        &self.settings
    }
}

pub(crate) async fn connect_sink<C: ConnectSink>(
    connector: &C,
    pipeline: &str,
) -> Result<Arc<C::Sink>, PipelineError> {
    connector
        .connect()
        .await
        .map(Arc::new)
        .map_err(|source| PipelineError::sink(pipeline, source))
}
