//! Passwords, tokens and the authenticated caller.
//!
//! Passwords are stored as Argon2id PHC strings (the argon2 crate's default
//! parameters: m=19 MiB, t=2, p=1). A bearer token is 32 random bytes in hex;
//! the server stores only its SHA-256, so a leaked database holds no usable
//! token.

use clinic_shared::password::password_matches;
pub use clinic_shared::password::{HashError, hash_password};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Whether `password` matches `hash`. When there is no hash (unknown user),
/// a dummy hash is checked anyway so that timing does not tell whether the
/// username exists.
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("not-a-real-password").unwrap_or_default());
    match hash {
        Some(h) => password_matches(password, h),
        None => {
            let _ = password_matches(password, dummy);
            false
        }
    }
}

/// A new random bearer token.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", Some(&h)));
        assert!(!verify_password("wrong", Some(&h)));
        assert!(!verify_password("correct horse", None));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_ne!(token_hash(&a), a);
        assert_eq!(token_hash(&a), token_hash(&a));
    }
}
