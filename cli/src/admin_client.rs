//! `sluice deploy | rollback | status`: clients of a running runtime's admin API.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::args::{AdminArgs, DeployArgs, RollbackArgs, StatusArgs};

/// The admin API refused or failed a request; 4xx answers are the caller's input (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{url}: {status}: {message}")]
pub(crate) struct RemoteError {
    url: String,
    status: reqwest::StatusCode,
    message: String,
}

impl RemoteError {
    pub(crate) fn is_user_input_error(&self) -> bool {
        self.status.is_client_error()
    }
}

struct AdminClient {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl AdminClient {
    fn new(args: &AdminArgs) -> Result<Self> {
        let mut http = reqwest::Client::builder();
        if let Some(ca_file) = &args.ca_file {
            let pem = std::fs::read(ca_file)
                .with_context(|| format!("cannot read --ca-file {}", ca_file.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!(
                    "--ca-file {} is not a PEM certificate file",
                    ca_file.display()
                )
            })?;
            anyhow::ensure!(
                !certs.is_empty(),
                "--ca-file {} holds no certificate",
                ca_file.display()
            );
            http = http.tls_certs_only(certs);
        }
        Ok(Self {
            base: args.url.trim_end_matches('/').to_owned(),
            http: http.build().context("cannot create the HTTP client")?,
            token: std::env::var("SLUICE_ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> Result<Value> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|error| unreachable(url, error))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .context("reading the answer failed")?;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let message = json
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
        Err(RemoteError {
            url: url.to_owned(),
            status,
            message,
        }
        .into())
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(&url), &url).await
    }

    async fn post(&self, path: &str, body: Vec<u8>, content_type: &str) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let request = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.send(request, &url).await
    }

    /// The transform to act on: the one named, else the pipeline's only one.
    async fn transform_of(&self, pipeline: &str, named: Option<&str>) -> Result<String> {
        if let Some(name) = named {
            return Ok(name.to_owned());
        }
        let status = self.get("/v1/status").await?;
        let found = status["pipelines"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == pipeline)
            .with_context(|| format!("the runtime has no pipeline {pipeline:?}"))?;
        let names: Vec<&str> = found["transforms"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str())
            .collect();
        match names.as_slice() {
            [only] => Ok((*only).to_owned()),
            [] => anyhow::bail!("pipeline {pipeline:?} has no transforms"),
            several => anyhow::bail!(
                "pipeline {pipeline:?} has several transforms ({}): pass --transform NAME",
                several.join(", ")
            ),
        }
    }
}

/// Why the admin API at `url` gave no answer, in one line: a certificate problem is named as
/// such (the usual cause with https is a CA this client does not trust), and a plain http
/// request answered with TLS suggests https.
fn unreachable(url: &str, error: reqwest::Error) -> anyhow::Error {
    if let Some(tls) = tls_error(&error) {
        let problem = match tls {
            rustls::Error::InvalidCertificate(_) => {
                "presented a certificate this client does not trust"
            }
            _ => "refused the TLS handshake",
        };
        return anyhow::anyhow!(
            "the admin API at {url} {problem}: {tls} (trust the CA that signed its certificate \
             with --ca-file or SLUICE_ADMIN_CA_FILE)"
        );
    }
    let context = if url.starts_with("http://") && !error.is_connect() {
        format!(
            "the admin API at {url} did not answer plain http (with [admin.tls] it speaks \
             https only: use an https:// URL)"
        )
    } else {
        format!("cannot reach the admin API at {url} (is `sluice run` up, with [admin]?)")
    };
    anyhow::Error::new(error).context(context)
}

/// The TLS error under a failed request, if that is what failed it. hyper-rustls wraps it in
/// `io::Error`s (two deep), whose `source()` skips what they wrap, so an `io::Error` is opened
/// with `get_ref` instead.
fn tls_error(error: &reqwest::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => error.source(),
        };
    }
    None
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Posts `body` to `action` (`deploy`, `rollback`) of a pipeline's transform and prints what
/// went live.
fn swap(
    admin: &AdminArgs,
    pipeline: &str,
    transform: Option<&str>,
    action: &str,
    body: Vec<u8>,
    content_type: &str,
) -> Result<()> {
    let client = AdminClient::new(admin)?;
    let answer = runtime()?.block_on(async {
        let transform = client.transform_of(pipeline, transform).await?;
        let path = format!("/v1/pipelines/{pipeline}/transforms/{transform}/{action}");
        client.post(&path, body, content_type).await
    })?;
    print_swap(action, &answer);
    Ok(())
}

pub(crate) fn deploy(args: DeployArgs) -> Result<()> {
    let component = std::fs::read(&args.component)
        .with_context(|| format!("cannot read component {:?}", args.component))?;
    let transform = args.transform.as_deref();
    swap(
        &args.admin,
        &args.pipeline,
        transform,
        "deploy",
        component,
        "application/wasm",
    )
}

pub(crate) fn rollback(args: RollbackArgs) -> Result<()> {
    let body = match &args.to {
        Some(digest) => serde_json::to_vec(&serde_json::json!({ "digest": digest }))?,
        None => Vec::new(),
    };
    let transform = args.transform.as_deref();
    swap(
        &args.admin,
        &args.pipeline,
        transform,
        "rollback",
        body,
        "application/json",
    )
}

fn print_swap(action: &str, answer: &Value) {
    let what = if action == "deploy" {
        "deployed"
    } else {
        "rolled back"
    };
    let text = |key: &str| answer[key].as_str().unwrap_or("?").to_owned();
    println!(
        "{what}: {}/{} {} → {}{}",
        text("pipeline"),
        text("transform"),
        text("previous"),
        text("digest"),
        if answer["live"] == true {
            " (live)"
        } else {
            " (saved; goes live when the pipeline resumes)"
        }
    );
}

pub(crate) fn status(args: StatusArgs) -> Result<()> {
    let client = AdminClient::new(&args.admin)?;
    let status = runtime()?.block_on(client.get("/v1/status"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status_table(&status));
    }
    Ok(())
}

/// The status as an aligned table, one pipeline per line.
fn status_table(status: &Value) -> String {
    let header = [
        "PIPELINE",
        "STATE",
        "READY",
        "SOURCE",
        "RECEIVED",
        "PRODUCED",
        "DLQ",
        "ACKED",
        "IN-FLIGHT",
        "TRANSFORMS",
    ];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    for pipeline in status["pipelines"].as_array().into_iter().flatten() {
        let counter = |key: &str| pipeline["counters"][key].to_string();
        let transforms: Vec<String> = pipeline["transforms"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let digest = t["digest"].as_str().unwrap_or("");
                let short = digest.get(..19).unwrap_or(digest);
                format!("{}@{short}", t["name"].as_str().unwrap_or("?"))
            })
            .collect();
        rows.push(vec![
            pipeline["name"].as_str().unwrap_or("?").to_owned(),
            pipeline["state"].as_str().unwrap_or("?").to_owned(),
            if pipeline["ready"] == true {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
            pipeline["source"].as_str().unwrap_or("?").to_owned(),
            counter("received"),
            counter("produced"),
            counter("dead_lettered"),
            counter("acked"),
            counter("in_flight"),
            if transforms.is_empty() {
                "(none)".to_owned()
            } else {
                transforms.join(" → ")
            },
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut table = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(table, "{}", line.join("  ").trim_end());
    }
    table.push_str(&instances_table(status));
    table
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The instances of each pipeline that shares its versions through a deployments topic, and
/// the version each runs: one line per instance.
fn instances_table(status: &Value) -> String {
    let mut table = String::new();
    for pipeline in status["pipelines"].as_array().into_iter().flatten() {
        let Some(instances) = pipeline["instances"].as_array() else {
            continue;
        };
        let name = pipeline["name"].as_str().unwrap_or("?");
        let _ = writeln!(table, "\n{name}: {} instance(s)", instances.len());
        for instance in instances {
            let versions: Vec<String> = instance["transforms"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(transform, digest)| {
                    let digest = digest.as_str().unwrap_or("");
                    format!("{transform}@{}", digest.get(..19).unwrap_or(digest))
                })
                .collect();
            // Instances publish themselves every 15 s: one not seen for longer is gone.
            let seen = instance["at_ms"]
                .as_i64()
                .map(|at| format!("  seen {} s ago", (now_ms() - at).max(0) / 1000))
                .unwrap_or_default();
            let _ = writeln!(
                table,
                "  {}  admin {}  {}{seen}",
                instance["instance"].as_str().unwrap_or("?"),
                instance["admin"].as_str().unwrap_or("?"),
                versions.join(" → ")
            );
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_lines_up_columns() {
        let status = serde_json::json!({"pipelines": [{
            "name": "orders", "state": "running", "ready": true, "source": "pulsar",
            "transforms": [{"name": "redact", "digest": format!("sha256:{}", "ab".repeat(32))}],
            "counters": {"received": 12, "produced": 10, "dead_lettered": 2, "acked": 12, "in_flight": 0}
        }]});
        let table = status_table(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("PIPELINE  STATE    READY  SOURCE  RECEIVED"));
        assert!(lines[1].starts_with("orders    running  yes    pulsar  12"));
        assert!(lines[1].ends_with("redact@sha256:abababababab"));
        let column = lines[0].find("ACKED").unwrap();
        assert_eq!(&lines[1][column..column + 2], "12");
    }

    #[test]
    fn status_lists_the_instances_sharing_a_deployments_topic() {
        let digest = format!("sha256:{}", "cd".repeat(32));
        let status = serde_json::json!({"pipelines": [{
            "name": "orders", "state": "running", "ready": true, "source": "pulsar",
            "transforms": [{"name": "redact", "digest": digest}],
            "counters": {"received": 1, "produced": 1, "dead_lettered": 0, "acked": 1, "in_flight": 0},
            "instances": [
                {"instance": "pod-a/1", "admin": "10.0.0.1:9650", "transforms": {"redact": digest}},
                {"instance": "pod-b/1", "admin": "10.0.0.2:9650", "transforms": {"redact": digest}}
            ]
        }]});
        let table = status_table(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[3], "orders: 2 instance(s)");
        assert_eq!(
            lines[4],
            "  pod-a/1  admin 10.0.0.1:9650  redact@sha256:cdcdcdcdcdcd"
        );
        assert_eq!(
            lines[5],
            "  pod-b/1  admin 10.0.0.2:9650  redact@sha256:cdcdcdcdcdcd"
        );
    }
}
