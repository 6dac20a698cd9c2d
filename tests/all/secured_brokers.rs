//! Issue 19: the pipeline over the brokers' secured listeners (Kafka SASL_SSL with a SCRAM
//! user, Pulsar TLS with token authentication, or with OAuth2 client credentials from the
//! local issuer; scripts/brokers.sh), what a refused credential or an untrusted certificate
//! does, and that no secret shows in the logs, `sluice status` or `/metrics`.
//!
//! The test's own producer and reader use the plaintext listeners of the same brokers: what is
//! under test is the pipeline's connections.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sluice_tests::PASSTHROUGH;
use sluice_tests::addresses::{self, KAFKA_SECURE, OAUTH2_ISSUER, PULSAR_TLS};
use sluice_tests::pulsar::{PulsarRecord, publish_to_pulsar};

use crate::support::assertions::{assert_none_missing, assert_per_key_order, report_counts};
use crate::support::brokers::{Topics, brokers_and_topics, credentials_dir, dev_dir};
use crate::support::config::transform_entry;
use crate::support::http::{AdminApi, free_loopback_address, get_text};
use crate::support::process::{SluiceProcess, error_line, sluice_command};
use crate::support::read::read_until_seqs;

/// The secured listeners and the files of scripts/brokers/credentials.sh.
struct Secured {
    kafka: String,
    pulsar: String,
    credentials: PathBuf,
}

impl Secured {
    /// `None` (skipped outside CI, failing in CI) when a secured listener is down.
    fn from_env() -> Option<Self> {
        let kafka = addresses::or_skip(KAFKA_SECURE)?;
        let pulsar = addresses::or_skip(PULSAR_TLS)?;
        let credentials = credentials_dir();
        Some(Self {
            kafka,
            pulsar,
            credentials,
        })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.credentials.join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name))
            .unwrap_or_else(|e| panic!("{}: {e}", self.file(name).display()))
            .trim()
            .to_owned()
    }

    /// Every secret the runs of this file use: none may appear in what Sluice prints.
    fn secrets(&self) -> Vec<(String, String)> {
        let mut secrets: Vec<(String, String)> = [
            "kafka-scram-password",
            "pulsar-token",
            "pulsar-token-expired",
            "pulsar-token-wrong-key",
        ]
        .into_iter()
        .map(|name| (name.to_owned(), self.read(name)))
        .collect();
        secrets.push(("wrong password".into(), WRONG_PASSWORD.into()));
        secrets.push((
            "wrong OAuth2 client secret".into(),
            WRONG_CLIENT_SECRET.into(),
        ));
        // Made by credentials.sh since the OAuth2 issuer exists (added to older credentials
        // at the next `brokers.sh up`).
        if let Ok(json) = std::fs::read_to_string(self.file("oauth2-client.json")) {
            let json: serde_json::Value = serde_json::from_str(&json).unwrap();
            let secret = json["client_secret"].as_str().unwrap().to_owned();
            secrets.push(("OAuth2 client secret".into(), secret));
        }
        // A token's signature is its secret part; its header and claims are not secret (and
        // the header is the same for every HS256 token).
        for (name, token) in secrets.clone() {
            if let Some(signature) = token.rsplit('.').next().filter(|_| name.contains("token")) {
                secrets.push((format!("{name} signature"), signature.to_owned()));
            }
        }
        let key = std::fs::read(self.file("client.key")).unwrap();
        let key = String::from_utf8_lossy(&key);
        let body: String = key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .take(1)
            .collect();
        secrets.push(("client key".into(), body));
        secrets
    }
}

const WRONG_PASSWORD: &str = "not-the-scram-password-19";
const WRONG_CLIENT_SECRET: &str = "not-the-oauth2-client-secret-19";

/// How the pipeline's connections are set up in one run.
struct Credentials<'a> {
    pulsar_ca: &'a str,
    /// The `[pipeline.source.auth…]` section, header included.
    pulsar_auth: String,
    kafka_ca: &'a str,
    /// The `password…` line of the sink's `sasl` section.
    password: String,
}

impl Credentials<'_> {
    fn valid(secured: &Secured) -> Credentials<'static> {
        Credentials {
            pulsar_ca: "ca.crt",
            pulsar_auth: token_auth(secured, "pulsar-token"),
            kafka_ca: "ca.crt",
            password: format!("password_file = {:?}", secured.file("kafka-scram-password")),
        }
    }
}

/// The source's `auth` section: the token of credentials.sh's file `name`.
fn token_auth(secured: &Secured, name: &str) -> String {
    format!(
        "[pipeline.source.auth]\ntoken_file = {:?}\n",
        secured.file(name)
    )
}

