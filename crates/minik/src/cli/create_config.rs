//! `create configmap` and `create secret generic|docker-registry|tls`: a ConfigMap or Secret
//! made from literals, files, directories and env files, with kubectl's checks, messages and
//! `--append-hash` suffix.
//!
//! The data is gathered by [`Builder`], which checks keys and duplicates and knows nothing of
//! the disk; the `add_*_sources` functions read what the flags name and feed it, in kubectl's
//! order, so the first error is the one kubectl reports.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::{fail, CliResult};

/// What a ConfigMap or Secret is built from, as `--from-*` flags name it.
#[derive(clap::Args, Debug, Default)]
pub struct DataFlags {
    /// A key and literal value (KEY=VALUE); may be repeated.
    #[arg(long = "from-literal", value_name = "KEY=VALUE")]
    from_literal: Vec<String>,
    /// A file ([KEY=]PATH; the key defaults to the file's name), or a directory whose regular
    /// files all become keys; may be repeated or comma-separated.
    #[arg(long = "from-file", value_name = "[KEY=]PATH")]
    from_file: Vec<String>,
    /// A file of KEY=VALUE lines (# comments; a KEY alone takes its value from the
    /// environment); may be repeated or comma-separated.
    #[arg(long = "from-env-file", value_name = "PATH")]
    from_env_file: Vec<String>,
    /// Appends a hash of the content to the name, as kubectl does.
    #[arg(long)]
    append_hash: bool,
}

/// `--dry-run` and `-o`, as the other `create` kinds take them.
#[derive(clap::Args, Debug, Default)]
pub struct PrintFlags {
    /// none, client (print without creating) or server, as for run.
    #[arg(long, default_value = "none", num_args = 0..=1, require_equals = true, default_missing_value = "client")]
    pub dry_run: String,
    /// Prints the object as yaml, json or name instead of a message.
    #[arg(short = 'o', long, value_parser = ["yaml", "json", "name"])]
    pub output: Option<String>,
}

/// `create configmap NAME [--from-literal K=V] [--from-file [K=]PATH] [--from-env-file PATH]`.
#[derive(clap::Args, Debug)]
pub struct ConfigMapArgs {
    name: String,
    #[command(flatten)]
    data: DataFlags,
    #[command(flatten)]
    pub print: PrintFlags,
}

/// `create secret generic|docker-registry|tls NAME ...`.
#[derive(clap::Args, Debug)]
pub struct SecretArgs {
    #[command(subcommand)]
    what: SecretWhat,
}

#[derive(clap::Subcommand, Debug)]
enum SecretWhat {
    /// A secret from literals, files, directories or env files.
    Generic(GenericSecretArgs),
    /// A secret with the credentials of a Docker registry (.dockerconfigjson).
    DockerRegistry(DockerRegistryArgs),
    /// A TLS secret from a PEM certificate and its private key.
    Tls(TlsArgs),
}

#[derive(clap::Args, Debug)]
struct GenericSecretArgs {
    name: String,
    #[command(flatten)]
    data: DataFlags,
    /// The secret's type (default: the server's, Opaque).
    #[arg(long = "type")]
    secret_type: Option<String>,
    #[command(flatten)]
    print: PrintFlags,
}

#[derive(clap::Args, Debug)]
struct DockerRegistryArgs {
    name: String,
    /// The registry's address.
    #[arg(long, default_value = DOCKER_HUB)]
    docker_server: String,
    /// The user name for the registry.
    #[arg(long, default_value = "", hide_default_value = true)]
    docker_username: String,
    /// The password for the registry.
    #[arg(long, default_value = "", hide_default_value = true)]
    docker_password: String,
    /// The email address for the registry (optional).
    #[arg(long, default_value = "", hide_default_value = true)]
    docker_email: String,
    /// A docker config file ([KEY=]PATH, key .dockerconfigjson) instead of the --docker flags.
    #[arg(long = "from-file", value_name = "[KEY=]PATH")]
    from_file: Vec<String>,
    /// Appends a hash of the content to the name, as kubectl does.
    #[arg(long)]
    append_hash: bool,
    #[command(flatten)]
    print: PrintFlags,
}

#[derive(clap::Args, Debug)]
struct TlsArgs {
    name: String,
    /// The PEM certificate (chain).
    #[arg(long)]
    cert: Option<String>,
    /// The PEM private key of the certificate.
    #[arg(long)]
    key: Option<String>,
    /// Appends a hash of the content to the name, as kubectl does.
    #[arg(long)]
    append_hash: bool,
    #[command(flatten)]
    print: PrintFlags,
}

impl SecretArgs {
    /// The secret's `--dry-run` and `-o`.
    pub fn print(&self) -> &PrintFlags {
        match &self.what {
            SecretWhat::Generic(a) => &a.print,
            SecretWhat::DockerRegistry(a) => &a.print,
            SecretWhat::Tls(a) => &a.print,
        }
    }
}

/// The default `--docker-server`: Docker Hub's v1 address, as docker and kubectl write it.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";
/// The key of a docker config in a `kubernetes.io/dockerconfigjson` secret.
const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";

/// The ConfigMap `create configmap` sends (reads the files the flags name).
pub fn configmap(args: &ConfigMapArgs) -> CliResult<Value> {
    let d = &args.data;
    let files = split_flag("from-file", &d.from_file)?;
    let env_files = split_flag("from-env-file", &d.from_env_file)?;
    check_env_file_alone(&env_files, &files, &d.from_literal)?;
    let mut b = Builder::new(Kind::ConfigMap, &args.name, "");
    // kubectl's order: files, then literals, then env files.
    add_file_sources(&mut b, &files).map_err(|e| fail!("{e}"))?;
    add_literal_sources(&mut b, &d.from_literal).map_err(|e| fail!("{e}"))?;
    add_env_file_sources(&mut b, &env_files, &|k| std::env::var(k).ok())
        .map_err(|e| fail!("{e}"))?;
    Ok(b.into_object(d.append_hash))
}

/// The Secret `create secret ...` sends (reads the files the flags name).
pub fn secret(args: &SecretArgs) -> CliResult<Value> {
    match &args.what {
        SecretWhat::Generic(a) => generic_secret(a),
        SecretWhat::DockerRegistry(a) => docker_registry_secret(a),
        SecretWhat::Tls(a) => tls_secret(a),
    }
}

fn generic_secret(a: &GenericSecretArgs) -> CliResult<Value> {
    let d = &a.data;
    let files = split_flag("from-file", &d.from_file)?;
    let env_files = split_flag("from-env-file", &d.from_env_file)?;
    check_env_file_alone(&env_files, &files, &d.from_literal)?;
    let mut b = Builder::new(
        Kind::Secret,
        &a.name,
        a.secret_type.as_deref().unwrap_or(""),
    );
    // kubectl's order for secrets: literals, then files, then env files.
    add_literal_sources(&mut b, &d.from_literal).map_err(|e| fail!("{e}"))?;
    add_file_sources(&mut b, &files).map_err(|e| fail!("{e}"))?;
    add_env_file_sources(&mut b, &env_files, &|k| std::env::var(k).ok())
        .map_err(|e| fail!("{e}"))?;
    Ok(b.into_object(d.append_hash))
}

