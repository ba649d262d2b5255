//! What a paged list asks for, as Kubernetes reads it: `limit`, `continue`, `resourceVersion`
//! and `resourceVersionMatch` ("Retrieving large results sets in chunks" and "Semantics for get
//! and list" of its API concepts), and the continue token.
//!
//! The token has the shape kube-apiserver's has — unpadded URL-safe base64 of
//! `{"v":"meta.k8s.io/v1","rv":N,"start":"KEY"}`, the key where the next page starts relative
//! to the list's storage prefix — but it is opaque to clients all the same. `rv` is the
//! revision every page of the list is read at; -1 says "the newest", what the token that comes
//! with a 410 carries (the rest of the list, no longer consistent with its first pages). minik
//! adds `remaining`, how many objects of the unfiltered list follow from `start` on: counted
//! once, on the first page, so that later pages need not walk the rest of the list again to
//! answer `remainingItemCount`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use minik_api::error::{FieldError, FieldPath};
use minik_api::ApiError;
use minik_store::Revision;
use serde::{Deserialize, Serialize};

/// The version of the token's encoding; Kubernetes' own.
const TOKEN_VERSION: &str = "meta.k8s.io/v1";

/// The token revision that asks for the newest revision.
const NEWEST: i64 = -1;

/// The most keys one read of a filtered list scans (Kubernetes' `maxLimit`).
pub(crate) const MAX_CHUNK: usize = 10_000;

/// How long a list from a resourceVersion the store has not reached yet waits for it, as
/// kube-apiserver's watch cache does, before it is answered "too large".
pub(crate) const FUTURE_REVISION_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Kubernetes' message for a list whose snapshot is gone, when a continue token asked for it.
pub const INCONSISTENT_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// Kubernetes' message for a list at an exact resourceVersion that is gone.
pub const EXPIRED_LIST: &str = "The resourceVersion for the provided list is too old.";

/// The paging and versioning query parameters of a list, as given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// `limit`: the most items in the answer; none (or not positive) for all of them.
    pub limit: Option<i64>,
    /// `continue`: the token of the previous page.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`: `Exact` or `NotOlderThan`.
    pub resource_version_match: Option<String>,
}

impl ListOptions {
    /// Whether the list is the plain one: everything, as of the newest revision.
    pub fn is_plain(&self) -> bool {
        self.page_limit().is_none()
            && self.continue_token.is_none()
            && matches!(self.resource_version.as_deref(), None | Some("" | "0"))
            && self.resource_version_match.is_none()
    }

    /// The `limit`, if it limits.
    pub(crate) fn page_limit(&self) -> Option<usize> {
        self.limit
            .filter(|l| *l > 0)
            .map(|l| usize::try_from(l).unwrap_or(usize::MAX))
    }
}

/// Where a list reads from, decided from its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReadFrom {
    /// The newest revision, after the store has reached `at_least` (if given).
    Newest { at_least: Option<Revision> },
    /// Exactly revision `revision` (410 once the store cannot rebuild it).
    Exact(Revision),
    /// The rest of a list, from its token.
    Continue(Continue),
}

/// What a continue token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Continue {
    /// The key the next page starts from.
    pub start: String,
    /// The revision of every page; `None`: the newest (inconsistent with the pages before).
    pub revision: Option<Revision>,
    /// How many objects of the unfiltered list there are from `start` on, if counted.
    pub remaining: Option<u64>,
}

