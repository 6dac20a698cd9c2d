//! Issue 18's acceptance: whole pipelines with schemas on the real brokers and Apicurio
//! Registry. Records produced by real Pulsar clients with their Pulsar schemas (and published to
//! a Pub/Sub topic with an Avro topic schema) are decoded for the redact guest, which works on
//! JSON; its outputs are written to Kafka in Confluent's wire format under subjects registered
//! in the registry, and Confluent's own Python deserializers, pointed at the registry's
//! Confluent API, read every record back, checked field by field.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value as Json, json};
use sluice_codec::{ProtoSchema, RegistryClient, RegistryConfig, SchemaDocument, SchemaType};
use sluice_tests::addresses::{self, PULSAR_ADMIN};
use sluice_tests::kafka::KafkaRecord;

use super::pubsub::Emulator;
use super::support::{b64, registry_url, run_python, unique};
use crate::support::brokers::{Brokers, PROJECT, Topics, brokers_and_topics};
use crate::support::config::{pulsar_pipeline_toml, sink_toml, transform_entry};
use crate::support::process::InProcessPipeline;
use crate::support::read::{read_all, read_at_least};

/// The redact guest, blanking `email` in the JSON it is given.
fn redact_email() -> String {
    transform_entry(sluice_tests::REDACT, r#"fields = "email""#)
}

/// `[pipeline.encode]`: values as Confluent `format` with the source's schema, keys raw.
fn encode_from_source(registry: &str, format: &str) -> String {
    format!(
        r#"
[pipeline.encode]
registry = {{ url = "{registry}" }}
refusal_retry_secs = 1
value = {{ format = "{format}", from_source = true }}
"#
    )
}

/// A Pulsar pipeline: `decode` (Pulsar's schema registry), redact, Kafka with `encode`.
fn pulsar_schema_pipeline(brokers: &Brokers, topics: &Topics, admin: &str, encode: &str) -> String {
    pulsar_pipeline_toml(
        "schemas",
        "max_in_flight = 1000",
        "",
        brokers,
        topics,
        &format!(
            "[pipeline.decode]\nformat = \"pulsar\"\nadmin_url = \"{admin}\"\n\n{}\n{}\n{encode}",
            redact_email(),
            sink_toml(brokers, topics, "")
        ),
    )
}

/// Orders `first..first + count` produced to `topic` by Pulsar's Python client with the Pulsar
/// schema `kind` stands for (`tests/python/pulsar_send.py`).
fn send(pulsar: &str, topic: &str, kind: &str, first: u64, count: u64, extra: &[&str]) {
    let (first, count) = (first.to_string(), count.to_string());
    let mut args = vec![pulsar, topic, kind, first.as_str(), count.as_str()];
    args.extend_from_slice(extra);
    let answer = run_python("pulsar_send.py", &args, "");
    assert_eq!(answer[0]["sent"], json!(count.parse::<u64>().unwrap()));
}

/// Decodes every record's value with confluent-kafka's deserializer of `format`, pointed at the
/// registry's Confluent API (`tests/python/confluent_check.py`); `extra` adds keys per line
/// (Protobuf: the descriptor set and message).
fn confluent_values(
    registry: &str,
    records: &[KafkaRecord],
    format: &str,
    extra: &Json,
) -> Vec<Json> {
    let mut lines = String::new();
    for record in records {
        let mut line = json!({
            "format": format,
            "topic": record.topic,
            "value": b64(record.value.as_deref().expect("a value")),
        });
        if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
            line.extend(extra.clone());
        }
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    let decoded = run_python("confluent_check.py", &[registry], &lines);
    assert_eq!(decoded.len(), records.len(), "one decoded value per record");
    decoded
}

/// The order number of a decoded order (`"o-17"` → 17).
fn order_number(id: &Json) -> u64 {
    id.as_str()
        .and_then(|id| id.strip_prefix("o-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not an order id: {id}"))
}

fn pulsar_admin() -> Option<String> {
    addresses::or_skip(PULSAR_ADMIN)
}

/// Acceptance: a Pulsar topic with an Avro schema, written by Pulsar's own Python client,
/// through the redact guest (on JSON) into Kafka as Confluent Avro. Mid-stream the producer's
/// schema evolves compatibly (an optional field more): those records carry the new Pulsar
/// schema version, are decoded with it, and registered as the subject's next version. Between
/// the two, records whose bytes are no datum of their schema are dead-lettered (kind `schema`,
/// the reason, the original bytes) and the pipeline goes on. confluent-kafka's
/// `AvroDeserializer` decodes every output, checked field by field; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_avro_through_redact_to_confluent_avro_with_evolution_and_malformed_records() {
    let Some((brokers, topics)) = brokers_and_topics("schemas-avro", 1).await else {
        return;
    };
    let (Some(registry), Some(admin)) = (registry_url(), pulsar_admin()) else {
        return;
    };
    let subject = format!("{}-value", topics.output);
    let toml = pulsar_schema_pipeline(
        &brokers,
        &topics,
        &admin,
        &encode_from_source(&registry, "avro"),
    );
    let pipeline = InProcessPipeline::start(&toml).await;

    send(&brokers.pulsar, &topics.source, "avro-v1", 0, 100, &[]);
    send(&brokers.pulsar, &topics.source, "avro-garbage", 100, 5, &[]);
    send(&brokers.pulsar, &topics.source, "avro-v2", 105, 100, &[]);
    let output = read_at_least(&brokers, &topics.output, 200).await;
    let dead = read_at_least(&brokers, &topics.dead_letter, 5).await;
    pipeline.stop().await;

    let everything = read_all(&brokers, &[&topics.output, &topics.dead_letter]).await;
    eprintln!(
        "pulsar avro: {} produced, {} written as Confluent Avro, {} dead-lettered",
        205,
        output.len(),
        dead.len()
    );
    assert_eq!(everything.len(), 205, "nothing lost, nothing twice");
    assert_eq!(output.len(), 200);
    let values = confluent_values(&registry, &output, "avro", &json!({}));
    let mut seen = BTreeMap::new();
    for (record, value) in output.iter().zip(&values) {
        let n = order_number(&value["id"]);
        assert_eq!(value["email"], "***", "the guest redacted the email");
        assert_eq!(value["qty"], json!(n));
        assert_eq!(value["price"], json!(n as f64 * 1.25));
        let schema = record.header("sluice.schema").expect("the schema identity");
        if n < 100 {
            assert!(value.get("note").is_none(), "v1 records: {value}");
            assert_eq!(schema, format!("pulsar:{}@0", topics.source));
        } else {
            assert_eq!(value["note"], format!("n{n}"), "v2 records");
            assert_eq!(schema, format!("pulsar:{}@1", topics.source));
        }
        assert_eq!(record.key_str(), Some(format!("c-{}", n % 5).as_str()));
        assert_eq!(
            record.value.as_ref().unwrap()[0],
            0,
            "Confluent's magic byte"
        );
        seen.insert(n, ());
    }
    let expected: Vec<u64> = (0..100).chain(105..205).collect();
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), expected);
    let versions: Vec<u32> = reqwest::get(format!("{registry}/subjects/{subject}/versions"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        versions.len(),
        2,
        "the evolution is the subject's second version"
    );
    for record in &dead {
        let reason = schema_dead_letter_reason(record, "source");
        assert!(reason.contains("not an Avro datum"), "{reason}");
        assert_eq!(
            record.value.as_deref(),
            Some(&b"\x01garbage"[..]),
            "the original bytes"
        );
    }
    eprintln!(
        "dead-letter reason: {}",
        dead[0].header("sluice.error").unwrap()
    );
}