/// The source's `auth` section: OAuth2 client credentials from `credentials_file`, issued by
/// the local issuer at `issuer_url`.
fn oauth2_auth(issuer_url: &str, credentials_file: &Path) -> String {
    format!(
        "[pipeline.source.auth.oauth2]\nissuer_url = {issuer_url:?}\ncredentials_file = \
         {credentials_file:?}\naudience = \"urn:sluice:pulsar\"\n"
    )
}

/// Pulsar over TLS with a token → passthrough → Kafka over SASL_SSL (SCRAM-SHA-512, mutual
/// TLS with the client certificate), with `extra` appended (an `[admin]` section).
fn secured_toml(
    secured: &Secured,
    topics: &Topics,
    credentials: &Credentials,
    extra: &str,
) -> String {
    let file = |name: &str| format!("{:?}", secured.file(name));
    format!(
        r#"
[[pipeline]]
name = "secured"
max_in_flight = 2000

[pipeline.source]
kind = "pulsar"
url = "{pulsar}"
topic = "{source}"
subscription = "{subscription}"
subscription_type = "failover"

[pipeline.source.tls]
ca_file = {pulsar_ca}

{pulsar_auth}
{transform}
[pipeline.sink]
kind = "kafka"
brokers = "{kafka}"
topic = "{output}"
dead_letter_topic = "{dead_letter}"

[pipeline.sink.tls]
ca_file = {kafka_ca}
cert_file = {cert}
key_file = {key}

[pipeline.sink.sasl]
mechanism = "SCRAM-SHA-512"
username = "sluice"
{password}
{extra}"#,
        pulsar = secured.pulsar,
        source = topics.source,
        subscription = topics.subscription,
        pulsar_ca = file(credentials.pulsar_ca),
        pulsar_auth = credentials.pulsar_auth,
        transform = transform_entry(PASSTHROUGH, ""),
        kafka = secured.kafka,
        output = topics.output,
        dead_letter = topics.dead_letter,
        kafka_ca = file(credentials.kafka_ca),
        cert = file("client.crt"),
        key = file("client.key"),
        password = credentials.password,
    )
}

/// Fails naming the secret and the place if any secret is in `text`.
fn assert_no_secret(secured: &Secured, place: &str, text: &str) -> usize {
    for (name, secret) in secured.secrets() {
        assert!(
            !secret.is_empty() && !text.contains(&secret),
            "{place} shows the {name}"
        );
    }
    text.lines().count()
}

/// 10,000 records, ten keys, with a `seq` property.
fn records(count: u64) -> Vec<PulsarRecord> {
    (0..count)
        .map(|seq| PulsarRecord {
            key: Some(format!("customer-{}", seq % 10)),
            value: format!(r#"{{"seq":{seq}}}"#).into_bytes(),
            properties: vec![("seq".into(), seq.to_string())],
            event_time_ms: Some(1_700_000_000_000 + seq),
        })
        .collect()
}

/// Acceptance: end to end over Kafka SASL_SSL (SCRAM) and Pulsar TLS + token, 10,000 records,
/// none lost, per-key order kept; and no secret in the log, `sluice status` or `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secured_listeners_carry_every_record_in_order_and_show_no_secret() {
    const COUNT: u64 = 10_000;
    let Some(secured) = Secured::from_env() else {
        return;
    };
    let Some((brokers, topics)) = brokers_and_topics("secured", 2).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let listen = free_loopback_address();
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let admin = format!("\n[admin]\nlisten = \"{listen}\"\nstate_dir = {state_dir:?}\n");
    let config = dir.path().join("sluice.toml");
    let toml = secured_toml(&secured, &topics, &Credentials::valid(&secured), &admin);
    std::fs::write(&config, toml).unwrap();
    let log = dir.path().join("sluice.log");
    let started = Instant::now();
    let mut sluice = SluiceProcess::run_logging_to(&config, &log);
    let api = AdminApi::new(listen);
    api.wait_ready(&mut sluice).await;

    publish_to_pulsar(&brokers.pulsar, &topics.source, &records(COUNT))
        .await
        .unwrap();
    let expected: BTreeSet<u64> = (0..COUNT).collect();
    let output = read_until_seqs(&brokers, &topics.output, &expected).await;
    let elapsed = started.elapsed();
    let status = sluice_command(&["status", "--admin", &api.base_url], None).await;
    assert!(status.status.success(), "sluice status failed: {status:?}");
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    let metrics = get_text(&format!("{}/metrics", api.base_url)).await;
    sluice.terminate_and_wait_success();

    let arrived = report_counts("secured listeners", &output, &expected);
    assert_none_missing(&arrived, &expected);
    assert_per_key_order(&output);
    println!(
        "secured end to end: {COUNT} published, {} distinct arrived ({} records), 0 lost, in {:.1} s",
        arrived.len(),
        output.len(),
        elapsed.as_secs_f64()
    );

    let log = std::fs::read_to_string(&log).unwrap();
    let lines = assert_no_secret(&secured, "the log", &log)
        + assert_no_secret(&secured, "sluice status", &status)
        + assert_no_secret(&secured, "/metrics", &metrics);
    println!(
        "secrets: {} checked against {lines} lines of log, status and /metrics: none found",
        secured.secrets().len()
    );
}

