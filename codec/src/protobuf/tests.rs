use prost_reflect::Value;
use serde_json::json;

use super::*;

const SHOP: &str = r#"
syntax = "proto3";
package shop.v1;
import "google/protobuf/timestamp.proto";
import "money.proto";

message Order {
  string order_id = 1;
  int64 total_cents = 2;
  Status status = 3;
  repeated Line lines = 4;
  map<string, int32> counters = 5;
  google.protobuf.Timestamp placed_at = 6;
  bytes blob = 7;
  optional string note = 8;
  oneof payment { string card = 9; string iban = 10; }
  money.Money price = 11;
  double ratio = 12;
  message Line {
    string sku = 1;
    uint32 qty = 2;
    message Detail { bool gift = 1; }
    Detail detail = 3;
  }
  enum Status { STATUS_UNSPECIFIED = 0; PAID = 1; }
  reserved 20, 30 to 32;
  reserved "old";
}

message Other { string x = 1; }
"#;

const MONEY: &str = r#"
syntax = "proto3";
package money;
message Money { string currency = 1; int64 units = 2; }
"#;

fn shop(message: Option<&str>) -> ProtoSchema {
    ProtoSchema::from_sources(
        &[
            ProtoFile {
                name: "shop.proto".into(),
                text: SHOP.into(),
            },
            ProtoFile {
                name: "money.proto".into(),
                text: MONEY.into(),
            },
        ],
        "shop.proto",
        message,
        "test",
    )
    .unwrap()
}

