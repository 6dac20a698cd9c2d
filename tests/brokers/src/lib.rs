//! The local brokers as the tests (`tests/all`, through `sluice_tests`) and the demo helper
//! (`sluice-dev`, `scripts/demo.sh`) use them: where they are ([`addresses`]), how to talk to
//! them ([`kafka`], [`pulsar`], [`pubsub`]), and the one set of [`timeouts`].
//!
//! Apart from `sluice_tests` so that the demo helper builds without the test guests that
//! crate's build script compiles.

pub mod addresses;
pub mod kafka;
pub mod pubsub;
pub mod pulsar;
pub mod timeouts;
