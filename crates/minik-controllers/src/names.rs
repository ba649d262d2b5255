//! Generated names as Kubernetes makes them: `<owner>-<5 random chars>` for pods and the
//! "safe" encoding of template hashes, both from Kubernetes' alphabet without vowels (so no
//! words appear by chance) and without look-alikes such as `0`/`o` and `1`/`l`.

/// Kubernetes' alphabet for generated names (`k8s.io/apimachinery/pkg/util/rand`).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// How long the prefix of a generated name may be: a DNS label (63) less the 5-char suffix.
const MAX_PREFIX: usize = 63 - 5;

/// Five random characters of the alphabet.
pub(crate) fn random_suffix() -> String {
    // A v4 uuid's first bytes are random; the modulo bias over 27 letters is negligible here.
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// The prefix of names generated for an owner's objects: `<owner>-`, cut as Kubernetes'
/// `SimpleNameGenerator` cuts it so that the full name stays a valid DNS label.
pub(crate) fn generate_prefix(owner: &str) -> String {
    let mut prefix = format!("{owner}-");
    if prefix.len() > MAX_PREFIX {
        // Names are ASCII (DNS subdomains), so cutting at a byte index is safe; `get` keeps it
        // panic-free even if that ever stopped being true.
        prefix = prefix.get(..MAX_PREFIX).unwrap_or(&prefix).to_owned();
    }
    prefix
}

/// Maps every byte of `s` onto the alphabet (Kubernetes' `rand.SafeEncodeString`).
pub(crate) fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| ALPHABET[b as usize % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_use_the_alphabet() {
        for _ in 0..100 {
            let s = random_suffix();
            assert_eq!(s.len(), 5);
            assert!(s.bytes().all(|b| ALPHABET.contains(&b)), "{s}");
        }
    }

    #[test]
    fn long_owner_names_are_cut() {
        assert_eq!(generate_prefix("web"), "web-");
        let long = "a".repeat(80);
        assert_eq!(generate_prefix(&long).len(), MAX_PREFIX);
    }

    #[test]
    fn safe_encoding_matches_kubernetes() {
        // '0' is 48, 48 % 27 = 21 -> '4'; '9' is 57, 57 % 27 = 3 -> 'f'.
        assert_eq!(safe_encode("09"), "4f");
        assert_eq!(safe_encode("1234"), "5678");
    }
}
