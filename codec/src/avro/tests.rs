use apache_avro::types::Value;
use serde_json::json;

use super::*;

fn schema(text: &str) -> AvroSchema {
    AvroSchema::parse(text, "test").unwrap()
}

fn decode(s: &AvroSchema, bytes: &[u8]) -> Json {
    let mut out = Vec::new();
    s.decode_to_json(bytes, &mut out).unwrap();
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
}

fn encode(s: &AvroSchema, json: &Json) -> Vec<u8> {
    let mut out = Vec::new();
    s.encode_json(json, &mut out).unwrap();
    out
}

fn encode_err(s: &AvroSchema, json: &Json) -> ValueError {
    let mut out = Vec::new();
    s.encode_json(json, &mut out).unwrap_err()
}

/// apache-avro's own writer: what a Java/Python producer would have written.
#[allow(
    deprecated,
    reason = "the simplest reference writer; its replacement needs more setup"
)]
fn reference_datum(s: &AvroSchema, value: Value) -> Vec<u8> {
    apache_avro::to_avro_datum(s.schema(), value).unwrap()
}

const ORDER: &str = r#"{
  "type": "record", "name": "Order", "namespace": "shop",
  "fields": [
    {"name": "id", "type": "string"},
    {"name": "qty", "type": "int"},
    {"name": "total", "type": "long"},
    {"name": "ok", "type": "boolean"},
    {"name": "ratio", "type": "float"},
    {"name": "price", "type": "double"},
    {"name": "blob", "type": "bytes"},
    {"name": "note", "type": ["null", "string"], "default": null},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": "long"}},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
    {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
    {"name": "line", "type": {"type": "record", "name": "Line", "fields": [
        {"name": "sku", "type": "string"}, {"name": "next", "type": ["null", "Line"], "default": null}]}}
  ]
}"#;

#[test]
fn every_type_decodes_what_apache_avro_writes() {
    let s = schema(ORDER);
    let value = Value::Record(vec![
        ("id".into(), Value::String("o-1".into())),
        ("qty".into(), Value::Int(-3)),
        ("total".into(), Value::Long(9_007_199_254_740_993)),
        ("ok".into(), Value::Boolean(true)),
        ("ratio".into(), Value::Float(0.25)),
        ("price".into(), Value::Double(12.5)),
        ("blob".into(), Value::Bytes(vec![0, 1, 254, 255])),
        (
            "note".into(),
            Value::Union(1, Box::new(Value::String("hi".into()))),
        ),
        (
            "tags".into(),
            Value::Array(vec![Value::String("a".into()), Value::String("b".into())]),
        ),
        (
            "attrs".into(),
            Value::Map([("k".to_owned(), Value::Long(7))].into()),
        ),
        ("status".into(), Value::Enum(1, "PAID".into())),
        ("hash".into(), Value::Fixed(4, vec![1, 2, 3, 4])),
        (
            "line".into(),
            Value::Record(vec![
                ("sku".into(), Value::String("A".into())),
                (
                    "next".into(),
                    Value::Union(
                        1,
                        Box::new(Value::Record(vec![
                            ("sku".into(), Value::String("B".into())),
                            ("next".into(), Value::Union(0, Box::new(Value::Null))),
                        ])),
                    ),
                ),
            ]),
        ),
    ]);
    let bytes = reference_datum(&s, value);
    let expected = json!({
        "id": "o-1", "qty": -3, "total": 9_007_199_254_740_993_i64, "ok": true, "ratio": 0.25,
        "price": 12.5, "blob": "AAH+/w==", "note": "hi", "tags": ["a", "b"], "attrs": {"k": 7},
        "status": "PAID", "hash": "AQIDBA==",
        "line": {"sku": "A", "next": {"sku": "B", "next": null}}
    });
    assert_eq!(decode(&s, &bytes), expected);
    // And back: the same bytes apache-avro wrote.
    assert_eq!(encode(&s, &expected), bytes);
}

#[test]
fn fields_keep_schema_order_in_the_json_text() {
    let s = schema(
        r#"{"type":"record","name":"R","fields":[{"name":"z","type":"int"},{"name":"a","type":"int"}]}"#,
    );
    let mut out = Vec::new();
    s.decode_to_json(&[2, 4], &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), r#"{"z":1,"a":2}"#);
}

