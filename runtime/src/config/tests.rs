use std::path::Path;

use sluice_connectors::gcp_pubsub::PubSubPull;
use sluice_connectors::pulsar::{InitialPosition, SubscriptionType};

use super::*;

const MINIMAL: &str = r#"
[[pipeline]]
name = "orders"

[pipeline.source]
kind = "pulsar"
url = "pulsar://127.0.0.1:6650"
topic = "persistent://public/default/orders"
subscription = "sluice-orders"

[[pipeline.transform]]
component = "guests/redact.wasm"
config = { fields = "email,phone", depth = 3 }

[pipeline.sink]
kind = "kafka"
brokers = "${TEST_SLUICE_BROKERS:-127.0.0.1:9092}"
topic = "orders-clean"
properties = { "linger.ms" = 5, "sasl.password" = "hunter2" }
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("sluice.toml"), Path::new("/etc/sluice"))
}

fn invalid_key(text: &str) -> (String, String) {
    match parse(text) {
        Err(ConfigError::Invalid { key, message, .. }) => (key, message),
        other => panic!("expected an invalid-key error, got {other:?}"),
    }
}

#[test]
fn minimal_config_gets_defaults_and_resolved_paths() {
    let config = parse(MINIMAL).unwrap();
    let pipeline = &config.pipelines[0];
    assert_eq!(pipeline.guarantee, Guarantee::AtLeastOnce);
    assert_eq!(pipeline.max_in_flight, 10_000);
    let SourceConfig::Pulsar(source) = pipeline.source.as_ref().unwrap() else {
        panic!("not pulsar")
    };
    assert_eq!(source.subscription_type, Some(SubscriptionType::Failover));
    assert_eq!(source.initial_position, InitialPosition::Earliest);
    let spec = &pipeline.transform_specs()[0];
    assert_eq!(spec.name, "redact");
    assert_eq!(spec.component, Path::new("/etc/sluice/guests/redact.wasm"));
    assert_eq!(spec.config["depth"], "3");
    assert_eq!(pipeline.sink.brokers, "127.0.0.1:9092");
    assert_eq!(pipeline.sink.properties["linger.ms"].expose(), "5");
    assert!(
        !format!("{config:?}").contains("hunter2"),
        "secrets must not be printed"
    );
}

#[test]
fn unknown_key_is_named_with_its_path() {
    let text = MINIMAL.replace(
        "topic = \"orders-clean\"",
        "topic = \"orders-clean\"\ntopix = 1",
    );
    let (key, message) = invalid_key(&text);
    assert_eq!(key, "pipeline[0].sink.topix");
    assert!(message.contains("unknown field `topix`"), "{message}");
}

#[test]
fn bad_enum_value_is_named() {
    let text = MINIMAL.replace("kind = \"kafka\"", "kind = \"kinesis\"");
    let (key, message) = invalid_key(&text);
    assert_eq!(key, "pipeline[0].sink.kind");
    assert!(message.contains("kinesis"), "{message}");
}

#[test]
fn missing_env_var_is_named() {
    let text = MINIMAL.replace(
        "${TEST_SLUICE_BROKERS:-127.0.0.1:9092}",
        "${TEST_SLUICE_UNSET_VAR}",
    );
    let (key, message) = invalid_key(&text);
    assert_eq!(key, "pipeline[0].sink.brokers");
    assert!(message.contains("TEST_SLUICE_UNSET_VAR"), "{message}");
}

#[test]
fn weakening_the_guarantee_is_refused() {
    let text = MINIMAL.replace("\"linger.ms\" = 5", "\"acks\" = \"1\"");
    let (key, message) = invalid_key(&text);
    assert_eq!(key, "pipeline[0].sink.properties.\"acks\"");
    assert!(message.contains("at-least-once"), "{message}");
}

#[test]
fn bad_topic_and_syntax_errors() {
    let text = MINIMAL.replace("\"orders-clean\"", "\"orders clean\"");
    assert_eq!(invalid_key(&text).0, "pipeline[0].sink.topic");
    assert!(matches!(
        parse("[[pipeline]\nname="),
        Err(ConfigError::Syntax { .. })
    ));
    assert_eq!(invalid_key("").0, "pipeline");
}

