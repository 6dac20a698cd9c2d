//! Decoding against a real Apache Pulsar: records produced by Pulsar's Python client with its
//! AvroSchema / JsonSchema / ProtobufNativeSchema / StringSchema, read back with their schema
//! versions, decoded with schemas read from the admin REST API; then re-encoded for Kafka with
//! the schema derived from Pulsar's.

use std::path::PathBuf;

use base64::Engine as _;
use serde_json::{Value as Json, json};
use sluice_codec::{
    DecodeConfig, DecodeContext, DecodeError, Decoded, Decoder, EncodeConfig, Encoder,
    NoAttributes, ProtoSchema, SourceMessage,
};

use super::support::{registry_url, run_python, service_or_skip, unique};

struct Pulsar {
    service: String,
    admin: String,
}

fn pulsar() -> Option<Pulsar> {
    let service = service_or_skip("SLUICE_PULSAR_URL", "pulsar://127.0.0.1:6650")?;
    let admin = service_or_skip("SLUICE_PULSAR_ADMIN_URL", "http://127.0.0.1:8080")?;
    Some(Pulsar { service, admin })
}

/// A produced message as the Python consumer saw it.
struct Produced {
    version: Vec<u8>,
    payload: Vec<u8>,
}

fn produce(pulsar: &Pulsar, topic: &str, kind: &str, extra: &[&str]) -> Vec<Produced> {
    let mut args = vec![pulsar.service.as_str(), topic, kind];
    args.extend_from_slice(extra);
    run_python("pulsar_produce.py", &args, "")
        .into_iter()
        .map(|line| {
            let version = hex_bytes(line["schema_version"].as_str().unwrap());
            let int_version = line["int_schema_version"].as_i64().unwrap();
            assert_eq!(version, int_version.to_be_bytes(), "8 bytes, big-endian");
            Produced {
                version,
                payload: base64::engine::general_purpose::STANDARD
                    .decode(line["payload"].as_str().unwrap())
                    .unwrap(),
            }
        })
        .collect()
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn decoder(pulsar: &Pulsar) -> Decoder {
    let config: DecodeConfig = toml::from_str("format = \"pulsar\"").unwrap();
    Decoder::new(
        &config,
        DecodeContext {
            pulsar_admin_url: Some(&pulsar.admin),
            ..DecodeContext::default()
        },
    )
    .unwrap()
}

async fn decode(decoder: &Decoder, topic: &str, m: &Produced) -> Result<Decoded, DecodeError> {
    decoder
        .decode(&SourceMessage {
            topic,
            payload: &m.payload,
            schema_version: Some(&m.version),
            attributes: &NoAttributes,
        })
        .await
}

fn json_of(decoded: &Decoded, payload: &[u8]) -> Json {
    serde_json::from_slice(decoded.json.as_deref().unwrap_or(payload)).unwrap()
}

/// AVRO, with a compatible evolution mid-stream: every message decodes with its own version,
/// and re-encodes for Kafka as Confluent Avro under a subject that accepts the evolution.
#[tokio::test]
async fn avro_topics_decode_per_schema_version_and_reencode() {
    let Some(pulsar) = pulsar() else { return };
    let topic = format!("persistent://public/default/{}", unique("codec-avro"));
    let produced = produce(&pulsar, &topic, "avro-evolve", &[]);
    assert_eq!(produced.len(), 3);
    let decoder = decoder(&pulsar);
    let mut decoded = Vec::new();
    for m in &produced {
        decoded.push(decode(&decoder, &topic, m).await.unwrap());
    }
    let jsons: Vec<Json> = decoded
        .iter()
        .zip(&produced)
        .map(|(d, m)| json_of(d, &m.payload))
        .collect();
    assert_eq!(
        jsons,
        [
            json!({"id": "o-0", "email": "u0@example.com", "qty": 0, "price": 0.0}),
            json!({"id": "o-1", "email": "u1@example.com", "qty": 1, "price": 1.5}),
            json!({"id": "o-2", "email": "u2@example.com", "qty": 2, "price": 3.0, "note": "late"}),
        ]
    );
    let ids: Vec<&str> = decoded
        .iter()
        .map(|d| d.schema.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(ids[0], format!("pulsar:{topic}@0"));
    assert_eq!(ids[2], format!("pulsar:{topic}@1"));

    // On to Kafka: Confluent Avro with the schema derived from Pulsar's, evolving with it.
    let Some(registry) = registry_url() else {
        return;
    };
    let config: EncodeConfig = toml::from_str(&format!(
        "registry = {{ url = \"{registry}\" }}\nvalue = {{ format = \"avro\", from_source = true }}"
    ))
    .unwrap();
    let encoder = Encoder::new(&config, None).unwrap();
    let kafka_topic = unique("codec-from-pulsar");
    sluice_codec::RegistryClient::new(&sluice_codec::RegistryConfig {
        url: registry.clone(),
        ..Default::default()
    })
    .unwrap()
    .set_compatibility(&format!("{kafka_topic}-value"), "BACKWARD")
    .await
    .unwrap();
    let mut lines = String::new();
    for (d, json) in decoded.iter().zip(&jsons) {
        // What a redact guest would output: the same record, email masked.
        let mut out = json.clone();
        out["email"] = json!("***");
        let bytes = out.to_string().into_bytes();
        let encoded = encoder
            .encode(&kafka_topic, None, Some(&bytes), d.schema.as_ref())
            .await
            .unwrap();
        let value = encoded.value.unwrap();
        lines.push_str(
            &json!({"format": "avro", "topic": kafka_topic, "value": super::support::b64(&value)})
                .to_string(),
        );
        lines.push('\n');
    }
    let python = run_python("confluent_check.py", &[&registry], &lines);
    assert_eq!(python.len(), 3);
    for (p, j) in python.iter().zip(&jsons) {
        assert_eq!(p["id"], j["id"]);
        assert_eq!(p["email"], "***");
        assert_eq!(p["qty"], j["qty"]);
        assert_eq!(p["price"], j["price"]);
    }
    assert_eq!(python[2]["note"], "late");
}

/// Pulsar's JSON schema type (payload JSON, definition Avro) and a primitive (STRING).
#[tokio::test]
async fn json_and_string_topics() {
    let Some(pulsar) = pulsar() else { return };
    let decoder = decoder(&pulsar);
    let topic = format!("persistent://public/default/{}", unique("codec-json"));
    let produced = produce(&pulsar, &topic, "json", &[]);
    let d = decode(&decoder, &topic, &produced[0]).await.unwrap();
    assert!(d.json.is_none(), "the payload is the JSON");
    assert_eq!(d.schema.as_ref().unwrap().kind.type_name(), "JSON");
    assert_eq!(json_of(&d, &produced[0].payload)["id"], "o-0");

    let topic = format!("persistent://public/default/{}", unique("codec-string"));
    let produced = produce(&pulsar, &topic, "string", &[]);
    let d = decode(&decoder, &topic, &produced[0]).await.unwrap();
    assert_eq!(json_of(&d, &produced[0].payload), json!("héllo"));
}

/// PROTOBUF_NATIVE: the descriptor set Pulsar stores decodes the payload.
#[tokio::test]
async fn protobuf_native_topics() {
    let Some(pulsar) = pulsar() else { return };
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/schemas");
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
    let path = std::env::temp_dir().join(format!("{}.pb", unique("shop")));
    std::fs::write(&path, prost_reflect::prost::Message::encode_to_vec(&set)).unwrap();
    let topic = format!("persistent://public/default/{}", unique("codec-proto"));
    let produced = produce(
        &pulsar,
        &topic,
        "protobuf",
        &[path.to_str().unwrap(), "shop.v1.Order"],
    );
    std::fs::remove_file(&path).unwrap();
    let d = decode(&decoder(&pulsar), &topic, &produced[0])
        .await
        .unwrap();
    let json = json_of(&d, &produced[0].payload);
    assert_eq!(json["orderId"], "o-1");
    assert_eq!(json["totalCents"], "1234");
    assert_eq!(json["lines"], json!([{"sku": "A", "qty": 2}]));
    assert_eq!(d.schema.as_ref().unwrap().kind.type_name(), "PROTOBUF");
}

/// A schema version the topic does not have, and bytes that do not fit the version named.
#[tokio::test]
async fn unknown_versions_and_malformed_payloads_are_record_errors() {
    let Some(pulsar) = pulsar() else { return };
    let topic = format!("persistent://public/default/{}", unique("codec-bad"));
    let produced = produce(&pulsar, &topic, "avro", &[]);
    let decoder = decoder(&pulsar);
    let unknown = Produced {
        version: 99i64.to_be_bytes().to_vec(),
        payload: produced[0].payload.clone(),
    };
    let e = decode(&decoder, &topic, &unknown).await.unwrap_err();
    assert!(matches!(e, DecodeError::UnknownSchema { .. }), "{e}");
    assert!(
        e.to_string().contains("Schema not found"),
        "Pulsar's reason: {e}"
    );
    let malformed = Produced {
        version: produced[0].version.clone(),
        payload: vec![0xff, 0xff],
    };
    let e = decode(&decoder, &topic, &malformed).await.unwrap_err();
    assert!(matches!(e, DecodeError::Malformed { .. }), "{e}");
    assert!(!e.is_transient());
}
