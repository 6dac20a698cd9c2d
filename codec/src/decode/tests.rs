use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::json;

use super::*;
use crate::pubsub::PubSubSchemaInfo;
use crate::pulsar::PulsarSchemaInfo;

const ORDER_V0: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"qty","type":["null","int"],"default":null}]}"#;

/// Serves schema versions from a map and counts requests.
#[derive(Default)]
struct FakePulsar {
    versions: Mutex<HashMap<i64, PulsarSchemaInfo>>,
    calls: AtomicUsize,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl PulsarSchemaFetcher for FakePulsar {
    async fn fetch(&self, topic: &TopicName, version: i64) -> Result<PulsarSchemaInfo, FetchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        assert_eq!(topic.full(), "persistent://public/default/orders");
        if self.down.load(Ordering::SeqCst) {
            return Err(FetchError::Unavailable("connection refused".into()));
        }
        self.versions
            .lock()
            .unwrap()
            .get(&version)
            .cloned()
            .ok_or_else(|| FetchError::NotFound("Schema not found".into()))
    }
}

fn info(version: i64, schema_type: &str, data: &str) -> PulsarSchemaInfo {
    PulsarSchemaInfo {
        version,
        schema_type: schema_type.into(),
        data: data.into(),
    }
}

fn pulsar_decoder(fake: Arc<FakePulsar>, view: &str) -> Decoder {
    let config: DecodeConfig = toml::from_str(&format!(
        "format = \"pulsar\"\nadmin_url = \"http://127.0.0.1:1\"\nview = \"{view}\""
    ))
    .unwrap();
    Decoder::new(&config, DecodeContext::default())
        .unwrap()
        .with_pulsar_fetcher(fake)
}

fn pulsar_message<'a>(payload: &'a [u8], version: &'a [u8]) -> SourceMessage<'a> {
    SourceMessage {
        topic: "persistent://public/default/orders-partition-2",
        payload,
        schema_version: Some(version),
        attributes: &NoAttributes,
    }
}

