//! The encoder (and the Confluent-format decoder) against a real Schema Registry: Apicurio
//! Registry 3.3 through its Confluent API; what it writes decoded by confluent-kafka's Python
//! deserializers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value as Json, json};
use sluice_codec::{
    AvroSchema, DecodeConfig, DecodeContext, DecodeError, Decoder, EncodeConfig, EncodeError,
    Encoder, NoAttributes, ProtoSchema, RegistryClient, RegistryConfig, Schema, SchemaDocument,
    SchemaId, SchemaKind, SchemaType, SourceMessage,
};

use super::support::{CountingProxy, b64, registry_url, run_python, unique};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/schemas")
}

fn encoder(url: &str, value: &str) -> Encoder {
    let config: EncodeConfig = toml::from_str(&format!(
        "registry = {{ url = \"{url}\" }}\nvalue = {value}"
    ))
    .unwrap();
    Encoder::new(&config, Some(&fixtures())).unwrap()
}

fn client(url: &str) -> RegistryClient {
    RegistryClient::new(&RegistryConfig {
        url: url.to_owned(),
        ..RegistryConfig::default()
    })
    .unwrap()
}

async fn encode(encoder: &Encoder, topic: &str, value: &Json) -> Result<Vec<u8>, EncodeError> {
    let bytes = value.to_string().into_bytes();
    let out = encoder.encode(topic, None, Some(&bytes), None).await?;
    Ok(out.value.unwrap().into_owned())
}

fn confluent_decoder(url: &str) -> Decoder {
    let config: DecodeConfig = toml::from_str(&format!(
        "format = \"confluent\"\nregistry = {{ url = \"{url}\" }}"
    ))
    .unwrap();
    Decoder::new(&config, DecodeContext::default()).unwrap()
}

async fn decode_confluent(
    decoder: &Decoder,
    topic: &str,
    payload: &[u8],
) -> Result<Json, DecodeError> {
    let decoded = decoder
        .decode(&SourceMessage {
            topic,
            payload,
            schema_version: None,
            attributes: &NoAttributes,
        })
        .await?;
    Ok(serde_json::from_slice(decoded.json.as_deref().unwrap_or(payload)).unwrap())
}

fn orders() -> Vec<Json> {
    vec![
        json!({"id": "o-1", "email": "a@example.com", "qty": 2, "price": "12.30",
               "placed_at": "2024-01-31T12:34:56.789Z", "status": "PAID", "tags": ["x", "y"],
               "payment": {"shop.Card": {"last4": "4242"}}}),
        json!({"id": "o-2", "email": null, "qty": -1, "price": "-0.05",
               "placed_at": "1969-12-31T23:59:59.999Z", "status": "NEW", "tags": [],
               "payment": {"string": "cash"}}),
        json!({"id": "o-3", "email": null, "qty": 0, "price": "0.00",
               "placed_at": "2024-01-31T12:34:56.000Z", "status": "SHIPPED", "tags": ["z"],
               "payment": null}),
    ]
}

/// Avro with logical types and unions: framed as Confluent does, decoded by confluent-kafka's
/// AvroDeserializer (writer schema fetched by id), field by field; and by our own decoder.
#[tokio::test]
async fn avro_is_decoded_by_confluents_client_field_by_field() {
    let Some(url) = registry_url() else { return };
    let topic = unique("codec-avro");
    let encoder = encoder(&url, "{ format = \"avro\", schema_file = \"order.avsc\" }");
    let mut lines = String::new();
    let ours = confluent_decoder(&url);
    for order in orders() {
        let bytes = encode(&encoder, &topic, &order).await.unwrap();
        assert_eq!(bytes[0], 0, "magic byte");
        assert_eq!(
            decode_confluent(&ours, &topic, &bytes).await.unwrap(),
            order
        );
        lines
            .push_str(&json!({"format": "avro", "topic": topic, "value": b64(&bytes)}).to_string());
        lines.push('\n');
    }
    let decoded = run_python("confluent_check.py", &[&url], &lines);
    assert_eq!(decoded.len(), 3);
    for (python, order) in decoded.iter().zip(orders()) {
        assert_eq!(python["id"], order["id"]);
        assert_eq!(python["email"], order["email"]);
        assert_eq!(python["qty"], order["qty"]);
        assert_eq!(python["price"], order["price"], "decimals keep their scale");
        assert_eq!(python["status"], order["status"]);
        assert_eq!(python["tags"], order["tags"]);
        // Python prints datetimes as "2024-01-31 12:34:56.789000+00:00".
        let placed = order["placed_at"].as_str().unwrap();
        let python_placed = python["placed_at"].as_str().unwrap();
        // (without the fraction when it is zero)
        let python_placed = match python_placed.split_once('+') {
            Some((time, zone)) if !time.contains('.') => format!("{time}.000000+{zone}"),
            _ => python_placed.to_owned(),
        };
        assert_eq!(python_placed[..10], placed[..10]);
        assert_eq!(python_placed[11..23], placed[11..23]);
        assert!(python_placed.ends_with("+00:00"), "{python_placed}");
        match order["payment"].as_object().and_then(|o| o.iter().next()) {
            Some((branch, value)) if branch == "shop.Card" => assert_eq!(python["payment"], *value),
            Some((_, value)) => assert_eq!(python["payment"], *value),
            None => assert!(python["payment"].is_null()),
        }
    }
}