/// Acceptance: an output that breaks its subject's compatibility is dead-lettered with the
/// registry's reason; once the subject accepts it, the records after flow; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_that_break_the_subjects_compatibility_are_dead_lettered_with_the_registrys_reason()
{
    let Some((brokers, topics)) = brokers_and_topics("schemas-compat", 1).await else {
        return;
    };
    let (Some(registry), Some(admin)) = (registry_url(), pulsar_admin()) else {
        return;
    };
    // Another writer registered `qty` as a string, and the subject keeps BACKWARD
    // compatibility: the orders' `qty: int` cannot read what it describes.
    let subject = format!("{}-value", topics.output);
    let client = RegistryClient::new(&RegistryConfig {
        url: registry.clone(),
        ..RegistryConfig::default()
    })
    .unwrap();
    client
        .register(
            &subject,
            &SchemaDocument {
                schema_type: SchemaType::Avro,
                schema: r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"qty","type":"string"}]}"#.to_owned(),
                references: Vec::new(),
            },
        )
        .await
        .unwrap();
    client
        .set_compatibility(&subject, "BACKWARD")
        .await
        .unwrap();
    let toml = pulsar_schema_pipeline(
        &brokers,
        &topics,
        &admin,
        &encode_from_source(&registry, "avro"),
    );
    let pipeline = InProcessPipeline::start(&toml).await;
    send(&brokers.pulsar, &topics.source, "avro-v1", 0, 20, &[]);
    let dead = read_at_least(&brokers, &topics.dead_letter, 20).await;
    // The operator lets the subject change: the pipeline, still running, writes what follows.
    client.set_compatibility(&subject, "NONE").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    send(&brokers.pulsar, &topics.source, "avro-v1", 20, 20, &[]);
    let output = read_at_least(&brokers, &topics.output, 20).await;
    pipeline.stop().await;

    let everything = read_all(&brokers, &[&topics.output, &topics.dead_letter]).await;
    eprintln!(
        "compatibility: 40 produced, {} refused by the registry and dead-lettered, {} written",
        dead.len(),
        output.len()
    );
    assert_eq!(everything.len(), 40, "nothing lost, nothing twice");
    assert_eq!(dead.len(), 20);
    for record in &dead {
        let reason = schema_dead_letter_reason(record, "sink");
        assert!(
            reason.contains("Incompatible") || reason.contains("incompatible"),
            "the registry's reason: {reason}"
        );
        assert!(
            record.header("sluice.schema").is_none(),
            "a copy of the original"
        );
    }
    eprintln!(
        "registry's reason: {}",
        dead[0].header("sluice.error").unwrap()
    );
    let values = confluent_values(&registry, &output, "avro", &json!({}));
    let mut numbers: Vec<u64> = values.iter().map(|v| order_number(&v["id"])).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (20..40).collect::<Vec<_>>());
}

