//! Encryption at rest of chosen resources (Secrets by default), as Kubernetes'
//! `EncryptionConfiguration` with its `aesgcm` and `identity` providers does.
//!
//! The configuration file is Kubernetes' own YAML:
//!
//! ```yaml
//! apiVersion: apiserver.config.k8s.io/v1
//! kind: EncryptionConfiguration
//! resources:
//!   - resources: [secrets]
//!     providers:
//!       - aesgcm:
//!           keys:
//!             - name: key2
//!               secret: <base64 of 32 random bytes>
//!             - name: key1
//!               secret: <base64 of 32 random bytes>
//!       - identity: {}
//! ```
//!
//! For each entry the first provider writes: its first key encrypts new values (or, when the
//! first provider is `identity`, they are written in plaintext); every key in the file
//! decrypts, found by the name each encrypted value carries. A value written by `aesgcm` is
//! `k8s:enc:aesgcm:v1:<key name>:` + a random 12-byte nonce + the AES-256-GCM ciphertext and
//! tag of the object's JSON, with the storage key as associated data, so a value copied to
//! another key does not decrypt. A value without that prefix is plaintext (the JSON of an
//! object always starts with `{`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use base64::Engine;
use serde::{Deserialize, Deserializer};

use crate::{Result, StoreError};

/// What every value encrypted by a Kubernetes-style provider starts with.
pub const ENCRYPTED_PREFIX: &str = "k8s:enc:";

/// What a value written by the `aesgcm` provider starts with, before the key's name and `:`.
pub const AESGCM_PREFIX: &str = "k8s:enc:aesgcm:v1:";

/// The bytes of an `aesgcm` key: AES-256.
pub const KEY_BYTES: usize = 32;

/// The bytes of the random nonce before each ciphertext.
const NONCE_BYTES: usize = 12;

/// The bytes of the authentication tag after each ciphertext.
const TAG_BYTES: usize = 16;

/// The name of the key [`Encryption::generate`] writes.
const GENERATED_KEY_NAME: &str = "key1";

/// Why an encryption configuration could not be read, understood or written.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionConfigError {
    #[error("cannot read the encryption configuration {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The configuration is malformed; `message` names the field (`resources[0].providers[0]`).
    #[error("invalid encryption configuration{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("cannot write the encryption configuration {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// How new values of a covered resource are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteProvider {
    /// As plaintext.
    Identity,
    /// Encrypted with the key at this index of `Encryption::keys`.
    Key(usize),
}

/// One entry of the configuration's `resources`: the storage prefixes of its resources and how
/// they are written.
#[derive(Debug)]
struct Rule {
    /// `/registry/<plural>/` for each resource listed.
    prefixes: Vec<String>,
    write: WriteProvider,
}

/// One `aesgcm` key, its cipher built once.
struct NamedKey {
    name: String,
    cipher: Aes256Gcm,
}

/// A loaded encryption configuration: which storage keys it covers, the key that encrypts new
/// values of each, and every key that decrypts.
pub struct Encryption {
    rules: Vec<Rule>,
    keys: Vec<NamedKey>,
    by_name: HashMap<String, usize>,
    /// The file it came from, for error messages.
    source: Option<PathBuf>,
}

impl fmt::Debug for Encryption {
    // Names only: never the secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.keys.iter().map(|k| k.name.as_str()).collect();
        f.debug_struct("Encryption")
            .field("rules", &self.rules)
            .field("keys", &keys)
            .field("source", &self.source)
            .finish()
    }
}

/// What a stored value (after its revision) is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Form<'a> {
    Plaintext,
    /// Written by `aesgcm` with the key of this name.
    AesGcm(&'a str),
    /// Written by a provider minik does not have (`aescbc`, `secretbox`, `kms`).
    Other(&'a str),
}

/// Tells what form a stored value is in, from its prefix.
pub(crate) fn form_of(data: &[u8]) -> Form<'_> {
    if let Some(rest) = data.strip_prefix(AESGCM_PREFIX.as_bytes()) {
        let name = rest
            .iter()
            .position(|&b| b == b':')
            .and_then(|end| std::str::from_utf8(&rest[..end]).ok())
            .unwrap_or("");
        return Form::AesGcm(name);
    }
    if let Some(rest) = data.strip_prefix(ENCRYPTED_PREFIX.as_bytes()) {
        let provider = rest
            .iter()
            .position(|&b| b == b':')
            .and_then(|end| std::str::from_utf8(&rest[..end]).ok())
            .unwrap_or("unknown");
        return Form::Other(provider);
    }
    Form::Plaintext
}