/// Ids are cached: the registry is asked once for a (topic, schema), not once per record.
#[tokio::test]
async fn the_registry_is_not_called_per_record() {
    let Some(url) = registry_url() else { return };
    let proxy = CountingProxy::start(&url).await;
    let topic = unique("codec-cache");
    let encoder = encoder(
        &proxy.url,
        "{ format = \"avro\", schema_file = \"order.avsc\" }",
    );
    let order = &orders()[0];
    encode(&encoder, &topic, order).await.unwrap();
    let after_first = proxy.requests();
    assert_eq!(after_first, 1, "one registration");
    for _ in 0..200 {
        encode(&encoder, &topic, order).await.unwrap();
    }
    assert_eq!(proxy.requests(), after_first, "no request in steady state");
    // Another topic is another subject: one more registration.
    encode(&encoder, &unique("codec-cache"), order)
        .await
        .unwrap();
    assert_eq!(proxy.requests(), after_first + 1);
}

fn source(id: &str, avro: &str) -> Arc<Schema> {
    Arc::new(Schema {
        id: SchemaId::config(id),
        kind: SchemaKind::Avro(Arc::new(AvroSchema::parse(avro, id).unwrap())),
    })
}

/// A source schema evolving: a compatible version registers and flows, an incompatible one is
/// refused with the registry's reason (for that record only), and the refusal is remembered.
#[tokio::test]
async fn schema_evolution_follows_the_subjects_compatibility() {
    let Some(url) = registry_url() else { return };
    let proxy = CountingProxy::start(&url).await;
    let topic = unique("codec-evolve");
    client(&url)
        .set_compatibility(&format!("{topic}-value"), "BACKWARD")
        .await
        .unwrap();
    let encoder = encoder(&proxy.url, "{ format = \"avro\", from_source = true }");
    let v1 = source(
        "v1",
        r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#,
    );
    let v2 = source(
        "v2",
        r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"note","type":"string","default":""}]}"#,
    );
    let v3 = source(
        "v3",
        r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#,
    );
    let first = encoder
        .encode(&topic, None, Some(br#"{"id":"a"}"#), Some(&v1))
        .await
        .unwrap();
    let second = encoder
        .encode(&topic, None, Some(br#"{"id":"b","note":"n"}"#), Some(&v2))
        .await
        .unwrap();
    let id = |bytes: &[u8]| u32::from_be_bytes(bytes[1..5].try_into().unwrap());
    assert_ne!(
        id(&first.value.unwrap()),
        id(&second.value.unwrap()),
        "the compatible change is a new version"
    );
    let requests = proxy.requests();
    let refused = encoder
        .encode(&topic, None, Some(br#"{"id":5}"#), Some(&v3))
        .await
        .unwrap_err();
    assert!(!refused.is_transient());
    let text = refused.to_string();
    assert!(
        matches!(refused, EncodeError::Refused { ref subject, .. } if *subject == format!("{topic}-value")),
        "{text}"
    );
    assert!(
        text.contains("409") && text.contains("ncompatible"),
        "{text}"
    );
    assert_eq!(proxy.requests(), requests + 1);
    // The refusal is remembered; the compatible versions still encode; nothing new is asked.
    assert!(
        encoder
            .encode(&topic, None, Some(br#"{"id":6}"#), Some(&v3))
            .await
            .is_err()
    );
    encoder
        .encode(&topic, None, Some(br#"{"id":"c"}"#), Some(&v1))
        .await
        .unwrap();
    assert_eq!(proxy.requests(), requests + 1);
}

/// An output that does not fit its schema is an error naming the field; nothing is returned.
#[tokio::test]
async fn outputs_that_do_not_fit_are_refused_with_the_field() {
    let Some(url) = registry_url() else { return };
    let topic = unique("codec-misfit");
    let encoder = encoder(&url, "{ format = \"avro\", schema_file = \"order.avsc\" }");
    let mut order = orders()[0].clone();
    order["price"] = json!("12.345");
    let e = encode(&encoder, &topic, &order).await.unwrap_err();
    assert!(matches!(e, EncodeError::Mismatch { .. }), "{e}");
    assert!(e.to_string().contains("$.price"), "{e}");
    order["price"] = json!("1.00");
    order["extra"] = json!(1);
    let e = encode(&encoder, &topic, &order).await.unwrap_err();
    assert!(e.to_string().contains("extra"), "{e}");
}

fn descriptor_set_file(proto: &ProtoSchema, dir: &Path) -> PathBuf {
    let set = prost_reflect::prost_types::FileDescriptorSet {
        file: proto
            .message()
            .parent_pool()
            .file_descriptor_protos()
            .cloned()
            .collect(),
    };
    let path = dir.join(format!("{}.pb", unique("set")));
    std::fs::write(&path, prost_reflect::prost::Message::encode_to_vec(&set)).unwrap();
    path
}

/// Protobuf with an import (registered as a reference under its file name) and a well-known
/// type; message indexes for a nested message; decoded by confluent-kafka's
/// ProtobufDeserializer.
#[tokio::test]
async fn protobuf_with_references_is_decoded_by_confluents_client() {
    let Some(url) = registry_url() else { return };
    let topic = unique("codec-proto");
    let encoder = encoder(
        &url,
        "{ format = \"protobuf\", schema_file = \"shop.proto\", message = \"shop.v1.Order\" }",
    );
    let order = json!({
        "orderId": "o-1", "totalCents": "1234", "status": "PAID",
        "lines": [{"sku": "A", "qty": 2}], "counters": {"k": 1},
        "placedAt": "2024-01-31T12:34:56.789Z", "price": {"currency": "EUR", "units": "12"},
        "email": "a@example.com"
    });
    let bytes = encode(&encoder, &topic, &order).await.unwrap();
    assert_eq!(&bytes[5..6], [0], "message index [0] as one zero byte");
    // The import is its own subject, referenced by the root schema.
    let registry = client(&url);
    let money = registry
        .version("money.proto", "latest")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(money.document.schema_type, SchemaType::Protobuf);
    let root = registry
        .version(&format!("{topic}-value"), "latest")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(root.document.references.len(), 1);
    assert_eq!(root.document.references[0].name, "money.proto");
    // Our decoder resolves the reference from the registry.
    let ours = confluent_decoder(&url);
    assert_eq!(
        decode_confluent(&ours, &topic, &bytes).await.unwrap(),
        order
    );
    // Confluent's Python deserializer.
    let proto =
        ProtoSchema::from_file(&fixtures().join("shop.proto"), &[], Some("shop.v1.Order")).unwrap();
    let dir = std::env::temp_dir();
    let set = descriptor_set_file(&proto, &dir);
    let line = json!({"format": "protobuf", "topic": topic, "value": b64(&bytes),
                      "descriptor_set": set, "message": "shop.v1.Order"});
    let decoded = run_python("confluent_check.py", &[&url], &format!("{line}\n"));
    std::fs::remove_file(&set).unwrap();
    assert_eq!(decoded, [order]);
}

/// A nested message type gets its index path in the frame.
#[tokio::test]
async fn nested_protobuf_messages_carry_their_index_path() {
    let Some(url) = registry_url() else { return };
    let topic = unique("codec-nested");
    let encoder = encoder(
        &url,
        "{ format = \"protobuf\", schema_file = \"shop.proto\", message = \"shop.v1.Order.Line\" }",
    );
    let bytes = encode(&encoder, &topic, &json!({"sku": "A", "qty": 3}))
        .await
        .unwrap();
    // [0, 1]: Order, then its second nested type (the map entry type comes first).
    assert_eq!(&bytes[5..8], [4, 0, 2]);
    let ours = confluent_decoder(&url);
    assert_eq!(
        decode_confluent(&ours, &topic, &bytes).await.unwrap(),
        json!({"sku": "A", "qty": 3})
    );
}

/// JSON Schema: validated, framed, decoded by confluent-kafka's JSONDeserializer.
#[tokio::test]
async fn json_schema_is_validated_and_decoded_by_confluents_client() {
    let Some(url) = registry_url() else { return };
    let topic = unique("codec-json");
    let encoder = encoder(
        &url,
        r#"{ format = "json_schema", schema = '{"$schema":"http://json-schema.org/draft-07/schema#","title":"Order","type":"object","properties":{"id":{"type":"string"},"qty":{"type":"integer","minimum":0}},"required":["id"]}' }"#,
    );
    let good = json!({"id": "o-1", "qty": 2});
    let bytes = encode(&encoder, &topic, &good).await.unwrap();
    let line = json!({"format": "json", "topic": topic, "value": b64(&bytes)});
    assert_eq!(
        run_python("confluent_check.py", &[&url], &format!("{line}\n")),
        [good]
    );
    let e = encode(&encoder, &topic, &json!({"id": "o-2", "qty": -1}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("$.qty"), "{e}");
}

/// Key and value are encoded separately, each under its own subject.
#[tokio::test]
async fn keys_and_values_have_their_own_subjects() {
    let Some(url) = registry_url() else { return };
    let topic = unique("codec-keys");
    let config: EncodeConfig = toml::from_str(&format!(
        r#"registry = {{ url = "{url}" }}
        key = {{ format = "avro", schema = '"string"' }}
        value = {{ format = "avro", schema_file = "order.avsc" }}"#
    ))
    .unwrap();
    let encoder = Encoder::new(&config, Some(&fixtures())).unwrap();
    let value = orders()[0].to_string();
    let out = encoder
        .encode(&topic, Some(br#""o-1""#), Some(value.as_bytes()), None)
        .await
        .unwrap();
    assert_eq!(&out.key.unwrap()[5..], [6, b'o', b'-', b'1']);
    let registry = client(&url);
    for part in ["key", "value"] {
        assert!(
            registry
                .version(&format!("{topic}-{part}"), "latest")
                .await
                .unwrap()
                .is_some(),
            "{part}"
        );
    }
    // A key that does not fit fails the whole record: no half-encoded output.
    let e = encoder
        .encode(&topic, Some(b"5"), Some(value.as_bytes()), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains(" key:"), "{e}");
}

/// `use_latest`: the subject's latest schema, registered by someone else.
#[tokio::test]
async fn use_latest_takes_the_subjects_schema() {
    let Some(url) = registry_url() else { return };
    let topic = unique("codec-latest");
    let registry = client(&url);
    let id = registry
        .register(
            &format!("{topic}-value"),
            &SchemaDocument {
                schema: std::fs::read_to_string(fixtures().join("order.avsc")).unwrap(),
                schema_type: SchemaType::Avro,
                references: vec![],
            },
        )
        .await
        .unwrap();
    let encoder = encoder(&url, "{ format = \"avro\", use_latest = true }");
    let bytes = encode(&encoder, &topic, &orders()[1]).await.unwrap();
    assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), id);
    let e = encode(&encoder, &unique("codec-latest"), &orders()[1])
        .await
        .unwrap_err();
    assert!(matches!(e, EncodeError::NoSchema { .. }), "{e}");
}

/// `auto_register = false`: a schema must be registered already.
#[tokio::test]
async fn without_auto_register_unregistered_schemas_are_record_errors() {
    let Some(url) = registry_url() else { return };
    let encoder = encoder(
        &url,
        "{ format = \"avro\", schema_file = \"order.avsc\", auto_register = false }",
    );
    let e = encode(&encoder, &unique("codec-noreg"), &orders()[0])
        .await
        .unwrap_err();
    assert!(matches!(e, EncodeError::NoSchema { .. }), "{e}");
    assert!(e.to_string().contains("auto_register = false"), "{e}");
}

/// Confluent-framed input naming an id the registry does not have, or not framed at all.
#[tokio::test]
async fn unknown_schema_ids_and_bad_frames_are_record_errors() {
    let Some(url) = registry_url() else { return };
    let decoder = confluent_decoder(&url);
    let e = decode_confluent(&decoder, "in", &[0, 0x7f, 0xff, 0xff, 0xf0, 2])
        .await
        .unwrap_err();
    assert!(matches!(e, DecodeError::UnknownSchema { .. }), "{e}");
    assert!(!e.is_transient());
    assert!(e.to_string().contains("id 2147483632"), "{e}");
    let e = decode_confluent(&decoder, "in", b"{\"plain\":1}")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("magic byte"), "{e}");
}

/// A registry that is down is a transient error, not a record's fault.
#[tokio::test]
async fn a_registry_that_is_down_is_transient() {
    let encoder = encoder(
        "http://127.0.0.1:9/apis/ccompat/v7",
        "{ format = \"avro\", schema_file = \"order.avsc\" }",
    );
    let e = encode(&encoder, "t", &orders()[0]).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
}
