//! Identifiers people read aloud or paste: order numbers and idempotency keys.

use uuid::Uuid;

use super::validation::Invalid;

/// Crockford base32, without the letters people confuse (I, L, O, U).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A human order number from the order's UUIDv7: `M-` then 12 base32 characters
/// of its last 60 bits (mostly random), so no shared counter row becomes a hot
/// spot under a flash sale. A collision is caught by a unique constraint.
pub fn order_number(id: Uuid) -> String {
    let bits = id.as_u128() & ((1u128 << 60) - 1);
    let mut out = String::with_capacity(14);
    out.push_str("M-");
    for i in (0..12).rev() {
        out.push(ALPHABET[((bits >> (i * 5)) & 31) as usize] as char);
    }
    out
}

/// An `Idempotency-Key` header value: 1 to 255 visible ASCII characters.
pub fn parse_idempotency_key(value: &str) -> Result<String, Invalid> {
    if value.is_empty() || value.len() > 255 || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Invalid::new("invalid_idempotency_key", "must be 1 to 255 visible ASCII characters, e.g. a UUID"));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn order_numbers_are_short_and_readable() {
        let n = order_number(Uuid::now_v7());
        assert_eq!(n.len(), 14);
        assert!(n.starts_with("M-"));
        assert!(n[2..].bytes().all(|b| ALPHABET.contains(&b)));
    }

    #[test]
    fn idempotency_keys_are_bounded() {
        assert!(parse_idempotency_key("6f1c2c1e-0d7a-4a5b-9b58-0a8c1f9b1d2e").is_ok());
        assert!(parse_idempotency_key("").is_err());
        assert!(parse_idempotency_key("has space").is_err());
        assert!(parse_idempotency_key(&"k".repeat(256)).is_err());
    }

    proptest! {
        #[test]
        fn different_random_tails_give_different_numbers(a in any::<u64>(), b in any::<u64>()) {
            let mask = (1u64 << 60) - 1;
            prop_assume!(a & mask != b & mask);
            prop_assert_ne!(order_number(Uuid::from_u128(a as u128)), order_number(Uuid::from_u128(b as u128)));
        }
    }
}
