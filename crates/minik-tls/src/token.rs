//! The join token in k3s' "secure" form, `K10<CA hash>::SECRET`: the hash lets a new node
//! check, before it sends the secret, that the server it reached has the cluster's CA.

use crate::TlsError;

/// The prefix of a token that carries the CA's hash.
const PREFIX: &str = "K10";

/// The SHA-256 of a CA certificate's PEM text, lowercase hex (what `K10` tokens carry, as k3s
/// hashes the CA bundle it serves at `/cacerts`).
pub fn fingerprint(ca_pem: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, ca_pem.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A join token: the secret the server checks, and the CA hash the node checks when the token
/// carries one.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Lowercase hex SHA-256 of the CA's PEM.
    pub ca_hash: Option<String>,
    pub secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_hash", &self.ca_hash)
            .finish_non_exhaustive()
    }
}

impl JoinToken {
    /// Reads `K10<64 hex>::SECRET` or a bare secret (a token without the CA hash, as older
    /// join tokens and admin tokens are).
    pub fn parse(text: &str) -> Result<JoinToken, TlsError> {
        let text = text.trim();
        let Some(rest) = text.strip_prefix(PREFIX).filter(|r| r.contains("::")) else {
            if text.is_empty() {
                return Err(TlsError::new("the join token is empty"));
            }
            return Ok(JoinToken {
                ca_hash: None,
                secret: text.to_owned(),
            });
        };
        let (hash, secret) = rest.split_once("::").unwrap_or((rest, ""));
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TlsError::new(format!(
                "the join token's CA hash {hash:?} is not a SHA-256 in hex (64 characters): the token must be K10<CA hash>::<secret>, as DATA_DIR/auth/join-token on the server holds it"
            )));
        }
        if secret.is_empty() {
            return Err(TlsError::new(
                "the join token has no secret after its CA hash (K10<CA hash>::<secret>)",
            ));
        }
        Ok(JoinToken {
            ca_hash: Some(hash.to_ascii_lowercase()),
            secret: secret.to_owned(),
        })
    }

    /// The token as the server writes it.
    pub fn render(&self) -> String {
        match &self.ca_hash {
            Some(hash) => format!("{PREFIX}{hash}::{}", self.secret),
            None => self.secret.clone(),
        }
    }

    /// Checks the CA a server presented against the token's hash; the error names both.
    pub fn check_ca(&self, ca_pem: &str) -> Result<(), TlsError> {
        let Some(expected) = &self.ca_hash else {
            return Ok(());
        };
        let actual = fingerprint(ca_pem);
        if &actual == expected {
            Ok(())
        } else {
            Err(TlsError::new(format!(
                "the server's CA does not match the join token: the token expects a CA with SHA-256 {expected}, the server's CA has {actual} (a token of another cluster, or someone between this node and the server)"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tokens_with_and_without_the_ca_hash() {
        let hash = fingerprint("ca");
        assert_eq!(hash.len(), 64);
        let token = JoinToken::parse(&format!("K10{hash}::s3cret\n")).unwrap();
        assert_eq!(token.ca_hash.as_deref(), Some(hash.as_str()));
        assert_eq!(token.secret, "s3cret");
        assert_eq!(token.render(), format!("K10{hash}::s3cret"));
        assert!(token.check_ca("ca").is_ok());
        let err = token.check_ca("another ca").unwrap_err().to_string();
        assert!(
            err.contains(&hash) && err.contains(&fingerprint("another ca")),
            "{err}"
        );
        let bare = JoinToken::parse("abc123").unwrap();
        assert_eq!(bare.ca_hash, None);
        assert!(bare.check_ca("anything").is_ok());
        assert!(JoinToken::parse("K10abc::s")
            .unwrap_err()
            .to_string()
            .contains("not a SHA-256"));
        assert!(JoinToken::parse(&format!("K10{hash}::"))
            .unwrap_err()
            .to_string()
            .contains("no secret"));
        assert!(JoinToken::parse("  ").is_err());
        assert!(!format!("{token:?}").contains("s3cret"));
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panic(text in ".*") {
            let _ = JoinToken::parse(&text);
        }

        #[test]
        fn rendered_tokens_read_back(secret in "[a-zA-Z0-9._-]{1,40}", ca in ".*") {
            let token = JoinToken { ca_hash: Some(fingerprint(&ca)), secret };
            prop_assert_eq!(JoinToken::parse(&token.render()).unwrap(), token);
        }
    }
}