/// The JSON of a stored value (what follows its revision): decrypted if it is encrypted and
/// `encryption` has its key, as is if it is plaintext, an error naming `key` otherwise.
pub(crate) fn decode_json<'a>(
    encryption: Option<&Encryption>,
    key: &str,
    data: &'a [u8],
) -> Result<Cow<'a, [u8]>> {
    match encryption {
        Some(encryption) => encryption.from_storage(key, data),
        None => match form_of(data) {
            Form::Plaintext => Ok(Cow::Borrowed(data)),
            Form::AesGcm(name) => Err(StoreError::Backend(format!(
                "cannot read {key}: it is encrypted at rest with key {name:?}, but the store has \
                 no encryption configuration; start the server with the configuration that has \
                 that key (--secrets-encryption or --encryption-provider-config)"
            ))),
            Form::Other(provider) => Err(unsupported_provider(key, provider)),
        },
    }
}

fn unsupported_provider(key: &str, provider: &str) -> StoreError {
    StoreError::Backend(format!(
        "cannot read {key}: it is encrypted with the {provider:?} provider, which minik does not \
         have (only aesgcm and identity)"
    ))
}

impl Encryption {
    /// Reads and checks the configuration file at `path` (Kubernetes' EncryptionConfiguration
    /// YAML). Errors name the file and the field.
    pub fn load(path: &Path) -> Result<Encryption, EncryptionConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| EncryptionConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        warn_if_readable_by_others(path);
        let mut encryption = parse(&text).map_err(|message| EncryptionConfigError::Invalid {
            origin: format!(" {}", path.display()),
            message,
        })?;
        encryption.source = Some(path.to_owned());
        Ok(encryption)
    }

    /// Parses a configuration from YAML (or JSON) text; see [`Encryption::load`].
    pub fn from_yaml(text: &str) -> Result<Encryption, EncryptionConfigError> {
        parse(text).map_err(|message| EncryptionConfigError::Invalid {
            origin: String::new(),
            message,
        })
    }

    /// Writes a new configuration to `path` that encrypts Secrets with one fresh random key,
    /// readable by its owner only (mode 0600), unless a file is there already. Returns whether
    /// it wrote one. The file appears whole or not at all.
    pub fn generate(path: &Path) -> Result<bool, EncryptionConfigError> {
        if path.exists() {
            return Ok(false);
        }
        let failed = |message: String| EncryptionConfigError::Write {
            path: path.to_owned(),
            message,
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| failed(format!("cannot create its directory: {e}")))?;
        let mut secret = [0u8; KEY_BYTES];
        getrandom::fill(&mut secret)
            .map_err(|e| failed(format!("cannot get random bytes for a key: {e}")))?;
        let text = generated_config(GENERATED_KEY_NAME, &secret);
        secret.fill(0);

        // Written aside, then linked into place: the link fails if another process made the
        // file meanwhile, and nobody ever reads half a file.
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix)
            .map_err(|e| failed(format!("cannot get random bytes for a file name: {e}")))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "encryption-config.yaml".into());
        let temp = dir.join(format!(
            ".{file_name}.{:016x}.tmp",
            u64::from_be_bytes(suffix)
        ));
        let written =
            write_private(&temp, text.as_bytes()).and_then(|()| {
                match std::fs::hard_link(&temp, path) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(e),
                }
            });
        let _ = std::fs::remove_file(&temp);
        let created = written.map_err(|e| failed(e.to_string()))?;
        if created {
            if let Ok(dir) = std::fs::File::open(&dir) {
                dir.sync_all()
                    .map_err(|e| failed(format!("cannot sync its directory: {e}")))?;
            }
        }
        Ok(created)
    }

    /// Whether values under `key` are written by this configuration (encrypted, or plaintext
    /// when its first provider is `identity`) and re-written at open when they are not.
    pub fn covers(&self, key: &str) -> bool {
        self.rule(key).is_some()
    }

    /// The storage prefixes this configuration covers (`/registry/secrets/`).
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .flat_map(|r| r.prefixes.iter().map(String::as_str))
    }

    /// The name of the key new values of `key` are encrypted with; `None` when they are
    /// written in plaintext (not covered, or `identity` first).
    pub fn write_key(&self, key: &str) -> Option<&str> {
        match self.rule(key)?.write {
            WriteProvider::Identity => None,
            WriteProvider::Key(i) => self.keys.get(i).map(|k| k.name.as_str()),
        }
    }

    /// The names of every key that decrypts, in the order of the file.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.name.as_str())
    }

    /// The bytes to keep on disk for the JSON of `key`: encrypted when the configuration
    /// encrypts `key`, the JSON itself otherwise.
    pub fn to_storage<'a>(&self, key: &str, json: &'a [u8]) -> Result<Cow<'a, [u8]>> {
        match self.write_cipher(key) {
            None => Ok(Cow::Borrowed(json)),
            Some(named) => {
                let mut out = Vec::new();
                seal(named, key, json, &mut out)?;
                Ok(Cow::Owned(out))
            }
        }
    }

    /// Appends the bytes to keep on disk for the JSON of `key` to `out`; see
    /// [`Encryption::to_storage`].
    pub(crate) fn encode_into(&self, key: &str, json: &[u8], out: &mut Vec<u8>) -> Result<()> {
        match self.write_cipher(key) {
            None => {
                out.extend_from_slice(json);
                Ok(())
            }
            Some(named) => seal(named, key, json, out),
        }
    }

    /// The JSON of `key` from the bytes on disk: decrypted with the key the value names (any
    /// key of the configuration), or as is when it is plaintext. A value that does not decrypt
    /// is an error naming `key` and the key name, never garbage.
    pub fn from_storage<'a>(&self, key: &str, data: &'a [u8]) -> Result<Cow<'a, [u8]>> {
        let name = match form_of(data) {
            Form::Plaintext => return Ok(Cow::Borrowed(data)),
            Form::Other(provider) => return Err(unsupported_provider(key, provider)),
            Form::AesGcm(name) => name,
        };
        let malformed = || {
            StoreError::Backend(format!(
                "cannot decrypt {key}: its value is malformed (it starts like an aesgcm value, \
                 but is cut short or names no key)"
            ))
        };
        if name.is_empty() {
            return Err(malformed());
        }
        let Some(named) = self.by_name.get(name).and_then(|&i| self.keys.get(i)) else {
            return Err(StoreError::Backend(format!(
                "cannot decrypt {key}: it was encrypted with key {name:?}, which is not in the \
                 encryption configuration{}; add that key back to the configuration",
                self.origin()
            )));
        };
        let body = data
            .get(AESGCM_PREFIX.len() + name.len() + 1..)
            .ok_or_else(malformed)?;
        if body.len() < NONCE_BYTES + TAG_BYTES {
            return Err(malformed());
        }
        let (nonce, rest) = body.split_at(NONCE_BYTES);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_BYTES);
        let mut plain = ciphertext.to_vec();
        named
            .cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                key.as_bytes(),
                &mut plain,
                Tag::from_slice(tag),
            )
            .map_err(|_| {
                StoreError::Backend(format!(
                    "cannot decrypt {key} with key {name:?}: the value is corrupt, was tampered \
                     with, or was written for another key (authentication failed)"
                ))
            })?;
        Ok(Cow::Owned(plain))
    }

    /// Whether a value of `key` stored in form `form` must be re-written: it is covered and
    /// not in the form new writes take.
    pub(crate) fn needs_rewrite(&self, key: &str, form: &Form<'_>) -> bool {
        let Some(rule) = self.rule(key) else {
            return false;
        };
        match (rule.write, form) {
            (WriteProvider::Identity, Form::Plaintext) => false,
            (WriteProvider::Key(i), Form::AesGcm(name)) => {
                self.keys.get(i).is_none_or(|k| k.name != *name)
            }
            _ => true,
        }
    }

    /// Whether the configuration has a key of this name.
    pub(crate) fn has_key(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// " <path>" when the configuration came from a file, for messages.
    pub(crate) fn origin(&self) -> String {
        match &self.source {
            Some(path) => format!(" ({})", path.display()),
            None => String::new(),
        }
    }

    fn rule(&self, key: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| r.prefixes.iter().any(|p| key.starts_with(p.as_str())))
    }

    fn write_cipher(&self, key: &str) -> Option<&NamedKey> {
        match self.rule(key)?.write {
            WriteProvider::Identity => None,
            WriteProvider::Key(i) => self.keys.get(i),
        }
    }
}

