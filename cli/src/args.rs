//! Command-line interface: `sluice run | check | exec | deploy | rollback | status | new`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Sluice moves events from Apache Pulsar (or Google Cloud Pub/Sub) into Apache Kafka, passing
/// every record through sandboxed WebAssembly transform components.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, propagate_version = true)]
#[command(after_help = "Exit codes: 0 ok, 1 runtime failure, 2 bad usage, config or component.")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `sluice=debug`.
    #[arg(long, global = true, env = "SLUICE_LOG", value_name = "FILTER")]
    pub(crate) log: Option<String>,

    /// Log line format on stderr: `text` for people, `json` (one object per line) for log
    /// collectors.
    #[arg(long, global = true, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run every pipeline of a config file until SIGINT/SIGTERM, then drain in-flight records.
    Run(RunArgs),
    /// Validate a transform component against the `sluice:transform` world; print its metadata.
    Check(CheckArgs),
    /// Run JSON-lines records through a component and print its outputs as JSON lines.
    ///
    /// No brokers are involved. Each input line is an object with optional `key`, `value`
    /// (a string is taken as is, any other JSON value as its compact text), `headers` (object of
    /// strings), `event_time_ms` and `publish_time_ms`; `key_base64`/`value_base64` carry binary.
    /// Each output line names its input line; errors print as `{"input":N,"error":{...}}`.
    Exec(ExecArgs),
    /// Deploy a component as the live version of a transform of a running pipeline.
    ///
    /// The runtime validates, compiles and initialises it before swapping it in between two
    /// batches (no record lost, none transformed twice), and keeps it under its state dir so
    /// a restart runs it too.
    Deploy(DeployArgs),
    /// Put an earlier version of a transform back live (by default the one before the
    /// current).
    Rollback(RollbackArgs),
    /// Show every pipeline of a running Sluice: state, live transform versions, counters.
    Status(StatusArgs),
    /// Start a transform project in a new directory: source with one per-record function,
    /// a unit test, build.sh, test.sh, a README and sample records for `sluice exec`.
    ///
    /// Rust projects build with cargo (target wasm32-wasip2) against the `sluice-sdk` crate;
    /// Python (componentize-py) and JavaScript (jco + componentize-js) projects carry their SDK
    /// and the WIT, and their build.sh installs the pinned toolchain on first use.
    New(NewArgs),
}

#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The project directory to create; its last component names the transform.
    pub(crate) name: PathBuf,
    /// The language of the transform.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub(crate) lang: Lang,
    /// Rust only: the `sluice-sdk` crate directory the project depends on (default: the
    /// `guest-sdk/` of the Sluice source tree this binary was built from).
    #[arg(long, value_name = "DIR")]
    pub(crate) sdk_path: Option<PathBuf>,
}

/// A language `sluice new` writes projects in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// Base URL of the runtime's admin API (`[admin] listen`): `https://…` when the runtime
    /// has `[admin.tls]`. The bearer token, when the runtime has one, is read from the
    /// environment variable SLUICE_ADMIN_TOKEN.
    #[arg(
        long = "admin",
        env = "SLUICE_ADMIN_URL",
        default_value = "http://127.0.0.1:9650",
        value_name = "URL"
    )]
    pub(crate) url: String,
    /// With an https URL: trust only the CA certificates in this PEM file (e.g. a private CA
    /// that signed the admin API's certificate) instead of the system's.
    #[arg(long = "ca-file", env = "SLUICE_ADMIN_CA_FILE", value_name = "PEM")]
    pub(crate) ca_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// The pipeline's name.
    pub(crate) pipeline: String,
    /// Path to the new component (`.wasm`).
    pub(crate) component: PathBuf,
    /// The transform to replace; needed only when the pipeline has several.
    #[arg(long, value_name = "NAME")]
    pub(crate) transform: Option<String>,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The pipeline's name.
    pub(crate) pipeline: String,
    /// The transform to roll back; needed only when the pipeline has several.
    #[arg(long, value_name = "NAME")]
    pub(crate) transform: Option<String>,
    /// The version to put back (`sha256:…`, see `GET …/versions`); default: the one deployed
    /// before the current.
    #[arg(long, value_name = "DIGEST")]
    pub(crate) to: Option<String>,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Print the status as JSON (for scripts) instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The pipeline config file (TOML).
    #[arg(short, long, default_value = "sluice.toml", env = "SLUICE_CONFIG")]
    pub(crate) config: PathBuf,

    /// Longest a stop (SIGTERM, SIGINT) may take, in seconds. Past three quarters of it the
    /// records Kafka has not acknowledged are given up: left unacked for the source to deliver
    /// again, and `sluice run` exits 1 saying how many. Keep it under your orchestrator's grace
    /// period (Kubernetes: 30 s).
    #[arg(
        long,
        value_name = "SECONDS",
        env = "SLUICE_DRAIN_TIMEOUT",
        default_value_t = 20,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub(crate) drain_timeout: u64,

    #[command(flatten)]
    pub(crate) cache: CacheArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Path to a component (`.wasm`).
    pub(crate) component: PathBuf,

    #[command(flatten)]
    pub(crate) cache: CacheArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// Path to a component (`.wasm`).
    pub(crate) component: PathBuf,

    /// A config entry passed to the component's `init`, as `key=value`; repeatable.
    #[arg(short = 'c', long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub(crate) config: Vec<(String, String)>,

    /// JSON-lines input file; standard input when absent or `-`.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) input: Option<PathBuf>,

    /// Records per transform call.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) batch_size: u32,

    #[command(flatten)]
    pub(crate) cache: CacheArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CacheArgs {
    /// Directory of compiled components (reused across starts); default
    /// `$XDG_CACHE_HOME/sluice` or `~/.cache/sluice`.
    #[arg(long, global = true, env = "SLUICE_CACHE_DIR", value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,

    /// Compile components on every start instead of caching them.
    #[arg(long, global = true)]
    pub(crate) no_cache: bool,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exec_config_pairs_parse() {
        let cli = Cli::try_parse_from([
            "sluice",
            "exec",
            "x.wasm",
            "-c",
            "fields=a,b",
            "--config=m=",
        ])
        .unwrap();
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(
            args.config,
            [("fields".into(), "a,b".into()), ("m".into(), String::new())]
        );
        assert!(Cli::try_parse_from(["sluice", "exec", "x.wasm", "-c", "novalue"]).is_err());
    }
}