#[test]
fn capabilities_are_granted_per_transform_and_default_to_none() {
    let config = parse(MINIMAL).unwrap();
    assert!(
        config.pipelines[0].transform_specs()[0]
            .capabilities
            .is_empty()
    );

    let text = MINIMAL.replace(
        "config = { fields = \"email,phone\", depth = 3 }",
        "config = { fields = \"email,phone\", depth = 3 }\n\
         capabilities = { env = [\"TZ\", \"LANG\"], read_dirs = [\"/etc/ssl/certs\"] }\n\
         limits = { max_component_mib = 8 }",
    );
    let spec = parse(&text).unwrap().pipelines[0]
        .transform_specs()
        .remove(0);
    assert_eq!(
        spec.capabilities,
        Capabilities {
            env: vec!["TZ".into(), "LANG".into()],
            read_dirs: vec!["/etc/ssl/certs".into()],
        }
    );
    assert_eq!(spec.limits.max_component_mib, 8);

    let text = MINIMAL.replace(
        "config = { fields = \"email,phone\", depth = 3 }",
        "capabilities = { network = true }",
    );
    let (key, message) = invalid_key(&text);
    assert_eq!(key, "pipeline[0].transform[0].capabilities.network");
    assert!(message.contains("unknown field `network`"), "{message}");
}

#[test]
fn exactly_once_defaults_to_an_exclusive_subscription_and_refuses_others() {
    let exactly_once = MINIMAL.replace(
        "name = \"orders\"",
        "name = \"orders\"\nguarantee = \"exactly-once\"",
    );
    let config = parse(&exactly_once).unwrap();
    let SourceConfig::Pulsar(source) = config.pipelines[0].source.as_ref().unwrap() else {
        panic!("a Pulsar source");
    };
    assert_eq!(source.subscription_type, Some(SubscriptionType::Exclusive));

    let shared = exactly_once.replace(
        "subscription = \"sluice-orders\"",
        "subscription = \"sluice-orders\"\nsubscription_type = \"key_shared\"",
    );
    let (key, message) = invalid_key(&shared);
    assert_eq!(key, "pipeline[0].source.subscription_type");
    assert!(
        message.contains("\"key_shared\" does not go with guarantee = \"exactly-once\""),
        "{message}"
    );
    assert!(message.contains("use \"exclusive\""), "{message}");
}

#[test]
fn exactly_once_needs_a_dedup_window_covering_what_is_in_flight() {
    let small_window = MINIMAL.replace(
        "name = \"orders\"",
        "name = \"orders\"\nguarantee = \"exactly-once\"\nmax_in_flight = 5000\ndedup_window = 4000",
    );
    let (key, message) = invalid_key(&small_window);
    assert_eq!(key, "pipeline[0].dedup_window");
    assert!(
        message.contains("at least max_in_flight (5000)"),
        "{message}"
    );
    // At-least-once does not read back: the window does not matter.
    parse(&small_window.replace("exactly-once", "at-least-once")).unwrap();
}

/// `MINIMAL` with exactly-once and `extra` lines in the pipeline table.
fn exactly_once_with(extra: &str) -> String {
    MINIMAL.replace(
        "name = \"orders\"",
        &format!("name = \"orders\"\nguarantee = \"exactly-once\"\n{extra}"),
    )
}

#[test]
fn exactly_once_runs_on_transactions_by_default_with_its_defaults() {
    let config = parse(&exactly_once_with("")).unwrap();
    let settings = config.pipelines[0].settings();
    assert_eq!(
        settings.exactly_once_mode(),
        Some(ExactlyOnceMode::Transactions)
    );
    assert_eq!(settings.offsets_topic(), "sluice-offsets.orders");
    assert_eq!(settings.exactly_once.transactional_id_prefix, "sluice.");
    assert_eq!(
        settings.exactly_once.commit_interval,
        Duration::from_millis(100)
    );
    assert_eq!(settings.exactly_once.max_records_per_transaction, 10_000);

    let tuned = exactly_once_with(
        "exactly_once = { offsets_topic = \"eo-offsets\", transactional_id_prefix = \"prod.\", commit_interval_ms = 250, max_records_per_transaction = 500 }",
    );
    let settings = parse(&tuned).unwrap().pipelines[0].settings();
    assert_eq!(settings.offsets_topic(), "eo-offsets");
    assert_eq!(settings.exactly_once.transactional_id_prefix, "prod.");
    assert_eq!(
        settings.exactly_once.commit_interval,
        Duration::from_millis(250)
    );
    assert_eq!(settings.exactly_once.max_records_per_transaction, 500);
}