#[test]
fn unions_with_several_branches_are_wrapped_by_branch_name() {
    let s = schema(
        r#"{"type":"record","name":"R","namespace":"n","fields":[{"name":"u","type":["null","int","string",{"type":"record","name":"P","fields":[{"name":"x","type":"int"}]}]}]}"#,
    );
    for (value, expected) in [
        (Value::Union(0, Box::new(Value::Null)), json!({"u": null})),
        (
            Value::Union(1, Box::new(Value::Int(5))),
            json!({"u": {"int": 5}}),
        ),
        (
            Value::Union(2, Box::new(Value::String("s".into()))),
            json!({"u": {"string": "s"}}),
        ),
        (
            Value::Union(
                3,
                Box::new(Value::Record(vec![("x".into(), Value::Int(1))])),
            ),
            json!({"u": {"n.P": {"x": 1}}}),
        ),
    ] {
        let bytes = reference_datum(&s, Value::Record(vec![("u".into(), value)]));
        assert_eq!(decode(&s, &bytes), expected);
        assert_eq!(encode(&s, &expected), bytes, "{expected}");
    }
    // Bare values find their branch; the short name of a named type is accepted too.
    assert_eq!(
        encode(&s, &json!({"u": 5})),
        encode(&s, &json!({"u": {"int": 5}}))
    );
    assert_eq!(
        encode(&s, &json!({"u": "s"})),
        encode(&s, &json!({"u": {"string": "s"}}))
    );
    assert_eq!(
        encode(&s, &json!({"u": {"P": {"x": 1}}})),
        encode(&s, &json!({"u": {"x": 1}}))
    );
    let e = encode_err(&s, &json!({"u": true}));
    assert_eq!(e.path().to_string(), "$.u");
    assert!(e.reason().contains("fits no branch"), "{}", e.reason());
}

#[test]
fn optional_unions_are_unwrapped_either_order() {
    let s = schema(
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":["null","long"]},{"name":"b","type":["string","null"]}]}"#,
    );
    let bytes = encode(&s, &json!({"a": 3, "b": null}));
    assert_eq!(decode(&s, &bytes), json!({"a": 3, "b": null}));
    // Avro's JSON encoding ({"long": 3}) is understood too (Pub/Sub's JSON encoding).
    assert_eq!(
        encode(&s, &json!({"a": {"long": 3}, "b": {"null": null}})),
        bytes
    );
}

#[test]
fn logical_types() {
    let s = schema(
        r#"{"type":"record","name":"L","fields":[
        {"name":"d","type":{"type":"int","logicalType":"date"}},
        {"name":"tm","type":{"type":"int","logicalType":"time-millis"}},
        {"name":"tu","type":{"type":"long","logicalType":"time-micros"}},
        {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"tsu","type":{"type":"long","logicalType":"timestamp-micros"}},
        {"name":"tsn","type":{"type":"long","logicalType":"timestamp-nanos"}},
        {"name":"lts","type":{"type":"long","logicalType":"local-timestamp-millis"}},
        {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":6,"scale":2}},
        {"name":"decf","type":{"type":"fixed","name":"F","size":3,"logicalType":"decimal","precision":6,"scale":3}},
        {"name":"id","type":{"type":"string","logicalType":"uuid"}},
        {"name":"dur","type":{"type":"fixed","name":"D","size":12,"logicalType":"duration"}}
    ]}"#,
    );
    let value = Value::Record(vec![
        ("d".into(), Value::Date(19_753)),
        ("tm".into(), Value::TimeMillis(45_296_789)),
        ("tu".into(), Value::TimeMicros(45_296_789_012)),
        ("ts".into(), Value::TimestampMillis(1_706_704_496_789)),
        ("tsu".into(), Value::TimestampMicros(1_706_704_496_789_012)),
        ("tsn".into(), Value::TimestampNanos(-1)),
        ("lts".into(), Value::LocalTimestampMillis(0)),
        (
            "dec".into(),
            Value::Decimal(apache_avro::Decimal::from(
                (-1230i64).to_be_bytes().to_vec(),
            )),
        ),
        (
            "decf".into(),
            Value::Decimal(apache_avro::Decimal::from(vec![0u8, 0x30, 0x39])),
        ),
        (
            "id".into(),
            Value::Uuid("6ba7b810-9dad-11d1-80b4-00c04fd430c8".parse().unwrap()),
        ),
        (
            "dur".into(),
            Value::Duration(apache_avro::Duration::new(
                apache_avro::Months::new(1),
                apache_avro::Days::new(2),
                apache_avro::Millis::new(3),
            )),
        ),
    ]);
    let bytes = reference_datum(&s, value);
    let expected = json!({
        "d": "2024-01-31", "tm": "12:34:56.789", "tu": "12:34:56.789012",
        "ts": "2024-01-31T12:34:56.789Z", "tsu": "2024-01-31T12:34:56.789012Z",
        "tsn": "1969-12-31T23:59:59.999999999Z", "lts": "1970-01-01T00:00:00.000",
        "dec": "-12.30", "decf": "12.345", "id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "dur": {"months": 1, "days": 2, "milliseconds": 3}
    });
    assert_eq!(decode(&s, &bytes), expected);
    // Our writer may pick a shorter two's complement for the bytes decimal: compare meaning.
    assert_eq!(decode(&s, &encode(&s, &expected)), expected);
    // Alternatives accepted on input: counts for dates/times, numbers for decimals, offsets.
    let alternative = json!({
        "d": 19_753, "tm": 45_296_789, "tu": "45296789012", "ts": "2024-01-31T13:34:56.789+01:00",
        "tsu": 1_706_704_496_789_012_i64, "tsn": -1, "lts": "1970-01-01T00:00:00",
        "dec": -12.3, "decf": "12.345", "id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "dur": {"months": 1, "days": 2, "milliseconds": 3}
    });
    assert_eq!(decode(&s, &encode(&s, &alternative)), expected);
}

