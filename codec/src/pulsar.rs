//! Pulsar's schema registry: a message's schema version (8 bytes, big-endian, in its metadata)
//! names a version of its topic's schema, read from the admin REST API
//! (`GET /admin/v2/schemas/{tenant}/{namespace}/{topic}/schema/{version}`) and turned into a
//! [`Schema`].
//!
//! Types: AVRO (binary datums, Avro definition), JSON (JSON payloads; the definition is an Avro
//! schema), PROTOBUF_NATIVE (binary Protobuf; the definition is JSON holding a base64
//! `FileDescriptorSet` and the root message name), and the primitives (STRING, INT64, ...).
//! KEY_VALUE, PROTOBUF (the older Avro-described Protobuf), AUTO_* and NONE are refused as
//! unusable: they would need more than the payload to decode.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::avro::AvroSchema;
use crate::config::Secret;
use crate::error::SchemaError;
use crate::protobuf::ProtoSchema;
use crate::schema::{Primitive, Schema, SchemaId, SchemaKind};

/// A topic name split into its parts, partition suffix dropped (schemas belong to the
/// partitioned topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicName {
    /// `persistent` or `non-persistent`.
    pub domain: String,
    /// The tenant.
    pub tenant: String,
    /// The namespace.
    pub namespace: String,
    /// The topic's local name.
    pub local: String,
}

impl TopicName {
    /// Parses `persistent://t/ns/name`, `t/ns/name` or a bare `name` (in `public/default`);
    /// `name-partition-N` is the partitioned topic `name`.
    ///
    /// # Errors
    /// A reason for names of another shape.
    pub fn parse(topic: &str) -> Result<Self, String> {
        let (domain, rest) = match topic.split_once("://") {
            Some((domain @ ("persistent" | "non-persistent"), rest)) => (domain, rest),
            Some((other, _)) => return Err(format!("unknown topic domain {other:?} in {topic:?}")),
            None => ("persistent", topic),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let (tenant, namespace, local) = match parts.as_slice() {
            [local] => ("public", "default", *local),
            [tenant, namespace, local] => (*tenant, *namespace, *local),
            _ => return Err(format!("topic {topic:?} is not tenant/namespace/name")),
        };
        if tenant.is_empty() || namespace.is_empty() || local.is_empty() {
            return Err(format!("topic {topic:?} has an empty part"));
        }
        let local = match local.rsplit_once("-partition-") {
            Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
            _ => local,
        };
        Ok(Self {
            domain: domain.to_owned(),
            tenant: tenant.to_owned(),
            namespace: namespace.to_owned(),
            local: local.to_owned(),
        })
    }

    /// The full name, `persistent://tenant/namespace/name`.
    pub fn full(&self) -> String {
        format!(
            "{}://{}/{}/{}",
            self.domain, self.tenant, self.namespace, self.local
        )
    }
}

/// The schema version carried by a message: 8 bytes, big-endian.
///
/// # Errors
/// A reason when the bytes are not 8 long.
pub fn parse_version(bytes: &[u8]) -> Result<i64, String> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| {
        format!(
            "schema version of {} bytes (expected 8): {bytes:02x?}",
            bytes.len()
        )
    })?;
    Ok(i64::from_be_bytes(array))
}

/// One version of a topic's schema, as Pulsar's admin API returns it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PulsarSchemaInfo {
    /// The version.
    pub version: i64,
    /// `AVRO`, `JSON`, `PROTOBUF_NATIVE`, `STRING`, ...
    #[serde(rename = "type")]
    pub schema_type: String,
    /// The definition (Avro JSON; for PROTOBUF_NATIVE a JSON document with the descriptor set).
    #[serde(default)]
    pub data: String,
}

/// Why a schema could not be fetched.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The service says it does not exist (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The service could not be asked (connection, timeout, 5xx) or answered nonsense.
    #[error("{0}")]
    Unavailable(String),
}

/// Sends GET `request` (to `url`, named in errors) and reads its JSON answer: 404 is
/// [`FetchError::NotFound`], any other failure [`FetchError::Unavailable`] with the service's
/// text. Shared by the Pulsar and Pub/Sub schema fetchers.
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    url: &str,
) -> Result<T, FetchError> {
    let response = request
        .send()
        .await
        .map_err(|e| FetchError::Unavailable(format!("GET {url}: {e}")))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| FetchError::Unavailable(format!("GET {url}: {e}")))?;
    let text = String::from_utf8_lossy(&body);
    if status.as_u16() == 404 {
        return Err(FetchError::NotFound(format!("GET {url}: {}", text.trim())));
    }
    if !status.is_success() {
        return Err(FetchError::Unavailable(format!(
            "GET {url}: HTTP {status}: {}",
            text.trim()
        )));
    }
    serde_json::from_slice(&body)
        .map_err(|e| FetchError::Unavailable(format!("GET {url}: unexpected answer: {e}")))
}

/// Where Pulsar schemas come from: the admin REST API ([`AdminRestFetcher`]), or anything else
/// (the binary protocol's GetSchema, a test double).
#[async_trait]
pub trait PulsarSchemaFetcher: Send + Sync {
    /// Version `version` of the schema of `topic`.
    async fn fetch(&self, topic: &TopicName, version: i64) -> Result<PulsarSchemaInfo, FetchError>;
}

