//! Cost per record of schema decoding (source bytes → the JSON a guest sees) and encoding (guest
//! JSON → Confluent-framed bytes for Kafka), for Avro and Protobuf, through the same `Decoder`
//! and `Encoder` the pipeline will call.
//!
//! The encoder talks to a stand-in registry on loopback that answers every registration with
//! id 1: after the first record the id is cached, so what is measured is the steady state (no
//! registry call per record). The record is a typical order: 9 fields, a nested record / message,
//! an array of 2 lines, a decimal or int64, a timestamp, an enum.
//!
//! Run: `CARGO_TARGET_DIR=... cargo bench -p sluice-codec --bench codec`.

use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_codec::{
    AvroSchema, DecodeConfig, DecodeContext, Decoder, EncodeConfig, Encoder, NoAttributes,
    ProtoFile, ProtoSchema, SourceMessage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AVRO: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
  {"name":"id","type":"string"},
  {"name":"customer","type":{"type":"record","name":"Customer","fields":[
     {"name":"email","type":"string"},{"name":"phone","type":["null","string"],"default":null}]}},
  {"name":"qty","type":"int"},
  {"name":"total","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},
  {"name":"placed_at","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID","SHIPPED"]}},
  {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[
     {"name":"sku","type":"string"},{"name":"qty","type":"int"},{"name":"price","type":"double"}]}}},
  {"name":"note","type":["null","string"],"default":null},
  {"name":"paid","type":"boolean"}
]}"#;

const AVRO_JSON: &str = r#"{"id":"o-123456","customer":{"email":"someone@example.com","phone":"+33 6 12 34 56 78"},"qty":3,"total":"129.90","placed_at":"2024-01-31T12:34:56.789Z","status":"PAID","lines":[{"sku":"SKU-1","qty":1,"price":99.9},{"sku":"SKU-2","qty":2,"price":15.0}],"note":null,"paid":true}"#;

const PROTO: &str = r#"syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
message Order {
  string id = 1;
  Customer customer = 2;
  int32 qty = 3;
  int64 total_cents = 4;
  google.protobuf.Timestamp placed_at = 5;
  Status status = 6;
  repeated Line lines = 7;
  string note = 8;
  bool paid = 9;
  message Customer { string email = 1; string phone = 2; }
  message Line { string sku = 1; int32 qty = 2; double price = 3; }
  enum Status { NEW = 0; PAID = 1; SHIPPED = 2; }
}"#;

const PROTO_JSON: &str = r#"{"id":"o-123456","customer":{"email":"someone@example.com","phone":"+33 6 12 34 56 78"},"qty":3,"totalCents":"12990","placedAt":"2024-01-31T12:34:56.789Z","status":"PAID","lines":[{"sku":"SKU-1","qty":1,"price":99.9},{"sku":"SKU-2","qty":2,"price":15.0}],"note":"","paid":true}"#;

/// Polls a future that must complete without waiting (a cache hit).
fn now<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the steady state must not wait for anything"),
    }
}

/// A registry that registers anything as id 1.
fn stand_in_registry(runtime: &tokio::runtime::Runtime) -> String {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                // One request per connection is enough for a registration.
                let _ = socket.read(&mut buf).await;
                let body = r#"{"id":1}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    url
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let registry = stand_in_registry(&runtime);

    // Source payloads, written by the codec itself (identical to other writers' bytes).
    let avro = AvroSchema::parse(AVRO, "bench").unwrap();
    let mut avro_bytes = Vec::new();
    avro.encode_json(&serde_json::from_str(AVRO_JSON).unwrap(), &mut avro_bytes)
        .unwrap();
    let proto = ProtoSchema::from_sources(
        &[ProtoFile {
            name: "o.proto".into(),
            text: PROTO.into(),
        }],
        "o.proto",
        None,
        "bench",
    )
    .unwrap();
    let mut proto_bytes = Vec::new();
    proto
        .encode_json(PROTO_JSON.as_bytes(), &mut proto_bytes)
        .unwrap();

    let decoder = |format: &str, schema: &str| {
        let config: DecodeConfig =
            toml::from_str(&format!("format = \"{format}\"\nschema = '''{schema}'''")).unwrap();
        Decoder::new(&config, DecodeContext::default()).unwrap()
    };
    let encoder = |format: &str, schema: &str| {
        let config: EncodeConfig = toml::from_str(&format!(
            "registry = {{ url = \"{registry}\" }}\n[value]\nformat = \"{format}\"\nschema = '''{schema}'''"
        ))
        .unwrap();
        Arc::new(Encoder::new(&config, None).unwrap())
    };

    for (name, payload, json, decoder, encoder) in [
        (
            "avro",
            &avro_bytes,
            AVRO_JSON,
            decoder("avro", AVRO),
            encoder("avro", AVRO),
        ),
        (
            "protobuf",
            &proto_bytes,
            PROTO_JSON,
            decoder("protobuf", PROTO),
            encoder("protobuf", PROTO),
        ),
    ] {
        // Warm the id cache (the one registry call).
        let warm = encoder.clone();
        let owned = json.as_bytes().to_vec();
        runtime
            .block_on(async move {
                warm.encode("orders", None, Some(&owned), None)
                    .await
                    .map(drop)
            })
            .unwrap();
        let message = SourceMessage {
            topic: "orders",
            payload,
            schema_version: None,
            attributes: &NoAttributes,
        };
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(1));
        group.bench_function("decode", |b| {
            b.iter(|| now(decoder.decode(black_box(&message))).unwrap())
        });
        group.bench_function("encode", |b| {
            b.iter(|| {
                now(encoder.encode("orders", None, Some(black_box(json.as_bytes())), None)).unwrap()
            })
        });
        group.bench_function("decode+encode", |b| {
            b.iter(|| {
                let decoded = now(decoder.decode(black_box(&message))).unwrap();
                let guest = decoded.json.unwrap();
                now(encoder.encode("orders", None, Some(&guest), None))
                    .unwrap()
                    .value
                    .map(|v| v.len())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
