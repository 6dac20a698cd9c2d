//! Pub/Sub topic schemas: a message published to a topic with a schema carries the attributes
//! `googclient_schemaname` (`projects/P/schemas/S`), `googclient_schemarevisionid` and
//! `googclient_schemaencoding` (`JSON` or `BINARY`); the revision is read from the schema
//! service (`GET {endpoint}/v1/{name}@{revision}`) once and turned into a [`Schema`].
//!
//! Google's emulator (measured with 528.0.0) serves the schema service for Avro, validates
//! what is published and stamps the attributes; it answers 501 for Protobuf schemas. There,
//! name the schema in the config instead (`format = "protobuf"` with a file).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::avro::AvroSchema;
use crate::error::SchemaError;
use crate::protobuf::{ProtoFile, ProtoSchema};
use crate::pulsar::{FetchError, get_json};
use crate::schema::{Schema, SchemaId, SchemaKind};

/// Attribute naming the schema.
pub const SCHEMA_NAME: &str = "googclient_schemaname";
/// Attribute naming the schema revision.
pub const SCHEMA_REVISION: &str = "googclient_schemarevisionid";
/// Attribute naming the encoding (`JSON` or `BINARY`).
pub const SCHEMA_ENCODING: &str = "googclient_schemaencoding";

/// A schema revision as the schema service returns it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PubSubSchemaInfo {
    /// `projects/P/schemas/S`.
    pub name: String,
    /// `AVRO` or `PROTOCOL_BUFFER`.
    #[serde(rename = "type")]
    pub schema_type: String,
    /// The definition (Avro JSON or .proto text with one top-level message).
    #[serde(default)]
    pub definition: String,
    /// The revision id.
    #[serde(default)]
    pub revision_id: String,
}

/// Supplies OAuth access tokens for Google's API (not needed by the emulator).
#[async_trait]
pub trait TokenProvider: Send + Sync {
    /// A current access token.
    async fn token(&self) -> Result<String, String>;
}

/// Where Pub/Sub schemas come from.
#[async_trait]
pub trait PubSubSchemaFetcher: Send + Sync {
    /// Revision `revision` of the schema `name` (`projects/P/schemas/S`).
    async fn fetch(&self, name: &str, revision: &str) -> Result<PubSubSchemaInfo, FetchError>;
}

/// Reads schemas from the schema service's REST API (the emulator's, or Google's with a token).
#[derive(Clone)]
pub struct RestSchemaFetcher {
    http: reqwest::Client,
    endpoint: String,
    tokens: Option<Arc<dyn TokenProvider>>,
}

impl std::fmt::Debug for RestSchemaFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestSchemaFetcher")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl RestSchemaFetcher {
    /// A fetcher for `endpoint` (`http://127.0.0.1:8085` for the emulator,
    /// `https://pubsub.googleapis.com` for Google, with a token provider).
    ///
    /// # Errors
    /// [`SchemaError::Config`] for an endpoint that is not http(s).
    pub fn new(
        endpoint: &str,
        tokens: Option<Arc<dyn TokenProvider>>,
    ) -> Result<Self, SchemaError> {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(SchemaError::Config(format!(
                "Pub/Sub schema endpoint {endpoint:?} must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| SchemaError::Config(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            http,
            endpoint,
            tokens,
        })
    }
}

#[async_trait]
impl PubSubSchemaFetcher for RestSchemaFetcher {
    async fn fetch(&self, name: &str, revision: &str) -> Result<PubSubSchemaInfo, FetchError> {
        let url = format!("{}/v1/{name}@{revision}", self.endpoint);
        let mut request = self.http.get(&url);
        if let Some(tokens) = &self.tokens {
            let token = tokens
                .token()
                .await
                .map_err(|e| FetchError::Unavailable(format!("no access token: {e}")))?;
            request = request.bearer_auth(token);
        }
        get_json(request, &url).await
    }
}

/// Turns a fetched revision into a [`Schema`].
///
/// # Errors
/// [`SchemaError::Invalid`] for unknown types or definitions that do not parse.
pub fn to_schema(info: &PubSubSchemaInfo, revision: &str) -> Result<Schema, SchemaError> {
    let id = SchemaId::pubsub(&info.name, revision);
    let what = id.to_string();
    let kind = match info.schema_type.as_str() {
        "AVRO" => SchemaKind::Avro(Arc::new(AvroSchema::parse(&info.definition, &what)?)),
        "PROTOCOL_BUFFER" => {
            let file = "pubsub_schema.proto";
            SchemaKind::Protobuf(Arc::new(ProtoSchema::from_sources(
                &[ProtoFile {
                    name: file.to_owned(),
                    text: info.definition.clone(),
                }],
                file,
                None,
                &what,
            )?))
        }
        other => {
            return Err(SchemaError::invalid(
                &what,
                format!("Pub/Sub schema type {other} is not supported"),
            ));
        }
    };
    Ok(Schema { id, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_become_schemas() {
        let info: PubSubSchemaInfo = serde_json::from_str(
            r#"{"name":"projects/p/schemas/s","type":"AVRO","definition":"{\"type\":\"record\",\"name\":\"O\",\"fields\":[{\"name\":\"id\",\"type\":\"string\"}]}","revisionId":"ab","revisionCreateTime":"1970-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let schema = to_schema(&info, "ab").unwrap();
        assert_eq!(schema.id.as_str(), "pubsub:projects/p/schemas/s@ab");
        let proto = PubSubSchemaInfo {
            name: "projects/p/schemas/q".into(),
            schema_type: "PROTOCOL_BUFFER".into(),
            definition: "syntax = \"proto3\"; message M { string a = 1; }".into(),
            revision_id: "r".into(),
        };
        match to_schema(&proto, "r").unwrap().kind {
            SchemaKind::Protobuf(p) => assert_eq!(p.full_name(), "M"),
            other => panic!("{other:?}"),
        }
    }
}
