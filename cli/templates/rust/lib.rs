//! {{name}}: a Sluice transform. Writes every record on with a `processed-by` header and
//! drops tombstones (records without a value).

use sluice_sdk::{Error, Message, Result, Writer, transform};

/// Header added to every output: which transform wrote it.
const PROCESSED_BY: &str = "processed-by";

#[transform]
fn on_message(msg: Message, out: &mut Writer) -> Result<()> {
    if msg.value().is_none() {
        return Err(Error::skip("tombstone"));
    }
    out.write(msg.into_output().with_header(PROCESSED_BY, "{{name}}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use sluice_sdk::{ErrorKind, Message, Writer};

    #[test]
    fn tags_records_and_skips_tombstones() {
        let mut out = Writer::default();
        super::on_message(Message::from_value("hello").with_key("k"), &mut out).unwrap();
        let output = &out.outputs()[0];
        assert_eq!(output.value(), Some(&b"hello"[..]));
        assert_eq!(output.key(), Some(&b"k"[..]));
        assert_eq!(output.header("processed-by"), Some(&b"{{name}}"[..]));

        let error = super::on_message(Message::new(), &mut Writer::default()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Skip);
    }
}