/// Acceptance: the same with Protobuf: a PROTOBUF_NATIVE Pulsar topic (the descriptor set in
/// Pulsar's registry) → redact on proto3 JSON → Kafka as Confluent Protobuf, read back by
/// confluent-kafka's `ProtobufDeserializer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_protobuf_through_redact_to_confluent_protobuf() {
    let Some((brokers, topics)) = brokers_and_topics("schemas-proto", 1).await else {
        return;
    };
    let (Some(registry), Some(admin)) = (registry_url(), pulsar_admin()) else {
        return;
    };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/schemas");
    let proto =
        ProtoSchema::from_file(&fixtures.join("shop.proto"), &[], Some("shop.v1.Order")).unwrap();
    let set = prost_reflect::prost_types::FileDescriptorSet {
        file: proto
            .message()
            .parent_pool()
            .file_descriptor_protos()
            .cloned()
            .collect(),
    };
    let descriptor_set = std::env::temp_dir().join(format!("{}.pb", unique("shop")));
    std::fs::write(
        &descriptor_set,
        prost_reflect::prost::Message::encode_to_vec(&set),
    )
    .unwrap();
    let descriptor_set = descriptor_set.to_str().unwrap().to_owned();
    let toml = pulsar_schema_pipeline(
        &brokers,
        &topics,
        &admin,
        &encode_from_source(&registry, "protobuf"),
    );
    let pipeline = InProcessPipeline::start(&toml).await;
    send(
        &brokers.pulsar,
        &topics.source,
        "protobuf",
        0,
        50,
        &[&descriptor_set, "shop.v1.Order"],
    );
    let output = read_at_least(&brokers, &topics.output, 50).await;
    pipeline.stop().await;

    let everything = read_all(&brokers, &[&topics.output, &topics.dead_letter]).await;
    let values = confluent_values(
        &registry,
        &output,
        "protobuf",
        &json!({"descriptor_set": descriptor_set, "message": "shop.v1.Order"}),
    );
    std::fs::remove_file(&descriptor_set).unwrap();
    eprintln!(
        "pulsar protobuf: 50 produced, {} written as Confluent Protobuf and decoded",
        values.len()
    );
    assert_eq!(everything.len(), 50, "nothing lost, nothing twice");
    let mut numbers = Vec::new();
    for value in &values {
        let n = order_number(&value["orderId"]);
        assert_eq!(
            value["totalCents"],
            json!((n * 100).to_string()),
            "int64 as proto3 JSON"
        );
        assert_eq!(value["email"], "***", "the guest redacted the email");
        let qty = n % 7;
        let line = if qty == 0 {
            json!({"sku": format!("sku-{n}"), "qty": 0})
        } else {
            json!({"sku": format!("sku-{n}"), "qty": qty})
        };
        assert_eq!(value["lines"], json!([line]));
        numbers.push(n);
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (0..50).collect::<Vec<_>>());
}

