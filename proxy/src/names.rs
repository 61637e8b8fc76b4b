//! Names a client chooses (user, database, application_name, channels, mechanisms) are clipped
//! before they reach a log line, an error message or the admin API: a 3 MiB user name must
//! not become 3 MiB of log, nor be echoed back in full.

/// Longest name kept, in bytes: MySQL's own limit on identifiers.
pub const NAME_MAX: usize = 64;

/// The longest prefix of `s` that fits [`NAME_MAX`] without splitting a character.
pub fn clip(s: &str) -> &str {
    let mut end = s.len().min(NAME_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_on_a_character_boundary() {
        assert_eq!(clip("app"), "app");
        let long = "é".repeat(100);
        let c = clip(&long);
        assert!(
            c.len() <= NAME_MAX && c.len() >= NAME_MAX - 1,
            "{}",
            c.len()
        );
        assert!(long.starts_with(c));
    }
}
