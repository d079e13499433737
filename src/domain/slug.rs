//! Slugs are the human-readable half of a product or category URL. They are
//! lower-case ASCII words joined by single hyphens, so they survive any CDN,
//! router or copy-paste unchanged and never collide with a UUID.

use super::validation::Invalid;

pub const MAX_SLUG_LEN: usize = 120;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slug(String);

impl Slug {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        if value.is_empty() {
            return Err(Invalid::new("required", "must not be empty"));
        }
        if value.len() > MAX_SLUG_LEN {
            return Err(Invalid::new("too_long", format!("must be at most {MAX_SLUG_LEN} characters")));
        }
        let valid_chars = value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_chars || value.starts_with('-') || value.ends_with('-') || value.contains("--") {
            return Err(Invalid::new("invalid_slug", "must be lower-case letters and digits separated by single hyphens"));
        }
        if uuid::Uuid::parse_str(value).is_ok() {
            return Err(Invalid::new("invalid_slug", "must not look like an id"));
        }
        Ok(Self(value.to_owned()))
    }

    /// Derives a slug from a title: ASCII-folds common Latin letters, lowercases,
    /// and collapses everything else into single hyphens.
    pub fn from_title(title: &str) -> Result<Self, Invalid> {
        let mut out = String::with_capacity(title.len());
        for c in title.chars().flat_map(fold_char) {
            if c.is_ascii_alphanumeric() {
                if out.len() >= MAX_SLUG_LEN {
                    break;
                }
                out.push(c.to_ascii_lowercase());
            } else if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        }
        while out.ends_with('-') {
            out.pop();
        }
        Self::parse(&out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

fn fold_char(c: char) -> impl Iterator<Item = char> {
    let folded: &str = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => "a",
        'æ' | 'Æ' => "ae",
        'ç' | 'Ç' => "c",
        'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => "e",
        'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => "i",
        'ñ' | 'Ñ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' => "o",
        'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => "u",
        'ý' | 'ÿ' | 'Ý' => "y",
        'ß' => "ss",
        '&' => "-and-",
        _ => "",
    };
    let single = folded.is_empty().then_some(c);
    folded.chars().chain(single)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_canonical_slugs() {
        for ok in ["shirt", "red-shirt-2", "a1"] {
            assert!(Slug::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_non_canonical_slugs() {
        for bad in ["", "Shirt", "red shirt", "-red", "red-", "red--shirt", "réd", "0190a8f5-3b5e-7cc2-9b6e-1d2f3a4b5c6d"] {
            assert!(Slug::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn derives_from_titles() {
        assert_eq!(Slug::from_title("Crème Brûlée T-Shirt (XL)").unwrap().as_str(), "creme-brulee-t-shirt-xl");
        assert_eq!(Slug::from_title("Salt & Pepper").unwrap().as_str(), "salt-and-pepper");
        assert!(Slug::from_title("!!!").is_err());
    }

    proptest! {
        #[test]
        fn a_derived_slug_is_always_valid(title in "\\PC{0,200}") {
            if let Ok(slug) = Slug::from_title(&title) {
                prop_assert!(Slug::parse(slug.as_str()).is_ok());
                prop_assert!(slug.as_str().len() <= MAX_SLUG_LEN);
            }
        }

        #[test]
        fn parse_accepts_exactly_its_own_alphabet(s in "[a-z0-9-]{1,40}") {
            let expected = !s.starts_with('-') && !s.ends_with('-') && !s.contains("--");
            prop_assert_eq!(Slug::parse(&s).is_ok(), expected);
        }
    }
}