fn docker_registry_secret(a: &DockerRegistryArgs) -> CliResult<Value> {
    let files: Vec<String> = split_flag("from-file", &a.from_file)?
        .into_iter()
        .map(|f| {
            if f.contains('=') {
                f
            } else {
                format!("{DOCKER_CONFIG_KEY}={f}")
            }
        })
        .collect();
    if files.is_empty()
        && (a.docker_username.is_empty()
            || a.docker_password.is_empty()
            || a.docker_server.is_empty())
    {
        return Err(fail!("either --from-file or the combination of --docker-username, --docker-password and --docker-server is required"));
    }
    let mut b = Builder::new(Kind::Secret, &a.name, "kubernetes.io/dockerconfigjson");
    if files.is_empty() {
        let config = docker_config_json(
            &a.docker_server,
            &a.docker_username,
            &a.docker_password,
            &a.docker_email,
        );
        b.add_bytes(DOCKER_CONFIG_KEY, config.into_bytes())
            .map_err(|e| fail!("{e}"))?;
    } else {
        add_file_sources(&mut b, &files).map_err(|e| fail!("{e}"))?;
    }
    Ok(b.into_object(a.append_hash))
}

fn tls_secret(a: &TlsArgs) -> CliResult<Value> {
    let (Some(cert_path), Some(key_path)) = (
        a.cert.as_deref().filter(|c| !c.is_empty()),
        a.key.as_deref().filter(|k| !k.is_empty()),
    ) else {
        return Err(fail!("key and cert must be specified"));
    };
    let read = |path: &str| {
        std::fs::read(path).map_err(|e| {
            fail!(
                "Cannot read file {path}, {}",
                go_path_error("open", path, &e)
            )
        })
    };
    let cert = read(cert_path)?;
    let key = read(key_path)?;
    check_key_pair(&cert, &key).map_err(|e| match e {
        PairError::Cert(m) => fail!("{m} (--cert {cert_path})"),
        PairError::Key(m) => fail!("{m} (--key {key_path})"),
        PairError::Both(m) => fail!("{m} (--cert {cert_path}, --key {key_path})"),
    })?;
    let mut b = Builder::new(Kind::Secret, &a.name, "kubernetes.io/tls");
    b.add_bytes("tls.crt", cert).map_err(|e| fail!("{e}"))?;
    b.add_bytes("tls.key", key).map_err(|e| fail!("{e}"))?;
    Ok(b.into_object(a.append_hash))
}

fn check_env_file_alone(env_files: &[String], files: &[String], literals: &[String]) -> CliResult {
    if !env_files.is_empty() && (!files.is_empty() || !literals.is_empty()) {
        return Err(fail!(
            "from-env-file cannot be combined with from-file or from-literal"
        ));
    }
    Ok(())
}

/// The values of a repeatable, comma-separated flag (kubectl's string slices, which are CSV:
/// `"a,b"` in double quotes is one value).
fn split_flag(flag: &str, values: &[String]) -> CliResult<Vec<String>> {
    let mut out = Vec::new();
    for value in values {
        out.extend(
            split_csv(value)
                .map_err(|why| fail!("invalid argument {value:?} for \"--{flag}\" flag: {why}"))?,
        );
    }
    Ok(out)
}

