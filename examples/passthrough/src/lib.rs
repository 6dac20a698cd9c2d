//! Copies every record unchanged: same key, value and headers. No timestamp (the host uses the
//! source's event or publish time) and no topic (the pipeline's sink topic).

use sluice_sdk::{Config, Message, Result, Writer, log, transform};

/// Takes no settings; notes in the host's log what it does.
fn setup(_config: &Config) -> Result<()> {
    log::info("passing every record through unchanged");
    Ok(())
}

/// Writes the record once, as it came.
#[transform(init = setup)]
fn on_message(msg: Message, out: &mut Writer) -> Result<()> {
    out.write(msg.into_output());
    Ok(())
}

#[cfg(test)]
mod tests {
    use sluice_sdk::{Header, Message, Writer};

    #[test]
    fn writes_one_identical_output() {
        let msg = Message::from_value("payload")
            .with_key("k1")
            .with_header("trace", "abc")
            .with_event_time_ms(1_700_000_000_000);
        let mut out = Writer::default();
        super::on_message(msg, &mut out).unwrap();

        let [output] = out.outputs() else {
            panic!("expected one output, got {:?}", out.outputs());
        };
        assert_eq!(output.key(), Some(&b"k1"[..]));
        assert_eq!(output.value(), Some(&b"payload"[..]));
        assert_eq!(output.headers(), &[Header::new("trace", "abc")]);
        assert_eq!(output.timestamp_ms(), None);
        assert_eq!(output.topic(), None);
    }

    #[test]
    fn init_accepts_any_config() {
        let config = sluice_sdk::Config::from_pairs([("unused", "x")]);
        assert!(super::setup(&config).is_ok());
    }

    #[test]
    fn passes_tombstones_through() {
        let mut out = Writer::default();
        super::on_message(Message::new().with_key("k"), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out.outputs()[0].value(), None);
        assert_eq!(out.outputs()[0].key(), Some(&b"k"[..]));
    }
}
