//! End-to-end tests of `create configmap` and `create secret generic|docker-registry|tls`
//! through the real `minik` binary against a real server: what is stored, what is printed,
//! dry runs that store nothing, and errors that are one line and exit 1.

mod support;

use serde_json::{json, Value};
use support::client::{Cluster, Out};

/// Asserts a command failed with exactly this one line on stderr and printed nothing.
fn fails_with(out: &Out, line: &str) {
    assert_eq!(
        (out.code, out.stderr.as_str(), out.stdout.as_str()),
        (1, format!("{line}\n").as_str(), ""),
    );
}

/// Asserts `KIND NAME` does not exist.
fn absent(c: &Cluster, kind: &str, name: &str) {
    let out = c.minik(&["get", kind, name]);
    assert_eq!(out.code, 1, "{kind} {name} exists: {}", out.stdout);
    assert!(out.stderr.contains("NotFound"), "{}", out.stderr);
}

fn b64(bytes: &[u8]) -> String {
    // A small encoder, so the test does not lean on the code it checks.
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn configmaps_from_literals_files_directories_and_env_files() {
    let c = Cluster::new();
    c.write("conf/app.properties", "color=blue\nsize=2\n");
    c.write("conf/z.txt", "last");
    let logo = c.home().join("conf/logo.bin");
    std::fs::write(&logo, [0x89, b'P', b'N', b'G', 0xff, 0x00]).expect("write binary");
    let extra = c.write("extra.txt", "extra content");
    let out = c.minik(&[
        "create",
        "configmap",
        "app",
        "--from-literal=greeting=hello=world",
        "--from-file=conf",
        &format!("--from-file=renamed={extra}"),
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "configmap/app created\n", "")
    );
    let cm = c.json(&["get", "configmap", "app"]);
    assert_eq!(
        cm["data"],
        json!({"greeting": "hello=world", "app.properties": "color=blue\nsize=2\n",
            "z.txt": "last", "renamed": "extra content"})
    );
    assert_eq!(
        cm["binaryData"],
        json!({"logo.bin": b64(&[0x89, b'P', b'N', b'G', 0xff, 0x00])})
    );
    assert_eq!(cm["metadata"]["namespace"], "default");

    let env = c.write(
        "app.env",
        "# settings\nLEVEL=debug\n\n  URL=http://x?a=b\nFROM_ENV\n",
    );
    let out = c.minik_in(
        &["create", "cm", "env", &format!("--from-env-file={env}")],
        None,
        &[("FROM_ENV", "inherited")],
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "configmap/env created\n")
    );
    assert_eq!(
        c.json(&["get", "cm", "env"])["data"],
        json!({"LEVEL": "debug", "URL": "http://x?a=b", "FROM_ENV": "inherited"})
    );

    // The same name again is the server's AlreadyExists.
    let again = c.minik(&["create", "configmap", "app", "--from-literal=a=b"]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("AlreadyExists"), "{}", again.stderr);
}

