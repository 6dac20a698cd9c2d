//! JSON Schema documents (Confluent's `JSON` schema type): parsed once, validated per record.

use serde_json::Value as Json;

use crate::error::{SchemaError, Segment, ValueError};

/// A compiled JSON Schema and its text.
pub struct JsonSchemaDoc {
    text: String,
    title: Option<String>,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for JsonSchemaDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonSchemaDoc")
            .field("title", &self.title)
            .finish_non_exhaustive()
    }
}

impl JsonSchemaDoc {
    /// Compiles a JSON Schema (draft 4 to 2020-12, by its `$schema`; 2020-12 when absent).
    /// Remote `$ref`s are not fetched.
    ///
    /// # Errors
    /// [`SchemaError::Invalid`] when the text is not JSON or not a valid schema.
    pub fn parse(text: &str, what: &str) -> Result<Self, SchemaError> {
        let json: Json = serde_json::from_str(text).map_err(|e| SchemaError::invalid(what, e))?;
        let validator =
            jsonschema::validator_for(&json).map_err(|e| SchemaError::invalid(what, e))?;
        let title = json.get("title").and_then(Json::as_str).map(str::to_owned);
        Ok(Self {
            text: text.to_owned(),
            title,
            validator,
        })
    }

    /// The schema as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The schema's `title`: what the record-name subject strategies use.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// Checks a value against the schema.
    ///
    /// # Errors
    /// [`ValueError`] with the first violation and where it is.
    pub fn validate(&self, json: &Json) -> Result<(), ValueError> {
        self.validator.validate(json).map_err(|e| {
            let pointer = e.instance_path().to_string();
            let mut error = ValueError::new(e.to_string());
            // The JSON pointer (/a/0/b), outermost first; ValueError wants innermost first.
            for part in pointer
                .split('/')
                .skip(1)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                let part = part.replace("~1", "/").replace("~0", "~");
                error = match part.parse::<usize>() {
                    Ok(i) => error.at(Segment::Index(i)),
                    Err(_) => error.at(Segment::Field(part)),
                };
            }
            error
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_name_the_place() {
        let doc = JsonSchemaDoc::parse(
            r#"{"title":"Order","type":"object","properties":{"items":{"type":"array","items":{"type":"object","properties":{"qty":{"type":"integer"}}}}},"additionalProperties":false}"#,
            "test",
        )
        .unwrap();
        assert_eq!(doc.title(), Some("Order"));
        doc.validate(&serde_json::json!({"items":[{"qty":1}]}))
            .unwrap();
        let e = doc
            .validate(&serde_json::json!({"items":[{"qty":1},{"qty":"x"}]}))
            .unwrap_err();
        assert_eq!(e.path().to_string(), "$.items[1].qty");
        assert!(e.reason().contains("integer"), "{}", e.reason());
        let e = doc.validate(&serde_json::json!({"other":1})).unwrap_err();
        assert!(e.reason().contains("other"), "{}", e.reason());
    }

    #[test]
    fn bad_schemas_are_refused() {
        assert!(JsonSchemaDoc::parse("{", "x").is_err());
        assert!(JsonSchemaDoc::parse(r#"{"type":"nonsense"}"#, "x").is_err());
    }
}
