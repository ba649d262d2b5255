//! Who a container's process runs as, decided as the kubelet and containerd decide it together.
//!
//! The kubelet takes the user part of the image's `User` (`name`, `uid`, `name:group`,
//! `uid:gid`: the group part is dropped, kubernetes/kubernetes#61967), lets `runAsUser` replace
//! it, and checks `runAsNonRoot` before anything is read from the image. containerd then
//! resolves a name against the container's `/etc/passwd`, takes the primary group from the
//! user's entry (0 for a uid without one) unless `runAsGroup` gives it, and adds the
//! supplementary groups that list the user in `/etc/group` (none when `runAsGroup` is set). The
//! primary group is always the first of the additional gids, as containerd does since
//! CVE-2023-25173.
//!
//! The files are read inside the container's root without ever leaving it: each component of
//! the path is looked up under the root, a symbolic link's absolute target is taken relative to
//! the root and `..` stops at it, as if the process were already chrooted. This runs before the
//! container starts, when nothing else writes its root.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;

use super::container::User;

/// The most symbolic links followed while resolving one path, as Linux (`ELOOP`).
const MAX_SYMLINKS: usize = 40;

/// The largest `/etc/passwd` or `/etc/group` read.
const MAX_FILE: u64 = 16 << 20;

/// Why the user of a container could not be decided. The messages are Kubernetes' (kubelet's for
/// `runAsNonRoot`, containerd's for names), without the pod and container names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UserError {
    /// `runAsNonRoot: true` with `runAsUser: 0`.
    #[error("container's runAsUser breaks non-root policy")]
    RunAsUserIsRoot,
    /// `runAsNonRoot: true`, no `runAsUser`, and the image runs as uid 0 (or names no user).
    #[error("container has runAsNonRoot and image will run as root")]
    ImageRunsAsRoot,
    /// `runAsNonRoot: true`, no `runAsUser`, and the image names its user: the kubelet cannot
    /// tell whether it is root without reading the image's files, so it refuses.
    #[error(
        "container has runAsNonRoot and image has non-numeric user ({0}), cannot verify user is non-root"
    )]
    NonNumericUser(String),
    /// The image's user name is not in the container's `/etc/passwd`.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    /// A `runAsUser`, `runAsGroup` or image uid that is not a Linux id (0 to 2^32-1).
    #[error("{field} {value} is not a valid Linux id")]
    InvalidId { field: &'static str, value: i64 },
    /// `/etc/passwd` or `/etc/group` of the container could not be read (a missing file is not
    /// an error: it has no entries).
    #[error("reading {path} in the container's root: {error}")]
    Read { path: &'static str, error: String },
}

impl UserError {
    /// The container's waiting reason in Kubernetes: the kubelet's own checks give
    /// `CreateContainerConfigError`; what containerd finds while creating the container gives
    /// `CreateContainerError`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            UserError::RunAsUserIsRoot
            | UserError::ImageRunsAsRoot
            | UserError::NonNumericUser(_)
            | UserError::InvalidId { .. } => "CreateContainerConfigError",
            UserError::UnknownUser(_) | UserError::Read { .. } => "CreateContainerError",
        }
    }
}

/// The user part of an image's `User`, or of the effective user.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Who {
    Id(i64),
    Name(String),
}

impl Who {
    /// The kubelet's reading of an image `User`: the part before `:`; a number is a uid, other
    /// text a name, nothing is root.
    fn of_image(user: Option<&str>) -> Who {
        let part = user.unwrap_or("").split(':').next().unwrap_or("");
        if part.is_empty() {
            return Who::Id(0);
        }
        match part.parse::<i64>() {
            Ok(id) => Who::Id(id),
            Err(_) => Who::Name(part.to_owned()),
        }
    }
}