/// Appends `k8s:enc:aesgcm:v1:<name>:` + nonce + ciphertext + tag of `json` to `out`, with
/// `key` as associated data.
fn seal(named: &NamedKey, key: &str, json: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|e| {
        StoreError::Backend(format!(
            "cannot encrypt {key}: no random bytes for a nonce: {e}"
        ))
    })?;
    out.reserve(AESGCM_PREFIX.len() + named.name.len() + 1 + NONCE_BYTES + json.len() + TAG_BYTES);
    out.extend_from_slice(AESGCM_PREFIX.as_bytes());
    out.extend_from_slice(named.name.as_bytes());
    out.push(b':');
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(json);
    let tag = named
        .cipher
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), key.as_bytes(), &mut out[start..])
        .map_err(|_| {
            StoreError::Backend(format!("cannot encrypt {key}: the value is too large"))
        })?;
    out.extend_from_slice(&tag);
    Ok(())
}

/// Writes `bytes` to a new file at `path` with mode 0600 and syncs it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "the encryption configuration holds keys but others than its owner may read it; chmod 600 it"
                );
            }
        }
    }
}

/// The text of a generated configuration.
fn generated_config(name: &str, secret: &[u8]) -> String {
    let secret = base64::engine::general_purpose::STANDARD.encode(secret);
    format!(
        "# minik's encryption at rest (Kubernetes' EncryptionConfiguration). The first provider\n\
         # encrypts new writes with its first key; every key listed decrypts.\n\
         # Rotation and turning it off: docs/secrets-encryption.md. Keep this file secret.\n\
         apiVersion: apiserver.config.k8s.io/v1\n\
         kind: EncryptionConfiguration\n\
         resources:\n\
         \x20 - resources:\n\
         \x20     - secrets\n\
         \x20   providers:\n\
         \x20     - aesgcm:\n\
         \x20         keys:\n\
         \x20           - name: {name}\n\
         \x20             secret: {secret}\n\
         \x20     - identity: {{}}\n"
    )
}

