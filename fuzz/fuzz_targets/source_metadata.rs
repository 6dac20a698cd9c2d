//! The source-metadata mapping: a Pulsar message's metadata or a Pub/Sub message's attributes
//! as a record. Whatever a producer set (any bytes, any times, any attributes), the mapping
//! must not panic, must keep every header, and must never make a time out of range.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sluice_connectors::source::metadata::{
    PubSubMessageParts, PulsarMessageParts, pubsub_record, pulsar_record,
};

#[derive(Arbitrary, Debug)]
enum Message {
    Pulsar {
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        null_value: bool,
        properties: Vec<(String, String)>,
        event_time: Option<u64>,
        publish_time: u64,
        topic: String,
        message_id: String,
        schema_version: Option<Vec<u8>>,
    },
    PubSub {
        data: Vec<u8>,
        attributes: HashMap<String, String>,
        ordering_key: String,
        message_id: String,
        publish_time: Option<(i64, i32)>,
        subscription: String,
        key_attribute: Option<String>,
    },
}

fuzz_target!(|message: Message| {
    match message {
        Message::Pulsar {
            key,
            payload,
            null_value,
            properties,
            event_time,
            publish_time,
            topic,
            message_id,
            schema_version,
        } => {
            let record = pulsar_record(PulsarMessageParts {
                key: key.clone(),
                payload: payload.clone(),
                null_value,
                properties: properties
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
                event_time,
                publish_time,
                topic: topic.as_str().into(),
                message_id: message_id.clone(),
                schema_version,
            });
            assert_eq!(record.key.as_deref(), key.as_deref());
            assert_eq!(
                record.value.as_deref(),
                (!null_value).then_some(&payload[..])
            );
            assert_eq!(record.headers.len(), properties.len());
            for (header, (name, value)) in record.headers.iter().zip(&properties) {
                assert_eq!(
                    (&*header.name, &header.value[..]),
                    (name.as_str(), value.as_bytes())
                );
            }
            assert!(record.event_time_ms.is_none_or(|t| t > 0));
            assert!(record.publish_time_ms.is_none_or(|t| t >= 0));
            assert_eq!(&*record.source.message_id, message_id);
        }
        Message::PubSub {
            data,
            attributes,
            ordering_key,
            message_id,
            publish_time,
            subscription,
            key_attribute,
        } => {
            let record = pubsub_record(
                PubSubMessageParts {
                    data: data.clone().into(),
                    attributes: &attributes,
                    ordering_key: &ordering_key,
                    message_id: &message_id,
                    publish_time,
                },
                &subscription.as_str().into(),
                key_attribute.as_deref(),
            );
            assert_eq!(record.value.as_deref(), Some(&data[..]));
            assert_eq!(record.headers.len(), attributes.len());
            assert!(record.headers.windows(2).all(|w| w[0].name <= w[1].name));
            let expected_key = match &key_attribute {
                Some(name) => attributes.get(name).map(|v| v.as_bytes().to_vec()),
                None => (!ordering_key.is_empty()).then(|| ordering_key.as_bytes().to_vec()),
            };
            assert_eq!(record.key.as_deref(), expected_key.as_deref());
            if let (Some(ms), Some((seconds, _))) = (record.publish_time_ms, publish_time) {
                assert_eq!(ms.div_euclid(1000), seconds);
            }
        }
    }
});
