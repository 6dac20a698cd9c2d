//! Helpers for native unit tests of transforms.

use crate::Config;
use crate::config::replace_active;

/// Runs `body` with `pairs` as the active [`config()`](crate::config()), then restores the
/// previous config (also when `body` panics).
///
/// The active config is per thread, and the test harness runs each test on its own thread, so
/// tests using different configs do not interfere.
///
/// ```
/// use sluice_sdk::testing::with_config;
///
/// let mask = with_config([("mask", "#")], || sluice_sdk::config().get("mask").map(str::to_owned));
/// assert_eq!(mask.as_deref(), Some("#"));
/// assert!(sluice_sdk::config().is_empty());
/// ```
pub fn with_config<K, V, R>(pairs: impl IntoIterator<Item = (K, V)>, body: impl FnOnce() -> R) -> R
where
    K: Into<String>,
    V: Into<String>,
{
    struct Restore(Option<Config>);

    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0.take() {
                replace_active(previous);
            }
        }
    }

    let _restore = Restore(Some(replace_active(Config::from_pairs(pairs))));
    body()
}

/// Empties the keyed state native builds keep for the current thread
/// ([`Message::state`](crate::Message::state)); each test runs on its own thread, so this is
/// only needed within one test.
pub fn clear_state() {
    #[cfg(not(target_arch = "wasm32"))]
    crate::state::backend::clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores_the_previous_config_even_after_a_panic() {
        with_config([("outer", "1")], || {
            let caught = std::panic::catch_unwind(|| {
                with_config([("inner", "2")], || {
                    assert_eq!(crate::config().get("inner"), Some("2"));
                    panic!("boom");
                })
            });
            assert!(caught.is_err());
            assert_eq!(crate::config().get("outer"), Some("1"));
            assert_eq!(crate::config().get("inner"), None);
        });
        assert!(crate::config().is_empty());
    }
}