#[test]
fn configmap_hash_suffix_dry_runs_and_errors() {
    let c = Cluster::new();
    // kubectl's suffix: sha256 of {"data":{"one":""},"kind":"ConfigMap","name":"h"}.
    let out = c.ok(&[
        "create",
        "configmap",
        "h",
        "--from-literal=one=",
        "--append-hash",
        "-o",
        "name",
    ]);
    assert_eq!(out, "configmap/h-tt4g949269\n");
    assert_eq!(
        c.json(&["get", "cm", "h-tt4g949269"])["data"],
        json!({"one": ""})
    );

    let out = c.ok(&[
        "create",
        "configmap",
        "dry",
        "--from-literal=a=1",
        "--dry-run=client",
    ]);
    assert_eq!(out, "configmap/dry created (dry run)\n");
    absent(&c, "configmap", "dry");
    let printed: Value = serde_json::from_str(&c.ok(&[
        "create",
        "configmap",
        "dry",
        "--from-literal=a=1",
        "--dry-run=client",
        "-o",
        "json",
    ]))
    .expect("json");
    assert_eq!(printed["data"], json!({"a": "1"}));
    assert_eq!(printed["kind"], "ConfigMap");
    let out = c.ok(&[
        "create",
        "configmap",
        "dry",
        "--from-literal=a=1",
        "--dry-run=server",
    ]);
    assert_eq!(out, "configmap/dry created (server dry run)\n");
    absent(&c, "configmap", "dry");

    fails_with(
        &c.minik(&["create", "configmap", "bad", "--from-literal=bad key=1"]),
        "error: \"bad key\" is not a valid key name for a ConfigMap: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
    );
    fails_with(
        &c.minik(&[
            "create",
            "configmap",
            "bad",
            "--from-literal=k=1",
            "--from-literal=k=2",
        ]),
        "error: cannot add key \"k\", another key by that name already exists in Data for ConfigMap \"bad\"",
    );
    let env = c.write("bad.env", "OK=1\n1BAD=x\n");
    let out = c.minik(&[
        "create",
        "configmap",
        "bad",
        &format!("--from-env-file={env}"),
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("error: \"1BAD\" is not a valid key name: ")
            && out.stderr.ends_with(&format!("(env file {env}, line 2)\n")),
        "{}",
        out.stderr
    );
    let missing = c.home().join("nope.txt").display().to_string();
    fails_with(
        &c.minik(&[
            "create",
            "configmap",
            "bad",
            &format!("--from-file={missing}"),
        ]),
        &format!("error: error reading {missing}: no such file or directory"),
    );
    fails_with(
        &c.minik(&[
            "create",
            "configmap",
            "bad",
            "--from-literal=a=1",
            &format!("--from-env-file={env}"),
        ]),
        "error: from-env-file cannot be combined with from-file or from-literal",
    );
    absent(&c, "configmap", "bad");
}

#[test]
fn generic_docker_registry_and_tls_secrets() {
    let c = Cluster::new();
    let key_file = c.write("id_rsa", "not really a key\n");
    let out = c.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cr=t",
        &format!("--from-file=ssh-privatekey={key_file}"),
        "--type=example.com/creds",
    ]);
    assert_eq!(out, "secret/creds created\n");
    let secret = c.json(&["get", "secret", "creds"]);
    assert_eq!(
        secret["data"],
        json!({"password": b64(b"s3cr=t"), "ssh-privatekey": b64(b"not really a key\n")})
    );
    assert_eq!(secret["type"], "example.com/creds");

    // kubectl's suffix: sha256 of {"data":{"k":"djE="},"kind":"Secret","name":"s","type":""}.
    let out = c.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "--from-literal=k=v1",
        "--append-hash",
        "-o",
        "name",
    ]);
    assert_eq!(out, "secret/s-9624572kh6\n");
    fails_with(
        &c.minik(&[
            "create",
            "secret",
            "generic",
            "dup",
            "--from-literal=k=1",
            "--from-literal=k=2",
        ]),
        "error: cannot add key k, another key by that name already exists",
    );
    absent(&c, "secret", "dup");

    let out = c.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        "--docker-server=registry.example:5000",
        "--docker-username=bob",
        "--docker-password=pa<ss",
        "--docker-email=bob@example.com",
    ]);
    assert_eq!(out, "secret/regcred created\n");
    let secret = c.json(&["get", "secret", "regcred"]);
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    let config = r#"{"auths":{"registry.example:5000":{"username":"bob","password":"pa\u003css","email":"bob@example.com","auth":"Ym9iOnBhPHNz"}}}"#;
    assert_eq!(
        secret["data"],
        json!({".dockerconfigjson": b64(config.as_bytes())})
    );
    fails_with(
        &c.minik(&["create", "secret", "docker-registry", "nocred"]),
        "error: either --from-file or the combination of --docker-username, --docker-password and --docker-server is required",
    );

    let cert = c.write("tls.crt", EC_CERT);
    let key = c.write("tls.key", EC_KEY);
    let out = c.ok(&[
        "create",
        "secret",
        "tls",
        "web-tls",
        &format!("--cert={cert}"),
        &format!("--key={key}"),
    ]);
    assert_eq!(out, "secret/web-tls created\n");
    let secret = c.json(&["get", "secret", "web-tls"]);
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(
        secret["data"],
        json!({"tls.crt": b64(EC_CERT.as_bytes()), "tls.key": b64(EC_KEY.as_bytes())})
    );
    fails_with(
        &c.minik(&[
            "create",
            "secret",
            "tls",
            "swapped",
            &format!("--cert={cert}"),
            &format!("--key={cert}"),
        ]),
        &format!("error: tls: found a certificate rather than a key in the PEM for the private key (--key {cert})"),
    );
    absent(&c, "secret", "swapped");

    let out = c.ok(&[
        "create",
        "secret",
        "generic",
        "dry",
        "--from-literal=a=1",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    assert!(
        out.contains("kind: Secret") && out.contains("a: MQ=="),
        "{out}"
    );
    absent(&c, "secret", "dry");
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

const EC_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg6wKQyMapmf7ABILN
Bi/QwN5MxoG1Mrhm26KZVITdDqmhRANCAAQAyKHBMyX77ooyidS3CJqVgUPBpgVv
CCgEJWSiVwP3k0H5JI0iIF1/Eq7YLy+HmT7NYHcfJ0Dvraqvnl4rUgGt
-----END PRIVATE KEY-----
";

#[test]
fn patch_changes_fields_as_kubectl_does() {
    let c = Cluster::new();
    c.ok(&["create", "configmap", "app", "--from-literal=a=1"]);
    assert_eq!(
        c.ok(&["patch", "configmap", "app", "-p", r#"{"data":{"a":"2"}}"#]),
        "configmap/app patched\n"
    );
    assert_eq!(
        c.ok(&["patch", "cm/app", "--type", "merge", "-p", "data: {a: '2'}"]),
        "configmap/app patched (no change)\n"
    );
    assert_eq!(
        c.ok(&[
            "patch",
            "cm",
            "app",
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/data/b","value":"3"}]"#
        ]),
        "configmap/app patched\n"
    );
    let cm: Value = serde_json::from_str(&c.ok(&["get", "cm", "app", "-o", "json"])).unwrap();
    assert_eq!(cm["data"], json!({"a": "2", "b": "3"}));
    let out = c.minik(&["patch", "cm", "app"]);
    fails_with(
        &out,
        "error: must specify --patch or --patch-file containing the contents of the patch",
    );
    let out = c.minik(&["patch", "cm", "app", "--type", "json", "-p", r#"{"a":1}"#]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("a json patch must be a list"),
        "{}",
        out.stderr
    );
    let out = c.minik(&["patch", "cm", "nosuch", "-p", "{}"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("NotFound"), "{}", out.stderr);
}
