//! Secrets: client keys and node credentials are 256 random bits, shown once, stored
//! only as a SHA-256 digest.
//!
//! A plain (fast, unsalted) digest is enough here: the secrets are random, not chosen by
//! people, so there is no dictionary to try; a salt or a slow hash would only cost time
//! on every request.

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

/// What a client key starts with, so a leaked one is recognisable (secret scanners,
/// logs) and cannot be mistaken for a node credential.
pub const KEY_PREFIX: &str = "pfk_";
/// What a node credential starts with.
pub const NODE_PREFIX: &str = "pfn_";

/// The SHA-256 digest of a secret: what the database keeps.
pub type Digest32 = [u8; 32];

/// A new secret: `prefix` followed by 64 hex digits from the operating system's CSPRNG.
pub fn generate(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{prefix}{}", to_hex(&bytes)))
}

pub fn digest(secret: &str) -> Digest32 {
    Sha256::digest(secret.as_bytes()).into()
}

pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Parses a stored hex digest; `None` when the text is not 64 hex digits.
pub fn from_hex(text: &str) -> Option<Digest32> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Constant-time comparison, so a secret cannot be guessed byte by byte from timings.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How a request presented (or failed to present) a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bearer<'a> {
    Missing,
    /// An `Authorization` header with another scheme, or no token after the scheme.
    Malformed,
    Token(&'a str),
}

/// The token of `Authorization: Bearer <token>`. The scheme is matched in any case
/// (RFC 7235: `bearer`, `BEARER`), and any run of spaces may follow it.
pub fn bearer(headers: &HeaderMap) -> Bearer<'_> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Bearer::Missing;
    };
    let Ok(value) = value.to_str() else {
        return Bearer::Malformed;
    };
    let value = value.trim();
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    let token = rest.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Bearer::Malformed;
    }
    Bearer::Token(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn bearer_scheme_in_any_case() {
        for v in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "bEaReR   abc ",
            "Bearer\tabc",
        ] {
            assert_eq!(bearer(&with_auth(v)), Bearer::Token("abc"), "{v}");
        }
        assert_eq!(bearer(&HeaderMap::new()), Bearer::Missing);
        for v in ["Basic abc", "Bearer", "Bearer   ", "Bearerabc", "abc"] {
            assert_eq!(bearer(&with_auth(v)), Bearer::Malformed, "{v}");
        }
    }

    #[test]
    fn secrets_are_random_prefixed_and_digests_round_trip() {
        let a = generate(KEY_PREFIX).unwrap();
        let b = generate(KEY_PREFIX).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 64);
        let d = digest(&a);
        assert_eq!(from_hex(&to_hex(&d)), Some(d));
        assert_ne!(digest(&a), digest(&b));
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn same_secret_compares_whole_values() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
