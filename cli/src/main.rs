//! The `sluice` binary: parse the CLI, set up logging, run the command, map errors to exit
//! codes (0 ok, 1 runtime failure, 2 bad usage, config or component).

mod admin_client;
mod args;
mod commands;
mod scaffold;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        // `exec` and `check` print results on stdout; keep stderr quiet unless asked.
        Command::Run(_) => "info",
        // The admin clients' `error:` line names an untrusted certificate already; the
        // verifier would log it a second time.
        Command::Deploy(_) | Command::Rollback(_) | Command::Status(_) => {
            "warn,rustls_platform_verifier=off"
        }
        _ => "warn",
    };
    init_logging(cli.log.as_deref().unwrap_or(default_filter), cli.log_format);
    let result = match cli.command {
        Command::Run(args) => commands::run(args),
        Command::Check(args) => commands::check(args),
        Command::Exec(args) => commands::exec(args),
        Command::Deploy(args) => admin_client::deploy(args),
        Command::Rollback(args) => admin_client::rollback(args),
        Command::Status(args) => admin_client::status(args),
        Command::New(args) => scaffold::new_project(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            if let Some(hint) = commands::hint(&error) {
                eprintln!("hint: {hint}");
            }
            if commands::is_user_input_error(&error) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // One object per line, with the span (e.g. the batch) a line was logged in.
        LogFormat::Json => logs.json().with_current_span(true).init(),
    }
}
