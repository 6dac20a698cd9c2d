//! The runtime under test: `sluice run` as a child process, one-shot `sluice` commands, or a
//! pipeline inside the test process through the library API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_pipeline::{PipelineError, PipelineStats};
use sluice_runtime::config::Config;
use sluice_tests::timeouts;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The `sluice` binary built next to this test binary (`scripts/test.sh` builds it first).
pub(crate) fn sluice_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("sluice");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p sluice --bin sluice` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Where the `sluice` processes of the tests cache compiled components: inside the build cache
/// (cargo's per-target temporary directory), so runs share it and `cargo clean` removes it,
/// rather than leaving artifacts in the system's temporary directory.
fn component_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

/// Runs the `sluice` binary to completion (components compiled into the tests' cache).
pub(crate) fn sluice(args: &[&str]) -> Output {
    Command::new(sluice_bin())
        .args(args)
        .env("SLUICE_CACHE_DIR", component_cache_dir())
        .output()
        .unwrap()
}

/// Runs `sluice exec` with `args` to success and returns the JSON lines it printed.
pub(crate) fn sluice_exec(args: &[&str]) -> Vec<serde_json::Value> {
    let output = sluice(&[&["exec"], args].concat());
    assert!(
        output.status.success(),
        "sluice exec {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Runs `sluice` with `args` to completion (at most [`timeouts::ADMIN`]), with `token` as
/// `SLUICE_ADMIN_TOKEN` and no admin URL or log format from the test's environment.
pub(crate) async fn sluice_command(args: &[&str], token: Option<&str>) -> Output {
    sluice_command_with_env(args, token, &[]).await
}

/// [`sluice_command`] with the environment variables `env` set as well.
pub(crate) async fn sluice_command_with_env(
    args: &[&str],
    token: Option<&str>,
    env: &[(&str, &str)],
) -> Output {
    let mut command = tokio::process::Command::new(sluice_bin());
    command
        .args(args)
        .env("SLUICE_CACHE_DIR", component_cache_dir())
        .env_remove("SLUICE_ADMIN_URL")
        .env_remove("SLUICE_ADMIN_TOKEN")
        .env_remove("SLUICE_ADMIN_CA_FILE")
        // Errors as text: the tests read the `error:` line.
        .env_remove("SLUICE_LOG_FORMAT")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(token) = token {
        command.env("SLUICE_ADMIN_TOKEN", token);
    }
    command.envs(env.iter().copied());
    tokio::time::timeout(timeouts::ADMIN, command.output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "sluice {args:?} did not finish within {:?}",
                timeouts::ADMIN
            )
        })
        .unwrap()
}

/// The one `error:` line the `sluice` binary printed (fails unless there is exactly one).
pub(crate) fn error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors.len(),
        1,
        "exactly one error line expected in:\n{stderr}"
    );
    errors[0].to_owned()
}

/// `sluice run` as a child process, killed on drop if still running.
pub(crate) struct SluiceProcess {
    child: Child,
    /// Where its log goes, when a test asked for it in a file.
    log: Option<std::path::PathBuf>,
}

impl SluiceProcess {
    pub(crate) fn run(config: &Path) -> Self {
        // `SLUICE_TEST_LOG=info` shows the child's log when debugging a test.
        let level = std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "error".into());
        Self::spawn(config, &[], &[], &level, Stdio::inherit(), Stdio::inherit())
    }

    /// Like [`run`](Self::run), with its log at `info` written to `log` for the test to read.
    pub(crate) fn run_logging_to(config: &Path, log: &Path) -> Self {
        Self::run_with_args_logging_to(config, &[], log)
    }

    /// Like [`run_logging_to`](Self::run_logging_to), with more `sluice run` arguments (e.g.
    /// `--log-format json`); stdout goes to `log` too, so the log is whole wherever it is written.
    pub(crate) fn run_with_args_logging_to(config: &Path, run_args: &[&str], log: &Path) -> Self {
        Self::run_with_env_logging_to(config, run_args, &[], log)
    }

    /// Like [`run_with_args_logging_to`](Self::run_with_args_logging_to), with more
    /// environment variables (e.g. a test hook).
    pub(crate) fn run_with_env_logging_to(
        config: &Path,
        run_args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Self {
        let file = std::fs::File::create(log).unwrap();
        let stdout = Stdio::from(file.try_clone().unwrap());
        let mut process = Self::spawn(config, run_args, env, "info", stdout, Stdio::from(file));
        process.log = Some(log.to_owned());
        process
    }

    /// The last `count` lines of its log file (empty when it logs to the test's output), for
    /// a failure message that says why the process ended.
    pub(crate) fn log_tail(&self, count: usize) -> String {
        let Some(text) = self
            .log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log).ok())
        else {
            return String::new();
        };
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(count)..].join("\n")
    }

    fn spawn(
        config: &Path,
        run_args: &[&str],
        env: &[(&str, &str)],
        log_level: &str,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Self {
        let child = Command::new(sluice_bin())
            .arg("run")
            .args(run_args)
            .arg("--config")
            .arg(config)
            .env("SLUICE_LOG", log_level)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("cannot start sluice");
        Self { child, log: None }
    }

    /// Current and peak resident memory of the process, in MiB (from `/proc`).
    pub(crate) fn memory_mib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc status"))
                / 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// The exit status, if the process has exited.
    pub(crate) fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Waits up to `timeout` for the process to exit on its own; its status, if it did.
    pub(crate) fn wait_for_exit(
        &mut self,
        timeout: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(timeouts::RECHECK);
        }
        None
    }

    /// SIGKILL: no drain, no goodbye.
    pub(crate) fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the process must drain and exit 0 within [`timeouts::DRAIN`].
    pub(crate) fn terminate_and_wait_success(&mut self) {
        let (status, _) = self.terminate_and_wait();
        assert!(
            status.success(),
            "sluice exited with {status} after SIGTERM"
        );
    }

    /// SIGTERM, then the exit status and how long the process took to exit; fails if it is
    /// still running after [`timeouts::DRAIN`].
    pub(crate) fn terminate_and_wait(&mut self) -> (std::process::ExitStatus, Duration) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let sent = Instant::now();
        while sent.elapsed() < timeouts::DRAIN {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, sent.elapsed());
            }
            std::thread::sleep(timeouts::RECHECK);
        }
        panic!(
            "sluice did not stop within {:?} of SIGTERM",
            timeouts::DRAIN
        );
    }
}

impl Drop for SluiceProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A pipeline running inside the test process, through the library API.
pub(crate) struct InProcessPipeline {
    stop: CancellationToken,
    task: JoinHandle<Result<(), PipelineError>>,
    pub(crate) stats: Arc<PipelineStats>,
}

impl InProcessPipeline {
    pub(crate) async fn start(toml: &str) -> Self {
        let config = Config::parse(toml, Path::new("test.toml"), Path::new(".")).unwrap();
        let pipeline = sluice_runtime::standalone_pipeline(
            config.pipelines[0].clone(),
            sluice_tests::engine(),
        )
        .await
        .unwrap();
        let stats = pipeline.stats();
        let stop = CancellationToken::new();
        let task = tokio::spawn(pipeline.run(stop.clone()));
        Self { stop, task, stats }
    }

    pub(crate) fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Waits for the pipeline to stop on its own with an error; returns the error chain.
    pub(crate) async fn failure(self) -> String {
        let result = tokio::time::timeout(timeouts::PIPELINE_FAILURE, self.task)
            .await
            .expect("the pipeline stops on its own")
            .unwrap();
        let error = result.expect_err("the pipeline fails");
        format!("{:#}", anyhow::Error::new(error))
    }

    /// Stops it like SIGTERM does: it must drain and return `Ok`.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .unwrap()
            .expect("the pipeline drains and stops cleanly");
        eprintln!("pipeline counters: {}", self.stats.summary());
    }
}
