//! HTTP clients: the admin API of a `sluice run` (deploy, rollback, versions, status,
//! `/metrics`, `/readyz`) and Pulsar's admin API.

use std::net::{SocketAddr, TcpListener};
use std::time::Instant;

use prometheus_parse::Scrape;
use serde_json::Value;
use sluice_tests::timeouts;

use super::process::SluiceProcess;

/// A plain-HTTP client for loopback services: no proxy, every request bounded by
/// [`timeouts::ADMIN`].
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeouts::ADMIN)
        .build()
        .unwrap()
}

/// The body of `GET url`, which must answer 200.
pub(crate) async fn get_text(url: &str) -> String {
    let response = client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status.as_u16(), 200, "GET {url}: {body}");
    body
}

/// The JSON body of `GET url`, which must answer 200.
pub(crate) async fn get_json(url: &str) -> Value {
    json_of(&get_text(url).await)
}

/// A loopback address nothing listens on right now (bound, read, released), for one runtime's
/// admin API: each test has its own, so tests running side by side do not collide.
pub(crate) fn free_loopback_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The admin API of one `sluice run`, over HTTP.
pub(crate) struct AdminApi {
    pub(crate) base_url: String,
    http: reqwest::Client,
}

/// `GET …/versions`: the current digest and every version's digest, oldest first.
pub(crate) struct Versions {
    pub(crate) current: String,
    pub(crate) digests: Vec<String>,
}

impl AdminApi {
    pub(crate) fn new(listen: SocketAddr) -> Self {
        let http = client();
        Self {
            base_url: format!("http://{listen}"),
            http,
        }
    }

    /// The admin API over https (`[admin.tls]`), trusting only the CA certificates in
    /// `ca_file` (PEM).
    pub(crate) fn https(listen: SocketAddr, ca_file: &std::path::Path) -> Self {
        let pem = std::fs::read(ca_file).unwrap_or_else(|e| panic!("{}: {e}", ca_file.display()));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeouts::ADMIN)
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
            .build()
            .unwrap();
        Self {
            base_url: format!("https://{listen}"),
            http,
        }
    }

    /// The status code and body of `GET path`.
    pub(crate) async fn get(&self, path: &str) -> reqwest::Result<(u16, String)> {
        let response = self
            .http
            .get(format!("{}{path}", self.base_url))
            .send()
            .await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    /// The JSON body of `GET path`, which must answer 200.
    pub(crate) async fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await.unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// `POST path` with `body`, as `Authorization: Bearer <token>` when a token is given.
    pub(crate) async fn post(
        &self,
        path: &str,
        body: Option<reqwest::Body>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base_url));
        if let Some(body) = body {
            request = request.body(body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, json_of(&response.text().await.unwrap()))
    }

    pub(crate) async fn deploy(
        &self,
        pipeline: &str,
        transform: &str,
        component: Vec<u8>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let path = format!("/v1/pipelines/{pipeline}/transforms/{transform}/deploy");
        self.post(&path, Some(component.into()), token).await
    }

    /// Back to the version deployed before the current one.
    pub(crate) async fn rollback(
        &self,
        pipeline: &str,
        transform: &str,
        token: Option<&str>,
    ) -> (u16, Value) {
        let path = format!("/v1/pipelines/{pipeline}/transforms/{transform}/rollback");
        self.post(&path, None, token).await
    }

    /// The versions list, checked for consistency: one entry marked current, the one named
    /// `current`, and deploy times in order (oldest first).
    pub(crate) async fn versions(&self, pipeline: &str, transform: &str) -> Versions {
        let path = format!("/v1/pipelines/{pipeline}/transforms/{transform}/versions");
        let body = self.get_json(&path).await;
        let current = body["current"].as_str().unwrap_or_else(|| panic!("{body}"));
        let entries = body["versions"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"));
        let marked: Vec<&Value> = entries.iter().filter(|v| v["current"] == true).collect();
        assert_eq!(marked.len(), 1, "one version is current: {body}");
        assert_eq!(marked[0]["digest"], current, "{body}");
        let deployed_at: Vec<u64> = entries
            .iter()
            .map(|v| {
                v["deployed_at_ms"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{body}"))
            })
            .collect();
        assert!(deployed_at.is_sorted(), "oldest first: {body}");
        Versions {
            current: current.to_owned(),
            digests: entries
                .iter()
                .map(|v| {
                    v["digest"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{body}"))
                        .to_owned()
                })
                .collect(),
        }
    }

    /// `/metrics`, parsed, once `done` holds (polled; fails after `timeouts::ADMIN`).
    pub(crate) async fn metrics_when(&self, done: impl Fn(&Scrape) -> bool) -> Scrape {
        let deadline = Instant::now() + timeouts::ADMIN;
        loop {
            let (status, text) = self.get("/metrics").await.unwrap();
            assert_eq!(status, 200, "GET /metrics: {text}");
            let lines = text.lines().map(|line| Ok(line.to_owned()));
            let scrape = Scrape::parse(lines).expect("/metrics is Prometheus text");
            if done(&scrape) {
                return scrape;
            }
            assert!(
                Instant::now() < deadline,
                "/metrics did not settle within {:?}:\n{text}",
                timeouts::ADMIN
            );
            tokio::time::sleep(timeouts::RECHECK).await;
        }
    }

    /// Waits until `/readyz` answers 200 (source and sink connected); fails if `runtime` exits
    /// or `timeouts::ADMIN` passes first.
    pub(crate) async fn wait_ready(&self, runtime: &mut SluiceProcess) {
        let deadline = Instant::now() + timeouts::ADMIN;
        loop {
            if let Some(status) = runtime.exit_status() {
                panic!(
                    "sluice exited ({status}) before it was ready; its log ends:\n{}",
                    runtime.log_tail(20)
                );
            }
            let answer = self.get("/readyz").await;
            if matches!(answer, Ok((200, _))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready within {:?}; last answer: {answer:?}",
                timeouts::ADMIN
            );
            tokio::time::sleep(timeouts::RECHECK).await;
        }
    }
}

/// A body as JSON; one that is not JSON becomes a JSON string, so assertions still show it.
pub(crate) fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()))
}

/// Creates `topic` (`persistent://tenant/namespace/name`) as a partitioned topic of
/// `partitions` partitions through Pulsar's admin API at `admin_url`.
pub(crate) async fn create_partitioned_pulsar_topic(admin_url: &str, topic: &str, partitions: u32) {
    let path = topic.replacen("persistent://", "persistent/", 1);
    let url = format!("{admin_url}/admin/v2/{path}/partitions");
    let response = client()
        .put(&url)
        .json(&partitions)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
    let status = response.status();
    assert!(
        status.is_success(),
        "PUT {url}: {status}: {}",
        response.text().await.unwrap_or_default()
    );
}