/// Issue 16: config that cannot hold the guarantee is refused at load (exit 2).
#[test]
fn exactly_once_refuses_what_cannot_hold_the_guarantee() {
    let refused = |extra: &str, properties: &str| {
        let text = exactly_once_with(extra).replace(
            "properties = { \"linger.ms\" = 5, \"sasl.password\" = \"hunter2\" }",
            &format!("properties = {{ {properties} }}"),
        );
        invalid_key(&text)
    };
    let (key, message) = refused("", "\"transactional.id\" = \"mine\"");
    assert_eq!(key, "pipeline[0].sink.properties.\"transactional.id\"");
    assert!(message.contains("must not be set"), "{message}");
    let (key, _) = refused("", "\"enable.idempotence\" = false");
    assert_eq!(key, "pipeline[0].sink.properties.\"enable.idempotence\"");
    let (key, message) = refused("exactly_once = { offsets_topic = \"orders-clean\" }", "");
    assert_eq!(key, "pipeline[0].exactly_once.offsets_topic");
    assert!(message.contains("also an output topic"), "{message}");
    let (key, _) = refused("exactly_once = { commit_interval_ms = 0 }", "");
    assert_eq!(key, "pipeline[0].exactly_once.commit_interval_ms");
    let (key, _) = refused("exactly_once = { max_records_per_transaction = 0 }", "");
    assert_eq!(key, "pipeline[0].exactly_once.max_records_per_transaction");
    let (key, message) = refused(
        "exactly_once = { mode = \"read-back\", commit_interval_ms = 50 }",
        "",
    );
    assert_eq!(key, "pipeline[0].exactly_once.commit_interval_ms");
    assert!(
        message.contains("only with mode = \"transactions\""),
        "{message}"
    );
    let (key, _) = refused("exactly_once = { mode = \"eventually\" }", "");
    assert_eq!(key, "pipeline[0].exactly_once.mode");
    let at_least_once = MINIMAL.replace(
        "name = \"orders\"",
        "name = \"orders\"\nexactly_once = { mode = \"read-back\" }",
    );
    assert_eq!(invalid_key(&at_least_once).0, "pipeline[0].exactly_once");
    let bad_name = exactly_once_with("").replace("name = \"orders\"", "name = \"my orders\"");
    let (key, message) = invalid_key(&bad_name);
    assert_eq!(key, "pipeline[0].exactly_once.offsets_topic");
    assert!(
        message.contains("set exactly_once.offsets_topic"),
        "{message}"
    );
}

/// With transactions a failover subscription is safe (a standby that takes a partition over
/// fences its old writer); read back it is not.
#[test]
fn failover_goes_with_transactions_and_not_with_the_read_back() {
    let failover = |extra: &str| {
        exactly_once_with(extra).replace(
            "subscription = \"sluice-orders\"",
            "subscription = \"sluice-orders\"\nsubscription_type = \"failover\"",
        )
    };
    parse(&failover("")).unwrap();
    let (key, message) = invalid_key(&failover("exactly_once = { mode = \"read-back\" }"));
    assert_eq!(key, "pipeline[0].source.subscription_type");
    assert!(message.contains("read-back"), "{message}");
}

#[test]
fn parallelism_and_route_topics_are_checked() {
    let zero = MINIMAL.replace("name = \"orders\"", "name = \"orders\"\nparallelism = 0");
    assert_eq!(invalid_key(&zero).0, "pipeline[0].parallelism");
    let bad_route = MINIMAL.replace(
        "topic = \"orders-clean\"",
        "topic = \"orders-clean\"\nroute_topics = [\"ok\", \"not ok\"]",
    );
    assert_eq!(
        invalid_key(&bad_route).0,
        "pipeline[0].sink.route_topics[1]"
    );
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.pipelines[0].parallelism, 1);
}

