//! Generated names as Kubernetes makes them: `<prefix><5 random chars>` for `generateName` and
//! the pods of a ReplicaSet, and the "safe" encoding of template hashes, both from Kubernetes'
//! alphabet without vowels (so no words appear by chance) and without look-alikes such as
//! `0`/`o` and `1`/`l`. The randomness is the caller's: this module only maps bytes.

/// Kubernetes' alphabet for generated names (`k8s.io/apimachinery/pkg/util/rand`).
pub const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// How many random characters a generated name ends with.
pub const SUFFIX_LEN: usize = 5;

/// How long the prefix of a generated name may be: a DNS label (63) less the suffix.
const MAX_PREFIX: usize = 63 - SUFFIX_LEN;

/// The suffix that the first [`SUFFIX_LEN`] bytes of `random` (uniformly random bytes, at
/// least that many) stand for; the modulo bias over 27 letters is negligible here.
pub fn suffix(random: &[u8]) -> String {
    safe_encode_bytes(&random[..random.len().min(SUFFIX_LEN)])
}

/// The prefix of names generated for an owner's objects: `<owner>-`, cut as Kubernetes'
/// `SimpleNameGenerator` cuts it so that the full name stays a valid DNS label.
pub fn prefix_for(owner: &str) -> String {
    let mut prefix = format!("{owner}-");
    if prefix.len() > MAX_PREFIX {
        // Names are ASCII (DNS subdomains), so cutting at a byte index is safe; `get` keeps it
        // panic-free even if that ever stopped being true.
        prefix = prefix.get(..MAX_PREFIX).unwrap_or(&prefix).to_owned();
    }
    prefix
}

/// Maps every byte of `s` onto the alphabet (Kubernetes' `rand.SafeEncodeString`).
pub fn safe_encode(s: &str) -> String {
    safe_encode_bytes(s.as_bytes())
}

fn safe_encode_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_use_the_alphabet() {
        assert_eq!(suffix(&[0, 1, 26, 27, 255, 7]), "bc9bq");
        for b in 0..=255u8 {
            let s = suffix(&[b; 16]);
            assert_eq!(s.len(), SUFFIX_LEN);
            assert!(s.bytes().all(|c| ALPHABET.contains(&c)), "{s}");
        }
    }

    #[test]
    fn long_owner_names_are_cut() {
        assert_eq!(prefix_for("web"), "web-");
        let long = "a".repeat(80);
        assert_eq!(prefix_for(&long).len(), MAX_PREFIX);
    }

    #[test]
    fn safe_encoding_matches_kubernetes() {
        // '0' is 48, 48 % 27 = 21 -> '4'; '9' is 57, 57 % 27 = 3 -> 'f'.
        assert_eq!(safe_encode("09"), "4f");
        assert_eq!(safe_encode("1234"), "5678");
    }
}
