//! A container's argv and environment from its image and its pod spec, as the kubelet and
//! containerd build them together.

use std::collections::BTreeMap;

use minik_api::k8s_openapi::api::core::v1::Container;
use minik_image::ImageConfig;

use crate::spec::expand;

/// The `PATH` a container gets when its image sets none (containerd's default).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The argv of a container, merged as Kubernetes documents ("Define a Command and Arguments for
/// a Container"): neither `command` nor `args` runs the image's Entrypoint and Cmd; `command`
/// alone runs it without the image's Cmd; `args` alone runs the image's Entrypoint with them;
/// both run `command` with `args`. `command` and `args` (not the image's) have their `$(VAR)`
/// references expanded against `env`, the container's environment. An empty list counts as
/// not given.
pub(crate) fn command_line(
    container: &Container,
    image: &ImageConfig,
    env: &[(String, String)],
) -> Result<Vec<String>, String> {
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let expanded = |list: &Option<Vec<String>>| -> Vec<String> {
        list.iter().flatten().map(|s| expand(s, &vars)).collect()
    };
    let command = expanded(&container.command);
    let args = expanded(&container.args);
    let argv: Vec<String> = match (command.is_empty(), args.is_empty()) {
        (true, true) => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
        (false, true) => command,
        (true, false) => image.entrypoint.iter().cloned().chain(args).collect(),
        (false, false) => command.into_iter().chain(args).collect(),
    };
    if argv.is_empty() {
        return Err("no command specified".to_owned());
    }
    Ok(argv)
}

/// A container's environment: the image's `Env` in its order, each variable the container also
/// sets taking the container's value, then the container's other variables in their order. The
/// image's `PATH`, or [`DEFAULT_PATH`] first when the image sets none (containerd's default
/// spec), unless the container sets it. An image entry without `=` is skipped; a name given
/// twice keeps its first place and its last value.
pub(crate) fn environment(
    image: &ImageConfig,
    container_env: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| match out.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = value.to_owned(),
        None => out.push((name.to_owned(), value.to_owned())),
    };
    let image_vars = image.env.iter().filter_map(|entry| entry.split_once('='));
    let image_has_path = image_vars.clone().any(|(name, _)| name == "PATH");
    if !image_has_path {
        set("PATH", DEFAULT_PATH);
    }
    for (name, value) in image_vars {
        set(name, value);
    }
    for (name, value) in container_env {
        set(name, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(entrypoint: &[&str], cmd: &[&str], env: &[&str]) -> ImageConfig {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let blob = json!({
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {"Entrypoint": strings(entrypoint), "Cmd": strings(cmd), "Env": strings(env)}
        });
        ImageConfig::parse(blob.to_string().as_bytes(), "test").expect("image config")
    }

    fn container(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        let mut c = Container {
            name: "c".into(),
            ..Container::default()
        };
        c.command = command.map(|l| l.iter().map(|s| s.to_string()).collect());
        c.args = args.map(|l| l.iter().map(|s| s.to_string()).collect());
        c
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_and_args_merge_as_kubernetes_documents() {
        let env = vec![
            ("NAME".to_string(), "world".to_string()),
            ("PORT".into(), "8080".into()),
        ];
        let full = image(&["/entry", "-x"], &["serve", "$(PORT)"], &[]);
        type Case<'a> = (
            &'a ImageConfig,
            Option<&'a [&'a str]>,
            Option<&'a [&'a str]>,
            &'a [&'a str],
        );
        let no_entry = image(&[], &["sh", "-c", "echo"], &[]);
        let cases: &[Case] = &[
            // Neither: Entrypoint + Cmd, not expanded.
            (&full, None, None, &["/entry", "-x", "serve", "$(PORT)"]),
            (
                &full,
                Some(&[]),
                Some(&[]),
                &["/entry", "-x", "serve", "$(PORT)"],
            ),
            (&no_entry, None, None, &["sh", "-c", "echo"]),
            // command only: the image's Entrypoint and Cmd are both ignored.
            (
                &full,
                Some(&["/bin/app", "$(NAME)"]),
                None,
                &["/bin/app", "world"],
            ),
            // args only: the image's Entrypoint with them, its Cmd ignored.
            (
                &full,
                None,
                Some(&["--port=$(PORT)"]),
                &["/entry", "-x", "--port=8080"],
            ),
            (&no_entry, None, Some(&["ls", "/"]), &["ls", "/"]),
            // Both: the image is ignored.
            (
                &full,
                Some(&["echo"]),
                Some(&["hi $(NAME)", "$$(NAME)", "$(MISSING)"]),
                &["echo", "hi world", "$(NAME)", "$(MISSING)"],
            ),
        ];
        for (image, command, args, expected) in cases {
            let c = container(*command, *args);
            assert_eq!(
                command_line(&c, image, &env),
                Ok(strings(expected)),
                "{command:?} {args:?}"
            );
        }
    }

    #[test]
    fn no_command_is_an_error() {
        let empty = image(&[], &[], &[]);
        assert_eq!(
            command_line(&container(None, None), &empty, &[]),
            Err("no command specified".to_owned())
        );
        assert_eq!(
            command_line(&container(Some(&[]), None), &empty, &[]),
            Err("no command specified".to_owned())
        );
        // Cmd without Entrypoint is replaced by args; only Cmd and no args runs Cmd.
        let cmd_only = image(&[], &["run"], &[]);
        assert_eq!(
            command_line(&container(None, None), &cmd_only, &[]),
            Ok(strings(&["run"]))
        );
    }

    #[test]
    fn environment_merges_image_and_container() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        type Case<'a> = (
            &'a [&'a str],
            &'a [(&'a str, &'a str)],
            &'a [(&'a str, &'a str)],
        );
        let cases: &[Case] = &[
            // No image PATH: the default, first.
            (&[], &[], &[("PATH", DEFAULT_PATH)]),
            (
                &["LANG=C.UTF-8", "A=1"],
                &[("B", "2")],
                &[
                    ("PATH", DEFAULT_PATH),
                    ("LANG", "C.UTF-8"),
                    ("A", "1"),
                    ("B", "2"),
                ],
            ),
            // The image's PATH stays where the image has it.
            (
                &["A=1", "PATH=/opt/bin:/bin", "B=x=y"],
                &[],
                &[("A", "1"), ("PATH", "/opt/bin:/bin"), ("B", "x=y")],
            ),
            // The container's values win, in the image's order; new ones follow.
            (
                &["A=1", "PATH=/bin", "B=2"],
                &[
                    ("NEW", "n"),
                    ("B", "two"),
                    ("PATH", "/usr/bin"),
                    ("EMPTY", ""),
                ],
                &[
                    ("A", "1"),
                    ("PATH", "/usr/bin"),
                    ("B", "two"),
                    ("NEW", "n"),
                    ("EMPTY", ""),
                ],
            ),
            // A container PATH over the default.
            (&[], &[("PATH", "/x")], &[("PATH", "/x")]),
            // Entries without `=` are skipped; duplicates keep the first place, last value.
            (
                &["NOEQUALS", "A=1", "A=2", "E="],
                &[("C", "1"), ("C", "2")],
                &[("PATH", DEFAULT_PATH), ("A", "2"), ("E", ""), ("C", "2")],
            ),
        ];
        for (image_env, container_env, expected) in cases {
            let img = image(&[], &[], image_env);
            assert_eq!(
                environment(&img, &pairs(container_env)),
                pairs(expected),
                "{image_env:?} {container_env:?}"
            );
        }
    }
}