/// Decides where a list of the collection under `prefix` reads from, refusing the
/// combinations Kubernetes refuses, with its words.
pub(crate) fn read_from(options: &ListOptions, prefix: &str) -> Result<ReadFrom, ApiError> {
    let rv = options
        .resource_version
        .as_deref()
        .filter(|rv| !rv.is_empty());
    let matching = options
        .resource_version_match
        .as_deref()
        .filter(|m| !m.is_empty());
    let continuing = options.continue_token.as_deref().filter(|c| !c.is_empty());
    if let Some(matching) = matching {
        let path = FieldPath::new("resourceVersionMatch");
        let mut errors = Vec::new();
        if rv.is_none() {
            errors.push(FieldError::forbidden(
                &path,
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if continuing.is_some() {
            errors.push(FieldError::forbidden(
                &path,
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
        if !matches!(matching, "Exact" | "NotOlderThan") {
            errors.push(FieldError::not_supported(
                &path,
                matching,
                &["Exact", "NotOlderThan", ""],
            ));
        }
        if matching == "Exact" && rv == Some("0") {
            errors.push(FieldError::forbidden(
                &path,
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
        if !errors.is_empty() {
            return Err(ApiError::Invalid {
                kind: "ListOptions".into(),
                group: "meta.k8s.io".into(),
                name: String::new(),
                errors,
            });
        }
    }
    if let Some(token) = continuing {
        if rv.is_some_and(|rv| rv != "0") {
            return Err(ApiError::BadRequest(
                "specifying resource version is not allowed when using continue".into(),
            ));
        }
        return Ok(ReadFrom::Continue(decode(token, prefix)?));
    }
    let revision = match rv {
        None => return Ok(ReadFrom::Newest { at_least: None }),
        Some(rv) => rv.parse::<Revision>().map_err(|_| {
            ApiError::BadRequest(format!(
                "resourceVersion {rv:?} is not valid: a resource version is a decimal number"
            ))
        })?,
    };
    let exact = match matching {
        Some(matching) => matching == "Exact",
        // Kubernetes' legacy rule: a resourceVersion with a limit is exact.
        None => revision != 0 && options.page_limit().is_some(),
    };
    Ok(match (exact, revision) {
        (true, revision) => ReadFrom::Exact(revision),
        (false, 0) => ReadFrom::Newest { at_least: None },
        (false, revision) => ReadFrom::Newest {
            at_least: Some(revision),
        },
    })
}

#[derive(Serialize, Deserialize)]
struct Token {
    #[serde(rename = "v")]
    version: String,
    #[serde(rename = "rv")]
    revision: i64,
    start: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remaining: Option<u64>,
}

/// The token of a list of the collection under `prefix` that goes on as `next` says.
pub(crate) fn encode(prefix: &str, next: &Continue) -> String {
    let token = Token {
        version: TOKEN_VERSION.into(),
        revision: next
            .revision
            .map_or(NEWEST, |r| i64::try_from(r).unwrap_or(i64::MAX)),
        start: next
            .start
            .strip_prefix(prefix)
            .unwrap_or(&next.start)
            .to_owned(),
        remaining: next.remaining,
    };
    // A struct of two strings and a number always serializes.
    let json = serde_json::to_vec(&token).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// What a continue token of a list of the collection under `prefix` says.
pub(crate) fn decode(token: &str, prefix: &str) -> Result<Continue, ApiError> {
    let invalid = |why: String| {
        ApiError::BadRequest(format!(
            "invalid continue token: continue key is not valid: {why}"
        ))
    };
    let json = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|e| invalid(format!("it is not base64 ({e})")))?;
    let token: Token =
        serde_json::from_slice(&json).map_err(|e| invalid(format!("it is not a token ({e})")))?;
    if token.version != TOKEN_VERSION {
        return Err(invalid(format!(
            "server does not recognize this encoded version {:?}",
            token.version
        )));
    }
    let revision = match token.revision {
        NEWEST => None,
        r if r > 0 => Some(r as Revision),
        _ => {
            return Err(invalid(format!(
                "incorrect encoded start resourceVersion (version {TOKEN_VERSION})"
            )))
        }
    };
    if token.start.is_empty() {
        return Err(invalid("encoded start key empty".into()));
    }
    Ok(Continue {
        start: format!("{prefix}{}", token.start),
        revision,
        remaining: token.remaining,
    })
}

/// The first key after `key`: where the page after one that ended at `key` starts.
pub(crate) fn key_after(key: &str) -> String {
    format!("{key}\0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PODS: &str = "/registry/pods/default/";

    /// Query parameters of a list request.
    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn options(pairs: &[(&str, &str)]) -> ListOptions {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        };
        ListOptions {
            limit: get("limit").map(|l| l.parse().unwrap()),
            continue_token: get("continue"),
            resource_version: get("resourceVersion"),
            resource_version_match: get("resourceVersionMatch"),
        }
    }

    fn at(start: &str, revision: Option<Revision>, remaining: Option<u64>) -> Continue {
        Continue {
            start: start.into(),
            revision,
            remaining,
        }
    }

    #[test]
    fn tokens_round_trip_and_look_like_kubernetes_ones() {
        let next = at("/registry/pods/default/web\0", Some(42), None);
        let token = encode(PODS, &next);
        let json = URL_SAFE_NO_PAD.decode(&token).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"v":"meta.k8s.io/v1","rv":42,"start":"web\u0000"}"#
        );
        assert_eq!(decode(&token, PODS).unwrap(), next);
        let counted = at("/registry/pods/default/web\0", None, Some(7));
        let token = encode(PODS, &counted);
        let json = URL_SAFE_NO_PAD.decode(&token).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"v":"meta.k8s.io/v1","rv":-1,"start":"web\u0000","remaining":7}"#
        );
        assert_eq!(decode(&token, PODS).unwrap(), counted);
    }

    #[test]
    fn bad_tokens_are_refused_with_what_is_wrong() {
        let cases = [
            ("!!!", "it is not base64"),
            (&URL_SAFE_NO_PAD.encode("[1]"), "it is not a token"),
            (
                &URL_SAFE_NO_PAD.encode(r#"{"v":"x/v9","rv":1,"start":"a"}"#),
                "server does not recognize this encoded version",
            ),
            (
                &URL_SAFE_NO_PAD.encode(r#"{"v":"meta.k8s.io/v1","rv":0,"start":"a"}"#),
                "incorrect encoded start resourceVersion",
            ),
            (
                &URL_SAFE_NO_PAD.encode(r#"{"v":"meta.k8s.io/v1","rv":3,"start":""}"#),
                "encoded start key empty",
            ),
        ];
        for (token, why) in cases {
            let e = decode(token, PODS).unwrap_err();
            assert_eq!(e.code(), 400, "{token}");
            let message = e.to_string();
            assert!(
                message.starts_with("invalid continue token: continue key is not valid: "),
                "{message}"
            );
            assert!(message.contains(why), "{message}");
        }
    }

    #[test]
    fn resource_version_semantics_follow_kubernetes() {
        let newest = ReadFrom::Newest { at_least: None };
        let cases: &[(Pairs, ReadFrom)] = &[
            (&[], newest.clone()),
            (&[("resourceVersion", "0")], newest.clone()),
            (&[("resourceVersion", "0"), ("limit", "5")], newest.clone()),
            (
                &[("resourceVersion", "7")],
                ReadFrom::Newest { at_least: Some(7) },
            ),
            (
                &[("resourceVersion", "7"), ("limit", "5")],
                ReadFrom::Exact(7),
            ),
            (
                &[("resourceVersion", "7"), ("limit", "0")],
                ReadFrom::Newest { at_least: Some(7) },
            ),
            (
                &[
                    ("resourceVersion", "7"),
                    ("resourceVersionMatch", "NotOlderThan"),
                    ("limit", "5"),
                ],
                ReadFrom::Newest { at_least: Some(7) },
            ),
            (
                &[("resourceVersion", "7"), ("resourceVersionMatch", "Exact")],
                ReadFrom::Exact(7),
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(
                &read_from(&options(pairs), PODS).unwrap(),
                want,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn forbidden_combinations_are_refused() {
        let token = encode(PODS, &at("/registry/pods/default/a\0", Some(3), None));
        let cases: &[(Pairs, u16, &str)] = &[
            (
                &[("resourceVersionMatch", "Exact")],
                422,
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ),
            (
                &[("resourceVersion", "0"), ("resourceVersionMatch", "Exact")],
                422,
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ),
            (
                &[("resourceVersion", "1"), ("resourceVersionMatch", "Newest")],
                422,
                "Unsupported value: \"Newest\"",
            ),
            (
                &[("resourceVersion", "5"), ("continue", &token)],
                400,
                "specifying resource version is not allowed when using continue",
            ),
            (&[("resourceVersion", "x1")], 400, "\"x1\" is not valid"),
        ];
        for (pairs, code, words) in cases {
            let e = read_from(&options(pairs), PODS).unwrap_err();
            assert_eq!(e.code(), *code, "{pairs:?}");
            assert!(e.to_string().contains(words), "{pairs:?}: {e}");
        }
        // resourceVersion=0 goes with a continue token, as in Kubernetes.
        let with_zero = options(&[("resourceVersion", "0"), ("continue", &token)]);
        assert!(matches!(
            read_from(&with_zero, PODS),
            Ok(ReadFrom::Continue(_))
        ));
    }

    proptest! {
        #[test]
        fn decoding_any_token_never_panics(token in ".{0,200}") {
            let _ = decode(&token, PODS);
        }

        #[test]
        fn any_key_and_revision_round_trip(
            name in "[a-z0-9.-]{1,40}",
            rv in 1u64..u64::from(u32::MAX),
            remaining in proptest::option::of(0u64..1_000_000),
        ) {
            let next = at(&key_after(&format!("{PODS}{name}")), Some(rv), remaining);
            prop_assert_eq!(decode(&encode(PODS, &next), PODS).unwrap(), next);
        }
    }
}