/// Who a container runs as. `image_user` is the image configuration's `User`; the `run_as_*`
/// values are the container's effective `securityContext` (the container's, else the pod's);
/// `rootfs` is the container's root, whose `/etc/passwd` and `/etc/group` are read.
pub(crate) fn resolve(
    image_user: Option<&str>,
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    run_as_non_root: Option<bool>,
    rootfs: &Path,
) -> Result<User, UserError> {
    let who = match run_as_user {
        Some(uid) => Who::Id(uid),
        None => Who::of_image(image_user),
    };
    if run_as_non_root == Some(true) {
        match (&who, run_as_user) {
            (_, Some(0)) => return Err(UserError::RunAsUserIsRoot),
            (_, Some(_)) => {}
            (Who::Id(0), None) => return Err(UserError::ImageRunsAsRoot),
            (Who::Name(name), None) => return Err(UserError::NonNumericUser(name.clone())),
            (Who::Id(_), None) => {}
        }
    }
    let group_override = run_as_group.map(|gid| id("runAsGroup", gid)).transpose()?;

    let (uid, passwd_gid, name) = match &who {
        Who::Id(raw) => {
            let field = if run_as_user.is_some() {
                "runAsUser"
            } else {
                "image user"
            };
            let uid = id(field, *raw)?;
            if group_override.is_some() {
                // `uid:gid`: containerd reads no file.
                (uid, 0, None)
            } else {
                match passwd(rootfs)?.into_iter().find(|e| e.uid == uid) {
                    Some(entry) => (uid, entry.gid, Some(entry.name)),
                    None => (uid, 0, None),
                }
            }
        }
        Who::Name(wanted) => match passwd(rootfs)?.into_iter().find(|e| &e.name == wanted) {
            Some(entry) => (entry.uid, entry.gid, Some(entry.name)),
            None => return Err(UserError::UnknownUser(wanted.clone())),
        },
    };

    let gid = group_override.unwrap_or(passwd_gid);
    let mut additional_gids = vec![gid];
    if let (None, Some(name)) = (group_override, name) {
        for group in groups(rootfs)? {
            // containerd leaves out the group named after the user: its primary group, if any.
            if group.name != name
                && group.members.contains(&name)
                && !additional_gids.contains(&group.gid)
            {
                additional_gids.push(group.gid);
            }
        }
    }
    Ok(User {
        uid,
        gid,
        additional_gids,
    })
}

fn id(field: &'static str, value: i64) -> Result<u32, UserError> {
    u32::try_from(value).map_err(|_| UserError::InvalidId { field, value })
}

/// One line of `/etc/passwd`.
#[derive(Debug, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

/// One line of `/etc/group`.
#[derive(Debug, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// `name:password:uid:gid:...` lines; comments, blank and malformed lines are skipped (a line
/// with a bad uid must not become root).
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?.trim();
            if name.is_empty() || name.starts_with('#') {
                return None;
            }
            let _password = fields.next()?;
            let uid = fields.next()?.trim().parse().ok()?;
            let gid = fields.next()?.trim().parse().ok()?;
            Some(PasswdEntry {
                name: name.to_owned(),
                uid,
                gid,
            })
        })
        .collect()
}

/// `name:password:gid:member,member` lines; comments, blank and malformed lines are skipped.
fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?.trim();
            if name.is_empty() || name.starts_with('#') {
                return None;
            }
            let _password = fields.next()?;
            let gid = fields.next()?.trim().parse().ok()?;
            let members = fields
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect();
            Some(GroupEntry {
                name: name.to_owned(),
                gid,
                members,
            })
        })
        .collect()
}

fn passwd(rootfs: &Path) -> Result<Vec<PasswdEntry>, UserError> {
    Ok(parse_passwd(&read_config(rootfs, "/etc/passwd")?))
}

fn groups(rootfs: &Path) -> Result<Vec<GroupEntry>, UserError> {
    Ok(parse_group(&read_config(rootfs, "/etc/group")?))
}

/// The text of `path` inside `rootfs`, empty when it does not exist.
fn read_config(rootfs: &Path, path: &'static str) -> Result<String, UserError> {
    let failed = |error: io::Error| UserError::Read {
        path,
        error: error.to_string(),
    };
    match read_in_root(rootfs, Path::new(path)).map_err(failed)? {
        Some(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        None => Ok(String::new()),
    }
}

/// Reads the regular file at `path` as seen from inside `root`; `None` when it does not exist.
fn read_in_root(root: &Path, path: &Path) -> io::Result<Option<Vec<u8>>> {
    let Some(host_path) = resolve_in_root(root, path)? else {
        return Ok(None);
    };
    let file = match OpenOptions::new()
        .read(true)
        // The last component was checked not to be a link; O_NONBLOCK keeps a FIFO from hanging.
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(&host_path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    read_limited(file)
}

fn read_limited(file: File) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(io::Error::other(format!("larger than {MAX_FILE} bytes")));
    }
    Ok(Some(bytes))
}