#[test]
fn pubsub_pull_mode_defaults_to_unary_and_refuses_https_endpoints_for_it() {
    let pubsub = |extra: &str| {
        MINIMAL.replace(
            "kind = \"pulsar\"\nurl = \"pulsar://127.0.0.1:6650\"\ntopic = \"persistent://public/default/orders\"",
            &format!("kind = \"gcp_pubsub\"\nproject = \"demo\"\n{extra}"),
        )
    };
    let pull_of = |text: &str| match parse(text).unwrap().pipelines[0].source.as_ref().unwrap() {
        SourceConfig::GcpPubsub(source) => source.pull,
        SourceConfig::Pulsar(_) => panic!("not pubsub"),
    };
    assert_eq!(pull_of(&pubsub("")), PubSubPull::Unary);
    assert_eq!(
        pull_of(&pubsub("pull = \"streaming\"")),
        PubSubPull::Streaming
    );
    let (key, message) = invalid_key(&pubsub("endpoint = \"https://pubsub.example\""));
    assert_eq!(key, "pipeline[0].source.endpoint");
    assert!(message.contains("plain-text endpoints"), "{message}");
    assert_eq!(
        pull_of(&pubsub(
            "endpoint = \"https://pubsub.example\"\npull = \"streaming\""
        )),
        PubSubPull::Streaming
    );
}

#[test]
fn deployments_are_local_by_default_or_shared_through_a_topic_per_pipeline() {
    let config = parse(&format!("{MINIMAL}\n[admin]\n")).unwrap();
    let admin = config.admin.unwrap();
    assert_eq!(admin.deployments, DeploymentsStore::Local);
    assert_eq!(
        admin.deployments_topic("orders"),
        "sluice-deployments.orders"
    );
    let shared = parse(&format!(
        "{MINIMAL}\n[admin]\ndeployments = \"kafka\"\ndeployments_topic_prefix = \"team-a.\"\n"
    ))
    .unwrap();
    let admin = shared.admin.unwrap();
    assert_eq!(admin.deployments, DeploymentsStore::Kafka);
    assert_eq!(admin.deployments_topic("orders"), "team-a.orders");
    let (key, _) = invalid_key(&format!(
        "{MINIMAL}\n[admin]\ndeployments = \"kafka\"\ndeployments_topic_prefix = \"not ok \"\n"
    ));
    assert_eq!(key, "admin.deployments_topic_prefix");
    let (key, _) = invalid_key(&format!("{MINIMAL}\n[admin]\ndeployments = \"s3\"\n"));
    assert_eq!(key, "admin.deployments");
}

#[test]
fn decode_and_encode_sections_build_their_codecs_at_load() {
    let text = format!(
        "{MINIMAL}\n[pipeline.decode]\nformat = \"pulsar\"\n\n[pipeline.encode]\n\
         registry = {{ url = \"http://127.0.0.1:8081/apis/ccompat/v7\" }}\n\
         value = {{ format = \"avro\", from_source = true }}\n"
    );
    let config = parse(&text).unwrap();
    let schemas = config.pipelines[0].schemas().unwrap();
    assert!(schemas.decoder.is_some() && schemas.encoder.is_some());
    assert_eq!(schemas.default_topic, "orders-clean");
    assert_eq!(
        default_pulsar_admin_url("pulsar://broker.example:6650"),
        "http://broker.example:8080"
    );
}

#[test]
fn bad_schema_sections_are_refused_naming_the_key() {
    let (key, message) = invalid_key(&format!(
        "{MINIMAL}\n[pipeline.decode]\nformat = \"avro\"\nschemaa = \"x\"\n"
    ));
    assert_eq!(key, "pipeline[0].decode.schemaa");
    assert!(message.contains("unknown field"), "{message}");
    let (key, message) = invalid_key(&format!(
        "{MINIMAL}\n[pipeline.decode]\nformat = \"avro\"\nschema = \"not a schema\"\n"
    ));
    assert_eq!(key, "pipeline[0].decode");
    assert!(!message.is_empty());
    let (key, message) = invalid_key(&format!(
        "{MINIMAL}\n[pipeline.encode]\nvalue = {{ format = \"avro\", from_source = true }}\n"
    ));
    assert_eq!(key, "pipeline[0].encode");
    assert!(message.contains("registry"), "{message}");
    let (key, _) = invalid_key(&format!(
        "{MINIMAL}\n[pipeline.encode]\nvalue = {{ format = \"xml\" }}\n"
    ));
    assert_eq!(key, "pipeline[0].encode.value.format");
}