#[test]
fn decimals_are_never_rounded_and_respect_precision() {
    let s = schema(r#"{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}"#);
    assert!(
        encode_err(&s, &json!("1.234"))
            .reason()
            .contains("fraction digits")
    );
    assert!(
        encode_err(&s, &json!("123.45"))
            .reason()
            .contains("precision")
    );
    assert!(encode_err(&s, &json!("1e3")).reason().contains("exponent"));
    assert!(
        encode_err(&s, &json!("abc"))
            .reason()
            .contains("not a decimal")
    );
    assert_eq!(decode(&s, &encode(&s, &json!("-0.05"))), json!("-0.05"));
    assert_eq!(decode(&s, &encode(&s, &json!("12.10"))), json!("12.10"));
    assert_eq!(decode(&s, &encode(&s, &json!(0))), json!("0.00"));
    let fixed = schema(
        r#"{"type":"fixed","name":"F","size":1,"logicalType":"decimal","precision":2,"scale":0}"#,
    );
    assert_eq!(encode(&fixed, &json!("-1")), [0xff]);
    assert_eq!(decode(&fixed, &[0x80]), json!("-128"));
}

#[test]
fn floats_special_values_are_strings() {
    let s = schema(r#"{"type":"array","items":"double"}"#);
    let json = json!(["NaN", "Infinity", "-Infinity", 1.5]);
    let bytes = encode(&s, &json);
    assert_eq!(decode(&s, &bytes), json);
    let f = schema(r#""float""#);
    assert_eq!(decode(&f, &encode(&f, &json!(0.1))), json!(0.1));
}

#[test]
fn defaults_fill_missing_fields_and_unknown_fields_are_refused() {
    let s = schema(
        r#"{"type":"record","name":"R","fields":[
        {"name":"a","type":"string"},
        {"name":"b","type":"int","default":7},
        {"name":"c","type":["null","string"]},
        {"name":"d","type":["string","null"],"default":"x"},
        {"name":"e","type":"bytes","default":"\u00ff"}
    ]}"#,
    );
    assert_eq!(
        decode(&s, &encode(&s, &json!({"a": "v"}))),
        json!({"a": "v", "b": 7, "c": null, "d": "x", "e": "/w=="})
    );
    let e = encode_err(&s, &json!({}));
    assert_eq!(e.path().to_string(), "$.a");
    assert!(e.reason().contains("missing"), "{}", e.reason());
    let e = encode_err(&s, &json!({"a": "v", "zz": 1}));
    assert!(
        e.reason().contains("zz") && e.reason().contains("not in record R"),
        "{}",
        e.reason()
    );
}

#[test]
fn encode_errors_name_the_nested_field() {
    let s = schema(ORDER);
    let mut good = json!({
        "id": "o", "qty": 1, "total": 2, "ok": false, "ratio": 1, "price": 2, "blob": "",
        "tags": [], "attrs": {}, "status": "NEW", "hash": "AAAAAA==",
        "line": {"sku": "A", "next": {"sku": "B"}}
    });
    encode(&s, &good);
    good["line"]["next"]["sku"] = json!(5);
    let e = encode_err(&s, &good);
    assert_eq!(e.path().to_string(), "$.line.next.sku");
    assert_eq!(e.reason(), "expected a string, got a number");
    good["line"]["next"]["sku"] = json!("B");
    good["tags"] = json!(["a", 1]);
    assert_eq!(encode_err(&s, &good).path().to_string(), "$.tags[1]");
    good["tags"] = json!([]);
    good["attrs"] = json!({"k": "x"});
    assert_eq!(encode_err(&s, &good).path().to_string(), "$.attrs[\"k\"]");
    good["attrs"] = json!({});
    good["status"] = json!("LOST");
    assert!(
        encode_err(&s, &good)
            .reason()
            .contains("not a symbol of enum shop.Status")
    );
    good["status"] = json!("NEW");
    good["qty"] = json!(1u64 << 40);
    assert!(
        encode_err(&s, &good)
            .reason()
            .contains("does not fit an Avro int")
    );
    good["qty"] = json!(1);
    good["hash"] = json!("AAA=");
    assert!(encode_err(&s, &good).reason().contains("needs 4 bytes"));
}

#[test]
fn malformed_bytes_are_errors_with_apache_avros_reason() {
    let s = schema(ORDER);
    let mut out = Vec::new();
    // Truncated: the string length says 10, 2 bytes follow.
    let e = s.decode_to_json(&[20, b'a', b'b'], &mut out).unwrap_err();
    assert!(
        e.reason().starts_with("not an Avro datum of this schema: "),
        "{}",
        e.reason()
    );
    // Cut short before a string, a boolean or a union index: apache-avro alone would read
    // null there.
    let cut = schema(
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"n","type":["null","string"]}]}"#,
    );
    let e = cut.decode_to_json(&[2], &mut out).unwrap_err();
    assert!(e.reason().contains("end inside"), "{}", e.reason());
    assert!(schema(r#""string""#).decode_to_json(&[], &mut out).is_err());
    assert!(
        schema(r#""boolean""#)
            .decode_to_json(&[], &mut out)
            .is_err()
    );
    // Trailing bytes.
    let int = schema(r#""int""#);
    assert!(
        int.decode_to_json(&[2, 0], &mut out)
            .unwrap_err()
            .reason()
            .contains("trailing")
    );
    // Boolean out of range, enum index out of range, union branch out of range.
    assert!(
        schema(r#""boolean""#)
            .decode_to_json(&[2], &mut out)
            .is_err()
    );
    assert!(
        schema(r#"{"type":"enum","name":"E","symbols":["A"]}"#)
            .decode_to_json(&[2], &mut out)
            .is_err()
    );
    assert!(
        schema(r#"["null","int"]"#)
            .decode_to_json(&[4], &mut out)
            .is_err()
    );
    // Invalid UTF-8 in a string, an endless varint, a negative length.
    assert!(
        schema(r#""string""#)
            .decode_to_json(&[2, 0xff], &mut out)
            .is_err()
    );
    assert!(int.decode_to_json(&[0xff; 11], &mut out).is_err());
    assert!(schema(r#""bytes""#).decode_to_json(&[1], &mut out).is_err());
}

#[test]
fn hostile_block_counts_and_recursion_are_bounded() {
    let s = schema(r#"{"type":"array","items":{"type":"record","name":"E","fields":[]}}"#);
    let mut out = Vec::new();
    // A block of 2^62 empty records in 10 bytes.
    let mut bytes = Vec::new();
    write_long(&mut bytes, 1 << 62);
    assert!(s.decode_to_json(&bytes, &mut out).is_err());
    // 4,000 levels of a recursive record in 4 KB: apache-avro reads them on a thread with
    // room for them, the JSON writer refuses them; a longer payload of it is refused.
    let list =
        schema(r#"{"type":"record","name":"N","fields":[{"name":"n","type":["null","N"]}]}"#);
    let mut deep = vec![2u8; 4000];
    deep.push(0);
    assert!(
        list.decode_to_json(&deep, &mut out)
            .unwrap_err()
            .reason()
            .contains("deeper")
    );
    let longer = vec![2u8; 5 << 10];
    assert!(
        list.decode_to_json(&longer, &mut out)
            .unwrap_err()
            .reason()
            .contains("recursive schema")
    );
}

#[test]
fn negative_block_counts_with_sizes_are_read() {
    let s = schema(r#"{"type":"array","items":"int"}"#);
    // Block of -2 items, 2 bytes, items 1 and 2, then the end.
    assert_eq!(decode(&s, &[3, 4, 2, 4, 0]), json!([1, 2]));
}

#[test]
fn names_canonical_form_and_references() {
    let s = schema(ORDER);
    assert_eq!(s.name(), Some("shop.Order"));
    assert!(s.canonical_form().starts_with(r#"{"name":"shop.Order""#));
    assert_eq!(schema(r#""string""#).name(), None);
    let referenced = r#"{"type":"record","name":"Money","namespace":"m","fields":[{"name":"cents","type":"long"}]}"#;
    let s = AvroSchema::parse_with_references(
        r#"{"type":"record","name":"Pay","fields":[{"name":"amount","type":"m.Money"}]}"#,
        &[referenced.to_owned()],
        "test",
    )
    .unwrap();
    assert_eq!(
        decode(&s, &encode(&s, &json!({"amount": {"cents": 5}}))),
        json!({"amount": {"cents": 5}})
    );
}

#[test]
fn normalize_turns_avro_json_encoding_into_the_mapping() {
    let s = schema(
        r#"{"type":"record","name":"R","fields":[{"name":"n","type":["null","string"]},{"name":"b","type":"bytes"}]}"#,
    );
    let mut out = Vec::new();
    s.normalize_json(&json!({"n": {"string": "x"}, "b": "AP8="}), &mut out)
        .unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), r#"{"n":"x","b":"AP8="}"#);
}
