//! Helpers of the schema tests: service discovery (skip locally, fail in CI), unique names, the
//! Python venv,
//! and a proxy that counts the HTTP requests reaching the registry.

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_test_brokers::addresses::{self, broker_env_or_skip, or_skip};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The service address from env `var` (else `default_addr`): skip locally, fail in CI
/// (`sluice_test_brokers::addresses::broker_env_or_skip`).
pub(crate) fn service_or_skip(var: &str, default_addr: &str) -> Option<String> {
    broker_env_or_skip(var, default_addr)
}

/// The registry's Confluent API base URL, or `None` (skip).
pub(crate) fn registry_url() -> Option<String> {
    or_skip(addresses::REGISTRY)
}

/// A name no other test (in this or a concurrent run) uses.
pub(crate) fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{millis}-{n}", std::process::id())
}

fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// The Python of the tests' venv (`tests/python/install.sh`, run by `scripts/toolchains.sh`):
/// Apache Pulsar's and Confluent's Python clients.
pub(crate) fn python() -> PathBuf {
    let output = Command::new(python_dir().join("install.sh"))
        .arg("--print")
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot run tests/python/install.sh");
    assert!(
        output.status.success(),
        "tests/python/install.sh --print failed"
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// Runs `tests/python/<script>` with `args`, feeding `stdin`; returns its stdout's JSON lines.
pub(crate) fn run_python(script: &str, args: &[&str], stdin: &str) -> Vec<serde_json::Value> {
    let mut child = Command::new(python())
        .arg(python_dir().join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter(|l| l.starts_with('{') || l.starts_with('['))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A TCP proxy in front of an HTTP service that counts the requests passing through (HTTP/1.1
/// request lines), to check that the codec does not call the registry per record.
pub(crate) struct CountingProxy {
    /// `http://127.0.0.1:PORT` + the upstream URL's path.
    pub(crate) url: String,
    requests: Arc<AtomicUsize>,
}

impl CountingProxy {
    pub(crate) async fn start(upstream_url: &str) -> Self {
        let rest = upstream_url
            .strip_prefix("http://")
            .expect("an http:// URL");
        let (host_port, path) = rest.split_once('/').unwrap_or((rest, ""));
        let upstream: SocketAddr = host_port.to_socket_addrs().unwrap().next().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/{path}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.split();
                    let (mut server_read, mut server_write) = server.split();
                    let up = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match client_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let lines = buf[..n]
                                .windows(11)
                                .filter(|w| w == b" HTTP/1.1\r\n")
                                .count();
                            counter.fetch_add(lines, Ordering::SeqCst);
                            if server_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = server_write.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Self { url, requests }
    }

    /// Requests seen so far.
    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// base64 (standard) of bytes.
pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