/// MINIMAL with TLS and authentication on both connections, credentials in `dir`.
fn secured(dir: &Path, source_extra: &str, sink_extra: &str) -> String {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    for name in ["ca.crt", "client.crt", "client.key"] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    std::fs::write(dir.join("password"), "s3cret-password\n").unwrap();
    std::fs::write(dir.join("token"), "eyJhbGciOiJIUzI1NiJ9.e30.sig-nature\n").unwrap();
    let d = dir.display();
    format!(
        r#"
[[pipeline]]
name = "orders"

[pipeline.source]
kind = "pulsar"
url = "pulsar+ssl://127.0.0.1:6651"
topic = "persistent://public/default/orders"
subscription = "sluice-orders"
tls = {{ ca_file = "{d}/ca.crt" }}
{source_extra}

[[pipeline.transform]]
component = "guests/redact.wasm"

[pipeline.sink]
kind = "kafka"
brokers = "127.0.0.1:9094"
topic = "orders-clean"
tls = {{ ca_file = "{d}/ca.crt", cert_file = "{d}/client.crt", key_file = "{d}/client.key" }}
{sink_extra}
"#
    )
}

const SASL_FROM_FILE: &str =
    r#"sasl = { mechanism = "SCRAM-SHA-256", username = "sluice", password_file = "password" }"#;

#[test]
fn secured_connections_read_their_credentials_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let auth = r#"auth = { token_file = "token" }"#;
    let text = secured(dir.path(), auth, SASL_FROM_FILE);
    let config = Config::parse(&text, Path::new("sluice.toml"), dir.path()).unwrap();
    let pipeline = &config.pipelines[0];
    let sasl = pipeline.sink.sasl.as_ref().unwrap();
    assert_eq!(sasl.password.as_ref().unwrap().expose(), "s3cret-password");
    assert_eq!(
        sasl.password_file.as_deref(),
        Some(dir.path().join("password").as_path())
    );
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("s3cret"),
        "the password must not be printed"
    );
    assert!(
        !debug.contains("sig-nature"),
        "the token must not be printed"
    );
}

#[test]
fn missing_and_malformed_credential_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let base = secured(dir.path(), "", SASL_FROM_FILE);
    let at = |text: &str| match Config::parse(text, Path::new("sluice.toml"), dir.path()) {
        Err(ConfigError::Invalid { key, message, .. }) => (key, message),
        other => panic!("expected an invalid-key error, got {other:?}"),
    };

    let text = base.replace("/client.key\"", "/missing.key\"");
    let (key, message) = at(&text);
    assert_eq!(key, "pipeline[0].sink.tls.key_file");
    assert!(message.contains("missing.key"), "{message}");

    std::fs::write(dir.path().join("not-pem.crt"), "hello").unwrap();
    let text = base.replacen("/ca.crt\"", "/not-pem.crt\"", 1);
    let (key, message) = at(&text);
    assert_eq!(key, "pipeline[0].source.tls.ca_file");
    assert!(message.contains("not a PEM file"), "{message}");

    let text = base.replace(", key_file = \"", ", unused = \"");
    let (key, _) = at(&text);
    assert_eq!(key, "pipeline[0].sink.tls.unused");

    let text = base.replace(
        r#", key_file = "{}/client.key""#.replace("{}", &dir.path().display().to_string()).as_str(),
        "",
    );
    let (key, message) = at(&text);
    assert_eq!(key, "pipeline[0].sink.tls.key_file");
    assert!(message.contains("needs its private key"), "{message}");

    let text = base.replace("password_file = \"password\"", "password_file = \"nope\"");
    let (key, message) = at(&text);
    assert_eq!(key, "pipeline[0].sink.sasl.password_file");
    assert!(message.contains("nope"), "{message}");

    let text = base.replace(
        "password_file = \"password\"",
        "password = \"x\", password_file = \"password\"",
    );
    let (key, _) = at(&text);
    assert_eq!(key, "pipeline[0].sink.sasl.password_file");

    let text = base.replace("SCRAM-SHA-256", "GSSAPI");
    let (key, _) = at(&text);
    assert_eq!(key, "pipeline[0].sink.sasl.mechanism");

    let text = secured(dir.path(), r#"auth = { token_file = "gone" }"#, "");
    let (key, message) = at(&text);
    assert_eq!(key, "pipeline[0].source.auth.token_file");
    assert!(message.contains("gone"), "{message}");
    assert!(!message.contains("sig-nature"));

    let text = secured(dir.path(), "", SASL_FROM_FILE).replace(
        "kind = \"kafka\"",
        "kind = \"kafka\"\nproperties = { \"sasl.username\" = \"x\" }",
    );
    let (key, _) = at(&text);
    assert_eq!(key, "pipeline[0].sink.properties.\"sasl.username\"");
}

