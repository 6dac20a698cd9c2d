//! Test guest: every record unchanged, plus header `transform-version` = `2`. Its code is
//! `tests/guests/version-stamp/stamp.rs`, shared with `version-stamp-v1`: only the stamp
//! differs, so a hot-deploy test can tell which version transformed each record.

/// The value of the `transform-version` header.
const VERSION: &str = "2";

include!("../../version-stamp/stamp.rs");