fn to_json(p: &ProtoSchema, bytes: &[u8]) -> serde_json::Value {
    let mut out = Vec::new();
    p.decode_to_json(bytes, &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

fn to_binary(p: &ProtoSchema, json: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    p.encode_json(json.to_string().as_bytes(), &mut out)
        .unwrap();
    out
}

#[test]
fn proto3_json_mapping_round_trips() {
    let p = shop(None);
    assert_eq!(p.full_name(), "shop.v1.Order");
    assert_eq!(p.indexes(), [0]);
    let json = json!({
        "orderId": "o-1", "totalCents": "9007199254740993", "status": "PAID",
        "lines": [{"sku": "A", "qty": 2, "detail": {"gift": true}}],
        "counters": {"k": 3}, "placedAt": "2024-01-31T12:34:56.789Z", "blob": "AP8=",
        "note": "n", "card": "4111", "price": {"currency": "EUR", "units": "5"}, "ratio": "NaN"
    });
    let bytes = to_binary(&p, &json);
    assert_eq!(to_json(&p, &bytes), json);
}

#[test]
fn defaults_are_emitted_and_unset_presence_fields_left_out() {
    let p = shop(None);
    assert_eq!(
        to_json(&p, &[]),
        json!({"orderId": "", "totalCents": "0", "status": "STATUS_UNSPECIFIED", "lines": [],
               "counters": {}, "blob": "", "ratio": 0.0})
    );
}

#[test]
fn parsing_accepts_proto_names_and_numbers_as_the_spec_allows() {
    let p = shop(None);
    let a = to_binary(&p, &json!({"order_id": "x", "total_cents": 5, "status": 1}));
    let b = to_binary(
        &p,
        &json!({"orderId": "x", "totalCents": "5", "status": "PAID"}),
    );
    assert_eq!(a, b);
}

#[test]
fn unknown_fields_and_wrong_types_are_errors_with_a_path() {
    let p = shop(None);
    let mut out = Vec::new();
    let e = p
        .encode_json(br#"{"orderId": "x", "bogus": 1}"#, &mut out)
        .unwrap_err();
    assert!(e.reason().contains("bogus"), "{}", e.reason());
    let e = p
        .encode_json(br#"{"lines": [{"sku": "a"}, {"qty": "many"}]}"#, &mut out)
        .unwrap_err();
    assert_eq!(e.path().to_string(), "$.lines[1].qty", "{e}");
    assert!(p.encode_json(b"not json", &mut out).is_err());
    assert!(
        p.encode_json(br#"{"orderId": "x"} trailing"#, &mut out)
            .is_err()
    );
}

#[test]
fn malformed_bytes_are_errors() {
    let p = shop(None);
    let mut out = Vec::new();
    // Field 1 (string) claiming 10 bytes with 1 present.
    assert!(p.decode_to_json(&[0x0a, 10, b'a'], &mut out).is_err());
    // Field 3 (enum) with the wrong wire type (length-delimited).
    assert!(p.decode_to_json(&[0x1a, 1, 0], &mut out).is_err());
}

#[test]
fn nested_messages_have_confluent_indexes() {
    let p = shop(Some("shop.v1.Order.Line.Detail"));
    // The map field's entry type (declared before Line) is a nested type too, as in protoc's
    // descriptors, which Confluent's clients index.
    assert_eq!(p.indexes(), [0, 1, 0]);
    assert_eq!(shop(Some("shop.v1.Other")).indexes(), [1]);
    let detail = p.with_indexes(&[0, 1, 0]).unwrap();
    assert_eq!(detail.full_name(), "shop.v1.Order.Line.Detail");
    assert_eq!(p.with_indexes(&[1]).unwrap().full_name(), "shop.v1.Other");
    assert!(p.with_indexes(&[5]).is_err());
    assert!(p.with_indexes(&[]).is_err());
}

#[test]
fn messages_must_exist_in_the_root_file() {
    let files = [ProtoFile {
        name: "a.proto".into(),
        text: "syntax = \"proto3\"; message A { int32 x = 1; }".into(),
    }];
    assert!(ProtoSchema::from_sources(&files, "a.proto", Some("B"), "t").is_err());
    let bad = [ProtoFile {
        name: "a.proto".into(),
        text: "syntax = \"proto3\"; message A { nope x = 1; }".into(),
    }];
    let e = ProtoSchema::from_sources(&bad, "a.proto", None, "t").unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}

#[test]
fn files_list_the_root_then_non_well_known_imports() {
    let p = shop(None);
    let names: Vec<&str> = p.files().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["shop.proto", "money.proto"]);
    assert_eq!(p.files()[0].text, SHOP, "given sources are kept verbatim");
    assert_eq!(p.imports_of("shop.proto"), ["money.proto"]);
}

/// Printing a descriptor and compiling the text again gives the same messages.
#[test]
fn printed_descriptors_compile_to_the_same_schema() {
    let p = shop(None);
    let pool = p.message().parent_pool();
    let set = prost_reflect::prost_types::FileDescriptorSet {
        file: pool.file_descriptor_protos().cloned().collect(),
    };
    let from_set = ProtoSchema::from_descriptor_set(
        &prost_reflect::prost::Message::encode_to_vec(&set),
        "shop.v1.Order",
        "set",
    )
    .unwrap();
    let printed: Vec<ProtoFile> = from_set.files().to_vec();
    assert_eq!(printed[0].name, "shop.proto");
    assert!(
        printed[0].text.contains("map<string, int32> counters = 5;"),
        "{}",
        printed[0].text
    );
    assert!(printed[0].text.contains("optional string note = 8;"));
    assert!(printed[0].text.contains("oneof payment {"));
    assert!(printed[0].text.contains("reserved 30 to 32;"));
    let again =
        ProtoSchema::from_sources(&printed, "shop.proto", Some("shop.v1.Order"), "again").unwrap();
    let original = pool.get_file_by_name("shop.proto").unwrap();
    let reprinted = again
        .message()
        .parent_pool()
        .get_file_by_name("shop.proto")
        .unwrap();
    let strip = |f: &FileDescriptorProto| {
        let mut f = f.clone();
        f.source_code_info = None;
        f
    };
    assert_eq!(
        strip(original.file_descriptor_proto()),
        strip(reprinted.file_descriptor_proto())
    );
    // Same bytes for the same JSON.
    let json = json!({"orderId": "x", "lines": [{"sku": "A"}], "counters": {"a": 1}});
    assert_eq!(to_binary(&p, &json), to_binary(&again, &json));
}

#[test]
fn proto2_defaults_and_labels_print() {
    let files = [ProtoFile {
        name: "p2.proto".into(),
        text: r#"syntax = "proto2";
            package p;
            message M {
              required string a = 1;
              optional int32 b = 2 [default = 5];
              optional string c = 3 [default = "q\"x"];
              repeated int32 d = 4 [packed = true];
              optional E e = 5 [default = TWO];
              enum E { option allow_alias = true; ONE = 1; UNO = 1; TWO = 2; }
            }"#
        .into(),
    }];
    let p = ProtoSchema::from_sources(&files, "p2.proto", None, "t").unwrap();
    let text = print_file(p.message().parent_file().file_descriptor_proto()).unwrap();
    for expected in [
        "syntax = \"proto2\";",
        "required string a = 1;",
        "optional int32 b = 2 [default = 5];",
        "optional string c = 3 [default = \"q\\\"x\"];",
        "repeated int32 d = 4 [packed = true];",
        "optional .p.M.E e = 5 [default = TWO];",
        "option allow_alias = true;",
    ] {
        assert!(text.contains(expected), "{expected} not in\n{text}");
    }
    let again = ProtoSchema::from_sources(
        &[ProtoFile {
            name: "p2.proto".into(),
            text,
        }],
        "p2.proto",
        None,
        "t",
    )
    .unwrap();
    let mut message = prost_reflect::DynamicMessage::new(again.message().clone());
    message.set_field_by_name("a", Value::String("x".into()));
    assert_eq!(message.get_field_by_name("b").unwrap().as_i32(), Some(5));
}