/// Acceptance: Pub/Sub with an Avro topic schema (JSON encoding; the emulator stamps the
/// `googclient_schema*` attributes) → redact → Kafka as Confluent Avro.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_avro_topic_schema_through_redact_to_confluent_avro() {
    let Some((brokers, topics)) = brokers_and_topics("schemas-pubsub", 1).await else {
        return;
    };
    let (Some(registry), Some(emulator)) = (registry_url(), Emulator::from_env()) else {
        return;
    };
    let project = format!("projects/{PROJECT}");
    let schema_id = unique("orders-schema");
    let schema_name = format!("{project}/schemas/{schema_id}");
    let topic = format!("{project}/topics/{}", unique("orders"));
    let subscription = unique("orders-sub");
    let definition = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"email","type":"string"},{"name":"qty","type":"int"},{"name":"price","type":"double"}]}"#;
    emulator
        .call(
            reqwest::Method::POST,
            &format!("{project}/schemas?schemaId={schema_id}"),
            json!({"type": "AVRO", "definition": definition}),
        )
        .await;
    emulator
        .call(
            reqwest::Method::PUT,
            &topic,
            json!({"schemaSettings": {"schema": schema_name, "encoding": "JSON"}}),
        )
        .await;
    emulator
        .call(
            reqwest::Method::PUT,
            &format!("{project}/subscriptions/{subscription}"),
            json!({"topic": topic}),
        )
        .await;
    for n in 0..50u64 {
        let order = json!({"id": format!("o-{n}"), "email": format!("u{n}@example.com"), "qty": n, "price": n as f64 * 1.25});
        emulator.publish(&topic, order.to_string().as_bytes()).await;
    }
    let toml = format!(
        r#"
[[pipeline]]
name = "schemas-pubsub"
max_in_flight = 1000

[pipeline.source]
kind = "gcp_pubsub"
project = "{PROJECT}"
subscription = "{subscription}"
endpoint = "{endpoint}"

[pipeline.decode]
format = "pubsub"

{redact}
{sink}
{encode}"#,
        endpoint = emulator.base,
        redact = redact_email(),
        sink = sink_toml(&brokers, &topics, ""),
        encode = encode_from_source(&registry, "avro"),
    );
    let pipeline = InProcessPipeline::start(&toml).await;
    let output = read_at_least(&brokers, &topics.output, 50).await;
    pipeline.stop().await;

    let everything = read_all(&brokers, &[&topics.output, &topics.dead_letter]).await;
    let values = confluent_values(&registry, &output, "avro", &json!({}));
    eprintln!(
        "pubsub avro: 50 published, {} written as Confluent Avro and decoded",
        values.len()
    );
    assert_eq!(everything.len(), 50, "nothing lost, nothing twice");
    let mut numbers = Vec::new();
    for (record, value) in output.iter().zip(&values) {
        let n = order_number(&value["id"]);
        assert_eq!(value["email"], "***");
        assert_eq!(value["qty"], json!(n));
        assert_eq!(value["price"], json!(n as f64 * 1.25));
        assert!(
            record
                .header("sluice.schema")
                .is_some_and(|id| id.starts_with(&format!("pubsub:{schema_name}@"))),
            "{:?}",
            record.header("sluice.schema")
        );
        numbers.push(n);
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (0..50).collect::<Vec<_>>());
}

