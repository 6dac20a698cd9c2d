//! Test guest: every record unchanged, plus header `transform-version` = `1`. Its code is
//! `tests/guests/version-stamp/stamp.rs`, shared with `version-stamp-v2`: only the stamp
//! differs, so a hot-deploy test can tell which version transformed each record.

/// The value of the `transform-version` header.
const VERSION: &str = "1";

include!("../../version-stamp/stamp.rs");
