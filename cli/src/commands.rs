//! What each subcommand does. Errors leave as `anyhow::Error`; `main` picks the exit code.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use sluice_connectors::sink::SinkError;
use sluice_engine::{Limits, TransformChain, TransformEngine, TransformSpec};
use sluice_pipeline::PipelineError;
use sluice_runtime::config::{Config, ConfigError};
use sluice_runtime::{RuntimeError, Shutdown};
use tokio_util::sync::CancellationToken;

use crate::args::{CacheArgs, CheckArgs, ExecArgs, RunArgs};

/// `sluice run`: the runtime application until SIGINT/SIGTERM, then a drain within
/// `--drain-timeout`.
pub(crate) fn run(args: RunArgs) -> Result<()> {
    let config = Config::load(&args.config)?;
    let engine = engine(&args.cache)?;
    let shutdown = Shutdown {
        drain_timeout: Duration::from_secs(args.drain_timeout),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        let stop = CancellationToken::new();
        tokio::spawn(stop_on_signal(stop.clone()));
        Ok(sluice_runtime::run_with(config, engine, stop, shutdown).await?)
    });
    // Blocking work left behind by a pipeline dropped at the drain bound (a metadata lookup,
    // a transform thread's join) must not hold the exit.
    runtime.shutdown_timeout(EXIT_GRACE);
    result
}

/// How long `sluice run` waits for leftover blocking work once the runtime is done.
const EXIT_GRACE: Duration = Duration::from_millis(500);

async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("stopping: draining in-flight records (signal again to force)");
    stop.cancel();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::warn!("second signal: exiting without draining; unacked records will be redelivered");
    std::process::exit(1);
}

pub(crate) fn check(args: CheckArgs) -> Result<()> {
    let engine = engine(&args.cache)?;
    let info = sluice_engine::inspect(&engine, &args.component)?;
    println!("component: {}", info.path.display());
    println!("world:     {}", info.world);
    println!("digest:    {}", info.digest);
    println!("size:      {} bytes", info.size_bytes);
    println!("exports:   {}", info.exports.join(", "));
    println!("imports:   {}", info.imports.join(", "));
    let wasi = info.wasi_imports();
    println!(
        "wasi:      {}",
        if wasi.is_empty() {
            "none".to_owned()
        } else {
            wasi.join(", ")
        }
    );
    println!(
        "capabilities: none granted (grant per transform with `capabilities = {{ env = [...], read_dirs = [...] }}` in the pipeline config)"
    );
    if info.sensitive_imports.is_empty() {
        println!("denied:    nothing: it imports no filesystem, network, environment or stdin");
    } else {
        println!("denied unless granted:");
        for import in &info.sensitive_imports {
            println!("  {}: {}", import.interface, import.access);
        }
    }
    let limits = Limits::default();
    let unset = |limit: Option<u64>| limit.map_or("unset".to_owned(), |l| l.to_string());
    println!(
        "outputs:   checked on the host before Kafka (set per transform in `limits`; \
         docs/sandbox.md): topic per Kafka's rule, max_key_bytes = {}, max_value_bytes = {}, \
         max_headers = {}, max_header_name_bytes = {}, max_header_value_bytes = {}, timestamp \
         not negative and within the topic's window; the record must fit the producer's \
         message.max.bytes",
        limits.max_key_bytes,
        unset(limits.max_value_bytes),
        limits.max_headers,
        limits.max_header_name_bytes,
        unset(limits.max_header_value_bytes),
    );
    println!("ok: implements {}", info.world);
    Ok(())
}

pub(crate) fn exec(args: ExecArgs) -> Result<()> {
    let engine = engine(&args.cache)?;
    let name = args
        .component
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "transform".to_owned());
    let spec = TransformSpec {
        name,
        component: args.component.clone(),
        config: args.config.into_iter().collect(),
        limits: Limits::default(),
        capabilities: Default::default(),
    };
    let mut chain = TransformChain::new(&engine, &[spec])?;
    let input: Box<dyn Read> = match &args.input {
        Some(path) if path.as_os_str() != "-" => {
            Box::new(File::open(path).with_context(|| format!("cannot open input file {path:?}"))?)
        }
        _ => Box::new(std::io::stdin()),
    };
    let stdout = std::io::stdout();
    let summary = sluice_engine::exec::exec(
        &mut chain,
        BufReader::new(input),
        stdout.lock(),
        args.batch_size as usize,
    )?;
    tracing::info!(?summary, "exec finished");
    Ok(())
}

