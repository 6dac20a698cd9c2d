//! Every timeout and polling interval of the tests, in one place.
//!
//! A timeout here only bounds how long a failing test takes to fail: a passing test never
//! waits for one, and no test asserts a duration. They are generous because the brokers share
//! two cores with the build and with each other.

use std::time::Duration;

/// Records a test published must be in Kafka within this.
pub const DELIVERY: Duration = Duration::from_secs(300);
/// A crash loop fails when the output topic stops growing for this long.
pub const STALL: Duration = Duration::from_secs(120);
/// The admin API answering, a `sluice` client command finishing, counters settling.
pub const ADMIN: Duration = Duration::from_secs(60);
/// A `sluice run` stopping after SIGTERM (it drains what is in flight first).
pub const DRAIN: Duration = Duration::from_secs(60);
/// A pipeline stopping on its own with an error.
pub const PIPELINE_FAILURE: Duration = Duration::from_secs(120);
/// One request to a broker (metadata, watermarks, topic creation, an admin call).
pub const BROKER_REQUEST: Duration = Duration::from_secs(10);
/// A Pulsar reader stops when no message came for this long (the topic is read to its end).
pub const PULSAR_IDLE: Duration = Duration::from_secs(10);
/// A TCP connect that tells whether a broker is there at all.
pub const REACHABLE: Duration = Duration::from_secs(1);

/// How often a Kafka consumer polls while a test reads a topic.
pub const KAFKA_POLL: Duration = Duration::from_millis(200);
/// How often a test looks again for something that is not there yet (a topic, a count).
pub const RECHECK: Duration = Duration::from_millis(250);