fn avro_bytes(schema: &str, json: serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    AvroSchema::parse(schema, "t")
        .unwrap()
        .encode_json(&json, &mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn pulsar_versions_are_fetched_once_and_decoded() {
    let fake = Arc::new(FakePulsar::default());
    fake.versions
        .lock()
        .unwrap()
        .insert(0, info(0, "AVRO", ORDER_V0));
    let decoder = pulsar_decoder(fake.clone(), "json");
    let payload = avro_bytes(ORDER_V0, json!({"id": "a", "qty": 2}));
    let version = 0i64.to_be_bytes();
    for _ in 0..3 {
        let decoded = decoder
            .decode(&pulsar_message(&payload, &version))
            .await
            .unwrap();
        assert_eq!(decoded.json.as_deref(), Some(&br#"{"id":"a","qty":2}"#[..]));
        let schema = decoded.schema.unwrap();
        assert_eq!(
            schema.id.as_str(),
            "pulsar:persistent://public/default/orders@0"
        );
    }
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        1,
        "one fetch per version"
    );
}

#[tokio::test]
async fn pulsar_evolution_follows_each_message_version() {
    let fake = Arc::new(FakePulsar::default());
    let v1 = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"qty","type":["null","int"],"default":null},{"name":"note","type":"string","default":""}]}"#;
    fake.versions
        .lock()
        .unwrap()
        .insert(0, info(0, "AVRO", ORDER_V0));
    fake.versions.lock().unwrap().insert(1, info(1, "AVRO", v1));
    let decoder = pulsar_decoder(fake, "json");
    let old = avro_bytes(ORDER_V0, json!({"id": "a"}));
    let new = avro_bytes(v1, json!({"id": "b", "note": "n"}));
    let d0 = decoder
        .decode(&pulsar_message(&old, &0i64.to_be_bytes()))
        .await
        .unwrap();
    let d1 = decoder
        .decode(&pulsar_message(&new, &1i64.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(d0.json.unwrap(), br#"{"id":"a","qty":null}"#);
    assert_eq!(d1.json.unwrap(), br#"{"id":"b","qty":null,"note":"n"}"#);
    assert!(d1.schema.unwrap().id.as_str().ends_with("@1"));
}

#[tokio::test]
async fn unknown_versions_are_record_errors_remembered_for_a_while() {
    let fake = Arc::new(FakePulsar::default());
    let decoder = pulsar_decoder(fake.clone(), "json");
    for _ in 0..3 {
        let e = decoder
            .decode(&pulsar_message(b"x", &9i64.to_be_bytes()))
            .await
            .unwrap_err();
        assert!(!e.is_transient());
        assert!(matches!(e, DecodeError::UnknownSchema { .. }), "{e}");
        assert!(e.to_string().contains("version 9"), "{e}");
    }
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unreachable_admin_api_is_transient_and_not_cached() {
    let fake = Arc::new(FakePulsar::default());
    fake.down.store(true, Ordering::SeqCst);
    fake.versions
        .lock()
        .unwrap()
        .insert(0, info(0, "AVRO", ORDER_V0));
    let decoder = pulsar_decoder(fake.clone(), "json");
    let payload = avro_bytes(ORDER_V0, json!({"id": "a"}));
    let e = decoder
        .decode(&pulsar_message(&payload, &0i64.to_be_bytes()))
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    fake.down.store(false, Ordering::SeqCst);
    decoder
        .decode(&pulsar_message(&payload, &0i64.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn malformed_payloads_name_topic_and_schema() {
    let fake = Arc::new(FakePulsar::default());
    fake.versions
        .lock()
        .unwrap()
        .insert(0, info(0, "AVRO", ORDER_V0));
    let decoder = pulsar_decoder(fake, "json");
    let e = decoder
        .decode(&pulsar_message(&[20, b'a'], &0i64.to_be_bytes()))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("orders-partition-2")
            && text.contains("pulsar:persistent://public/default/orders@0")
            && text.contains("not an Avro datum"),
        "{text}"
    );
    assert!(!e.is_transient());
}

#[tokio::test]
async fn messages_without_a_schema_version_are_refused() {
    let decoder = pulsar_decoder(Arc::new(FakePulsar::default()), "json");
    let message = SourceMessage {
        topic: "persistent://public/default/orders",
        payload: b"x",
        schema_version: None,
        attributes: &NoAttributes,
    };
    let e = decoder.decode(&message).await.unwrap_err();
    assert!(matches!(e, DecodeError::MissingSchema { .. }), "{e}");
    let e = decoder
        .decode(&pulsar_message(b"x", &[1, 2, 3]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("3 bytes"), "{e}");
}

#[tokio::test]
async fn pulsar_json_protobuf_native_primitives_and_unsupported_types() {
    let fake = Arc::new(FakePulsar::default());
    let proto = ProtoSchema::from_sources(
        &[ProtoFile {
            name: "o.proto".into(),
            text: "syntax = \"proto3\"; package p; message O { string id = 1; int64 n = 2; }"
                .into(),
        }],
        "o.proto",
        None,
        "t",
    )
    .unwrap();
    let set = prost_reflect::prost_types::FileDescriptorSet {
        file: proto
            .message()
            .parent_pool()
            .file_descriptor_protos()
            .cloned()
            .collect(),
    };
    let data = json!({
        "fileDescriptorSet": base64::engine::general_purpose::STANDARD
            .encode(prost_reflect::prost::Message::encode_to_vec(&set)),
        "rootMessageTypeName": "p.O",
        "rootFileDescriptorName": "o.proto"
    })
    .to_string();
    {
        let mut versions = fake.versions.lock().unwrap();
        versions.insert(0, info(0, "JSON", ORDER_V0));
        versions.insert(1, info(1, "PROTOBUF_NATIVE", &data));
        versions.insert(2, info(2, "INT64", ""));
        versions.insert(3, info(3, "KEY_VALUE", ""));
    }
    let decoder = pulsar_decoder(fake, "json");
    // JSON: the payload is already JSON: the guest sees it as is.
    let d = decoder
        .decode(&pulsar_message(br#"{"id":"a"}"#, &0i64.to_be_bytes()))
        .await
        .unwrap();
    assert!(d.json.is_none());
    assert_eq!(d.schema.unwrap().kind.type_name(), "JSON");
    assert!(
        decoder
            .decode(&pulsar_message(b"{not", &0i64.to_be_bytes()))
            .await
            .is_err()
    );
    // PROTOBUF_NATIVE.
    let mut bytes = Vec::new();
    proto
        .encode_json(br#"{"id":"x","n":"7"}"#, &mut bytes)
        .unwrap();
    let d = decoder
        .decode(&pulsar_message(&bytes, &1i64.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(d.json.unwrap(), br#"{"id":"x","n":"7"}"#);
    // INT64.
    let d = decoder
        .decode(&pulsar_message(&42i64.to_be_bytes(), &2i64.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(d.json.unwrap(), b"42");
    // KEY_VALUE: unusable, named.
    let e = decoder
        .decode(&pulsar_message(b"x", &3i64.to_be_bytes()))
        .await
        .unwrap_err();
    assert!(
        matches!(e, DecodeError::UnusableSchema { .. }) && e.to_string().contains("KEY_VALUE"),
        "{e}"
    );
}

#[tokio::test]
async fn view_original_checks_but_passes_the_bytes() {
    let fake = Arc::new(FakePulsar::default());
    fake.versions
        .lock()
        .unwrap()
        .insert(0, info(0, "AVRO", ORDER_V0));
    let decoder = pulsar_decoder(fake, "original");
    let payload = avro_bytes(ORDER_V0, json!({"id": "a"}));
    let d = decoder
        .decode(&pulsar_message(&payload, &0i64.to_be_bytes()))
        .await
        .unwrap();
    assert!(d.json.is_none());
    assert!(d.schema.is_some());
    assert!(
        decoder
            .decode(&pulsar_message(&[20], &0i64.to_be_bytes()))
            .await
            .is_err()
    );
}

struct FakePubSub(AtomicUsize);

#[async_trait]
impl PubSubSchemaFetcher for FakePubSub {
    async fn fetch(&self, name: &str, revision: &str) -> Result<PubSubSchemaInfo, FetchError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        match (name, revision) {
            ("projects/p/schemas/orders", "r1") => Ok(PubSubSchemaInfo {
                name: name.into(),
                schema_type: "AVRO".into(),
                definition: ORDER_V0.into(),
                revision_id: revision.into(),
            }),
            _ => Err(FetchError::NotFound("Schema could not be found".into())),
        }
    }
}

#[tokio::test]
async fn pubsub_attributes_name_revision_and_encoding() {
    let fake = Arc::new(FakePubSub(AtomicUsize::new(0)));
    let config: DecodeConfig =
        toml::from_str("format = \"pubsub\"\nschema_endpoint = \"http://127.0.0.1:1\"").unwrap();
    let decoder = Decoder::new(&config, DecodeContext::default())
        .unwrap()
        .with_pubsub_fetcher(fake.clone());
    let attrs = |encoding: &'static str, revision: &'static str| {
        vec![
            ("googclient_schemaname", "projects/p/schemas/orders"),
            ("googclient_schemaencoding", encoding),
            ("googclient_schemarevisionid", revision),
        ]
    };
    let json_attrs = attrs("JSON", "r1");
    // Avro's JSON encoding (wrapped union) normalised to Sluice's mapping.
    let d = decoder
        .decode(&SourceMessage {
            topic: "orders-sub",
            payload: br#"{"id":"a","qty":{"int":3}}"#,
            schema_version: None,
            attributes: &json_attrs,
        })
        .await
        .unwrap();
    assert_eq!(d.json.unwrap(), br#"{"id":"a","qty":3}"#);
    assert_eq!(
        d.schema.unwrap().id.as_str(),
        "pubsub:projects/p/schemas/orders@r1"
    );
    let binary_attrs = attrs("BINARY", "r1");
    let payload = avro_bytes(ORDER_V0, json!({"id": "b"}));
    let d = decoder
        .decode(&SourceMessage {
            topic: "orders-sub",
            payload: &payload,
            schema_version: None,
            attributes: &binary_attrs,
        })
        .await
        .unwrap();
    assert_eq!(d.json.unwrap(), br#"{"id":"b","qty":null}"#);
    assert_eq!(fake.0.load(Ordering::SeqCst), 1);
    let unknown = attrs("BINARY", "zz");
    let e = decoder
        .decode(&SourceMessage {
            topic: "orders-sub",
            payload: &payload,
            schema_version: None,
            attributes: &unknown,
        })
        .await
        .unwrap_err();
    assert!(matches!(e, DecodeError::UnknownSchema { .. }), "{e}");
    let e = decoder
        .decode(&SourceMessage {
            topic: "orders-sub",
            payload: &payload,
            schema_version: None,
            attributes: &NoAttributes,
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("googclient_schemaname"), "{e}");
}

#[tokio::test]
async fn configured_schemas_json_and_raw() {
    let dir = std::env::temp_dir().join(format!("sluice-codec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("order.avsc"), ORDER_V0).unwrap();
    let config: DecodeConfig =
        toml::from_str("format = \"avro\"\nschema_file = \"order.avsc\"").unwrap();
    let decoder = Decoder::new(
        &config,
        DecodeContext {
            base_dir: Some(&dir),
            ..DecodeContext::default()
        },
    )
    .unwrap();
    let payload = avro_bytes(ORDER_V0, json!({"id": "a"}));
    let message = SourceMessage {
        topic: "t",
        payload: &payload,
        schema_version: None,
        attributes: &NoAttributes,
    };
    let d = decoder.decode(&message).await.unwrap();
    assert_eq!(d.schema.unwrap().id.as_str(), "config:order.avsc");
    std::fs::remove_dir_all(&dir).unwrap();

    let config: DecodeConfig = toml::from_str(
        "format = \"protobuf\"\nencoding = \"json\"\nschema = 'syntax = \"proto3\"; message M { int64 n = 1; }'",
    )
    .unwrap();
    let decoder = Decoder::new(&config, DecodeContext::default()).unwrap();
    let d = decoder
        .decode(&SourceMessage {
            topic: "t",
            payload: br#"{"n": 5}"#,
            schema_version: None,
            attributes: &NoAttributes,
        })
        .await
        .unwrap();
    assert_eq!(d.json.unwrap(), br#"{"n":"5"}"#);

    let json = Decoder::new(
        &toml::from_str("format = \"json\"").unwrap(),
        DecodeContext::default(),
    )
    .unwrap();
    let bad = SourceMessage {
        topic: "t",
        payload: b"{",
        schema_version: None,
        attributes: &NoAttributes,
    };
    assert!(
        json.decode(&bad)
            .await
            .unwrap_err()
            .to_string()
            .contains("not JSON")
    );
    let raw = Decoder::new(&DecodeConfig::default(), DecodeContext::default()).unwrap();
    assert!(raw.is_passthrough());
    assert!(raw.decode(&bad).await.unwrap().json.is_none());
}

#[test]
fn misplaced_keys_are_config_errors() {
    for text in [
        "format = \"json\"\nschema = \"x\"",
        "format = \"pulsar\"\nregistry = { url = \"http://x\" }",
        "format = \"avro\"",
        "format = \"avro\"\nschema = \"x\"\nschema_file = \"y\"",
        "format = \"protobuf\"\ndescriptor_set_file = \"x.pb\"",
        "format = \"confluent\"",
        "format = \"pulsar\"",
        "format = \"avro\"\nschema = '{\"type\":\"nope\"}'",
    ] {
        let config: DecodeConfig = toml::from_str(text).unwrap();
        assert!(
            Decoder::new(&config, DecodeContext::default()).is_err(),
            "{text}"
        );
    }
}
