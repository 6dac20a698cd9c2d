//! Whether Kafka lets the sink in. librdkafka reports a refused SASL login or TLS handshake
//! only through its error callback and keeps reconnecting, while the request that waited for
//! the connection fails as "broker transport failure". Before the sink starts, a probe with
//! a context that keeps those callbacks turns them into one error naming the cause, which no
//! restart cures (the same credentials would be refused again).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};

use super::config::{KafkaSinkConfig, config_error};
use crate::sink::SinkError;

/// How long the probe waits for a verdict; a broker that neither answers nor refuses by then
/// is left to the sink's own (transient) unreachable handling.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
const PROBE_STEP: Duration = Duration::from_millis(500);

/// Keeps the first authentication or TLS failure librdkafka reports.
#[derive(Default)]
struct RefusalContext {
    refusal: Mutex<Option<String>>,
}

impl ClientContext for RefusalContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if matches!(
            code,
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
        ) {
            let mut refusal = self.refusal.lock().expect("refusal lock poisoned");
            refusal.get_or_insert_with(|| reason.to_owned());
        } else {
            tracing::debug!(%error, reason, "Kafka access probe");
        }
    }
}

impl ProducerContext for RefusalContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// With `tls` or `sasl` configured: connects once and fails with
/// [`SinkError::AccessRefused`] if Kafka refuses the credentials or the certificate check
/// fails. Any other outcome is left to the sink.
pub(super) async fn check_access(config: &KafkaSinkConfig) -> Result<(), SinkError> {
    if config.tls.is_none() && config.sasl.is_none() {
        return Ok(());
    }
    let mut settings = ClientConfig::new();
    settings.set("bootstrap.servers", &config.brokers);
    config.apply_security(&mut settings);
    let brokers = config.brokers.clone();
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer<RefusalContext> = settings
            .create_with_context(RefusalContext::default())
            .map_err(config_error)?;
        let started = Instant::now();
        while started.elapsed() < PROBE_TIMEOUT {
            let answered = producer.client().fetch_metadata(None, PROBE_STEP).is_ok();
            // Error callbacks are served by polling, one event per look: poll for a while, so
            // every event queued meanwhile is served, not the oldest one only.
            producer.poll(PROBE_STEP);
            let refusal = producer
                .context()
                .refusal
                .lock()
                .expect("refusal lock poisoned")
                .take();
            if let Some(cause) = refusal {
                return Err(SinkError::AccessRefused { brokers, cause });
            }
            if answered {
                break;
            }
        }
        Ok(())
    })
    .await
    .expect("the Kafka access probe panicked")
}