/// Why the working directory `cwd` cannot be made in the container's root, if it cannot: a
/// component that exists and is not a directory. Missing directories are made at the start.
pub(crate) fn working_dir_problem(root: &Path, cwd: &str) -> Option<String> {
    let mut prefix = PathBuf::from("/");
    for part in Path::new(cwd).components().skip(1) {
        prefix.push(part);
        match resolve_in_root(root, &prefix) {
            Ok(Some(host)) => match fs::metadata(&host) {
                Ok(meta) if !meta.is_dir() => {
                    return Some(format!(
                        "the working directory {cwd:?} cannot be made: {} is not a directory",
                        prefix.display()
                    ))
                }
                _ => {}
            },
            Ok(None) => return None,
            Err(e) => {
                return Some(format!(
                    "the working directory {cwd:?} cannot be resolved: {e}"
                ))
            }
        }
    }
    None
}

/// The host path of `path` as the container would see it with `root` as `/`: symbolic links
/// are followed inside the root (absolute targets start again at the root, `..` never goes
/// above it). `None` when a component does not exist or is not a directory.
fn resolve_in_root(root: &Path, path: &Path) -> io::Result<Option<PathBuf>> {
    // What is left to walk, last component first.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&part);
        let meta = match fs::symlink_metadata(&candidate) {
            Ok(meta) => meta,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(io::Error::other("too many levels of symbolic links"));
            }
            let target = fs::read_link(&candidate)?;
            if target.is_absolute() {
                resolved.clear();
            }
            push_components(&mut pending, &target);
        } else {
            if !pending.is_empty() && !meta.is_dir() {
                return Ok(None);
            }
            resolved.push(part);
        }
    }
    let mut host_path = root.to_path_buf();
    host_path.extend(&resolved);
    Ok(Some(host_path))
}