/// Reads schemas from Pulsar's admin REST API.
#[derive(Debug, Clone)]
pub struct AdminRestFetcher {
    http: reqwest::Client,
    base: String,
    token: Option<Secret>,
}

impl AdminRestFetcher {
    /// A fetcher for the admin API at `admin_url` (e.g. `http://127.0.0.1:8080`).
    ///
    /// # Errors
    /// [`SchemaError::Config`] for a URL that is not http(s).
    pub fn new(admin_url: &str, token: Option<Secret>) -> Result<Self, SchemaError> {
        let base = admin_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(SchemaError::Config(format!(
                "Pulsar admin url {base:?} must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| SchemaError::Config(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self { http, base, token })
    }
}

#[async_trait]
impl PulsarSchemaFetcher for AdminRestFetcher {
    async fn fetch(&self, topic: &TopicName, version: i64) -> Result<PulsarSchemaInfo, FetchError> {
        let url = format!(
            "{}/admin/v2/schemas/{}/{}/{}/schema/{version}",
            self.base, topic.tenant, topic.namespace, topic.local
        );
        let mut request = self.http.get(&url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        get_json(request, &url).await
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProtobufNativeData {
    file_descriptor_set: String,
    root_message_type_name: String,
}

/// Turns a fetched schema version into a [`Schema`].
///
/// # Errors
/// [`SchemaError::Invalid`] for unusable types or definitions that do not parse.
pub fn to_schema(topic: &TopicName, info: &PulsarSchemaInfo) -> Result<Schema, SchemaError> {
    let id = SchemaId::pulsar(&topic.full(), info.version);
    let what = id.to_string();
    let kind = match info.schema_type.as_str() {
        "AVRO" => SchemaKind::Avro(Arc::new(AvroSchema::parse(&info.data, &what)?)),
        "JSON" => SchemaKind::JsonWithAvro(Arc::new(AvroSchema::parse(&info.data, &what)?)),
        "PROTOBUF_NATIVE" => {
            let data: ProtobufNativeData = serde_json::from_str(&info.data)
                .map_err(|e| SchemaError::invalid(&what, format!("PROTOBUF_NATIVE data: {e}")))?;
            let set = crate::decode_base64(&data.file_descriptor_set).ok_or_else(|| {
                SchemaError::invalid(&what, "PROTOBUF_NATIVE fileDescriptorSet is not base64")
            })?;
            SchemaKind::Protobuf(Arc::new(ProtoSchema::from_descriptor_set(
                &set,
                &data.root_message_type_name,
                &what,
            )?))
        }
        other => match Primitive::from_pulsar_name(other) {
            Some(primitive) => SchemaKind::Primitive(primitive),
            None => {
                return Err(SchemaError::invalid(
                    &what,
                    format!("Pulsar schema type {other} is not supported for decoding"),
                ));
            }
        },
    };
    Ok(Schema { id, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        let t = TopicName::parse("persistent://acme/orders/new-partition-3").unwrap();
        assert_eq!(
            (t.tenant.as_str(), t.namespace.as_str(), t.local.as_str()),
            ("acme", "orders", "new")
        );
        assert_eq!(t.full(), "persistent://acme/orders/new");
        assert_eq!(
            TopicName::parse("t").unwrap().full(),
            "persistent://public/default/t"
        );
        assert_eq!(
            TopicName::parse("non-persistent://a/b/c").unwrap().full(),
            "non-persistent://a/b/c"
        );
        assert_eq!(
            TopicName::parse("a/b/x-partition-y").unwrap().local,
            "x-partition-y"
        );
        assert!(TopicName::parse("a/b").is_err());
        assert!(TopicName::parse("kafka://a/b/c").is_err());
    }

    #[test]
    fn versions_are_8_big_endian_bytes() {
        assert_eq!(parse_version(&[0, 0, 0, 0, 0, 0, 1, 2]), Ok(258));
        assert!(parse_version(&[1, 2]).unwrap_err().contains("2 bytes"));
    }

    #[test]
    fn schema_infos_become_schemas() {
        let topic = TopicName::parse("t").unwrap();
        let info: PulsarSchemaInfo = serde_json::from_str(
            r#"{"version":2,"type":"AVRO","timestamp":1,"data":"{\"type\":\"record\",\"name\":\"R\",\"fields\":[]}","properties":{}}"#,
        )
        .unwrap();
        let schema = to_schema(&topic, &info).unwrap();
        assert_eq!(schema.id.as_str(), "pulsar:persistent://public/default/t@2");
        assert!(matches!(schema.kind, SchemaKind::Avro(_)));
        let string = PulsarSchemaInfo {
            version: 0,
            schema_type: "STRING".into(),
            data: String::new(),
        };
        assert!(matches!(
            to_schema(&topic, &string).unwrap().kind,
            SchemaKind::Primitive(Primitive::String)
        ));
        let kv = PulsarSchemaInfo {
            version: 0,
            schema_type: "KEY_VALUE".into(),
            data: String::new(),
        };
        assert!(
            to_schema(&topic, &kv)
                .unwrap_err()
                .to_string()
                .contains("KEY_VALUE")
        );
    }
}
