//! The common-password list new passwords are checked against: the 30,000 most common passwords
//! (zxcvbn's list, in `data/common-passwords.txt`), compared case-insensitively. Only entries
//! long enough to pass the length rule are kept in memory; the rest could never match.

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::names::Password;

const LIST: &str = include_str!("../data/common-passwords.txt");

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    LIST.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.chars().count() >= Password::MIN_CHARS)
        .collect()
});

/// Whether `password` (any case) is on the list.
pub fn is_common(password: &str) -> bool {
    COMMON.contains(password.to_lowercase().as_str())
}

/// How many entries the shipped list has.
pub fn listed() -> usize {
    LIST.lines().filter(|line| !line.starts_with('#')).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_shipped_whole_and_checked_in_any_case() {
        assert!(listed() >= 10_000, "{}", listed());
        assert!(is_common("1234567890"));
        assert!(is_common("QwertyUIOP"));
        assert!(is_common("1q2w3e4r5t"));
        assert!(!is_common("correct horse battery staple"));
    }
}
