//! `pulsar-compat-proxy`: run the pulsar-lite compatibility proxy (see the library docs).

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Parser;
use pulsar_compat_proxy::{CompatProxy, DEFAULT_MAX_FRAME_SIZE};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Lets the `pulsar` crate consume from pulsar-lite: adds the payload checksums pulsar-lite
/// leaves out and points lookups at the proxy. For local development and tests only.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; must be a loopback address unless --allow-non-loopback.
    #[arg(long, default_value = "127.0.0.1:6650")]
    listen: SocketAddr,

    /// The pulsar-lite broker to forward to (host:port).
    #[arg(long, default_value = "127.0.0.1:6651")]
    upstream: String,

    /// Allow listening on a non-loopback address (the proxy has no TLS and no authentication).
    #[arg(long)]
    allow_non_loopback: bool,

    /// Largest frame accepted from the broker, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME_SIZE)]
    max_frame_size: usize,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(args: Args) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() && !args.allow_non_loopback {
        bail!(
            "refusing to listen on non-loopback address {} (pass --allow-non-loopback to insist)",
            args.listen
        );
    }
    let proxy = CompatProxy::bind(args.listen, args.upstream)
        .await?
        .with_max_frame_size(args.max_frame_size);

    let mut terminate =
        signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    tokio::select! {
        () = proxy.run() => {}
        _ = terminate.recv() => tracing::info!("SIGTERM received, stopping"),
        result = tokio::signal::ctrl_c() => {
            result.context("cannot listen for ctrl-c")?;
            tracing::info!("interrupted, stopping");
        }
    }
    Ok(())
}
