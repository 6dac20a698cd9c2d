//! A thin client of the Confluent Schema Registry REST API (Confluent's registry, Apicurio's
//! `/apis/ccompat/v7`, Redpanda, Karapace): register, look up, fetch by id, subject config.
//!
//! Errors are sorted for the pipeline: a 4xx answer is the registry's verdict
//! ([`RegistryError::Refused`], e.g. 409 "incompatible", 422 "invalid schema", 404 "not
//! found"), kept verbatim; anything else (connection, timeout, 5xx, 429, an unreadable body) is
//! [`RegistryError::Unavailable`] and worth retrying.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

use crate::config::{RegistryConfig, Secret};
use crate::error::SchemaError;

const CONTENT: &str = "application/vnd.schemaregistry.v1+json";

/// The schema types of the Confluent API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    /// Avro (the API's default when `schemaType` is absent).
    #[default]
    Avro,
    /// Protobuf (.proto text).
    Protobuf,
    /// JSON Schema.
    Json,
}

impl SchemaType {
    fn is_avro(&self) -> bool {
        *self == SchemaType::Avro
    }
}

/// A reference from one schema to another registered one (Protobuf imports, Avro named types).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaReference {
    /// The name the referring schema uses (the import path for Protobuf).
    pub name: String,
    /// The subject it is registered under.
    pub subject: String,
    /// Its version in that subject.
    pub version: i32,
}

/// A schema as sent to or received from the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaDocument {
    /// The schema text.
    pub schema: String,
    /// Its type.
    #[serde(
        rename = "schemaType",
        default,
        skip_serializing_if = "SchemaType::is_avro"
    )]
    pub schema_type: SchemaType,
    /// Other registered schemas it refers to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<SchemaReference>,
}

/// A registered schema with where it is registered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RegisteredSchema {
    /// Its global id (what the wire format carries).
    pub id: u32,
    /// The subject (when asked by subject).
    #[serde(default)]
    pub subject: Option<String>,
    /// The version in that subject (when asked by subject).
    #[serde(default)]
    pub version: Option<i32>,
    /// The schema.
    #[serde(flatten)]
    pub document: SchemaDocument,
}

/// Why the registry did not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with a refusal (4xx other than 429): its message, verbatim.
    #[error("HTTP {status}, error code {code}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Confluent error code (e.g. 409 incompatible, 42201 invalid schema, 40403 not found).
        code: i64,
        /// The registry's message.
        message: String,
    },
    /// The registry could not be asked (connection, timeout, 5xx, 429, unreadable answer).
    #[error("{0}")]
    Unavailable(String),
}

