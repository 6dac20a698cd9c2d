//! Issue 19: the admin API over https (`[admin.tls]`) with the real `sluice` binary on both
//! ends, a pipeline on the real brokers, and the certificates of
//! scripts/brokers/credentials.sh (the server certificate names 127.0.0.1).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Output;

use serde_json::Value;
use sluice_tests::{VERSION_STAMP_V1, VERSION_STAMP_V2};

use crate::support::brokers::{brokers_and_topics, credentials_dir};
use crate::support::config::{named_transform_entry, pipeline_toml};
use crate::support::http::{AdminApi, free_loopback_address, json_of};
use crate::support::process::{SluiceProcess, error_line, sluice_command, sluice_command_with_env};

const TOKEN: &str = "admin-tls-token-19";

/// Acceptance: with `[admin.tls]`, `sluice status` and a `sluice deploy` (with the token) work
/// over https trusting the project's CA, and the deploy is audited; a client that does not
/// trust the CA gets one `error:` line naming the address and the certificate problem; a plain
/// http request gets no HTTP answer; a deploy without the token is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_over_tls_serves_trusting_clients_only_and_still_needs_the_token() {
    let Some((brokers, topics)) = brokers_and_topics("admin-tls", 1).await else {
        return;
    };
    let credentials = credentials_dir();
    let file = |name: &str| credentials.join(name);
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let listen = free_loopback_address();
    let mut toml = pipeline_toml(
        &brokers,
        &topics,
        &named_transform_entry("stamp", VERSION_STAMP_V1, ""),
        "",
    );
    toml.push_str(&format!(
        "\n[admin]\nlisten = \"{listen}\"\nstate_dir = {state_dir:?}\ntoken = {TOKEN:?}\n\
         \n[admin.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        file("server.crt"),
        file("server.key"),
    ));
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, toml).unwrap();
    let log = dir.path().join("sluice.log");
    let mut sluice = SluiceProcess::run_logging_to(&config, &log);
    let api = AdminApi::https(listen, &file("ca.crt"));
    api.wait_ready(&mut sluice).await;

    let ca = file("ca.crt");
    let ca = ca.to_str().unwrap();
    let https = api.base_url.as_str();
    // `sluice status` over https, trusting the CA.
    let status = sluice_command(
        &["status", "--json", "--admin", https, "--ca-file", ca],
        None,
    )
    .await;
    assert_succeeded(&status, "sluice status over https");
    let status = json_of(&String::from_utf8_lossy(&status.stdout));
    assert_eq!(status["pipelines"][0]["name"], "test", "{status}");
    println!(
        "status over https: {} pipeline(s)",
        status["pipelines"].as_array().unwrap().len()
    );

    // A deploy with the token, the CA given through the environment variable this time.
    let deploy = sluice_with_ca_env(
        &[
            "deploy",
            "test",
            VERSION_STAMP_V2,
            "--transform",
            "stamp",
            "--admin",
            https,
        ],
        ca,
        Some(TOKEN),
    )
    .await;
    assert_succeeded(&deploy, "sluice deploy over https");
    let deployed = String::from_utf8_lossy(&deploy.stdout).into_owned();
    assert!(deployed.starts_with("deployed: test/stamp"), "{deployed}");
    println!("deploy over https: {}", deployed.trim());

    // The token is still required over TLS.
    let refused = sluice_command(
        &[
            "deploy",
            "test",
            VERSION_STAMP_V1,
            "--transform",
            "stamp",
            "--admin",
            https,
            "--ca-file",
            ca,
        ],
        None,
    )
    .await;
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let error = error_line(&refused);
    assert!(
        error.contains("401") && error.contains("bearer token"),
        "{error}"
    );
    println!("deploy without the token over https: {error}");

    // Clients that do not trust the CA: one that trusts another CA, one with the system roots.
    let untrusted = file("untrusted-ca.crt");
    for (case, extra) in [
        ("another CA", vec!["--ca-file", untrusted.to_str().unwrap()]),
        ("system roots", vec![]),
    ] {
        let mut args = vec!["status", "--admin", https];
        args.extend(extra);
        let output = sluice_command(&args, None).await;
        assert_eq!(output.status.code(), Some(1), "{case}: {output:?}");
        let error = error_line(&output);
        assert!(
            error.contains(https)
                && error.contains("certificate this client does not trust")
                && error.contains("UnknownIssuer"),
            "{case}: {error}"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stderr.lines().filter(|l| !l.starts_with("hint:")).count(),
            1,
            "{case}: {stderr}"
        );
        println!("status trusting {case}: {error}");
    }

    // Plain http to the TLS port: `sluice status` fails, and a raw request gets no HTTP answer.
    let http = format!("http://{listen}");
    let output = sluice_command(&["status", "--admin", &http], None).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let error = error_line(&output);
    assert!(error.contains(&http) && error.contains("https"), "{error}");
    println!("status over plain http: {error}");
    let answer = raw_http_get(listen);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain http was answered: {answer:?}"
    );
    println!(
        "raw plain http request: {} byte(s) back, no HTTP answer (first byte {:#04x}: a TLS alert is 0x15)",
        answer.len(),
        answer.first().copied().unwrap_or_default()
    );

    sluice.terminate_and_wait_success();

    // The audit log holds the accepted deploy (by the token) and the refused one.
    let audit = std::fs::read_to_string(state_dir.join("audit.jsonl")).unwrap();
    let entries: Vec<Value> = audit.lines().map(json_of).collect();
    let accepted = entries
        .iter()
        .filter(|e| e["action"] == "deploy" && e["status"] == 200)
        .collect::<Vec<_>>();
    assert_eq!(accepted.len(), 1, "{audit}");
    assert!(
        accepted[0]["who"].as_str().unwrap().starts_with("token:"),
        "{audit}"
    );
    assert!(
        accepted[0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{audit}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["status"] == 401 && e["who"] == "unauthenticated"),
        "{audit}"
    );
    let log = std::fs::read_to_string(&log).unwrap();
    for (place, text) in [
        ("the audit log", &audit),
        ("the log", &log),
        ("deploy's output", &deployed),
    ] {
        assert!(!text.contains(TOKEN), "{place} shows the admin token");
    }
    println!(
        "audit log over https: {} entries, the token in none:\n{audit}",
        entries.len()
    );
}

/// `sluice args…` with the CA file given as `SLUICE_ADMIN_CA_FILE`.
async fn sluice_with_ca_env(args: &[&str], ca: &str, token: Option<&str>) -> Output {
    sluice_command_with_env(args, token, &[("SLUICE_ADMIN_CA_FILE", ca)]).await
}

/// What the TLS port sends back to a plain `GET /v1/status` (until it closes, at most 5 s).
fn raw_http_get(listen: std::net::SocketAddr) -> Vec<u8> {
    let mut stream = TcpStream::connect(listen).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(format!("GET /v1/status HTTP/1.1\r\nHost: {listen}\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = Vec::new();
    // A reset or timeout after the alert is the server refusing: keep what came.
    let _ = stream.read_to_end(&mut answer);
    answer
}

fn assert_succeeded(output: &Output, command: &str) {
    assert!(
        output.status.success(),
        "{command} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