/// One refused run: its config, what the `error:` line must name, and why.
struct Refusal {
    case: &'static str,
    credentials: Credentials<'static>,
    connection: String,
    cause: &'static str,
}

/// Acceptance: a wrong password, a wrong token, an untrusted certificate (on each connection)
/// and an expired token stop `sluice run` with one `error:` line naming the connection and the
/// cause, without restarts; no secret appears in what it printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_stop_the_pipeline_with_one_clear_error() {
    let Some(secured) = Secured::from_env() else {
        return;
    };
    let Some((_brokers, topics)) = brokers_and_topics("secured-refused", 1).await else {
        return;
    };
    let valid = || Credentials::valid(&secured);
    let kafka = format!("Kafka at {}", secured.kafka);
    let pulsar = format!("Pulsar at {}", secured.pulsar);
    let cases = [
        Refusal {
            case: "wrong password",
            credentials: Credentials {
                password: format!("password = {WRONG_PASSWORD:?}"),
                ..valid()
            },
            connection: kafka.clone(),
            cause: "SASL authentication error",
        },
        Refusal {
            case: "wrong token",
            credentials: Credentials {
                pulsar_auth: token_auth(&secured, "pulsar-token-wrong-key"),
                ..valid()
            },
            connection: pulsar.clone(),
            cause: "did not accept the token",
        },
        Refusal {
            case: "expired token",
            credentials: Credentials {
                pulsar_auth: token_auth(&secured, "pulsar-token-expired"),
                ..valid()
            },
            connection: pulsar.clone(),
            cause: "expired",
        },
        Refusal {
            case: "untrusted Kafka certificate",
            credentials: Credentials {
                kafka_ca: "untrusted-ca.crt",
                ..valid()
            },
            connection: kafka.clone(),
            cause: "certificate verify failed",
        },
        Refusal {
            case: "untrusted Pulsar certificate",
            credentials: Credentials {
                pulsar_ca: "untrusted-ca.crt",
                ..valid()
            },
            connection: pulsar.clone(),
            cause: "certificate verify failed",
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut lines = 0;
    for refusal in &cases {
        lines += check_refusal(&secured, &topics, dir.path(), refusal).await;
    }
    println!(
        "secrets: {} checked against {lines} lines the refused runs printed: none found",
        secured.secrets().len()
    );
}

/// Runs `refusal`'s config to its exit and checks the one `error:` line, that nothing
/// restarted and that no secret was printed; the number of lines checked.
async fn check_refusal(secured: &Secured, topics: &Topics, dir: &Path, refusal: &Refusal) -> usize {
    let config = dir.join(format!("{}.toml", refusal.case.replace(' ', "-")));
    std::fs::write(
        &config,
        secured_toml(secured, topics, &refusal.credentials, ""),
    )
    .unwrap();
    let started = Instant::now();
    let output = run_to_exit(&config).await;
    let elapsed = started.elapsed();
    assert!(
        !output.status.success(),
        "{}: sluice run succeeded",
        refusal.case
    );
    let error = error_line(&output);
    assert!(
        error.contains(&refusal.connection) && error.contains(refusal.cause),
        "{}: the error line names neither {:?} nor {:?}: {error}",
        refusal.case,
        refusal.connection,
        refusal.cause
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let restarts = stderr
        .lines()
        .filter(|l| l.contains("pipeline interrupted") || l.contains("broker still unreachable"))
        .count();
    assert_eq!(
        restarts, 0,
        "{}: restarted after a refusal:\n{stderr}",
        refusal.case
    );
    let lines = assert_no_secret(secured, refusal.case, &stderr)
        + assert_no_secret(
            secured,
            refusal.case,
            &String::from_utf8_lossy(&output.stdout),
        );
    println!(
        "{}: {}, 0 restarts, stopped after {:.1} s: {error}",
        refusal.case,
        output.status,
        elapsed.as_secs_f64()
    );
    lines
}

/// The local OAuth2 issuer (scripts/brokers.sh's `oauth2`) and the tokens it has issued so far.
struct Issuer {
    url: String,
    issued: PathBuf,
}

impl Issuer {
    /// `None` (skipped outside CI, failing in CI) when the issuer is down.
    fn from_env() -> Option<Self> {
        let url = addresses::or_skip(OAUTH2_ISSUER)?;
        let issued = std::env::var_os("SLUICE_OAUTH2_ISSUED_TOKENS").map_or_else(
            || dev_dir().join("data/oauth2/issued-tokens"),
            PathBuf::from,
        );
        Some(Self { url, issued })
    }

    /// Every token issued so far, and each one's signature (its secret part).
    fn issued_tokens(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.issued).unwrap_or_default();
        text.lines()
            .flat_map(|token| {
                [
                    token.to_owned(),
                    token.rsplit('.').next().unwrap().to_owned(),
                ]
            })
            .collect()
    }
}

/// Acceptance: Pulsar TLS with OAuth2 client credentials (the local issuer's JWT, which the
/// broker's token provider verifies) → Kafka SASL_SSL: every record arrives in per-key order,
/// and neither the client secret nor any issued token shows in the log, `sluice status` or
/// `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_oauth2_client_credentials_carry_every_record_and_show_no_secret() {
    const COUNT: u64 = 2_000;
    let Some(secured) = Secured::from_env() else {
        return;
    };
    let Some(issuer) = Issuer::from_env() else {
        return;
    };
    let Some((brokers, topics)) = brokers_and_topics("secured-oauth2", 2).await else {
        return;
    };
    let issued_before = issuer.issued_tokens().len() / 2;
    let dir = tempfile::tempdir().unwrap();
    let listen = free_loopback_address();
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let admin = format!("\n[admin]\nlisten = \"{listen}\"\nstate_dir = {state_dir:?}\n");
    let credentials = Credentials {
        pulsar_auth: oauth2_auth(&issuer.url, &secured.file("oauth2-client.json")),
        ..Credentials::valid(&secured)
    };
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        secured_toml(&secured, &topics, &credentials, &admin),
    )
    .unwrap();
    let log = dir.path().join("sluice.log");
    let mut sluice = SluiceProcess::run_logging_to(&config, &log);
    let api = AdminApi::new(listen);
    api.wait_ready(&mut sluice).await;

    publish_to_pulsar(&brokers.pulsar, &topics.source, &records(COUNT))
        .await
        .unwrap();
    let expected: BTreeSet<u64> = (0..COUNT).collect();
    let output = read_until_seqs(&brokers, &topics.output, &expected).await;
    let status = sluice_command(&["status", "--admin", &api.base_url], None).await;
    assert!(status.status.success(), "sluice status failed: {status:?}");
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    let metrics = get_text(&format!("{}/metrics", api.base_url)).await;
    sluice.terminate_and_wait_success();

    let arrived = report_counts("Pulsar with OAuth2", &output, &expected);
    assert_none_missing(&arrived, &expected);
    assert_per_key_order(&output);
    let tokens = issuer.issued_tokens();
    let issued = tokens.len() / 2 - issued_before;
    assert!(issued >= 1, "the issuer issued no token during the run");
    println!(
        "OAuth2 end to end: {COUNT} published, {} distinct arrived, 0 lost; {issued} token(s) issued",
        arrived.len()
    );

    let log = std::fs::read_to_string(&log).unwrap();
    let mut lines = 0;
    for (place, text) in [
        ("the log", &log),
        ("sluice status", &status),
        ("/metrics", &metrics),
    ] {
        lines += assert_no_secret(&secured, place, text);
        for token in &tokens {
            assert!(
                !text.contains(token.as_str()),
                "{place} shows an issued OAuth2 token"
            );
        }
    }
    println!(
        "secrets: {} secrets and {} issued tokens and signatures checked against {lines} lines of \
         log, status and /metrics: none found",
        secured.secrets().len(),
        tokens.len()
    );
}