impl RegistryError {
    /// A 404: no such subject, version or schema.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::Refused { status: 404, .. })
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct IdBody {
    id: u32,
}

#[derive(Deserialize)]
struct CompatibilityBody {
    is_compatible: bool,
}

#[derive(Clone)]
enum Auth {
    Basic(String, Secret),
    Bearer(Secret),
}

/// A Confluent-compatible Schema Registry client. Cheap to clone.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    auth: Option<Auth>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn encode_path(segment: &str) -> String {
    // Subjects may hold '/', ':', '.', spaces (file-name subjects of Protobuf references).
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl RegistryClient {
    /// A client for the registry at `config.url` (the Confluent API's base, e.g.
    /// `http://127.0.0.1:8081/apis/ccompat/v7` for Apicurio).
    ///
    /// # Errors
    /// [`SchemaError::Config`] for a URL that is not http(s) or an HTTP client that cannot be
    /// built.
    pub fn new(config: &RegistryConfig) -> Result<Self, SchemaError> {
        let base = config.url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(SchemaError::Config(format!(
                "registry url {base:?} must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms.min(5_000)))
            .build()
            .map_err(|e| SchemaError::Config(format!("cannot build the registry client: {e}")))?;
        let auth = match (&config.username, &config.password, &config.token) {
            (Some(user), password, None) => Some(Auth::Basic(
                user.clone(),
                password.clone().unwrap_or_default(),
            )),
            (None, None, Some(token)) => Some(Auth::Bearer(token.clone())),
            (None, None, None) => None,
            _ => {
                return Err(SchemaError::Config(
                    "registry: give username (+ password) or token, not both".to_owned(),
                ));
            }
        };
        Ok(Self { http, base, auth })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Vec<u8>, RegistryError> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .header(ACCEPT, CONTENT);
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, CONTENT).body(body);
        }
        request = match &self.auth {
            Some(Auth::Basic(user, password)) => request.basic_auth(user, Some(password.expose())),
            Some(Auth::Bearer(token)) => request.bearer_auth(token.expose()),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| RegistryError::Unavailable(format!("{method} {url}: {e}")))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| RegistryError::Unavailable(format!("{method} {url}: {e}")))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let text = String::from_utf8_lossy(&bytes);
        if status.is_client_error() && status.as_u16() != 429 {
            let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or(ErrorBody {
                error_code: i64::from(status.as_u16()),
                message: text.trim().to_owned(),
            });
            Err(RegistryError::Refused {
                status: status.as_u16(),
                code: body.error_code,
                message: body.message,
            })
        } else {
            Err(RegistryError::Unavailable(format!(
                "{method} {url}: HTTP {status}: {}",
                text.trim()
            )))
        }
    }

    fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, RegistryError> {
        serde_json::from_slice(bytes).map_err(|e| {
            RegistryError::Unavailable(format!(
                "unexpected answer to {what}: {e}: {}",
                String::from_utf8_lossy(bytes)
            ))
        })
    }

    /// Registers `schema` under `subject` (a no-op returning the existing id when it is already
    /// there). The registry checks it against the subject's compatibility level.
    ///
    /// # Errors
    /// [`RegistryError::Refused`] with the registry's reason (409 incompatible, 422 invalid).
    pub async fn register(
        &self,
        subject: &str,
        schema: &SchemaDocument,
    ) -> Result<u32, RegistryError> {
        let body = serde_json::to_string(schema).expect("a schema document serializes");
        let answer = self
            .call(
                reqwest::Method::POST,
                &format!("/subjects/{}/versions", encode_path(subject)),
                Some(body),
            )
            .await?;
        Ok(Self::parse::<IdBody>(&answer, "register")?.id)
    }

    /// Finds `schema` among the versions of `subject`; `None` when it is not registered there.
    ///
    /// # Errors
    /// [`RegistryError`] other than "not found".
    pub async fn lookup(
        &self,
        subject: &str,
        schema: &SchemaDocument,
    ) -> Result<Option<RegisteredSchema>, RegistryError> {
        let body = serde_json::to_string(schema).expect("a schema document serializes");
        match self
            .call(
                reqwest::Method::POST,
                &format!("/subjects/{}", encode_path(subject)),
                Some(body),
            )
            .await
        {
            Ok(answer) => Ok(Some(Self::parse(&answer, "lookup")?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A version of a subject (`"latest"` or a number); `None` when there is none.
    ///
    /// # Errors
    /// [`RegistryError`] other than "not found".
    pub async fn version(
        &self,
        subject: &str,
        version: &str,
    ) -> Result<Option<RegisteredSchema>, RegistryError> {
        match self
            .call(
                reqwest::Method::GET,
                &format!("/subjects/{}/versions/{version}", encode_path(subject)),
                None,
            )
            .await
        {
            Ok(answer) => Ok(Some(Self::parse(&answer, "get version")?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The schema with global id `id`; `None` when there is none.
    ///
    /// # Errors
    /// [`RegistryError`] other than "not found".
    pub async fn schema_by_id(&self, id: u32) -> Result<Option<SchemaDocument>, RegistryError> {
        match self
            .call(reqwest::Method::GET, &format!("/schemas/ids/{id}"), None)
            .await
        {
            Ok(answer) => Ok(Some(Self::parse(&answer, "get schema by id")?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets a subject's compatibility level (`BACKWARD`, `FORWARD`, `FULL`, `NONE`, and the
    /// `_TRANSITIVE` forms).
    ///
    /// # Errors
    /// [`RegistryError`].
    pub async fn set_compatibility(&self, subject: &str, level: &str) -> Result<(), RegistryError> {
        let body = serde_json::json!({ "compatibility": level }).to_string();
        self.call(
            reqwest::Method::PUT,
            &format!("/config/{}", encode_path(subject)),
            Some(body),
        )
        .await
        .map(drop)
    }

    /// Whether `schema` is compatible with the subject's latest version under its level.
    ///
    /// # Errors
    /// [`RegistryError`].
    pub async fn is_compatible(
        &self,
        subject: &str,
        schema: &SchemaDocument,
    ) -> Result<bool, RegistryError> {
        let body = serde_json::to_string(schema).expect("a schema document serializes");
        let answer = self
            .call(
                reqwest::Method::POST,
                &format!(
                    "/compatibility/subjects/{}/versions/latest",
                    encode_path(subject)
                ),
                Some(body),
            )
            .await?;
        Ok(Self::parse::<CompatibilityBody>(&answer, "compatibility check")?.is_compatible)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_serialize_as_the_api_wants() {
        let avro = SchemaDocument {
            schema: "\"string\"".into(),
            schema_type: SchemaType::Avro,
            references: vec![],
        };
        assert_eq!(
            serde_json::to_string(&avro).unwrap(),
            r#"{"schema":"\"string\""}"#
        );
        let proto = SchemaDocument {
            schema: "syntax = \"proto3\";".into(),
            schema_type: SchemaType::Protobuf,
            references: vec![SchemaReference {
                name: "a/b.proto".into(),
                subject: "a/b.proto".into(),
                version: 1,
            }],
        };
        assert_eq!(
            serde_json::to_string(&proto).unwrap(),
            r#"{"schema":"syntax = \"proto3\";","schemaType":"PROTOBUF","references":[{"name":"a/b.proto","subject":"a/b.proto","version":1}]}"#
        );
        let got: RegisteredSchema = serde_json::from_str(
            r#"{"subject":"s","version":2,"id":5,"schema":"x","schemaType":"JSON"}"#,
        )
        .unwrap();
        assert_eq!(got.id, 5);
        assert_eq!(got.document.schema_type, SchemaType::Json);
    }

    #[test]
    fn subjects_are_escaped_in_paths() {
        assert_eq!(encode_path("orders-value"), "orders-value");
        assert_eq!(encode_path("a/b c.proto"), "a%2Fb%20c.proto");
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_unavailable_not_refused() {
        let config = RegistryConfig {
            url: "http://127.0.0.1:1".into(),
            ..RegistryConfig::default()
        };
        let client = RegistryClient::new(&config).unwrap();
        let e = client.schema_by_id(1).await.unwrap_err();
        assert!(matches!(e, RegistryError::Unavailable(_)), "{e:?}");
    }

    #[test]
    fn urls_and_auth_are_checked() {
        let bad = RegistryConfig {
            url: "127.0.0.1:8081".into(),
            ..RegistryConfig::default()
        };
        assert!(RegistryClient::new(&bad).is_err());
        let both = RegistryConfig {
            url: "http://x".into(),
            username: Some("u".into()),
            token: Some(Secret::new("t")),
            ..RegistryConfig::default()
        };
        assert!(RegistryClient::new(&both).is_err());
    }
}
