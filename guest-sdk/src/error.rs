//! The error a transform returns, and what the host does with it.

use std::fmt;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the host does with a record whose transform failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Drop the record on purpose; the host counts it and acknowledges the source.
    Skip,
    /// Send the original record to the dead-letter topic with the error message as the reason.
    DeadLetter,
    /// Stop the pipeline; the record is not acknowledged and will be redelivered.
    Fatal,
}

/// Why a transform produced no outputs for a record.
///
/// Build one with [`Error::skip`], [`Error::dead_letter`] or [`Error::fatal`] to choose what the
/// host does. Any other error converts with `?` (like `anyhow::Error`) and dead-letters the record,
/// its message being the error and its sources joined by `": "`.
///
/// `Error` does not implement [`std::error::Error`]: that is what lets `?` convert every type that
/// does.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
}

impl Error {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Drop the record on purpose (counted by the host, not an incident).
    pub fn skip(reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::Skip, reason)
    }

    /// Send the original record to the dead-letter topic with this reason.
    pub fn dead_letter(reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::DeadLetter, reason)
    }

    /// Stop the pipeline without acknowledging the record.
    pub fn fatal(reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::Fatal, reason)
    }

    /// A dead-letter error from anything printable, like `anyhow::Error::msg`.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::dead_letter(message.to_string())
    }

    /// What the host does with the record.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The reason handed to the host.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `context` in front of the message (`"{context}: {message}"`).
    #[must_use]
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }

    /// A dead-letter error whose message is `error` and its sources joined by `": "`.
    pub(crate) fn from_std(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::dead_letter(message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(error: E) -> Self {
        Self::from_std(&error)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({:?})", self.kind, self.message)
    }
}

/// Returns early with a dead-letter [`Error`] built like `format!`.
///
/// ```
/// fn check(n: i64) -> sluice_sdk::Result<()> {
///     if n < 0 {
///         sluice_sdk::bail!("negative amount {n}");
///     }
///     Ok(())
/// }
/// assert_eq!(check(-1).unwrap_err().message(), "negative amount -1");
/// ```
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return ::core::result::Result::Err($crate::Error::dead_letter(::std::format!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot read settings")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn parse(text: &str) -> Result<i64> {
        Ok(text.parse::<i64>()?)
    }

    #[test]
    fn question_mark_converts_std_errors_to_dead_letter() {
        let error = parse("x1").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::DeadLetter);
        assert_eq!(error.message(), "invalid digit found in string");
    }

    #[test]
    fn converted_error_joins_its_source_chain() {
        let error = Error::from(Outer(std::io::Error::other("disk on fire")));
        assert_eq!(error.message(), "cannot read settings: disk on fire");
    }

    #[test]
    fn constructors_set_the_kind() {
        assert_eq!(Error::skip("a").kind(), ErrorKind::Skip);
        assert_eq!(Error::dead_letter("b").kind(), ErrorKind::DeadLetter);
        assert_eq!(Error::fatal("c").kind(), ErrorKind::Fatal);
        assert_eq!(Error::msg(42).kind(), ErrorKind::DeadLetter);
        assert_eq!(Error::msg(42).message(), "42");
    }

    #[test]
    fn context_prefixes_the_message_and_keeps_the_kind() {
        let error = Error::skip("no tier").context("customer 7");
        assert_eq!(error.kind(), ErrorKind::Skip);
        assert_eq!(error.to_string(), "customer 7: no tier");
    }

    #[test]
    fn bail_returns_a_formatted_dead_letter() {
        fn check(n: i64) -> Result<()> {
            if n < 0 {
                bail!("negative: {n}");
            }
            Ok(())
        }
        assert!(check(1).is_ok());
        assert_eq!(check(-2).unwrap_err(), Error::dead_letter("negative: -2"));
    }
}