// The file's shape, as Kubernetes' apiserver.config.k8s.io/v1 EncryptionConfiguration.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    resources: Vec<ResourceConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceConfig {
    resources: Vec<String>,
    providers: Vec<ProviderConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderConfig {
    #[serde(default)]
    aesgcm: Option<AesGcmConfig>,
    // `identity: {}` and a bare `identity:` alike.
    #[serde(default, deserialize_with = "present")]
    identity: Option<serde_yaml::Value>,
    #[serde(default, deserialize_with = "present")]
    aescbc: Option<serde_yaml::Value>,
    #[serde(default, deserialize_with = "present")]
    secretbox: Option<serde_yaml::Value>,
    #[serde(default, deserialize_with = "present")]
    kms: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AesGcmConfig {
    keys: Vec<KeyConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyConfig {
    name: String,
    secret: String,
}

/// A field that is there, whatever its value (null included).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_yaml::Value>, D::Error> {
    serde_yaml::Value::deserialize(d).map(Some)
}

/// Parses and checks a configuration; the error names the field.
fn parse(text: &str) -> Result<Encryption, String> {
    let file: ConfigFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    if let Some(kind) = &file.kind {
        if kind != "EncryptionConfiguration" {
            return Err(format!(
                "kind: is {kind:?}, expected \"EncryptionConfiguration\""
            ));
        }
    }
    if let Some(version) = &file.api_version {
        if version != "apiserver.config.k8s.io/v1" && version != "v1" {
            return Err(format!(
                "apiVersion: is {version:?}, expected \"apiserver.config.k8s.io/v1\""
            ));
        }
    }
    if file.resources.is_empty() {
        return Err("resources: lists nothing; list at least one entry".into());
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut rules = Vec::new();
    let mut keys: Vec<NamedKey> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    // Each key's secret and where it was first given, to refuse one name for two secrets.
    let mut secrets: HashMap<String, (Vec<u8>, String)> = HashMap::new();
    // Each prefix and the field that named it.
    let mut covered: HashMap<String, String> = HashMap::new();

    for (i, entry) in file.resources.iter().enumerate() {
        let at = format!("resources[{i}]");
        if entry.resources.is_empty() {
            return Err(format!(
                "{at}.resources: lists nothing; name at least one resource (secrets)"
            ));
        }
        let mut prefixes = Vec::new();
        for (j, resource) in entry.resources.iter().enumerate() {
            let field = format!("{at}.resources[{j}]");
            let prefix = prefix_of(resource).map_err(|e| format!("{field}: {e}"))?;
            if let Some(first) = covered.get(&prefix) {
                return Err(format!(
                    "{field}: {resource:?} is stored under {prefix}, which {first} covers already"
                ));
            }
            covered.insert(prefix.clone(), field);
            prefixes.push(prefix);
        }
        if entry.providers.is_empty() {
            return Err(format!(
                "{at}.providers: lists nothing; list aesgcm or identity"
            ));
        }
        let mut write = None;
        for (k, provider) in entry.providers.iter().enumerate() {
            let at = format!("{at}.providers[{k}]");
            let mut kinds = Vec::new();
            if provider.aesgcm.is_some() {
                kinds.push("aesgcm");
            }
            if provider.identity.is_some() {
                kinds.push("identity");
            }
            for (name, value) in [
                ("aescbc", &provider.aescbc),
                ("secretbox", &provider.secretbox),
                ("kms", &provider.kms),
            ] {
                if value.is_some() {
                    return Err(format!(
                        "{at}.{name}: minik does not have this provider; use aesgcm or identity"
                    ));
                }
            }
            match kinds.as_slice() {
                [] => {
                    return Err(format!(
                        "{at}: names no provider; expected aesgcm or identity"
                    ))
                }
                [_] => {}
                _ => {
                    return Err(format!(
                        "{at}: names both aesgcm and identity; each provider is its own list item"
                    ))
                }
            }
            if let Some(identity) = &provider.identity {
                let empty = match identity {
                    serde_yaml::Value::Null => true,
                    serde_yaml::Value::Mapping(m) => m.is_empty(),
                    _ => false,
                };
                if !empty {
                    return Err(format!(
                        "{at}.identity: takes no settings; write identity: {{}}"
                    ));
                }
                write.get_or_insert(WriteProvider::Identity);
            }
            let Some(aesgcm) = &provider.aesgcm else {
                continue;
            };
            if aesgcm.keys.is_empty() {
                return Err(format!(
                    "{at}.aesgcm.keys: lists nothing; list at least one key"
                ));
            }
            let mut names = HashSet::new();
            for (m, key) in aesgcm.keys.iter().enumerate() {
                let at = format!("{at}.aesgcm.keys[{m}]");
                check_key_name(&key.name).map_err(|e| format!("{at}.name: {e}"))?;
                if !names.insert(key.name.as_str()) {
                    return Err(format!(
                        "{at}.name: {:?} is listed twice in this provider",
                        key.name
                    ));
                }
                let mut secret = b64.decode(key.secret.trim()).map_err(|e| {
                    format!("{at}.secret: is not base64 ({e}); make one with: head -c 32 /dev/urandom | base64")
                })?;
                if secret.len() != KEY_BYTES {
                    let n = secret.len();
                    secret.fill(0);
                    return Err(format!(
                        "{at}.secret: decodes to {n} bytes; AES-256-GCM needs {KEY_BYTES} \
                         (make one with: head -c 32 /dev/urandom | base64)"
                    ));
                }
                let index = match secrets.get(&key.name) {
                    Some((known, first)) if *known != secret => {
                        return Err(format!(
                            "{at}: key {:?} has another secret than at {first}; a name must \
                             always mean the same key",
                            key.name
                        ));
                    }
                    Some(_) => by_name.get(&key.name).copied(),
                    None => None,
                };
                let index = match index {
                    Some(index) => {
                        secret.fill(0);
                        index
                    }
                    None => {
                        let cipher = Aes256Gcm::new_from_slice(&secret)
                            .map_err(|_| format!("{at}.secret: is not a valid AES-256 key"))?;
                        let index = keys.len();
                        keys.push(NamedKey {
                            name: key.name.clone(),
                            cipher,
                        });
                        by_name.insert(key.name.clone(), index);
                        secrets.insert(key.name.clone(), (secret, at.clone()));
                        index
                    }
                };
                if m == 0 {
                    write.get_or_insert(WriteProvider::Key(index));
                }
            }
        }
        let write = write.ok_or_else(|| format!("{at}.providers: lists no provider"))?;
        rules.push(Rule { prefixes, write });
    }
    for (secret, _) in secrets.values_mut() {
        secret.fill(0);
    }
    Ok(Encryption {
        rules,
        keys,
        by_name,
        source: None,
    })
}

/// The storage prefix of a resource named as Kubernetes' configuration names it: `secrets`,
/// or `deployments.apps` (minik's keys are `/registry/<plural>/...` whatever the group).
fn prefix_of(resource: &str) -> Result<String, String> {
    if resource.contains('*') {
        return Err(format!(
            "{resource:?}: wildcards are not supported; name each resource (secrets, configmaps)"
        ));
    }
    let plural = resource.split('.').next().unwrap_or("");
    let valid = !plural.is_empty()
        && resource
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !valid {
        return Err(format!(
            "{resource:?} is not a resource name (lowercase plural, like secrets or deployments.apps)"
        ));
    }
    Ok(format!("/registry/{plural}/"))
}

fn check_key_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty; every key needs a name".into());
    }
    if name.len() > 250 {
        return Err(format!("is {} bytes long; at most 250", name.len()));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{name:?} has {bad:?}; a key name has no ':' and no spaces"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
    const KEY2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="; // 32 bytes

    fn config(providers: &str) -> String {
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{providers}"
        )
    }

    fn aesgcm(keys: &[(&str, &str)]) -> String {
        let mut s = String::from("      - aesgcm:\n          keys:\n");
        for (name, secret) in keys {
            s.push_str(&format!(
                "            - name: {name}\n              secret: {secret}\n"
            ));
        }
        s
    }

    fn load(text: &str) -> Encryption {
        match Encryption::from_yaml(text) {
            Ok(e) => e,
            Err(e) => panic!("{e}\n{text}"),
        }
    }

    fn invalid(text: &str) -> String {
        match Encryption::from_yaml(text) {
            Ok(e) => panic!("accepted: {e:?}\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    const SECRET: &str = "/registry/secrets/default/s";

    #[test]
    fn round_trip_and_format() {
        let enc = load(&config(&aesgcm(&[("key1", KEY1)])));
        let json = br#"{"data":{"password":"aHVudGVyMg=="}}"#;
        let stored = enc.to_storage(SECRET, json).unwrap().into_owned();
        assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:key1:"));
        assert_eq!(
            stored.len(),
            "k8s:enc:aesgcm:v1:key1:".len() + 12 + json.len() + 16
        );
        assert!(!stored.windows(8).any(|w| w == b"password"));
        assert_eq!(enc.from_storage(SECRET, &stored).unwrap().as_ref(), json);
        // Two writes of the same value differ (random nonce).
        let again = enc.to_storage(SECRET, json).unwrap().into_owned();
        assert_ne!(stored, again);
    }

    #[test]
    fn uncovered_keys_and_plaintext_pass_through() {
        let enc = load(&config(&aesgcm(&[("key1", KEY1)])));
        let json = br#"{"a":1}"#;
        let cm = "/registry/configmaps/default/c";
        assert!(!enc.covers(cm));
        assert!(matches!(
            enc.to_storage(cm, json).unwrap(),
            Cow::Borrowed(_)
        ));
        assert_eq!(enc.from_storage(SECRET, json).unwrap().as_ref(), json);
        // A secret with a name that merely starts like the prefix is not another resource.
        assert!(!enc.covers("/registry/secretsx/a"));
        assert!(enc.covers("/registry/secrets/a"));
    }

    #[test]
    fn any_key_decrypts_and_the_first_writes() {
        let old = load(&config(&aesgcm(&[("key1", KEY1)])));
        let stored = old.to_storage(SECRET, b"{}").unwrap().into_owned();
        let rotated = load(&config(&aesgcm(&[("key2", KEY2), ("key1", KEY1)])));
        assert_eq!(rotated.write_key(SECRET), Some("key2"));
        assert_eq!(
            rotated.from_storage(SECRET, &stored).unwrap().as_ref(),
            b"{}"
        );
        assert!(rotated.needs_rewrite(SECRET, &form_of(&stored)));
        let fresh = rotated.to_storage(SECRET, b"{}").unwrap().into_owned();
        assert!(!rotated.needs_rewrite(SECRET, &form_of(&fresh)));
        assert!(rotated.needs_rewrite(SECRET, &Form::Plaintext));

        let only_new = load(&config(&aesgcm(&[("key2", KEY2)])));
        let e = only_new
            .from_storage(SECRET, &stored)
            .unwrap_err()
            .to_string();
        assert!(e.contains(SECRET) && e.contains("\"key1\""), "{e}");
    }

    #[test]
    fn identity_first_writes_plaintext_and_still_decrypts() {
        let enc = load(&config(&aesgcm(&[("key1", KEY1)])));
        let stored = enc.to_storage(SECRET, b"{}").unwrap().into_owned();
        let off = load(&config(&format!(
            "      - identity: {{}}\n{}",
            aesgcm(&[("key1", KEY1)])
        )));
        assert_eq!(off.write_key(SECRET), None);
        assert!(off.covers(SECRET));
        assert_eq!(off.to_storage(SECRET, b"{}").unwrap().as_ref(), b"{}");
        assert_eq!(off.from_storage(SECRET, &stored).unwrap().as_ref(), b"{}");
        assert!(off.needs_rewrite(SECRET, &form_of(&stored)));
        assert!(!off.needs_rewrite(SECRET, &Form::Plaintext));
        // A bare `identity:` is accepted as well.
        load(&config("      - identity:\n"));
    }

    #[test]
    fn tampering_and_moving_fail_with_the_key_named() {
        let enc = load(&config(&aesgcm(&[("key1", KEY1)])));
        let stored = enc
            .to_storage(SECRET, br#"{"x":"y"}"#)
            .unwrap()
            .into_owned();
        for i in "k8s:enc:aesgcm:v1:key1:".len()..stored.len() {
            let mut bad = stored.clone();
            bad[i] ^= 0x01;
            let e = enc.from_storage(SECRET, &bad).unwrap_err().to_string();
            assert!(e.contains(SECRET) && e.contains("key1"), "{e}");
        }
        let e = enc
            .from_storage("/registry/secrets/default/other", &stored)
            .unwrap_err()
            .to_string();
        assert!(e.contains("authentication failed"), "{e}");
    }

    #[test]
    fn without_a_configuration_encrypted_values_are_an_error() {
        let enc = load(&config(&aesgcm(&[("key1", KEY1)])));
        let stored = enc.to_storage(SECRET, b"{}").unwrap().into_owned();
        let e = decode_json(None, SECRET, &stored).unwrap_err().to_string();
        assert!(e.contains(SECRET) && e.contains("key1"), "{e}");
        assert_eq!(decode_json(None, SECRET, b"{}").unwrap().as_ref(), b"{}");
        let e = decode_json(Some(&enc), SECRET, b"k8s:enc:kms:v2:x:abc")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kms"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(String, &str)> = vec![
            ("resources: []\n".into(), "resources:"),
            (config(""), "resources[0].providers"),
            (config("      - {}\n"), "resources[0].providers[0]: names no provider"),
            (config(&aesgcm(&[("key1", "not base64!")])), "resources[0].providers[0].aesgcm.keys[0].secret: is not base64"),
            (config(&aesgcm(&[("key1", "c2hvcnQ=")])), "decodes to 5 bytes"),
            (config(&aesgcm(&[("", KEY1)])), "keys[0].name: is empty"),
            (config(&aesgcm(&[("a:b", KEY1)])), "keys[0].name"),
            (config(&aesgcm(&[("k", KEY1), ("k", KEY2)])), "keys[1].name"),
            (config("      - aescbc:\n          keys: []\n"), "providers[0].aescbc: minik does not have"),
            (config("      - aesgcm:\n          keys: []\n"), "aesgcm.keys: lists nothing"),
            (config("      - identity: {}\n        aesgcm:\n          keys: []\n"), "names both"),
            (config("      - identity: {a: 1}\n"), "identity: takes no settings"),
            (config("      - aesgcm:\n          keys:\n            - name: k\n"), "secret"),
            (config("      - aesgcm:\n          keyz: []\n"), "keyz"),
            ("kind: Pod\nresources: []\n".into(), "kind:"),
            ("resources:\n  - resources: ['*.*']\n    providers: [{identity: {}}]\n".into(), "resources[0].resources[0]: \"*.*\": wildcards"),
            ("resources:\n  - resources: [secrets]\n    providers: [{identity: {}}]\n  - resources: [secrets.v1]\n    providers: [{identity: {}}]\n".into(), "resources[1].resources[0]"),
            (
                format!("resources:\n  - resources: [secrets]\n    providers: [{{aesgcm: {{keys: [{{name: k, secret: {KEY1}}}]}}}}]\n  - resources: [configmaps]\n    providers: [{{aesgcm: {{keys: [{{name: k, secret: {KEY2}}}]}}}}]\n"),
                "resources[1].providers[0].aesgcm.keys[0]: key \"k\" has another secret",
            ),
        ];
        for (text, wanted) in cases {
            let e = invalid(&text);
            assert!(e.contains(wanted), "{e:?} lacks {wanted:?}\n{text}");
            assert!(
                !e.contains(KEY1) && !e.contains(KEY2),
                "an error shows a secret: {e}"
            );
        }
    }

    #[test]
    fn several_resources_and_entries() {
        let text = format!(
            "resources:\n  - resources: [secrets, configmaps]\n    providers: [{{aesgcm: {{keys: [{{name: a, secret: {KEY1}}}]}}}}]\n  - resources: [deployments.apps]\n    providers: [{{identity: {{}}}}, {{aesgcm: {{keys: [{{name: b, secret: {KEY2}}}]}}}}]\n"
        );
        let enc = load(&text);
        assert_eq!(enc.write_key("/registry/configmaps/ns/c"), Some("a"));
        assert_eq!(enc.write_key("/registry/deployments/ns/d"), None);
        assert!(enc.covers("/registry/deployments/ns/d"));
        assert_eq!(enc.key_names().collect::<Vec<_>>(), ["a", "b"]);
        let mut prefixes: Vec<_> = enc.prefixes().collect();
        prefixes.sort();
        assert_eq!(
            prefixes,
            [
                "/registry/configmaps/",
                "/registry/deployments/",
                "/registry/secrets/"
            ]
        );
        // Debug never shows a secret.
        let debug = format!("{enc:?}");
        assert!(!debug.contains(KEY1) && debug.contains("\"a\""), "{debug}");
    }

    #[test]
    fn generate_writes_a_private_loadable_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("encryption-config.yaml");
        assert!(Encryption::generate(&path).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!Encryption::generate(&path).unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "kept as it was"
        );
        let enc = Encryption::load(&path).unwrap();
        assert_eq!(enc.write_key(SECRET), Some(GENERATED_KEY_NAME));
        // Only the file is left in its directory.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // Another generated file has another key.
        let other = dir.path().join("other.yaml");
        assert!(Encryption::generate(&other).unwrap());
        let stored = enc.to_storage(SECRET, b"{}").unwrap().into_owned();
        let e = Encryption::load(&other)
            .unwrap()
            .from_storage(SECRET, &stored);
        assert!(e.is_err(), "two generated keys are the same");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.yaml");
        let e = Encryption::load(&path).unwrap_err().to_string();
        assert!(e.contains("missing.yaml"), "{e}");
        std::fs::write(&path, "resources: []\n").unwrap();
        let e = Encryption::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("missing.yaml") && e.contains("resources:"),
            "{e}"
        );
    }

    #[test]
    fn reads_json_too() {
        let text = format!(
            r#"{{"kind":"EncryptionConfiguration","apiVersion":"apiserver.config.k8s.io/v1","resources":[{{"resources":["secrets"],"providers":[{{"aesgcm":{{"keys":[{{"name":"k","secret":"{KEY1}"}}]}}}},{{"identity":{{}}}}]}}]}}"#
        );
        assert_eq!(load(&text).write_key(SECRET), Some("k"));
    }

    proptest! {
        #[test]
        fn decrypting_random_bytes_never_panics(
            name in prop::sample::select(vec!["key1", "key2", "", "nope", "key1:"]),
            body in prop::collection::vec(any::<u8>(), 0..200),
            key in "/registry/secrets/[a-z/]{0,20}",
        ) {
            let enc = load(&config(&aesgcm(&[("key1", KEY1), ("key2", KEY2)])));
            let mut data = format!("{AESGCM_PREFIX}{name}").into_bytes();
            data.extend_from_slice(&body);
            prop_assert!(enc.from_storage(&key, &data).is_err());
            prop_assert!(decode_json(None, &key, &data).is_err());
        }

        #[test]
        fn anything_after_the_generic_prefix_never_panics(
            body in prop::collection::vec(any::<u8>(), 0..100),
        ) {
            let enc = load(&config(&aesgcm(&[("key1", KEY1)])));
            let mut data = ENCRYPTED_PREFIX.as_bytes().to_vec();
            data.extend_from_slice(&body);
            let _ = enc.from_storage(SECRET, &data);
            let _ = decode_json(None, SECRET, &data);
        }

        #[test]
        fn every_json_round_trips(json in prop::collection::vec(any::<u8>(), 0..300)) {
            let enc = load(&config(&aesgcm(&[("key1", KEY1)])));
            let stored = enc.to_storage(SECRET, &json).unwrap().into_owned();
            let back = enc.from_storage(SECRET, &stored).unwrap().into_owned();
            prop_assert_eq!(back, json);
        }
    }
}