/// One CSV record: fields split at commas; a field that starts with `"` is quoted, with `""`
/// for a quote. An empty value is no field at all.
fn split_csv(value: &str) -> Result<Vec<String>, String> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let mut fields = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("extraneous or missing \" in quoted-field".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("extraneous or missing \" in quoted-field".into()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("bare \" in non-quoted-field".into()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The builder: keys, duplicates, the object and its hash
// ---------------------------------------------------------------------------------------------

/// Which object the data goes into: checks, messages and encodings differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    ConfigMap,
    Secret,
}

/// The data of a ConfigMap or Secret being built.
#[derive(Debug)]
struct Builder {
    kind: Kind,
    name: String,
    /// A Secret's type ("" for the server's default); unused for a ConfigMap.
    secret_type: String,
    /// A ConfigMap's `data` (UTF-8 text).
    text: BTreeMap<String, String>,
    /// A ConfigMap's `binaryData`, or a Secret's `data`.
    bytes: BTreeMap<String, Vec<u8>>,
}

impl Builder {
    fn new(kind: Kind, name: &str, secret_type: &str) -> Builder {
        Builder {
            kind,
            name: name.to_owned(),
            secret_type: secret_type.to_owned(),
            text: BTreeMap::new(),
            bytes: BTreeMap::new(),
        }
    }

    /// Checks that `key` may be added, with kubectl's messages.
    fn check_key(&self, key: &str) -> Result<(), String> {
        let errs = config_key_errors(key);
        match self.kind {
            Kind::ConfigMap => {
                if !errs.is_empty() {
                    return Err(format!(
                        "{} is not a valid key name for a ConfigMap: {}",
                        go_quote(key),
                        errs.join(",")
                    ));
                }
                let (field, exists) = if self.text.contains_key(key) {
                    ("Data", true)
                } else {
                    ("BinaryData", self.bytes.contains_key(key))
                };
                if exists {
                    return Err(format!(
                        "cannot add key {}, another key by that name already exists in {field} for ConfigMap {}",
                        go_quote(key),
                        go_quote(&self.name)
                    ));
                }
            }
            Kind::Secret => {
                if !errs.is_empty() {
                    return Err(format!(
                        "{} is not valid key name for a Secret {}",
                        go_quote(key),
                        errs.join(";")
                    ));
                }
                if self.bytes.contains_key(key) {
                    return Err(format!(
                        "cannot add key {key}, another key by that name already exists"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Adds a literal or env-file value: text in a ConfigMap's `data`.
    fn add_text(&mut self, key: &str, value: String) -> Result<(), String> {
        match self.kind {
            Kind::ConfigMap => {
                self.check_key(key)?;
                self.text.insert(key.to_owned(), value);
                Ok(())
            }
            Kind::Secret => self.add_bytes(key, value.into_bytes()),
        }
    }

    /// Adds a file's content: in a ConfigMap, UTF-8 goes to `data` and anything else to
    /// `binaryData`.
    fn add_bytes(&mut self, key: &str, value: Vec<u8>) -> Result<(), String> {
        if self.kind == Kind::ConfigMap {
            match String::from_utf8(value) {
                Ok(text) => return self.add_text(key, text),
                Err(e) => {
                    self.check_key(key)?;
                    self.bytes.insert(key.to_owned(), e.into_bytes());
                    return Ok(());
                }
            }
        }
        self.check_key(key)?;
        self.bytes.insert(key.to_owned(), value);
        Ok(())
    }

    /// kubectl's content hash (`hash.ConfigMapHash`/`SecretHash`): the SHA-256 of Go's JSON of
    /// `{kind, name, data[, binaryData][, type]}` (keys sorted), its first ten hex digits with
    /// 0,1,3,a,e turned into g,h,k,m,t.
    fn hash(&self) -> String {
        let mut enc = String::from("{");
        match self.kind {
            Kind::ConfigMap => {
                if !self.bytes.is_empty() {
                    enc.push_str("\"binaryData\":");
                    go_json_bytes_map(&mut enc, &self.bytes);
                    enc.push(',');
                }
                enc.push_str("\"data\":{");
                for (i, (k, v)) in self.text.iter().enumerate() {
                    if i > 0 {
                        enc.push(',');
                    }
                    go_json_string(&mut enc, k);
                    enc.push(':');
                    go_json_string(&mut enc, v);
                }
                enc.push_str("},\"kind\":\"ConfigMap\",\"name\":");
                go_json_string(&mut enc, &self.name);
            }
            Kind::Secret => {
                enc.push_str("\"data\":");
                go_json_bytes_map(&mut enc, &self.bytes);
                enc.push_str(",\"kind\":\"Secret\",\"name\":");
                go_json_string(&mut enc, &self.name);
                enc.push_str(",\"type\":");
                go_json_string(&mut enc, &self.secret_type);
            }
        }
        enc.push('}');
        let digest = minik_image::Digest::of(enc.as_bytes());
        digest
            .hex()
            .chars()
            .take(10)
            .map(|c| match c {
                '0' => 'g',
                '1' => 'h',
                '3' => 'k',
                'a' => 'm',
                'e' => 't',
                c => c,
            })
            .collect()
    }

    /// The object to create: empty maps and an empty type are left out, as kubectl's
    /// encoding leaves them out.
    fn into_object(self, append_hash: bool) -> Value {
        let name = if append_hash {
            format!("{}-{}", self.name, self.hash())
        } else {
            self.name.clone()
        };
        let b64 = |m: &BTreeMap<String, Vec<u8>>| -> Map<String, Value> {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        json!(base64::engine::general_purpose::STANDARD.encode(v)),
                    )
                })
                .collect()
        };
        let mut obj = Map::new();
        obj.insert("apiVersion".into(), json!("v1"));
        match self.kind {
            Kind::ConfigMap => {
                obj.insert("kind".into(), json!("ConfigMap"));
                obj.insert("metadata".into(), json!({ "name": name }));
                if !self.text.is_empty() {
                    obj.insert("data".into(), json!(self.text));
                }
                if !self.bytes.is_empty() {
                    obj.insert("binaryData".into(), Value::Object(b64(&self.bytes)));
                }
            }
            Kind::Secret => {
                obj.insert("kind".into(), json!("Secret"));
                obj.insert("metadata".into(), json!({ "name": name }));
                if !self.bytes.is_empty() {
                    obj.insert("data".into(), Value::Object(b64(&self.bytes)));
                }
                if !self.secret_type.is_empty() {
                    obj.insert("type".into(), json!(self.secret_type));
                }
            }
        }
        Value::Object(obj)
    }
}

/// Why `key` is not a valid ConfigMap or Secret key (`IsConfigMapKey`), in the API's words.
fn config_key_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > 253 {
        errs.push("must be no more than 253 characters".to_owned());
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        errs.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_owned());
    }
    errs.extend(chdir_errors(key));
    errs
}

/// Why `key` is not a valid environment variable name (`IsEnvVarName`).
fn env_var_name_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let valid = key.bytes().enumerate().all(|(i, b)| {
        b.is_ascii_alphabetic() || matches!(b, b'-' | b'.' | b'_') || (i > 0 && b.is_ascii_digit())
    });
    if key.is_empty() || !valid {
        errs.push("a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')".to_owned());
    }
    errs.extend(chdir_errors(key));
    errs
}

fn chdir_errors(key: &str) -> Option<String> {
    match key {
        "." => Some("must not be '.'".into()),
        ".." => Some("must not be '..'".into()),
        k if k.starts_with("..") => Some("must not start with '..'".into()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Sources: literals, files, directories, env files
// ---------------------------------------------------------------------------------------------

/// `KEY=VALUE` (the value may hold `=`), with kubectl's errors.
fn parse_literal_source(source: &str) -> Result<(&str, &str), String> {
    match source.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key, value)),
        _ => Err(format!(
            "invalid literal source {source}, expected key=value"
        )),
    }
}

/// `[KEY=]PATH`: the key, else the path's last element, with kubectl's errors.
fn parse_file_source(source: &str) -> Result<(String, &str), String> {
    match source.matches('=').count() {
        0 => Ok((go_path_base(source), source)),
        1 => match source.split_once('=') {
            Some(("", path)) => Err(format!("key name for file path {path} missing")),
            Some((key, "")) => Err(format!("file path for key name {key} missing")),
            Some((key, path)) => Ok((key.to_owned(), path)),
            None => Err("key names or file paths cannot contain '='".into()),
        },
        _ => Err("key names or file paths cannot contain '='".into()),
    }
}

/// Go's `path.Base`: the last element, trailing slashes ignored; "." for "", "/" for "///".
fn go_path_base(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_owned()
}

fn add_literal_sources(b: &mut Builder, sources: &[String]) -> Result<(), String> {
    for source in sources {
        let (key, value) = parse_literal_source(source)?;
        b.add_text(key, value.to_owned())?;
    }
    Ok(())
}

fn add_file_sources(b: &mut Builder, sources: &[String]) -> Result<(), String> {
    for source in sources {
        let (key, path) = parse_file_source(source)?;
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("error reading {path}: {}", go_errno(&e)))?;
        if meta.is_dir() {
            if source.contains('=') {
                return Err("cannot give a key name for a directory path".into());
            }
            let mut entries = Vec::new();
            let listing = std::fs::read_dir(path)
                .map_err(|e| format!("error listing files in {path}: {}", go_errno(&e)))?;
            for entry in listing {
                let entry = entry
                    .map_err(|e| format!("error listing files in {path}: {}", go_errno(&e)))?;
                // As kubectl: regular files only (not symlinks), in name order.
                let regular = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
                if regular {
                    entries.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
            entries.sort();
            for name in entries {
                let item = Path::new(path).join(&name);
                let content = read_file(&item.to_string_lossy())?;
                b.add_bytes(&name, content)?;
            }
        } else {
            let content = read_file(path)?;
            b.add_bytes(&key, content)?;
        }
    }
    Ok(())
}

fn add_env_file_sources(
    b: &mut Builder,
    sources: &[String],
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    for path in sources {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("error reading {path}: {}", go_errno(&e)))?;
        if meta.is_dir() {
            return Err(match b.kind {
                Kind::ConfigMap => "env config file cannot be a directory".into(),
                Kind::Secret => "env secret file cannot be a directory".into(),
            });
        }
        let content = read_file(path)?;
        parse_env_file(path, &content, getenv, &mut |k, v| b.add_text(k, v))?;
    }
    Ok(())
}

fn read_file(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| go_path_error("open", path, &e))
}

/// Reads `KEY=VALUE` lines as kubectl does: leading blanks and a first-line BOM dropped, blank
/// lines and `#` comments skipped, the value kept verbatim (it may hold `=`), and a line
/// without `=` taking the value from the environment ("" when unset). Each pair goes to `add`
/// in order; a bad line is an error naming the file and the line.
fn parse_env_file(
    path: &str,
    content: &[u8],
    getenv: &dyn Fn(&str) -> Option<String>,
    add: &mut dyn FnMut(&str, String) -> Result<(), String>,
) -> Result<(), String> {
    let mut lines: Vec<&[u8]> = content.split(|b| *b == b'\n').collect();
    // The text after the last newline is a line only if it is not empty (bufio.ScanLines).
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    for (i, line) in lines.into_iter().enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(mut text) = std::str::from_utf8(line) else {
            let bytes: Vec<String> = line.iter().map(u8::to_string).collect();
            return Err(format!(
                "env file {path} contains invalid utf8 bytes at line {}: [{}]",
                i + 1,
                bytes.join(" ")
            ));
        };
        if i == 0 {
            text = text.strip_prefix('\u{feff}').unwrap_or(text);
        }
        let text = text.trim_start();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let (key, value) = match text.split_once('=') {
            Some((k, v)) => (k, v.to_owned()),
            None => (text, getenv(text).unwrap_or_default()),
        };
        let errs = env_var_name_errors(key);
        if !errs.is_empty() {
            return Err(format!(
                "{} is not a valid key name: {} (env file {path}, line {})",
                go_quote(key),
                errs.join(";"),
                i + 1
            ));
        }
        add(key, value)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// docker-registry
// ---------------------------------------------------------------------------------------------

/// The `.dockerconfigjson` kubectl writes: `{"auths":{SERVER:{username,password,email,auth}}}`
/// with empty fields left out and `auth` = base64(`user:password`), in Go's JSON encoding.
fn docker_config_json(server: &str, username: &str, password: &str, email: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut out = String::from("{\"auths\":{");
    go_json_string(&mut out, server);
    out.push_str(":{");
    let mut first = true;
    for (field, value) in [
        ("username", username),
        ("password", password),
        ("email", email),
        ("auth", auth.as_str()),
    ] {
        if value.is_empty() {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.push('"');
        out.push_str(field);
        out.push_str("\":");
        go_json_string(&mut out, value);
    }
    out.push_str("}}}");
    out
}

// ---------------------------------------------------------------------------------------------
// tls: the checks of Go's tls.X509KeyPair
// ---------------------------------------------------------------------------------------------

/// Which input a TLS check failed on.
#[derive(Debug, PartialEq, Eq)]
enum PairError {
    Cert(String),
    Key(String),
    Both(String),
}

/// A public key, as far as matching it with a private key goes.
#[derive(Debug, PartialEq, Eq)]
enum PublicKey {
    /// The RSA modulus, without leading zeros.
    Rsa(Vec<u8>),
    /// The EC point, when the private key carries it.
    Ec(Option<Vec<u8>>),
    /// The Ed25519 key, when the private key carries it.
    Ed25519(Option<Vec<u8>>),
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// Checks a certificate and key as `tls.X509KeyPair` does, with its messages: a CERTIFICATE
/// PEM block in the first, a `PRIVATE KEY` block in the second, both parsable, and the key the
/// certificate's (RSA modulus, EC point or Ed25519 key, when the private key holds the public
/// part).
fn check_key_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<(), PairError> {
    let mut skipped = Vec::new();
    let mut cert_der = None;
    let mut rest = cert_pem;
    while let Some((block_type, der, after)) = pem_decode(rest) {
        rest = after;
        if block_type == "CERTIFICATE" {
            cert_der.get_or_insert(der);
        } else {
            skipped.push(block_type);
        }
    }
    let Some(cert_der) = cert_der else {
        return Err(PairError::Cert(if skipped.is_empty() {
            "tls: failed to find any PEM data in certificate input".into()
        } else if skipped.len() == 1 && skipped[0].ends_with("PRIVATE KEY") {
            "tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched".into()
        } else {
            format!("tls: failed to find \"CERTIFICATE\" PEM block in certificate input after skipping PEM blocks of the following types: [{}]", skipped.join(" "))
        }));
    };
    let mut skipped = Vec::new();
    let mut rest = key_pem;
    let key_der = loop {
        let Some((block_type, der, after)) = pem_decode(rest) else {
            return Err(PairError::Key(if skipped.is_empty() {
                "tls: failed to find any PEM data in key input".into()
            } else if skipped.len() == 1 && skipped[0] == "CERTIFICATE" {
                "tls: found a certificate rather than a key in the PEM for the private key".into()
            } else {
                format!("tls: failed to find PEM block with type ending in \"PRIVATE KEY\" in key input after skipping PEM blocks of the following types: [{}]", skipped.join(" "))
            }));
        };
        rest = after;
        if block_type == "PRIVATE KEY" || block_type.ends_with(" PRIVATE KEY") {
            break der;
        }
        skipped.push(block_type);
    };
    let public = certificate_public_key(&cert_der)?;
    let private = private_public_key(&key_der)
        .ok_or_else(|| PairError::Key("tls: failed to parse private key".into()))?;
    let same = match (&public, &private) {
        (PublicKey::Rsa(a), PublicKey::Rsa(b)) => a == b,
        (PublicKey::Ec(Some(a)), PublicKey::Ec(b)) => b.as_ref().is_none_or(|b| a == b),
        (PublicKey::Ed25519(Some(a)), PublicKey::Ed25519(b)) => b.as_ref().is_none_or(|b| a == b),
        _ => {
            return Err(PairError::Both(
                "tls: private key type does not match public key type".into(),
            ))
        }
    };
    if same {
        Ok(())
    } else {
        Err(PairError::Both(
            "tls: private key does not match public key".into(),
        ))
    }
}

/// The first PEM block of `data` as Go's `pem.Decode` finds it: its type, its decoded bytes,
/// and the input after it. Malformed blocks are skipped.
fn pem_decode(data: &[u8]) -> Option<(String, Vec<u8>, &[u8])> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const END: &[u8] = b"\n-----END ";
    const DASHES: &[u8] = b"-----";
    let mut rest = data;
    loop {
        if rest.starts_with(BEGIN) {
            rest = &rest[BEGIN.len()..];
        } else {
            let at = find(rest, b"\n-----BEGIN ")?;
            rest = &rest[at + BEGIN.len() + 1..];
        }
        let (type_line, after_type) = get_line(rest);
        rest = after_type;
        let Some(block_type) = type_line.strip_suffix(DASHES) else {
            continue;
        };
        // Headers (`Key: value` lines) are skipped; the body starts at the first other line.
        let mut body = rest;
        let mut headers = false;
        loop {
            if body.is_empty() {
                return None;
            }
            let (line, next) = get_line(body);
            if !line.contains(&b':') {
                break;
            }
            headers = true;
            body = next;
        }
        let (end_at, trailer_at) = if !headers && body.starts_with(&END[1..]) {
            (0, END.len() - 1)
        } else {
            match find(body, END) {
                Some(i) => (i, i + END.len()),
                None => continue,
            }
        };
        let trailer = &body[trailer_at..];
        let want = block_type.len() + DASHES.len();
        if trailer.len() < want
            || !trailer[..want].starts_with(block_type)
            || !trailer[..want].ends_with(DASHES)
            || !get_line(&trailer[want..]).0.is_empty()
        {
            continue;
        }
        let text: Vec<u8> = body[..end_at]
            .iter()
            .copied()
            .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .collect();
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
        );
        let Ok(bytes) = engine.decode(&text) else {
            continue;
        };
        let after = get_line(&trailer[want..]).1;
        return Some((
            String::from_utf8_lossy(block_type).into_owned(),
            bytes,
            after,
        ));
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A line without its newline and trailing blanks, and what follows it.
fn get_line(data: &[u8]) -> (&[u8], &[u8]) {
    let (line, rest) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let end = line
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r'))
        .map_or(0, |i| i + 1);
    (&line[..end], rest)
}

/// One DER element: its tag, its contents, and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The elements of a DER sequence's contents, or `None` if they do not parse.
fn elements(mut content: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tag, value, rest) = der(content)?;
        out.push((tag, value));
        content = rest;
    }
    Some(out)
}

/// A whole DER input that is one SEQUENCE: its elements.
fn sequence(input: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    match der(input)? {
        (0x30, content, []) => elements(content),
        _ => None,
    }
}

fn strip_zeros(int: &[u8]) -> Vec<u8> {
    let start = int.iter().position(|b| *b != 0).unwrap_or(int.len());
    int[start..].to_vec()
}

/// The public key of a DER certificate.
fn certificate_public_key(cert: &[u8]) -> Result<PublicKey, PairError> {
    let malformed = || PairError::Cert("x509: malformed certificate".into());
    let top = sequence(cert).ok_or_else(malformed)?;
    let [(0x30, tbs), (0x30, _), (0x03, _)] = top.as_slice() else {
        return Err(malformed());
    };
    let fields = elements(tbs).ok_or_else(malformed)?;
    let fields = match fields.first() {
        Some((0xa0, _)) => &fields[1..],
        _ => &fields[..],
    };
    let [(0x02, _), (0x30, _), (0x30, _), (0x30, _), (0x30, _), (0x30, spki), ..] = fields else {
        return Err(malformed());
    };
    let spki = elements(spki).ok_or_else(malformed)?;
    let [(0x30, alg), (0x03, bits)] = spki.as_slice() else {
        return Err(malformed());
    };
    let alg = elements(alg).ok_or_else(malformed)?;
    let Some((0x06, oid)) = alg.first() else {
        return Err(malformed());
    };
    let Some((&0, key)) = bits.split_first() else {
        return Err(malformed());
    };
    match *oid {
        OID_RSA => {
            let rsa = sequence(key).ok_or_else(malformed)?;
            match rsa.as_slice() {
                [(0x02, n), (0x02, _)] => Ok(PublicKey::Rsa(strip_zeros(n))),
                _ => Err(malformed()),
            }
        }
        OID_EC => Ok(PublicKey::Ec(Some(key.to_vec()))),
        OID_ED25519 => Ok(PublicKey::Ed25519(Some(key.to_vec()))),
        _ => Err(PairError::Cert("tls: unknown public key algorithm".into())),
    }
}

/// The public part of a DER private key (PKCS#1, PKCS#8 or SEC 1, tried in Go's order), as
/// far as the key holds it; `None` if it is none of these.
fn private_public_key(key: &[u8]) -> Option<PublicKey> {
    let fields = sequence(key)?;
    match fields.as_slice() {
        // PKCS#1: version, n, e, d, p, q, dp, dq, qinv.
        [(0x02, _), (0x02, n), (0x02, _), (0x02, _), (0x02, _), (0x02, _), (0x02, _), (0x02, _), (0x02, _), ..] => {
            Some(PublicKey::Rsa(strip_zeros(n)))
        }
        // PKCS#8: version, algorithm, the key in an octet string[, attributes][, public key].
        [(0x02, _), (0x30, alg), (0x04, inner), more @ ..] => {
            let alg = elements(alg)?;
            let Some((0x06, oid)) = alg.first() else {
                return None;
            };
            match *oid {
                OID_RSA => match private_public_key(inner)? {
                    rsa @ PublicKey::Rsa(_) => Some(rsa),
                    _ => None,
                },
                OID_EC => match sec1_public_key(inner)? {
                    ec @ PublicKey::Ec(_) => Some(ec),
                    _ => None,
                },
                OID_ED25519 => {
                    // The seed is an octet string in the octet string; v2 keys carry the
                    // public key as [1].
                    match der(inner)? {
                        (0x04, seed, []) if seed.len() == 32 => {}
                        _ => return None,
                    }
                    let public = more
                        .iter()
                        .find(|(tag, _)| *tag == 0x81)
                        .and_then(|(_, bits)| bits.split_first())
                        .map(|(_, k)| k.to_vec());
                    Some(PublicKey::Ed25519(public))
                }
                _ => None,
            }
        }
        _ => sec1_public_key(key),
    }
}

/// SEC 1 `ECPrivateKey`: version 1, the private key, [0] curve, [1] public point.
fn sec1_public_key(key: &[u8]) -> Option<PublicKey> {
    let fields = sequence(key)?;
    let [(0x02, [1]), (0x04, _), more @ ..] = fields.as_slice() else {
        return None;
    };
    let point = match more.iter().find(|(tag, _)| *tag == 0xa1) {
        Some((_, explicit)) => match der(explicit)? {
            (0x03, bits, []) => match bits.split_first()? {
                (&0, point) => Some(point.to_vec()),
                _ => return None,
            },
            _ => return None,
        },
        None => None,
    };
    Some(PublicKey::Ec(point))
}

// ---------------------------------------------------------------------------------------------
// Go's encodings: JSON strings, %q, error texts
// ---------------------------------------------------------------------------------------------

/// A string as Go's `encoding/json` writes it: HTML characters and U+2028/U+2029 escaped,
/// `\b \f \n \r \t` short, other control characters as `\u00xx`.
fn go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)))
            }
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A map of byte strings as Go's `encoding/json` writes a `map[string][]byte`: sorted keys,
/// base64 values.
fn go_json_bytes_map(out: &mut String, map: &BTreeMap<String, Vec<u8>>) {
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        go_json_string(out, k);
        out.push(':');
        go_json_string(out, &base64::engine::general_purpose::STANDARD.encode(v));
    }
    out.push('}');
}