fn engine(cache: &CacheArgs) -> Result<TransformEngine> {
    let cache_dir: Option<PathBuf> = if cache.no_cache {
        None
    } else {
        cache
            .cache_dir
            .clone()
            .or_else(TransformEngine::default_cache_dir)
    };
    Ok(TransformEngine::new(cache_dir)?)
}

/// Bad usage, bad config, bad component or a missing topic: exit code 2.
pub(crate) fn is_user_input_error(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<ConfigError>()
            || cause
                .downcast_ref::<sluice_engine::Error>()
                .is_some_and(|e| e.is_user_input_error())
            || cause
                .downcast_ref::<PipelineError>()
                .is_some_and(|e| e.is_user_input_error())
            || cause
                .downcast_ref::<SinkError>()
                .is_some_and(|e| e.is_user_input_error())
            || cause
                .downcast_ref::<RuntimeError>()
                .is_some_and(|e| e.is_user_input_error())
            || cause
                .downcast_ref::<sluice_engine::exec::ExecError>()
                .is_some_and(|e| e.is_user_input_error())
            || cause
                .downcast_ref::<crate::admin_client::RemoteError>()
                .is_some_and(|e| e.is_user_input_error())
            || cause.is::<crate::scaffold::ScaffoldError>()
    })
}

/// A next step for errors where one helps.
pub(crate) fn hint(error: &anyhow::Error) -> Option<String> {
    for cause in error.chain() {
        if let Some(ConfigError::Read { .. }) = cause.downcast_ref::<ConfigError>() {
            return Some(
                "pass --config PATH (default: ./sluice.toml); see README.md for an example".into(),
            );
        }
        if let Some(SinkError::MissingTopic { topic, .. }) = cause.downcast_ref::<SinkError>() {
            return Some(format!(
                "create topic {topic:?} first, or set `create_topics = true` in [pipeline.sink]"
            ));
        }
        if let Some(error) = cause.downcast_ref::<sluice_engine::Error>() {
            return engine_hint(error);
        }
        if let Some(RuntimeError::Undrained { drain_timeout, .. }) =
            cause.downcast_ref::<RuntimeError>()
        {
            return Some(match drain_timeout {
                Some(_) => "Kafka did not acknowledge them in time; nothing is lost (they were \
                    not acked at the source). Check that Kafka is reachable, or give a stop more \
                    time with --drain-timeout"
                    .into(),
                None => "nothing is lost (they were not acked at the source); check that Kafka \
                    is reachable"
                    .into(),
            });
        }
    }
    None
}

/// What to do about a transform that cannot load or start: fix its build when the file is
/// wrong, its config when it refused it or failed in `init`.
fn engine_hint(error: &sluice_engine::Error) -> Option<String> {
    use sluice_engine::Error;
    match error {
        Error::InitRefused { transform, .. } => Some(format!(
            "the component refused the `config = {{ … }}` of transform {transform:?}: fix that \
             table (try it with `sluice exec COMPONENT -c key=value`)"
        )),
        Error::InitFailed {
            transform, kind, ..
        } => Some(match kind {
            sluice_engine::FailureKind::Timeout => format!(
                "transform {transform:?} did not finish `init` within its `limits.batch_timeout_ms`: \
                 check its `config = {{ … }}` (what init does with it), or raise that limit"
            ),
            _ => format!(
                "transform {transform:?} failed in `init`: check its `config = {{ … }}` and its \
                 `limits` (try it with `sluice exec COMPONENT -c key=value`)"
            ),
        }),
        Error::Capability { .. } => Some(
            "grant only environment variables that are set and directories that exist \
             (`capabilities` of the transform)"
                .into(),
        ),
        error if error.is_user_input_error() => Some(
            "build transforms with `cargo build --release --target wasm32-wasip2` against wit/ \
             (see README.md)"
                .into(),
        ),
        _ => None,
    }
}
