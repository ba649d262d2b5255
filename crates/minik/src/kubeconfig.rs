//! The kubeconfig files minik writes (`minik up`'s `~/.minik/kubeconfig`, `minik server`'s
//! `DATA_DIR/kubeconfig`): one cluster, user and context named `minik`, with the cluster CA
//! inline (`certificate-authority-data`) over HTTPS, so that kubectl and the Kubernetes client
//! libraries verify the server with no insecure flag.

use std::path::Path;

use anyhow::Context;
use base64::Engine as _;

/// The kubeconfig text for `server` with the admin `token`, trusting `ca_pem`.
pub fn render(server: &str, ca_pem: Option<&str>, token: &str) -> String {
    let ca = match ca_pem {
        Some(pem) => format!(
            "    certificate-authority-data: {}\n",
            base64::engine::general_purpose::STANDARD.encode(pem)
        ),
        None => String::new(),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: minik\n  cluster:\n    server: {server}\n{ca}users:\n- name: minik\n  user:\n    token: {token}\ncontexts:\n- name: minik\n  context:\n    cluster: minik\n    user: minik\n    namespace: default\ncurrent-context: minik\npreferences: {{}}\n"
    )
}

/// Writes the kubeconfig to `path` (mode 0600: it holds the admin token).
pub fn write(path: &Path, server: &str, ca_pem: Option<&str>, token: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    minik_client::write_private_file(path, &render(server, ca_pem, token))
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_inline_over_https_and_absent_over_plain_http() {
        let text = render("https://127.0.0.1:6443", Some("PEM"), "t0ken");
        assert!(
            text.contains("    certificate-authority-data: UEVN\n"),
            "{text}"
        );
        assert!(text.contains("    token: t0ken\n"));
        let plain = render("http://127.0.0.1:6443", None, "t");
        assert!(!plain.contains("certificate-authority"));
        // Both are YAML a kubeconfig reader takes.
        for t in [text, plain] {
            let v: serde_json::Value = parse(&t);
            assert_eq!(v["clusters"][0]["name"], "minik");
        }
    }

    fn parse(text: &str) -> serde_json::Value {
        minik_api::decode::parse_document(text.as_bytes()).unwrap()
    }
}
