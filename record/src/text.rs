//! Bounding text a guest controls before the host repeats it.
//!
//! A guest's strings (init errors, skip / dead-letter / fatal reasons, log lines, stdout and
//! stderr, names in its outputs) reach log lines, error messages and dead-letter headers. Each
//! is cut here, in one place, to [`MAX_GUEST_TEXT_BYTES`], with a marker saying how much was
//! cut (docs/sandbox.md, "What a guest returns").

use std::borrow::Cow;

/// Most bytes of guest text the host repeats in one place (a log line, an error message, a
/// dead-letter header), the cut marker included.
///
/// 4 KiB: a panic message, a stack of three stderr lines or a JSON error with context fits;
/// a log line built around it stays well within 8 KiB, and a dead-letter record's headers stay
/// small next to Kafka's 1 MB messages.
pub const MAX_GUEST_TEXT_BYTES: usize = 4096;

/// `text` as is when it holds at most [`MAX_GUEST_TEXT_BYTES`], else its start followed by
/// `… [N bytes cut]`, all of it within the bound.
pub fn bounded(text: &str) -> Cow<'_, str> {
    bounded_to(text, MAX_GUEST_TEXT_BYTES)
}

/// Like [`bounded`], owning: a `String` within the bound is returned without a copy.
pub fn bound(text: String) -> String {
    match bounded(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(cut) => cut,
    }
}

/// `text` within `max_bytes`, cut as [`bounded`] does. A bound too small for the marker keeps
/// as much of the text as fits, without it.
pub fn bounded_to(text: &str, max_bytes: usize) -> Cow<'_, str> {
    if text.len() <= max_bytes {
        return Cow::Borrowed(text);
    }
    Cow::Owned(cut(text, 0, max_bytes))
}

/// The start of `kept` followed by a marker counting the bytes cut from it plus `cut_before`
/// (bytes the caller dropped already, e.g. of a log line it did not keep), within `max_bytes`.
pub fn cut(kept: &str, cut_before: usize, max_bytes: usize) -> String {
    if cut_before == 0 && kept.len() <= max_bytes {
        return kept.to_owned();
    }
    // The marker's length depends on the count, which depends on where the cut falls: size
    // it for the largest count first (every byte of `kept` cut), which can only be longer.
    let widest = marker(kept.len() + cut_before);
    let Some(room) = max_bytes.checked_sub(widest.len()) else {
        return floor_to_char(kept, max_bytes).to_owned();
    };
    let head = floor_to_char(kept, room);
    let mut out = String::with_capacity(max_bytes);
    out.push_str(head);
    out.push_str(&marker(kept.len() - head.len() + cut_before));
    out
}

/// How the cut shows: `… [20971420 bytes cut]`.
fn marker(cut_bytes: usize) -> String {
    format!("… [{cut_bytes} bytes cut]")
}

/// The longest prefix of `text` of at most `max_bytes` that ends on a character boundary.
fn floor_to_char(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_at_the_bound_stays_whole_and_one_more_byte_is_cut_with_a_marker() {
        let at = "x".repeat(MAX_GUEST_TEXT_BYTES);
        assert!(matches!(bounded(&at), Cow::Borrowed(_)));
        let over = "x".repeat(MAX_GUEST_TEXT_BYTES + 1);
        let cut = bounded(&over);
        assert!(cut.len() <= MAX_GUEST_TEXT_BYTES, "{}", cut.len());
        let kept = cut.find('…').unwrap();
        assert!(cut.ends_with(&format!("[{} bytes cut]", over.len() - kept)));
    }

    #[test]
    fn twenty_megabytes_become_four_kibibytes_that_say_how_much_was_cut() {
        let reason = "r".repeat(20 * 1024 * 1024);
        let cut = bound(reason);
        assert!(cut.len() <= MAX_GUEST_TEXT_BYTES);
        let kept = cut.find('…').unwrap();
        assert!(cut.ends_with(&format!("[{} bytes cut]", 20 * 1024 * 1024 - kept)));
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let text = "é".repeat(100);
        for max in 0..60 {
            let cut = bounded_to(&text, max);
            assert!(cut.len() <= max, "{max}: {cut}");
        }
        assert_eq!(bounded_to(&text, 3), "é");
    }

    #[test]
    fn bytes_dropped_before_count_in_the_marker() {
        assert_eq!(cut("abc", 10, 100), "abc… [10 bytes cut]");
        assert_eq!(cut("abc", 0, 100), "abc");
    }
}