/// The README's example (`examples/pipelines/pulsar-avro-to-kafka-avro.toml`) is a config that
/// loads: its decode and encode sections build their codecs.
#[test]
fn the_example_pipeline_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/pipelines/pulsar-avro-to-kafka-avro.toml");
    let config = sluice_runtime::config::Config::load(&path).unwrap();
    let pipeline = &config.pipelines[0];
    let schemas = pipeline.schemas().unwrap();
    assert!(schemas.decoder.is_some() && schemas.encoder.is_some());
    assert_eq!(schemas.default_topic, "orders-clean");
}

/// Acceptance: records naming a schema the registry does not have (here: Pulsar's topic schema
/// deleted after they were written) are dead-lettered with a clear reason, and the pipeline
/// goes on with the records after them, written under the schema registered anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_an_unknown_schema_version_are_dead_lettered_and_the_pipeline_goes_on() {
    let Some((brokers, topics)) = brokers_and_topics("schemas-unknown", 1).await else {
        return;
    };
    let (Some(registry), Some(admin)) = (registry_url(), pulsar_admin()) else {
        return;
    };
    send(&brokers.pulsar, &topics.source, "avro-v1", 0, 10, &[]);
    let topic_path = topics
        .source
        .strip_prefix("persistent://")
        .expect("a persistent topic");
    let deleted = reqwest::Client::new()
        .delete(format!("{admin}/admin/v2/schemas/{topic_path}/schema"))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{deleted:?}");
    send(&brokers.pulsar, &topics.source, "avro-v1", 10, 10, &[]);
    let toml = pulsar_schema_pipeline(
        &brokers,
        &topics,
        &admin,
        &encode_from_source(&registry, "avro"),
    );
    let pipeline = InProcessPipeline::start(&toml).await;
    let dead = read_at_least(&brokers, &topics.dead_letter, 10).await;
    let output = read_at_least(&brokers, &topics.output, 10).await;
    pipeline.stop().await;

    let everything = read_all(&brokers, &[&topics.output, &topics.dead_letter]).await;
    eprintln!(
        "unknown schema: 20 produced, {} dead-lettered (schema version deleted), {} written",
        dead.len(),
        output.len()
    );
    assert_eq!(everything.len(), 20, "nothing lost, nothing twice");
    assert_eq!(dead.len(), 10);
    for record in &dead {
        let reason = schema_dead_letter_reason(record, "source");
        assert!(
            reason.contains("Schema not found"),
            "Pulsar's reason: {reason}"
        );
    }
    eprintln!(
        "dead-letter reason: {}",
        dead[0].header("sluice.error").unwrap()
    );
    let values = confluent_values(&registry, &output, "avro", &json!({}));
    let mut numbers: Vec<u64> = values.iter().map(|v| order_number(&v["id"])).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (10..20).collect::<Vec<_>>());
}

/// The reason of `record`, a dead-letter copy of kind `schema` made at `stage` (`source`:
/// decoding, `sink`: encoding), after checking both.
fn schema_dead_letter_reason<'a>(record: &'a KafkaRecord, stage: &str) -> &'a str {
    assert_eq!(record.header("sluice.error.kind"), Some("schema"));
    assert_eq!(record.header("sluice.transform"), Some(stage));
    record.header("sluice.error").unwrap()
}
