use super::*;

fn encoder(text: &str) -> Result<Encoder, SchemaError> {
    let config: EncodeConfig = toml::from_str(text).unwrap();
    Encoder::new(&config, None)
}

const REGISTRY: &str = "registry = { url = \"http://127.0.0.1:1\", timeout_ms = 500 }\n";

#[tokio::test]
async fn raw_and_json_pass_bytes_through_borrowed() {
    let e = encoder("").unwrap();
    assert!(e.is_passthrough());
    let out = e
        .encode("t", Some(b"k"), Some(b"\xff"), None)
        .await
        .unwrap();
    assert!(matches!(out.value, Some(Cow::Borrowed(b"\xff"))));
    let json = encoder("value = { format = \"json\" }").unwrap();
    assert!(!json.is_passthrough());
    let out = json
        .encode("t", None, Some(br#"{"a":1}"#), None)
        .await
        .unwrap();
    assert!(matches!(out.value, Some(Cow::Borrowed(_))));
    let err = json.encode("t", None, Some(b"{"), None).await.unwrap_err();
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains("t value") && err.to_string().contains("not JSON"),
        "{err}"
    );
}

#[tokio::test]
async fn tombstones_stay_null_in_every_format() {
    let e = encoder(&format!(
        "{REGISTRY}value = {{ format = \"avro\", schema = '\"string\"' }}"
    ))
    .unwrap();
    let out = e.encode("t", None, None, None).await.unwrap();
    assert_eq!(out.value, None);
}

#[tokio::test]
async fn an_unreachable_registry_is_transient_and_retried() {
    let e = encoder(&format!(
        "{REGISTRY}value = {{ format = \"avro\", schema = '\"string\"' }}"
    ))
    .unwrap();
    for _ in 0..2 {
        let err = e
            .encode("t", None, Some(br#""x""#), None)
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(
            matches!(err, EncodeError::Unavailable { ref subject, .. } if subject == "t-value")
        );
    }
    // Not cached as a failure.
    assert!(e.value.cache.read().unwrap().is_empty());
}

#[tokio::test]
async fn from_source_without_a_fitting_source_schema_is_a_record_error() {
    let e = encoder(&format!(
        "{REGISTRY}value = {{ format = \"avro\", from_source = true }}"
    ))
    .unwrap();
    assert!(e.needs_source_schema());
    let err = e.encode("t", None, Some(b"{}"), None).await.unwrap_err();
    assert!(matches!(err, EncodeError::NoSchema { .. }), "{err}");
    assert!(!err.is_transient());
    let proto = Arc::new(Schema {
        id: SchemaId::config("p"),
        kind: SchemaKind::Protobuf(Arc::new(
            ProtoSchema::from_sources(
                &[ProtoFile {
                    name: "a.proto".into(),
                    text: "syntax = \"proto3\"; message A {}".into(),
                }],
                "a.proto",
                None,
                "t",
            )
            .unwrap(),
        )),
    });
    let err = e
        .encode("t", None, Some(b"{}"), Some(&proto))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("PROTOBUF source schema cannot be written as Avro"),
        "{err}"
    );
}

#[test]
fn configs_that_cannot_work_are_refused_at_load() {
    for text in [
        "value = { format = \"avro\", schema = '\"string\"' }".to_owned(),
        format!("{REGISTRY}value = {{ format = \"avro\" }}"),
        format!(
            "{REGISTRY}value = {{ format = \"avro\", schema = '\"string\"', from_source = true }}"
        ),
        format!(
            "{REGISTRY}value = {{ format = \"avro\", use_latest = true, subject_strategy = \"record\" }}"
        ),
        format!(
            "{REGISTRY}value = {{ format = \"avro\", schema = '\"string\"', message = \"M\" }}"
        ),
        format!("{REGISTRY}value = {{ format = \"raw\", from_source = true }}"),
        format!("{REGISTRY}value = {{ format = \"avro\", schema = '{{\"type\":\"nope\"}}' }}"),
        format!(
            "{REGISTRY}value = {{ format = \"protobuf\", schema = 'syntax = \"proto3\"; message M {{ nope x = 1; }}' }}"
        ),
        format!("{REGISTRY}value = {{ format = \"json_schema\", schema = '{{\"type\":7}}' }}"),
        format!("{REGISTRY}value = {{ format = \"avro\", schema_file = \"/no/such/file.avsc\" }}"),
        "registry = { url = \"localhost:8081\" }".to_owned(),
        format!("{REGISTRY}key = {{ format = \"avro\", from_source = true }}"),
    ] {
        assert!(encoder(&text).is_err(), "{text}");
    }
}

#[test]
fn subjects_follow_the_strategy() {
    let avro = SchemaKind::Avro(Arc::new(
        AvroSchema::parse(
            r#"{"type":"record","name":"Order","namespace":"shop","fields":[]}"#,
            "t",
        )
        .unwrap(),
    ));
    let part = |strategy: &str| {
        let e = encoder(&format!(
            "{REGISTRY}key = {{ format = \"avro\", schema = '\"string\"', subject_strategy = \"{strategy}\" }}"
        ))
        .unwrap();
        e.key.subject("orders", &avro).unwrap()
    };
    assert_eq!(part("topic"), "orders-key");
    assert_eq!(part("record"), "shop.Order");
    assert_eq!(part("topic_record"), "orders-shop.Order");
    let e = encoder(&format!(
        "{REGISTRY}value = {{ format = \"avro\", from_source = true, subject_strategy = \"record\" }}"
    ))
    .unwrap();
    let unnamed = SchemaKind::Avro(Arc::new(AvroSchema::parse("\"string\"", "t").unwrap()));
    assert!(e.value.subject("orders", &unnamed).is_err());
}