/// Acceptance: a wrong OAuth2 client secret stops the pipeline with one `error:` line naming
/// the Pulsar connection and the issuer's refusal, without restarts or a shown secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_oauth2_client_secret_stops_the_pipeline_with_one_clear_error() {
    let Some(secured) = Secured::from_env() else {
        return;
    };
    let Some(issuer) = Issuer::from_env() else {
        return;
    };
    let Some((_brokers, topics)) = brokers_and_topics("secured-oauth2-refused", 1).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-oauth2-client.json");
    std::fs::write(
        &wrong,
        format!(r#"{{"client_id":"sluice-oauth2","client_secret":"{WRONG_CLIENT_SECRET}"}}"#),
    )
    .unwrap();
    let refusal = Refusal {
        case: "wrong OAuth2 client secret",
        credentials: Credentials {
            pulsar_auth: oauth2_auth(&issuer.url, &wrong),
            ..Credentials::valid(&secured)
        },
        connection: format!("Pulsar at {}", secured.pulsar),
        cause: "invalid_client",
    };
    let lines = check_refusal(&secured, &topics, dir.path(), &refusal).await;
    println!(
        "secrets: {} checked against {lines} lines the refused run printed: none found",
        secured.secrets().len()
    );
}

/// `sluice run --config config` to its exit, its log at info on stderr.
async fn run_to_exit(config: &Path) -> std::process::Output {
    let config = config.to_str().unwrap();
    sluice_command(&["run", "--config", config], None).await
}