/// A string quoted as Go's `%q` quotes it (printable characters kept).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An I/O error's text as Go prints an errno: "no such file or directory".
fn go_errno(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(i) => &text[..i],
        None => text.as_str(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Go's `*PathError` text: "open PATH: no such file or directory".
fn go_path_error(op: &str, path: &str, e: &std::io::Error) -> String {
    format!("{op} {path}: {}", go_errno(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn cm() -> Builder {
        Builder::new(Kind::ConfigMap, "cfg", "")
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env_pairs(content: &str) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        parse_env_file(
            "app.env",
            content.as_bytes(),
            &|k| (k == "FROM_ENV").then(|| "from the environment".to_owned()),
            &mut |k, v| {
                out.push((k.to_owned(), v));
                Ok(())
            },
        )?;
        Ok(out)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn literals_split_at_the_first_equals() {
        let mut b = cm();
        add_literal_sources(&mut b, &["a=1".into(), "b=x=y".into(), "c=".into()]).unwrap();
        assert_eq!(
            b.into_object(false),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                "data": {"a": "1", "b": "x=y", "c": ""}})
        );
        for bad in ["=v", "novalue"] {
            assert_eq!(
                add_literal_sources(&mut cm(), &[bad.into()]).unwrap_err(),
                format!("invalid literal source {bad}, expected key=value")
            );
        }
    }

    #[test]
    fn keys_are_checked_with_kubectl_messages() {
        let err = cm().add_text("a b", "v".into()).unwrap_err();
        assert_eq!(err, "\"a b\" is not a valid key name for a ConfigMap: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')");
        assert_eq!(
            cm().add_text("..", "v".into()).unwrap_err(),
            "\"..\" is not a valid key name for a ConfigMap: must not be '..'"
        );
        assert!(cm()
            .add_text(".", "v".into())
            .unwrap_err()
            .ends_with("must not be '.'"));
        assert!(cm()
            .add_text("..x", "v".into())
            .unwrap_err()
            .ends_with("must not start with '..'"));
        assert!(cm()
            .add_text(&"k".repeat(254), "v".into())
            .unwrap_err()
            .contains("must be no more than 253 characters"));
        assert!(cm().add_text(&"k".repeat(253), "v".into()).is_ok());
        for good in ["a", ".a", "A-b_c.1", "9"] {
            assert!(cm().add_text(good, "v".into()).is_ok(), "{good}");
        }
        let mut s = Builder::new(Kind::Secret, "s", "");
        assert_eq!(
            s.add_text("..", "v".into()).unwrap_err(),
            "\"..\" is not valid key name for a Secret must not be '..'"
        );
        s.add_text("k", "v".into()).unwrap();
        assert_eq!(
            s.add_bytes("k", b"w".to_vec()).unwrap_err(),
            "cannot add key k, another key by that name already exists"
        );
    }

    #[test]
    fn duplicates_name_the_map_they_are_in() {
        let mut b = cm();
        b.add_text("a", "1".into()).unwrap();
        b.add_bytes("bin", vec![0xff, 0xfe]).unwrap();
        assert_eq!(
            b.add_text("a", "2".into()).unwrap_err(),
            "cannot add key \"a\", another key by that name already exists in Data for ConfigMap \"cfg\""
        );
        assert_eq!(
            b.add_bytes("bin", b"text".to_vec()).unwrap_err(),
            "cannot add key \"bin\", another key by that name already exists in BinaryData for ConfigMap \"cfg\""
        );
    }

    #[test]
    fn binary_file_content_goes_to_binary_data() {
        let mut b = cm();
        b.add_bytes("text", "héllo\n".as_bytes().to_vec()).unwrap();
        b.add_bytes("bin", vec![0, 159, 146, 150]).unwrap();
        assert_eq!(
            b.into_object(false),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                "data": {"text": "héllo\n"}, "binaryData": {"bin": "AJ+Slg=="}})
        );
        let mut s = Builder::new(Kind::Secret, "s", "Opaque");
        s.add_bytes("bin", vec![0, 159, 146, 150]).unwrap();
        s.add_text("pw", "hunter2".into()).unwrap();
        assert_eq!(
            s.into_object(false),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                "data": {"bin": "AJ+Slg==", "pw": "aHVudGVyMg=="}, "type": "Opaque"})
        );
        let empty = Builder::new(Kind::Secret, "e", "").into_object(false);
        assert_eq!(
            empty,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "e"}})
        );
    }

    #[test]
    fn file_sources_parse_as_kubectl() {
        assert_eq!(
            parse_file_source("dir/app.conf"),
            Ok(("app.conf".into(), "dir/app.conf"))
        );
        assert_eq!(parse_file_source("dir/"), Ok(("dir".into(), "dir/")));
        assert_eq!(parse_file_source("k=/x/y"), Ok(("k".into(), "/x/y")));
        assert_eq!(
            parse_file_source("=/x").unwrap_err(),
            "key name for file path /x missing"
        );
        assert_eq!(
            parse_file_source("k=").unwrap_err(),
            "file path for key name k missing"
        );
        assert_eq!(
            parse_file_source("a=b=c").unwrap_err(),
            "key names or file paths cannot contain '='"
        );
        assert_eq!(go_path_base(""), ".");
        assert_eq!(go_path_base("///"), "/");
    }

    #[test]
    fn files_and_directories_become_keys() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("conf")).unwrap();
        fs::write(d.join("conf/b.txt"), "bee").unwrap();
        fs::write(d.join("conf/a.txt"), "ay").unwrap();
        fs::write(d.join("conf/raw.bin"), [0xc3, 0x28]).unwrap();
        fs::create_dir(d.join("conf/sub")).unwrap();
        fs::write(d.join("conf/sub/deep"), "not taken").unwrap();
        std::os::unix::fs::symlink(d.join("conf/a.txt"), d.join("conf/link")).unwrap();
        fs::write(d.join("single"), "one").unwrap();
        let p = |rel: &str| d.join(rel).display().to_string();
        let mut b = cm();
        add_file_sources(&mut b, &[p("conf"), format!("renamed={}", p("single"))]).unwrap();
        assert_eq!(
            b.into_object(false),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                "data": {"a.txt": "ay", "b.txt": "bee", "renamed": "one"},
                "binaryData": {"raw.bin": "wyg="}})
        );
        assert_eq!(
            add_file_sources(&mut cm(), &[format!("k={}", p("conf"))]).unwrap_err(),
            "cannot give a key name for a directory path"
        );
        assert_eq!(
            add_file_sources(&mut cm(), &[p("missing")]).unwrap_err(),
            format!("error reading {}: no such file or directory", p("missing"))
        );
        // A file in a directory whose name is not a key is an error, as in kubectl.
        fs::write(d.join("conf/bad name"), "x").unwrap();
        assert!(add_file_sources(&mut cm(), &[p("conf")])
            .unwrap_err()
            .starts_with("\"bad name\" is not a valid key name for a ConfigMap"));
        // The same file twice is a duplicate.
        assert!(add_file_sources(&mut cm(), &[p("single"), p("single")])
            .unwrap_err()
            .starts_with("cannot add key \"single\""));
    }

    #[test]
    fn env_files_parse_as_kubectl() {
        let got = env_pairs(
            "\u{feff}A=1\n# comment\n\n   B = spaced\r\n\tC=x=y\nFROM_ENV\nUNSET\n  D=  keep  \nE=",
        );
        assert_eq!(got.unwrap_err(), "\"B \" is not a valid key name: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*') (env file app.env, line 4)");
        let got = env_pairs(
            "\u{feff}A=1\n# comment\n\n   B=spaced\r\n\tC=x=y\nFROM_ENV\nUNSET\n  D=  keep  \nE=",
        )
        .unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("A", "1"),
                ("B", "spaced"),
                ("C", "x=y"),
                ("FROM_ENV", "from the environment"),
                ("UNSET", ""),
                ("D", "  keep  "),
                ("E", ""),
            ])
        );
        assert!(env_pairs("1A=x").unwrap_err().contains("line 1"));
        assert!(env_pairs("A=1\n..=x")
            .unwrap_err()
            .contains("must not be '..'"));
        let mut out = 0;
        let err = parse_env_file("bin.env", b"A=1\nB=\xff\n", &no_env, &mut |_, _| {
            out += 1;
            Ok(())
        })
        .unwrap_err();
        assert_eq!(
            err,
            "env file bin.env contains invalid utf8 bytes at line 2: [66 61 255]"
        );
        assert_eq!(out, 1);
        // A BOM only counts on the first line.
        assert!(env_pairs("A=1\n\u{feff}B=2").is_err());
    }

    #[test]
    fn env_files_reject_duplicates_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.env").display().to_string();
        fs::write(&path, "K=1\nK=2\n").unwrap();
        assert_eq!(
            add_env_file_sources(&mut cm(), std::slice::from_ref(&path), &no_env).unwrap_err(),
            "cannot add key \"K\", another key by that name already exists in Data for ConfigMap \"cfg\""
        );
        let d = dir.path().display().to_string();
        assert_eq!(
            add_env_file_sources(&mut cm(), std::slice::from_ref(&d), &no_env).unwrap_err(),
            "env config file cannot be a directory"
        );
        let mut s = Builder::new(Kind::Secret, "s", "");
        assert_eq!(
            add_env_file_sources(&mut s, &[d], &no_env).unwrap_err(),
            "env secret file cannot be a directory"
        );
    }

    #[test]
    fn slice_flags_split_like_csv() {
        assert_eq!(split_csv("a,b").unwrap(), vec!["a", "b"]);
        assert_eq!(split_csv("\"a,b\",c").unwrap(), vec!["a,b", "c"]);
        assert_eq!(split_csv("\"say \"\"hi\"\"\"").unwrap(), vec!["say \"hi\""]);
        assert_eq!(split_csv("a,").unwrap(), vec!["a", ""]);
        assert!(split_csv("").unwrap().is_empty());
        assert!(split_csv("a\"b").is_err());
        assert!(split_csv("\"open").is_err());
    }

    /// The vectors of kubectl's own tests of `hash.ConfigMapHash`/`SecretHash` (name "").
    #[test]
    fn hashes_match_kubectl() {
        let hash = |text: &[(&str, &str)], bin: &[(&str, &str)]| {
            let mut b = Builder::new(Kind::ConfigMap, "", "");
            for (k, v) in text {
                b.add_text(k, (*v).into()).unwrap();
            }
            for (k, v) in bin {
                b.bytes.insert((*k).into(), v.as_bytes().to_vec());
            }
            b.hash()
        };
        assert_eq!(hash(&[], &[]), "42745tchd9");
        assert_eq!(hash(&[("one", "")], &[]), "9g67k2htb6");
        assert_eq!(
            hash(&[("two", "2"), ("one", ""), ("three", "3")], &[]),
            "f5h7t85m9b"
        );
        assert_eq!(hash(&[("one", "")], &[("two", "")]), "698h7c7t9m");
        let secret = |data: &[(&str, &str)]| {
            let mut b = Builder::new(Kind::Secret, "", "my-type");
            for (k, v) in data {
                b.add_text(k, (*v).into()).unwrap();
            }
            b.hash()
        };
        assert_eq!(secret(&[]), "t75bgf6ctb");
        assert_eq!(secret(&[("one", "")]), "74bd68bm66");
        assert_eq!(
            secret(&[("two", "2"), ("one", ""), ("three", "3")]),
            "dgcb6h9tmk"
        );
        let mut b = cm();
        b.add_text("one", "".into()).unwrap();
        let name = b.hash();
        assert_eq!(
            b.into_object(true)["metadata"]["name"],
            format!("cfg-{name}")
        );
    }

    #[test]
    fn json_strings_are_encoded_as_go_does() {
        let mut out = String::new();
        go_json_string(&mut out, "<a&b>\"\\\n\t\u{8}\u{c}\u{1}\u{2028}é\u{7f}");
        assert_eq!(
            out,
            r#""\u003ca\u0026b\u003e\"\\\n\t\b\f\u0001\u2028é"#.to_owned() + "\u{7f}\""
        );
        assert_eq!(go_quote("a\"b\n\u{1}é"), r#""a\"b\n\x01é""#);
    }

    #[test]
    fn docker_config_is_what_kubectl_writes() {
        assert_eq!(
            docker_config_json(DOCKER_HUB, "user", "p@ss", "me@example.com"),
            r#"{"auths":{"https://index.docker.io/v1/":{"username":"user","password":"p@ss","email":"me@example.com","auth":"dXNlcjpwQHNz"}}}"#
        );
        // Empty fields are left out; HTML characters are escaped as Go does.
        assert_eq!(
            docker_config_json("r.example:5000", "u", "<&>", ""),
            r#"{"auths":{"r.example:5000":{"username":"u","password":"\u003c\u0026\u003e","auth":"dTo8Jj4="}}}"#
        );
        let args = DockerRegistryArgs {
            name: "reg".into(),
            docker_server: DOCKER_HUB.into(),
            docker_username: "user".into(),
            docker_password: String::new(),
            docker_email: String::new(),
            from_file: vec![],
            append_hash: false,
            print: PrintFlags::default(),
        };
        assert_eq!(
            docker_registry_secret(&args).unwrap_err().to_string(),
            "error: either --from-file or the combination of --docker-username, --docker-password and --docker-server is required"
        );
        let ok = DockerRegistryArgs {
            docker_password: "pw".into(),
            ..args
        };
        let secret = docker_registry_secret(&ok).unwrap();
        assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
        let config = base64::engine::general_purpose::STANDARD
            .decode(secret["data"][".dockerconfigjson"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&config).unwrap(),
            json!({"auths": {DOCKER_HUB: {"username": "user", "password": "pw", "auth": "dXNlcjpwdw=="}}})
        );
    }

    #[test]
    fn docker_config_from_a_file_takes_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json").display().to_string();
        fs::write(&path, r#"{"auths":{}}"#).unwrap();
        let args = DockerRegistryArgs {
            name: "reg".into(),
            docker_server: DOCKER_HUB.into(),
            docker_username: String::new(),
            docker_password: String::new(),
            docker_email: String::new(),
            from_file: vec![path],
            append_hash: false,
            print: PrintFlags::default(),
        };
        let secret = docker_registry_secret(&args).unwrap();
        assert_eq!(
            secret["data"],
            json!({".dockerconfigjson": "eyJhdXRocyI6e319"})
        );
    }

    const EC_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBbjCCARWgAwIBAgIUQsWdOE9JGBMdFg0glOvGHZqtDaYwCgYIKoZIzj0EAwIw
DDEKMAgGA1UEAwwBdDAgFw0yNjEyMDcwMzE0MjFaGA8yMTI2MTExMzAzMTQyMVow
DDEKMAgGA1UEAwwBdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABADIocEzJfvu
ijKJ1LcImpWBQ8GmBW8IKAQlZKJXA/eTQfkkjSIgXX8SrtgvL4eZPs1gdx8nQO+t
qq+eXitSAa2jUzBRMB0GA1UdDgQWBBQt8rfiadSLPqAZdsRBCw7hGeFcijAfBgNV
HSMEGDAWgBQt8rfiadSLPqAZdsRBCw7hGeFcijAPBgNVHRMBAf8EBTADAQH/MAoG
CCqGSM49BAMCA0cAMEQCIEF41LS4qQu5qBK8VtFbDZEIU6NLMGYyFpAhAiAplqP5
AiAwhZL4DB9E1UPB361KUNh42Yx6vpFWqXeJsXRZekTP1w==
-----END CERTIFICATE-----
";
    /// EC_CERT's key, PKCS#8.
    const EC_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg6wKQyMapmf7ABILN
Bi/QwN5MxoG1Mrhm26KZVITdDqmhRANCAAQAyKHBMyX77ooyidS3CJqVgUPBpgVv
CCgEJWSiVwP3k0H5JI0iIF1/Eq7YLy+HmT7NYHcfJ0Dvraqvnl4rUgGt
-----END PRIVATE KEY-----
";
    /// Another EC key, SEC 1.
    const OTHER_EC_KEY: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEINm8AH7IBKzYpLO9yaAFecK7utBuZnwc27meaZr8CTvDoAoGCCqGSM49
AwEHoUQDQgAEayBvTcy0J20DDgzBFe660zlglmLJh9zTjGVRLxeg1uhIiU6cFNmb
jfxqkDJmU2skY6FU7tL/pyoCzYZUA6o74w==
-----END EC PRIVATE KEY-----
";
    const RSA_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIB9jCCAV+gAwIBAgIUbcEE3E3Z+eI5KFZ9udWtIiXszUIwDQYJKoZIhvcNAQEL
BQAwDDEKMAgGA1UEAwwBcjAgFw0yNjEyMDcwMzE0MjFaGA8yMTI2MTExMzAzMTQy
MVowDDEKMAgGA1UEAwwBcjCBnzANBgkqhkiG9w0BAQEFAAOBjQAwgYkCgYEAwnLw
0HaEA6/RBhx+jiYTKFtj83fSY2RrukOrTKrZ0JzsE8bglQRTNxLHtD8RAFWCBVXN
Cm9Sw9I3F8x/8cfOMgG+kKSu/HT8Nhsi4CvjIFVSpUo8w1CkgzOljXKa6TN9Z3nz
ej5R57jFOEz23h82OzXCIsQ9qbUnA4YaJcGJyzcCAwEAAaNTMFEwHQYDVR0OBBYE
FDHNCvQDrKjgeNWYb+UF1I/ccuRYMB8GA1UdIwQYMBaAFDHNCvQDrKjgeNWYb+UF
1I/ccuRYMA8GA1UdEwEB/wQFMAMBAf8wDQYJKoZIhvcNAQELBQADgYEAOt8Iyxi2
9mXhCRVMHkLPvVef5AnvUPc4TuH96rE5ahHqbTHoSbf8pPBNIiiHSGQ7DCGSocFD
P43uPBMrbvTP1z4BEUKNp2jwfNYdG+KmoAVT6123spCJxfovaSFAk+szu7rUNZxx
f7Z4AhhoN4qLo/CF4xzfA+q6XejuBtGxBks=
-----END CERTIFICATE-----
";
    /// RSA_CERT's key, PKCS#1.
    const RSA_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----
MIICXQIBAAKBgQDCcvDQdoQDr9EGHH6OJhMoW2Pzd9JjZGu6Q6tMqtnQnOwTxuCV
BFM3Ese0PxEAVYIFVc0Kb1LD0jcXzH/xx84yAb6QpK78dPw2GyLgK+MgVVKlSjzD
UKSDM6WNcprpM31nefN6PlHnuMU4TPbeHzY7NcIixD2ptScDhholwYnLNwIDAQAB
AoGAaI61vuJ7ih/4HXkk8/q1QnYiAMDleFx/MOFCMy+LgAlhSCEgkgCJXovSprFi
yvMvvv6sCnhh4LogtcNY6QGvdXJJWDqWTJEJ6jGGUNZDZPDvi8KSiIqsbAoiqrMp
8EMJakvba6w7/xSlikCEEZcCWTv93byNk2GTL/M/FifcSMECQQD+Vz+1GlXUxHoZ
YJx5+4gadcg6cDi0LevFVCz+8Wvg8rivl5uDqapGzucv7nD2SIA+QtymWEsm8sVj
fY/m6cWdAkEAw7esCGgj7aOS5N8hfVZXDPoPyAnUuqW7luRf4uuK08du4gdQo3it
XxleYL//tJxAEGCTgmmGbdgPXQZnbVmF4wJBAK0pI7OeQW+BcQuUDhSynoA9TlwT
CVgKp6mKXLQaE/Nr7TeHRZbHTam1tgqZEQlsZPt+tBEArfHPeXn6A54X7LUCQENC
SZKSB1bRUdfpfl7OXxgMj4PVLQ//iJnwXatj+s+Qx+BRVzr2a840r6RcFwoAcFuw
dMDqdtIk4BK98qk3jLUCQQCuLPYmOmW2FBD9vvTR6fVNXu/P7+yXnsV+x1kK4l8G
rV5RywCUXh43vnJAITNhEQLQJtJaXVOTcdHMgNyFDIk9
-----END RSA PRIVATE KEY-----
";

    #[test]
    fn tls_pairs_are_checked_as_go_does() {
        let check = |c: &str, k: &str| check_key_pair(c.as_bytes(), k.as_bytes());
        assert_eq!(check(EC_CERT, EC_KEY), Ok(()));
        assert_eq!(check(RSA_CERT, RSA_KEY), Ok(()));
        // A chain: the first certificate is the one the key must match.
        assert_eq!(check(&format!("{EC_CERT}{RSA_CERT}"), EC_KEY), Ok(()));
        assert_eq!(
            check(EC_CERT, OTHER_EC_KEY),
            Err(PairError::Both(
                "tls: private key does not match public key".into()
            ))
        );
        assert_eq!(
            check(RSA_CERT, EC_KEY),
            Err(PairError::Both(
                "tls: private key type does not match public key type".into()
            ))
        );
        assert_eq!(
            check("not pem", EC_KEY),
            Err(PairError::Cert(
                "tls: failed to find any PEM data in certificate input".into()
            ))
        );
        assert_eq!(
            check(EC_KEY, EC_CERT),
            Err(PairError::Cert("tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched".into()))
        );
        assert_eq!(
            check(EC_CERT, EC_CERT),
            Err(PairError::Key(
                "tls: found a certificate rather than a key in the PEM for the private key".into()
            ))
        );
        assert_eq!(
            check(EC_CERT, ""),
            Err(PairError::Key(
                "tls: failed to find any PEM data in key input".into()
            ))
        );
        let junk = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            check(EC_CERT, junk),
            Err(PairError::Key("tls: failed to parse private key".into()))
        );
        let bad_cert = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        assert_eq!(
            check(bad_cert, EC_KEY),
            Err(PairError::Cert("x509: malformed certificate".into()))
        );
        let params =
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n";
        assert_eq!(
            check(params, EC_KEY),
            Err(PairError::Cert("tls: failed to find \"CERTIFICATE\" PEM block in certificate input after skipping PEM blocks of the following types: [EC PARAMETERS]".into()))
        );
        // openssl's EC PARAMETERS block before the key is skipped.
        assert!(check(EC_CERT, &format!("{params}{OTHER_EC_KEY}")).is_err());
        assert_eq!(check(EC_CERT, &format!("{params}{EC_KEY}")), Ok(()));
        // Bad base64 or a wrong END line is no block at all.
        assert!(pem_decode(b"-----BEGIN X-----\n!!!\n-----END X-----\n").is_none());
        assert!(pem_decode(b"-----BEGIN X-----\nAAAA\n-----END Y-----\n").is_none());
        let (t, bytes, rest) =
            pem_decode(b"junk\n-----BEGIN X-----\nK: v\n\nAA AA\n-----END X-----  \nmore").unwrap();
        assert_eq!(
            (t.as_str(), bytes, rest),
            ("X", vec![0, 0, 0], &b"more"[..])
        );
    }

    #[test]
    fn tls_secret_names_the_file_that_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let cert = write("tls.crt", EC_CERT);
        let key = write("tls.key", EC_KEY);
        let args = |c: &str, k: &str| TlsArgs {
            name: "web-tls".into(),
            cert: Some(c.into()),
            key: Some(k.into()),
            append_hash: false,
            print: PrintFlags::default(),
        };
        let secret = tls_secret(&args(&cert, &key)).unwrap();
        assert_eq!(secret["type"], "kubernetes.io/tls");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            secret["data"],
            json!({"tls.crt": b64(EC_CERT), "tls.key": b64(EC_KEY)})
        );
        assert_eq!(
            tls_secret(&args(&key, &key)).unwrap_err().to_string(),
            format!("error: tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched (--cert {key})")
        );
        assert_eq!(
            tls_secret(&args(&cert, &cert)).unwrap_err().to_string(),
            format!("error: tls: found a certificate rather than a key in the PEM for the private key (--key {cert})")
        );
        let missing = dir.path().join("nope").display().to_string();
        assert_eq!(
            tls_secret(&args(&cert, &missing)).unwrap_err().to_string(),
            format!("error: Cannot read file {missing}, open {missing}: no such file or directory")
        );
        let none = TlsArgs {
            key: None,
            ..args(&cert, &key)
        };
        assert_eq!(
            tls_secret(&none).unwrap_err().to_string(),
            "error: key and cert must be specified"
        );
    }

    #[test]
    fn env_files_cannot_be_mixed_with_other_sources() {
        let args = ConfigMapArgs {
            name: "c".into(),
            data: DataFlags {
                from_literal: vec!["a=1".into()],
                from_env_file: vec!["x.env".into()],
                ..DataFlags::default()
            },
            print: PrintFlags::default(),
        };
        assert_eq!(
            configmap(&args).unwrap_err().to_string(),
            "error: from-env-file cannot be combined with from-file or from-literal"
        );
    }
}
