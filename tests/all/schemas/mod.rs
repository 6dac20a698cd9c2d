//! Schemas at the edges (issue 18), against real services: Apicurio Registry's Confluent API,
//! Apache Pulsar's schema registry, Google's Pub/Sub emulator's schema service, and Confluent's
//! and Pulsar's own Python clients (`tests/python`, installed by `scripts/toolchains.sh`) on the
//! other side of what sluice-codec reads and writes.

mod pipelines;
mod pubsub;
mod pulsar;
mod registry;
mod support;