/// Pushes the components of `path` so that its first component is popped first; `/` and `.`
/// are dropped, `..` kept.
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    pending.extend(parts.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
broken:x:notanumber:0::/:/bin/sh
app:x:1000:1000:App:/home/app:/bin/sh
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
";
    const GROUP: &str = "\
root:x:0:
daemon:x:1:
adm:x:4:app,daemon
staff:x:50:
app:x:1000:app
video:x:44: www-data , app
disk:x:6:
";

    fn root_with(passwd: Option<&str>, group: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir_all(dir.path().join("etc")).expect("etc");
        if let Some(text) = passwd {
            fs::write(dir.path().join("etc/passwd"), text).expect("passwd");
        }
        if let Some(text) = group {
            fs::write(dir.path().join("etc/group"), text).expect("group");
        }
        dir
    }

    fn user(uid: u32, gid: u32, additional_gids: &[u32]) -> User {
        User {
            uid,
            gid,
            additional_gids: additional_gids.to_vec(),
        }
    }

    #[test]
    fn image_users_resolve_as_containerd_does() {
        let root = root_with(Some(PASSWD), Some(GROUP));
        let cases: &[(Option<&str>, User)] = &[
            (None, user(0, 0, &[0])),
            (Some(""), user(0, 0, &[0])),
            (Some("root"), user(0, 0, &[0])),
            // By name: uid and group from passwd, supplementary groups listing the name.
            (Some("app"), user(1000, 1000, &[1000, 4, 44])),
            (Some("www-data"), user(33, 33, &[33, 44])),
            // By uid: the entry with that uid names the user for its groups.
            (Some("1000"), user(1000, 1000, &[1000, 4, 44])),
            // A uid without an entry is fine: group 0, no supplementary groups.
            (Some("4242"), user(4242, 0, &[0])),
            // The group part is dropped by the kubelet (kubernetes#61967).
            (Some("app:staff"), user(1000, 1000, &[1000, 4, 44])),
            (Some("1000:50"), user(1000, 1000, &[1000, 4, 44])),
            (Some("4242:50"), user(4242, 0, &[0])),
        ];
        for (image_user, expected) in cases {
            let got = resolve(*image_user, None, None, None, root.path());
            assert_eq!(got.as_ref(), Ok(expected), "{image_user:?}");
        }
    }

    #[test]
    fn unknown_names_are_errors() {
        let root = root_with(Some(PASSWD), Some(GROUP));
        let err = resolve(Some("nobody"), None, None, None, root.path()).unwrap_err();
        assert_eq!(err, UserError::UnknownUser("nobody".into()));
        assert_eq!(
            err.to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert_eq!(err.reason(), "CreateContainerError");
        // A malformed line does not define its user (and never becomes root).
        assert_eq!(
            resolve(Some("broken"), None, None, None, root.path()),
            Err(UserError::UnknownUser("broken".into()))
        );
        // No passwd at all: names are unknown, uids are fine.
        let empty = root_with(None, None);
        assert_eq!(
            resolve(Some("app"), None, None, None, empty.path()),
            Err(UserError::UnknownUser("app".into()))
        );
        assert_eq!(
            resolve(Some("1000"), None, None, None, empty.path()),
            Ok(user(1000, 0, &[0]))
        );
        // No /etc at all.
        let bare = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            resolve(Some("7"), None, None, None, bare.path()),
            Ok(user(7, 0, &[0]))
        );
    }

    #[test]
    fn security_context_overrides_the_image() {
        let root = root_with(Some(PASSWD), Some(GROUP));
        type Case<'a> = (Option<&'a str>, Option<i64>, Option<i64>, User);
        let cases: &[Case] = &[
            // runAsUser replaces the image's user; the group comes from its passwd entry.
            (Some("app"), Some(33), None, user(33, 33, &[33, 44])),
            (None, Some(1000), None, user(1000, 1000, &[1000, 4, 44])),
            (Some("app"), Some(5000), None, user(5000, 0, &[0])),
            // runAsGroup replaces the primary group and drops the supplementary ones.
            (Some("app"), None, Some(50), user(1000, 50, &[50])),
            (None, Some(1000), Some(6), user(1000, 6, &[6])),
            (Some("nobody"), Some(7), Some(8), user(7, 8, &[8])),
            (None, None, Some(50), user(0, 50, &[50])),
        ];
        for (image_user, run_as_user, run_as_group, expected) in cases {
            let got = resolve(*image_user, *run_as_user, *run_as_group, None, root.path());
            assert_eq!(
                got.as_ref(),
                Ok(expected),
                "{image_user:?} {run_as_user:?} {run_as_group:?}"
            );
        }
        for (user, group, field, value) in [
            (Some(-1), None, "runAsUser", -1),
            (Some(1 << 32), None, "runAsUser", 1 << 32),
            (None, Some(-5), "runAsGroup", -5),
        ] {
            let err = resolve(None, user, group, None, root.path()).unwrap_err();
            assert_eq!(err, UserError::InvalidId { field, value });
            assert_eq!(err.reason(), "CreateContainerConfigError");
        }
        assert_eq!(
            resolve(Some("4294967296"), None, None, None, root.path()),
            Err(UserError::InvalidId {
                field: "image user",
                value: 1 << 32
            })
        );
    }

    #[test]
    fn run_as_non_root_is_checked_as_the_kubelet_does() {
        let root = root_with(Some(PASSWD), Some(GROUP));
        let check = |image: Option<&str>, run_as_user: Option<i64>| {
            resolve(image, run_as_user, None, Some(true), root.path())
        };
        assert_eq!(check(None, None), Err(UserError::ImageRunsAsRoot));
        assert_eq!(check(Some("0"), None), Err(UserError::ImageRunsAsRoot));
        assert_eq!(check(Some("0:1000"), None), Err(UserError::ImageRunsAsRoot));
        assert_eq!(check(Some("app"), Some(0)), Err(UserError::RunAsUserIsRoot));
        // A name cannot be verified, even one that is not root.
        let err = check(Some("app"), None).unwrap_err();
        assert_eq!(err, UserError::NonNumericUser("app".into()));
        assert_eq!(
            err.to_string(),
            "container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root"
        );
        assert_eq!(err.reason(), "CreateContainerConfigError");
        assert_eq!(
            UserError::ImageRunsAsRoot.to_string(),
            "container has runAsNonRoot and image will run as root"
        );
        // Allowed: a numeric non-root image user, or a non-root runAsUser over a named one.
        assert_eq!(
            check(Some("1000"), None),
            Ok(user(1000, 1000, &[1000, 4, 44]))
        );
        assert_eq!(check(Some("root"), Some(33)), Ok(user(33, 33, &[33, 44])));
        // runAsNonRoot false or unset checks nothing.
        assert_eq!(
            resolve(None, None, None, Some(false), root.path()),
            Ok(user(0, 0, &[0]))
        );
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let outer = tempfile::tempdir().expect("temp dir");
        let secret = outer.path().join("outside");
        fs::write(&secret, "evil:x:0:0::/:/bin/sh\n").expect("outside file");
        let root = outer.path().join("root");
        fs::create_dir_all(root.join("etc")).expect("etc");
        // Absolute, climbing above the root: resolves to /outside inside the root, missing.
        symlink("/../../outside", root.join("etc/passwd")).expect("symlink");
        assert_eq!(
            resolve(Some("evil"), None, None, None, &root),
            Err(UserError::UnknownUser("evil".into()))
        );
        // Relative, climbing above the root: the same.
        fs::remove_file(root.join("etc/passwd")).expect("remove");
        symlink("../../../../outside", root.join("etc/passwd")).expect("symlink");
        assert_eq!(
            resolve(Some("evil"), None, None, None, &root),
            Err(UserError::UnknownUser("evil".into()))
        );
        // The same name inside the root is what is read.
        fs::write(root.join("outside"), "evil:x:77:78::/:/bin/sh\n").expect("inside file");
        assert_eq!(
            resolve(Some("evil"), None, None, None, &root),
            Ok(user(77, 78, &[78]))
        );
        // A symlinked /etc directory is followed inside the root too.
        let other = tempfile::tempdir().expect("temp dir");
        fs::create_dir_all(other.path().join("real")).expect("real");
        fs::write(other.path().join("real/passwd"), "app:x:9:9::/:/bin/sh\n").expect("passwd");
        symlink("/real", other.path().join("etc")).expect("symlink");
        assert_eq!(
            resolve(Some("app"), None, None, None, other.path()),
            Ok(user(9, 9, &[9]))
        );
    }

    #[test]
    fn hostile_files_are_errors_not_hangs() {
        let root = root_with(None, None);
        // A loop.
        symlink("/etc/group", root.path().join("etc/passwd")).expect("symlink");
        symlink("/etc/passwd", root.path().join("etc/group")).expect("symlink");
        let err = resolve(Some("app"), None, None, None, root.path()).unwrap_err();
        assert!(
            matches!(&err, UserError::Read { path: "/etc/passwd", error } if error.contains("symbolic links")),
            "{err}"
        );
        assert_eq!(err.reason(), "CreateContainerError");
        // A directory.
        let dir = root_with(None, None);
        fs::create_dir(dir.path().join("etc/passwd")).expect("dir");
        assert!(matches!(
            resolve(Some("app"), None, None, None, dir.path()),
            Err(UserError::Read { .. })
        ));
        // A FIFO is not opened for a blocking read.
        let fifo = root_with(None, None);
        nix::unistd::mkfifo(
            &fifo.path().join("etc/passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("mkfifo");
        assert!(matches!(
            resolve(Some("app"), None, None, None, fifo.path()),
            Err(UserError::Read { .. })
        ));
        // /etc being a file: no entries.
        let file = tempfile::tempdir().expect("temp dir");
        fs::write(file.path().join("etc"), "x").expect("file");
        assert_eq!(
            resolve(Some("5"), None, None, None, file.path()),
            Ok(user(5, 0, &[0]))
        );
    }

    #[test]
    fn parsers_are_lenient() {
        assert_eq!(
            parse_passwd("a:x:1:2\n\n#c:x:0:0\nb:x:3\nc:x:4:5:::\n"),
            vec![
                PasswdEntry {
                    name: "a".into(),
                    uid: 1,
                    gid: 2
                },
                PasswdEntry {
                    name: "c".into(),
                    uid: 4,
                    gid: 5
                },
            ]
        );
        assert_eq!(
            parse_group("g:x:7\nh:x:8:a,,b\nbad:x:z:a\n"),
            vec![
                GroupEntry {
                    name: "g".into(),
                    gid: 7,
                    members: vec![]
                },
                GroupEntry {
                    name: "h".into(),
                    gid: 8,
                    members: vec!["a".into(), "b".into()]
                },
            ]
        );
    }

    #[test]
    fn a_working_directory_behind_a_file_cannot_be_made() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join("conf")).unwrap();
        assert_eq!(
            working_dir_problem(root.path(), "/srv/app"),
            None,
            "made at start"
        );
        assert_eq!(working_dir_problem(root.path(), "/etc"), None);
        assert_eq!(
            working_dir_problem(root.path(), "/etc/passwd/sub").as_deref(),
            Some("the working directory \"/etc/passwd/sub\" cannot be made: /etc/passwd is not a directory")
        );
        assert!(
            working_dir_problem(root.path(), "/conf/passwd").is_some(),
            "through a link"
        );
    }
}
