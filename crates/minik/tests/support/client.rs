//! The client's side of end-to-end tests: a cluster (server and node agents) in a temp dir
//! with a `HOME` of its own, the `minik` client run against it, and the normalising of ages,
//! times and addresses so snapshots of what people read do not depend on when they ran.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use expect_test::Expect;
use minik_testkit::{blocking::wait_for, lines_of, DEADLINE};
use serde_json::Value;

use super::{Running, MINIK};

/// What one client command did.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A server (and maybe a node) in a temp dir, and a `HOME` of its own so no config leaks in.
pub struct Cluster {
    pub server: Running,
    pub nodes: Vec<Running>,
    pub dir: tempfile::TempDir,
}

impl Drop for Cluster {
    /// The node agents go first (SIGTERM: each stops its pods' containers), then anything they
    /// left mounted in the cluster's directory, then the directory.
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.terminate(std::time::Duration::from_secs(20));
        }
        minik_testkit::unmount_under(self.dir.path());
    }
}

impl Cluster {
    pub fn new() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = MINIK.server(&dir.path().join("server"), &[]);
        Cluster {
            server,
            nodes: Vec::new(),
            dir,
        }
    }

    /// A cluster with one node agent, `n1`, on the given runtime.
    pub fn with_node(runtime: &str) -> Cluster {
        let mut c = Cluster::new();
        c.add_node("n1", &["--runtime", runtime]);
        c
    }

    /// Starts a node agent with `extra` flags and waits until it is Ready.
    pub fn add_node(&mut self, name: &str, extra: &[&str]) {
        let node_dir = self.dir.path().join(format!("node-{name}"));
        self.nodes
            .push(MINIK.node(&self.server.base, name, &node_dir, extra));
        wait_for(&format!("node {name} to be Ready"), DEADLINE, || {
            let out = self.minik(&["get", "no", name]);
            if out.code == 0 && out.stdout.contains(" Ready ") {
                Ok(())
            } else {
                Err(format!("{}{}", out.stdout, out.stderr))
            }
        });
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// Points a client command at the server's CA (it serves HTTPS).
    pub fn trust(&self, command: &mut std::process::Command) {
        match minik_testkit::ca_for(&self.server.base) {
            Some(ca) => command.env("MINIK_CERTIFICATE_AUTHORITY", ca),
            None => command.env_remove("MINIK_CERTIFICATE_AUTHORITY"),
        };
    }

    pub fn minik(&self, args: &[&str]) -> Out {
        self.minik_in(args, None, &[])
    }

    pub fn minik_in(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Out {
        let mut cmd = MINIK.command();
        self.trust(&mut cmd);
        cmd.args(args)
            .env("MINIK_SERVER", &self.server.base)
            .env_remove("MINIK_NAMESPACE")
            .env_remove("MINIK_TOKEN")
            .env("HOME", self.home())
            // Files the client leaves (an edit that failed) stay in the test's directory.
            .env("TMPDIR", self.home())
            .env("RUST_LOG", "warn")
            .current_dir(self.home())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("run minik");
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(text.as_bytes()).expect("write stdin");
        }
        let out = child.wait_with_output().expect("wait for minik");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `minik ARGS` in the background (a watch, `logs -f`); its stdout arrives line by
    /// line on the receiver. The process is killed when the guard is dropped.
    pub fn spawn_lines(&self, args: &[&str]) -> (Running, std::sync::mpsc::Receiver<String>) {
        let mut command = MINIK.command();
        self.trust(&mut command);
        let mut child = command
            .args(args)
            .env("MINIK_SERVER", &self.server.base)
            .env_remove("MINIK_NAMESPACE")
            .env_remove("MINIK_TOKEN")
            .env("HOME", self.home())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start minik");
        let lines = lines_of(child.stdout.take().expect("stdout"));
        (Running::guard(child), lines)
    }

    /// Runs a command that must succeed and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.minik(args);
        assert_eq!(
            out.code, 0,
            "minik {args:?} failed: {}{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    pub fn write(&self, name: &str, text: &str) -> String {
        let path = self.home().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write manifest");
        path.display().to_string()
    }

    /// Writes `text` as the manifest `name` and applies it, which must succeed.
    pub fn apply(&self, name: &str, text: &str) -> String {
        let file = self.write(name, text);
        self.ok(&["apply", "-f", &file])
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("json output")
    }
}

pub fn is_age(token: &str) -> bool {
    let mut rest = token;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        match rest[digits..].chars().next() {
            Some('s' | 'm' | 'h' | 'd' | 'y') => rest = &rest[digits + 1..],
            _ => return false,
        }
        parts += 1;
    }
    (1..=2).contains(&parts)
}

/// Replaces ages (`5s`, `3m2s`) with `<age>` padded to the column's width, and the values of
/// time lines of `describe` with `<time>`, so snapshots do not depend on when they ran.
pub fn normalise(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let varying = [
            ("Start Time:", "<time>"),
            ("Started:", "<time>"),
            ("Finished:", "<time>"),
            ("CreationTimestamp:", "<time>"),
            ("Container ID:", "<id>"),
        ];
        if let Some((key, placeholder)) = varying.iter().find(|(k, _)| trimmed.starts_with(*k)) {
            let indent = line.len() - trimmed.len();
            let after = &trimmed[key.len()..];
            let pad = after.len() - after.trim_start().len();
            out.push_str(&format!(
                "{}{key}{}{placeholder}\n",
                &line[..indent],
                " ".repeat(pad)
            ));
            continue;
        }
        let mut rest = line;
        while !rest.is_empty() {
            let token_len = rest.find(' ').unwrap_or(rest.len());
            let token = &rest[..token_len];
            let after = &rest[token_len..];
            let spaces = after.len() - after.trim_start_matches(' ').len();
            if is_age(token) {
                if spaces == 0 {
                    out.push_str("<age>");
                } else {
                    let width = (token_len + spaces).max(6);
                    out.push_str(&format!("{:<width$}", "<age>"));
                }
            } else {
                out.push_str(&rest[..token_len + spaces]);
            }
            rest = &rest[token_len + spaces..];
        }
        out.push('\n');
    }
    out
}

/// A table with `from` replaced by `to` in its cells and the columns aligned again, for
/// values (addresses) whose width varies between runs. Cells are split at runs of two or more
/// spaces, which kubectl's padding always leaves.
pub fn realign(table: &str, from: &str, to: &str) -> String {
    let mut blocks = Vec::new();
    for block in table.split("\n\n") {
        let rows: Vec<Vec<String>> = block
            .lines()
            .map(|l| {
                l.split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| {
                        if c == from {
                            to.to_owned()
                        } else {
                            c.to_owned()
                        }
                    })
                    .collect()
            })
            .collect();
        let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                rows.iter()
                    .filter_map(|r| r.get(i))
                    .map(String::len)
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let lines: Vec<String> = rows
            .iter()
            .map(|r| {
                let cells: Vec<String> = r
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c:<width$}", width = widths[i] + 3))
                    .collect();
                cells.concat().trim_end().to_owned()
            })
            .collect();
        blocks.push(lines.join("\n"));
    }
    format!("{}\n", blocks.join("\n\n").trim_end())
}

pub fn check(actual: &str, expect: Expect) {
    expect.assert_eq(&normalise(actual));
}