#[test]
fn a_missing_or_malformed_pubsub_key_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = |file: &str| {
        format!(
            r#"
[[pipeline]]
name = "events"
[pipeline.source]
kind = "gcp_pubsub"
project = "p"
subscription = "s"
credentials_file = "{file}"
[[pipeline.transform]]
component = "guests/redact.wasm"
[pipeline.sink]
kind = "kafka"
brokers = "127.0.0.1:9092"
topic = "events"
"#
        )
    };
    let at = |file: &str| match Config::parse(&text(file), Path::new("sluice.toml"), dir.path()) {
        Err(ConfigError::Invalid { key, message, .. }) => (key, message),
        other => panic!("expected an invalid-key error, got {other:?}"),
    };
    let (key, message) = at("missing.json");
    assert_eq!(key, "pipeline[0].source.credentials_file");
    assert!(message.contains("missing.json"), "{message}");

    std::fs::write(
        dir.path().join("broken.json"),
        "{\"type\": \"service_account\",",
    )
    .unwrap();
    let (_, message) = at("broken.json");
    assert!(message.contains("not a JSON key file"), "{message}");

    std::fs::write(
        dir.path().join("user.json"),
        r#"{"type": "authorized_user"}"#,
    )
    .unwrap();
    let (_, message) = at("user.json");
    assert!(message.contains("not a service-account key"), "{message}");

    let secret = "-----BEGIN PRIVATE KEY-----\nnot-really-a-key\n-----END PRIVATE KEY-----\n";
    let key = serde_json::json!({
        "type": "service_account",
        "client_email": "sluice@p.iam.gserviceaccount.com",
        "private_key": secret,
    });
    std::fs::write(dir.path().join("bad-key.json"), key.to_string()).unwrap();
    if let Err(ConfigError::Invalid { message, .. }) =
        Config::parse(&text("bad-key.json"), Path::new("sluice.toml"), dir.path())
    {
        assert!(!message.contains("not-really-a-key"), "{message}");
    }
}

/// MINIMAL with its source as `[[pipeline.sources]]`, followed by a Pub/Sub one.
fn merged(extra: &str) -> String {
    MINIMAL.replace("[pipeline.source]", "[[pipeline.sources]]").replace(
        "[[pipeline.transform]]",
        &format!(
            "{extra}[[pipeline.sources]]\nkind = \"gcp_pubsub\"\nproject = \"p\"\nsubscription = \"s\"\n\n[[pipeline.transform]]"
        ),
    )
}

