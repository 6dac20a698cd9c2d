//! The integration tests of the whole project, in one binary (one link, one engine).

mod admin;
mod admin_tls;
mod cli;
mod exactly_once;
mod examples;
mod fencing;
mod flat_abi;
mod kubernetes;
mod language_sdks;
mod languages;
mod pipeline;
mod pubsub_to_kafka;
mod pulsar_to_kafka;
mod real_brokers;
mod sandbox;
mod scale_out;
mod schemas;
mod secured_brokers;
mod support;
mod transactions;
mod transform;
mod untrusted_outputs;
mod untrusted_outputs_on_brokers;
mod windows;
mod zoo;
