//! Test guest for keyed state (docs/state.md): a running count per record key. Every output
//! keeps its record's key and value and carries header `count` = how many records of the key
//! came so far, this one included.
//!
//! Config `grow = "<bytes>"`: each record also stores that many more bytes under its key (a
//! new name per record), so a test can run a key into its state quota.

use sluice_sdk::{Message, Result, Writer, transform};

#[transform]
fn on_message(msg: Message, out: &mut Writer) -> Result<()> {
    let state = msg.state();
    let count = state.get_u64("count").unwrap_or(0) + 1;
    state.set_u64("count", count)?;
    let grow = sluice_sdk::config()
        .get("grow")
        .and_then(|n| n.parse().ok());
    if let Some(grow) = grow {
        state.set(format!("pad-{count}"), vec![0u8; grow])?;
    }
    out.write(msg.with_header("count", count.to_string()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key() {
        let mut out = Writer::default();
        for key in ["a", "b", "a"] {
            on_message(Message::from_value("v").with_key(key), &mut out).unwrap();
        }
        let counts: Vec<_> = (out.outputs().iter())
            .map(|output| output.header("count").map(<[u8]>::to_vec))
            .collect();
        assert_eq!(
            counts,
            [
                Some(b"1".to_vec()),
                Some(b"1".to_vec()),
                Some(b"2".to_vec())
            ]
        );
    }
}