#[test]
fn several_sources_merge_and_their_errors_name_their_index() {
    let config = parse(&merged("")).unwrap();
    let pipeline = &config.pipelines[0];
    assert_eq!(pipeline.source_list().len(), 2);
    assert_eq!(pipeline.source_list()[1].0, "sources[1]");
    assert_eq!(pipeline.connector().kind(), "merged");

    let (key, _) = invalid_key(&merged("").replace(
        "kind = \"gcp_pubsub\"",
        "kind = \"pulsar\"\nurl = \"pulsar://127.0.0.1:6650\"\ntopic = \"t\"\nsubscription_type = \"sideways\"",
    ));
    assert!(key.starts_with("pipeline[0].sources[1]"), "{key}");

    let twice = MINIMAL.replace(
        "[[pipeline.transform]]",
        "[[pipeline.sources]]\nkind = \"gcp_pubsub\"\nproject = \"p\"\nsubscription = \"s\"\n\n[[pipeline.transform]]",
    );
    let (key, message) = invalid_key(&twice);
    assert_eq!(key, "pipeline[0].sources");
    assert!(message.contains("not both"), "{message}");

    let none = MINIMAL.replace("[pipeline.source]", "[pipeline.unused]");
    assert!(parse(&none).is_err());

    let same = merged("").replace(
        "project = \"p\"\nsubscription = \"s\"",
        "project = \"p\"\nsubscription = \"s\"\n\n[[pipeline.sources]]\nkind = \"gcp_pubsub\"\nproject = \"p\"\nsubscription = \"s\"",
    );
    let (key, message) = invalid_key(&same);
    assert_eq!(key, "pipeline[0].sources[2]");
    assert!(message.contains("sources[1]"), "{message}");

    let read_back = merged("").replace(
        "name = \"orders\"",
        "name = \"orders\"\nguarantee = \"exactly-once\"\nexactly_once = { mode = \"read-back\" }",
    );
    let (key, message) = invalid_key(&read_back);
    assert_eq!(key, "pipeline[0].sources");
    assert!(message.contains("read-back"), "{message}");
}

#[test]
fn group_by_takes_a_header_or_a_json_pointer_and_names_a_bad_one() {
    let with = |group_by: &str| {
        MINIMAL.replace(
            "name = \"orders\"",
            &format!("name = \"orders\"\ngroup_by = {group_by}"),
        )
    };
    let config = parse(&with(r#"{ json = "/customer/id" }"#)).unwrap();
    assert_eq!(
        config.pipelines[0].settings().group_by,
        Some(GroupBy::Json("/customer/id".into()))
    );
    parse(&with(r#"{ header = "customer" }"#)).unwrap();
    let (key, message) = invalid_key(&with(r#"{ json = "customer" }"#));
    assert_eq!(key, "pipeline[0].group_by.json");
    assert!(message.contains("JSON pointer"), "{message}");
    assert!(parse(&with(r#"{ column = "x" }"#)).is_err());
}

fn with_windows(windows: &str) -> String {
    MINIMAL.replace("[pipeline.sink]", &format!("{windows}\n[pipeline.sink]"))
}

#[test]
fn windows_are_read_and_checked_with_the_key_named() {
    let config = parse(&with_windows(
        r#"
[[pipeline.windows]]
name = "per-minute"
kind = "tumbling"
size_ms = 60000
lateness_ms = 5000
aggregate = "count"

[[pipeline.windows]]
name = "sessions"
kind = "session"
gap_ms = 30000
aggregate = "sum"
field = "/amount"
late = "dead-letter"
topic = "sessions"
"#,
    ))
    .unwrap();
    let windows = &config.pipelines[0].settings().windows;
    assert_eq!(windows.len(), 2);
    assert_eq!(windows[0].size_ms, Some(60_000));
    assert_eq!(
        windows[1].late,
        sluice_pipeline::windows::LatePolicy::DeadLetter
    );

    let missing_size = with_windows(
        "[[pipeline.windows]]\nname = \"w\"\nkind = \"hopping\"\nsize_ms = 10\naggregate = \"count\"\n",
    );
    assert_eq!(
        invalid_key(&missing_size).0,
        "pipeline[0].windows[0].advance_ms"
    );
    let unknown = with_windows(
        "[[pipeline.windows]]\nname = \"w\"\nkind = \"tumbling\"\nsize = 10\naggregate = \"count\"\n",
    );
    assert!(invalid_key(&unknown).0.starts_with("pipeline[0].windows"));
    let twice = with_windows(
        &"[[pipeline.windows]]\nname = \"w\"\nkind = \"tumbling\"\nsize_ms = 10\naggregate = \"max\"\n"
            .repeat(2),
    );
    assert_eq!(invalid_key(&twice).0, "pipeline[0].windows[1].name");
    let lanes = with_windows(
        "[[pipeline.windows]]\nname = \"w\"\nkind = \"session\"\ngap_ms = 10\naggregate = \"latest\"\n",
    )
    .replace("name = \"orders\"", "name = \"orders\"\nparallelism = 2");
    assert_eq!(invalid_key(&lanes).0, "pipeline[0].parallelism");
}
