//! Decoding against Google's Pub/Sub emulator and its schema service: an Avro topic schema,
//! JSON then BINARY encoding, a new revision mid-stream; messages published and pulled over the
//! emulator's REST API, their `googclient_schema*` attributes stamped by the emulator.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value as Json, json};
use sluice_codec::{AvroSchema, DecodeConfig, DecodeContext, DecodeError, Decoder, SourceMessage};

use super::support::{service_or_skip, unique};

const V1: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"amount","type":"double"}]}"#;
const V2: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"amount","type":"double"},{"name":"note","type":["null","string"],"default":null}]}"#;

/// Google's Pub/Sub emulator, through its REST API.
pub(crate) struct Emulator {
    /// `http://HOST:PORT`.
    pub(crate) base: String,
    http: reqwest::Client,
}

impl Emulator {
    /// The emulator of `PUBSUB_EMULATOR_HOST`, or `None` (skip).
    pub(crate) fn from_env() -> Option<Self> {
        emulator()
    }

    pub(crate) async fn call(&self, method: reqwest::Method, path: &str, body: Json) -> Json {
        let url = format!("{}/v1/{path}", self.base);
        let response = self
            .http
            .request(method, &url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{url}: {status}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    pub(crate) async fn publish(&self, topic: &str, data: &[u8]) {
        self.call(
            reqwest::Method::POST,
            &format!("{topic}:publish"),
            json!({"messages": [{"data": STANDARD.encode(data)}]}),
        )
        .await;
    }

    /// Pulls (and acks) up to `n` messages: (attributes, data).
    async fn pull(&self, subscription: &str, n: usize) -> Vec<(HashMap<String, String>, Vec<u8>)> {
        let mut out = Vec::new();
        for _ in 0..20 {
            let answer = self
                .call(
                    reqwest::Method::POST,
                    &format!("{subscription}:pull"),
                    json!({"maxMessages": n - out.len()}),
                )
                .await;
            let received = answer["receivedMessages"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut acks = Vec::new();
            for m in received {
                acks.push(m["ackId"].clone());
                let attributes = m["message"]["attributes"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let data = STANDARD
                    .decode(m["message"]["data"].as_str().unwrap_or_default())
                    .unwrap();
                out.push((attributes, data));
            }
            if !acks.is_empty() {
                self.call(
                    reqwest::Method::POST,
                    &format!("{subscription}:acknowledge"),
                    json!({"ackIds": acks}),
                )
                .await;
            }
            if out.len() >= n {
                break;
            }
        }
        out
    }
}

fn emulator() -> Option<Emulator> {
    let host = service_or_skip("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085")?;
    Some(Emulator {
        base: format!("http://{host}"),
        http: reqwest::Client::new(),
    })
}

#[tokio::test]
async fn avro_topic_schemas_decode_per_revision_and_encoding() {
    let Some(emulator) = emulator() else { return };
    let project = "projects/sluice-codec";
    let schema_id = unique("orders-schema");
    let schema_name = format!("{project}/schemas/{schema_id}");
    let topic = format!("{project}/topics/{}", unique("orders"));
    let subscription = format!("{project}/subscriptions/{}", unique("orders-sub"));
    let created = emulator
        .call(
            reqwest::Method::POST,
            &format!("{project}/schemas?schemaId={schema_id}"),
            json!({"type": "AVRO", "definition": V1}),
        )
        .await;
    let first_revision = created["revisionId"].as_str().unwrap().to_owned();
    emulator
        .call(
            reqwest::Method::PUT,
            &topic,
            json!({"schemaSettings": {"schema": schema_name, "encoding": "JSON"}}),
        )
        .await;
    emulator
        .call(reqwest::Method::PUT, &subscription, json!({"topic": topic}))
        .await;

    // JSON encoding, first revision; Avro's JSON encoding.
    emulator
        .publish(&topic, br#"{"id":"a","amount":1.5}"#)
        .await;
    // A new revision; the topic switches to BINARY encoding.
    let committed = emulator
        .call(
            reqwest::Method::POST,
            &format!("{schema_name}:commit"),
            json!({"schema": {"type": "AVRO", "definition": V2}}),
        )
        .await;
    let second_revision = committed["revisionId"].as_str().unwrap().to_owned();
    emulator
        .call(
            reqwest::Method::PATCH,
            &topic,
            json!({"topic": {"schemaSettings": {"schema": schema_name, "encoding": "BINARY"}},
                   "updateMask": "schemaSettings"}),
        )
        .await;
    let mut binary = Vec::new();
    AvroSchema::parse(V2, "v2")
        .unwrap()
        .encode_json(&json!({"id": "b", "amount": 2.5, "note": "n"}), &mut binary)
        .unwrap();
    emulator.publish(&topic, &binary).await;

    let pulled = emulator.pull(&subscription, 2).await;
    assert_eq!(pulled.len(), 2);
    let config: DecodeConfig = toml::from_str("format = \"pubsub\"").unwrap();
    let decoder = Decoder::new(
        &config,
        DecodeContext {
            pubsub_endpoint: Some(&emulator.base),
            ..DecodeContext::default()
        },
    )
    .unwrap();
    let mut seen = Vec::new();
    for (attributes, data) in &pulled {
        let decoded = decoder
            .decode(&SourceMessage {
                topic: &subscription,
                payload: data,
                schema_version: None,
                attributes,
            })
            .await
            .unwrap();
        let json: Json = serde_json::from_slice(decoded.json.as_deref().unwrap()).unwrap();
        seen.push((
            attributes["googclient_schemaencoding"].clone(),
            decoded.schema.unwrap().id.to_string(),
            json,
        ));
    }
    seen.sort_by(|a, b| a.2["id"].as_str().cmp(&b.2["id"].as_str()));
    assert_eq!(seen[0].0, "JSON");
    assert_eq!(seen[0].1, format!("pubsub:{schema_name}@{first_revision}"));
    assert_eq!(seen[0].2, json!({"id": "a", "amount": 1.5}));
    assert_eq!(seen[1].0, "BINARY");
    assert_eq!(seen[1].1, format!("pubsub:{schema_name}@{second_revision}"));
    assert_eq!(seen[1].2, json!({"id": "b", "amount": 2.5, "note": "n"}));

    // A revision the service does not know is the record's fault, with the service's reason.
    let mut attributes = pulled[0].0.clone();
    attributes.insert("googclient_schemarevisionid".into(), "deadbeef".into());
    let e = decoder
        .decode(&SourceMessage {
            topic: &subscription,
            payload: &pulled[0].1,
            schema_version: None,
            attributes: &attributes,
        })
        .await
        .unwrap_err();
    assert!(matches!(e, DecodeError::UnknownSchema { .. }), "{e}");
}

/// A topic without a schema: no attributes, so format `pubsub` refuses the record and says how
/// to name the schema in the config instead.
#[tokio::test]
async fn messages_of_topics_without_schemas_are_refused_with_a_hint() {
    let Some(emulator) = emulator() else { return };
    let config: DecodeConfig = toml::from_str("format = \"pubsub\"").unwrap();
    let decoder = Decoder::new(
        &config,
        DecodeContext {
            pubsub_endpoint: Some(&emulator.base),
            ..DecodeContext::default()
        },
    )
    .unwrap();
    let e = decoder
        .decode(&SourceMessage {
            topic: "plain-sub",
            payload: b"{}",
            schema_version: None,
            attributes: &HashMap::new(),
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("format = \"avro\""), "{e}");
}
