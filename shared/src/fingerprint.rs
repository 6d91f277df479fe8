//! Certificate fingerprints as people compare them: the SHA-256 of a
//! certificate's DER bytes, shown as grouped hex (what `openssl x509
//! -fingerprint -sha256` prints) and as a short form of digit groups that
//! can be read aloud over the phone.
//!
//! The server prints both when it makes or shows the clinic CA (`clinic-server
//! tls init|show`); a desk that pins the CA on first sign-in shows the same
//! strings, computed here, so the person at the desk compares like with like.
//!
//! The short form is six groups of five digits (30 digits, about 100 bits of
//! the hash), made as Signal makes its safety numbers: each group is five
//! bytes of the hash read as a big-endian number, modulo 100 000. Forty bits
//! per five-digit group keep the modulo bias below one part in ten million,
//! and 100 bits are far beyond what an attacker could match by generating
//! certificates until one collides in the digits people compare.

use sha2::{Digest, Sha256};
use std::fmt;

/// The SHA-256 fingerprint of a certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

/// Groups in [`Fingerprint::short`].
pub const SHORT_GROUPS: usize = 6;

/// A fingerprint typed or pasted by a person did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a SHA-256 fingerprint is 64 hex digits (colons and spaces allowed), got {digits} hex digits{}",
    if *.bad_character { " and other characters" } else { "" }
)]
pub struct ParseFingerprintError {
    /// Hex digits found.
    pub digits: usize,
    /// Whether characters other than hex digits, `:` and white space were present.
    pub bad_character: bool,
}

impl Fingerprint {
    /// The fingerprint of a certificate, from its DER encoding.
    pub fn of_der(certificate_der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(certificate_der).into())
    }

    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Fingerprint(bytes)
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Upper-case hex in colon-separated pairs, `AB:CD:…` (95 characters),
    /// exactly as `openssl x509 -noout -fingerprint -sha256` prints it.
    pub fn hex(&self) -> String {
        let mut out = String::with_capacity(95);
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            out.push_str(&format!("{b:02X}"));
        }
        out
    }

    /// Six groups of five digits separated by spaces, e.g.
    /// `01234 56789 01234 56789 01234 56789`, for reading aloud.
    pub fn short(&self) -> String {
        self.0
            .chunks_exact(5)
            .take(SHORT_GROUPS)
            .map(|chunk| {
                let n = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                format!("{:05}", n % 100_000)
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = ParseFingerprintError;

    /// Parses 64 hex digits in either case, ignoring `:` and white space
    /// (what people paste from [`Fingerprint::hex`] or from openssl).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut nibbles = Vec::with_capacity(64);
        let mut bad_character = false;
        for c in s.chars() {
            match c.to_digit(16) {
                Some(d) => nibbles.push(d as u8),
                None if c == ':' || c.is_whitespace() => {}
                None => bad_character = true,
            }
        }
        if nibbles.len() != 64 || bad_character {
            return Err(ParseFingerprintError {
                digits: nibbles.len(),
                bad_character,
            });
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in nibbles.chunks_exact(2).enumerate() {
            bytes[i] = (pair[0] << 4) | pair[1];
        }
        Ok(Fingerprint(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.hex())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hex_matches_the_sha256_of_the_bytes_in_openssl_form() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        let f = Fingerprint::of_der(b"abc");
        assert_eq!(
            f.hex(),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
        assert_eq!(f.hex().len(), 95);
    }

    #[test]
    fn short_form_is_six_five_digit_groups_of_the_hash() {
        let f = Fingerprint::of_der(b"abc");
        let short = f.short();
        let groups: Vec<&str> = short.split(' ').collect();
        assert_eq!(groups.len(), SHORT_GROUPS);
        assert!(
            groups
                .iter()
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
        );
        // First group: 0xBA7816BF8F = 800 878 673 807; mod 100 000 = 73 807.
        assert_eq!(groups[0], "73807");
        // Any change to the hash changes the digits people compare.
        let mut other = *f.as_bytes();
        other[0] ^= 1;
        assert_ne!(Fingerprint::from_bytes(other).short(), short);
    }

    #[test]
    fn parses_what_it_prints_and_what_people_paste() {
        let f = Fingerprint::of_der(b"certificate");
        assert_eq!(f.hex().parse::<Fingerprint>().unwrap(), f);
        let loose = f.hex().replace(':', " ").to_lowercase();
        assert_eq!(loose.parse::<Fingerprint>().unwrap(), f);
        let err = "AB:CD".parse::<Fingerprint>().unwrap_err();
        assert_eq!(err.digits, 4);
        let err = format!("{}zz", &f.hex())
            .parse::<Fingerprint>()
            .unwrap_err();
        assert!(err.bad_character);
        assert!(err.to_string().contains("64 hex digits"));
    }
}
