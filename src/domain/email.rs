//! E-mail addresses are compared case-insensitively, so they are stored in one
//! canonical lower-case form.

use super::validation::Invalid;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let v = value.trim().to_lowercase();
        if v.len() > 254 {
            return Err(Invalid::new("too_long", "must be at most 254 characters"));
        }
        let Some((local, domain)) = v.split_once('@') else {
            return Err(Invalid::new("invalid_email", "must be an e-mail address"));
        };
        let bad = local.is_empty()
            || local.len() > 64
            || domain.len() < 3
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
            || v.chars().any(|c| c.is_whitespace() || c.is_control())
            || domain.contains('@');
        if bad {
            return Err(Invalid::new("invalid_email", "must be an e-mail address"));
        }
        Ok(Self(v))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_whitespace() {
        assert_eq!(Email::parse("  Ann@Example.COM ").unwrap().as_str(), "ann@example.com");
    }

    #[test]
    fn rejects_non_addresses() {
        for bad in ["", "ann", "ann@", "@example.com", "ann@example", "ann@@example.com", "a n@example.com", "ann@.com"] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
