//! Coupon codes: how a typed code is read, and how batches of single-use codes
//! are made.

use rand::Rng;

use crate::domain::validation::Invalid;

/// Letters and digits that cannot be mistaken for each other (no 0/O, 1/I/L).
const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

pub const MAX_CODE_LEN: usize = 40;

/// A code as shoppers type it: surrounding spaces dropped, case ignored. Letters
/// A–Z, digits, `-` and `_` only, 3 to 40 of them, starting with a letter or
/// digit (so an exported CSV cannot carry a spreadsheet formula).
pub fn normalize(code: &str) -> Result<String, Invalid> {
    let code = code.trim().to_ascii_uppercase();
    if code.len() < 3 || code.len() > MAX_CODE_LEN {
        return Err(Invalid::new("invalid_code", format!("a code has 3 to {MAX_CODE_LEN} characters")));
    }
    if !code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        || !code.as_bytes()[0].is_ascii_alphanumeric()
    {
        return Err(Invalid::new("invalid_code", "a code has only letters, digits, '-' and '_'"));
    }
    Ok(code)
}

/// One random code: `prefix` (already normalized, may be empty) then `length`
/// characters of the unambiguous alphabet.
pub fn generate(rng: &mut impl Rng, prefix: &str, length: usize) -> String {
    let mut code = String::with_capacity(prefix.len() + length);
    code.push_str(prefix);
    for _ in 0..length {
        code.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codes_ignore_case_and_spaces() {
        assert_eq!(normalize("  summer-10 ").unwrap(), "SUMMER-10");
        for bad in ["", "ab", "SUMMER 10", "DROP;TABLE", "ÉTÉ10", &"A".repeat(41), "50%OFF", "-A1", "_X1"] {
            assert_eq!(normalize(bad).unwrap_err().code, "invalid_code", "{bad}");
        }
    }

    proptest! {
        #[test]
        fn generated_codes_are_valid_and_keep_their_prefix(seed in any::<u64>(), length in 6usize..20) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let code = generate(&mut rng, "BF-", length);
            prop_assert_eq!(normalize(&code).unwrap(), code.clone());
            prop_assert!(code.starts_with("BF-") && code.len() == 3 + length);
        }
    }
}
