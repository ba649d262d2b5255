//! The node's side of emptyDir and hostPath volumes, as the kubelet lays them out: an emptyDir is
//! a directory (mode 0777) or a tmpfs mounted on it, torn down without ever leaving its own
//! tree; its disk usage is measured like `du -x` for sizeLimit eviction; a hostPath is checked
//! against its HostPathType (and created for the `...OrCreate` types).

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsString};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat, AtFlags, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Where an emptyDir volume keeps its data (`emptyDir.medium`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Medium {
    /// The node's disk: a plain directory (medium "").
    Disk,
    /// Memory: a tmpfs mounted on the directory (medium "Memory").
    Memory,
}

/// The mode of an emptyDir's directory, as the kubelet makes it.
const EMPTY_DIR_MODE: u32 = 0o777;

/// How many times teardown re-reads the mount table to unmount what is stacked under a volume.
const UNMOUNT_ROUNDS: usize = 32;

/// Sets up an emptyDir volume at `dir`: creates the directory (and its parents) with mode 0777;
/// for [`Medium::Memory`] mounts a tmpfs on it with mode 0777 and, when `size_limit` is given
/// and not zero, `size=` that many bytes (without it, tmpfs' own default: half the RAM).
/// Idempotent: an existing directory is kept as it is, and a tmpfs already mounted there is
/// left alone. A symlink or a file at `dir`, or another file system mounted there, is an error.
pub fn empty_dir(dir: &Path, medium: Medium, size_limit: Option<u64>) -> Result<(), String> {
    make_volume_dir(dir)?;
    if medium == Medium::Disk {
        return Ok(());
    }
    let real = canonical(dir)?;
    match mount_type(&real)? {
        Some(fstype) if fstype == "tmpfs" => return Ok(()),
        Some(fstype) => {
            return Err(format!(
                "emptyDir {}: already a mount point of a {fstype} file system",
                dir.display()
            ))
        }
        None => {}
    }
    let mut options = format!("mode={EMPTY_DIR_MODE:o}");
    if let Some(size) = size_limit.filter(|size| *size > 0) {
        options.push_str(&format!(",size={size}"));
    }
    mount(
        Some("tmpfs"),
        &real,
        Some("tmpfs"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| os_error("mount tmpfs on", dir, e))
}

/// Tears an emptyDir volume down: unmounts everything mounted at or under `dir` (its tmpfs,
/// and any bind mount inside it, deepest first; lazily only when a mount is busy), then removes
/// the directory tree. The removal never follows a symlink (a link is removed, never its
/// target) and never enters another mount: it refuses a directory on another device or mount
/// rather than descend into it. A missing `dir` is already torn down.
pub fn teardown(dir: &Path) -> Result<(), String> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("lstat", dir, &e)),
    };
    if !meta.is_dir() {
        // A link or a file where the volume was: remove that entry only.
        return std::fs::remove_file(dir).map_err(|e| io_error("remove", dir, &e));
    }
    let real = canonical(dir)?;
    if real == Path::new("/") {
        return Err(format!("refusing to tear down {}", dir.display()));
    }
    unmount_all_under(&real)?;
    walk(&real, Walk::Remove)?;
    let name = real
        .file_name()
        .ok_or_else(|| format!("refusing to tear down {}", dir.display()))?;
    let parent = real.parent().unwrap_or(Path::new("/"));
    let parent_fd = open(
        parent,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| os_error("open", parent, e))?;
    match unlinkat(&parent_fd, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(os_error("remove", dir, e)),
    }
}

/// Unmounts everything mounted at or under `dir` (deepest first, lazily when busy) and keeps
/// the files: what stays of a pod's volumes on the node when the agent stops its pods without
/// forgetting them. A missing `dir` has nothing mounted.
pub fn unmount_under(dir: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => unmount_all_under(&canonical(dir)?),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("lstat", dir, &e)),
    }
}

/// The disk space used under `dir`, in bytes, counted like `du -x -s -B1`: allocated blocks of
/// every file and directory, hard links once, symlinks not followed, other mounts not entered.
/// This is what the kubelet compares with an emptyDir's sizeLimit.
pub fn disk_usage(dir: &Path) -> Result<u64, String> {
    walk(dir, Walk::Measure)
}

/// The eviction message of a pod whose emptyDir volume `volume` uses more than its sizeLimit
/// `limit` (the quantity as written in the spec, e.g. "1Gi"), word for word the kubelet's
/// (trailing space included).
pub fn exceeded_message(volume: &str, limit: &str) -> String {
    format!(
        "Usage of EmptyDir volume {} exceeds the limit {}. ",
        go_quote(volume),
        go_quote(limit)
    )
}

/// Checks a hostPath volume's path against its `type` (Kubernetes' HostPathType): None or ""
/// checks nothing; "DirectoryOrCreate" creates a missing directory (mode 0755, with parents);
/// "FileOrCreate" creates a missing empty file (mode 0644; its parent must exist, as upstream);
/// "Directory", "File", "Socket", "CharDevice" and "BlockDevice" require the path (symlinks
/// followed) to be one. Errors are the kubelet's words. A path with a `..` component is refused
/// whatever the type.
pub fn host_path_check(path: &Path, type_: Option<&str>) -> Result<(), String> {
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "invalid HostPath `{}`: must not contain '..'",
            path.display()
        ));
    }
    let type_ = type_.unwrap_or("");
    match type_ {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if !exists(path) {
                make_host_dir(path)?;
            }
            type_matched(path, FileKind::Directory, "directory")
        }
        "Directory" => type_matched(path, FileKind::Directory, "directory"),
        "FileOrCreate" => {
            if !exists(path) {
                make_host_file(path)?;
            }
            type_matched(path, FileKind::File, "file")
        }
        "File" => type_matched(path, FileKind::File, "file"),
        "Socket" => type_matched(path, FileKind::Socket, "socket file"),
        "CharDevice" => type_matched(path, FileKind::CharDevice, "character device"),
        "BlockDevice" => type_matched(path, FileKind::BlockDevice, "block device"),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

/// The type of the file system mounted at `dir` (its last, visible mount), or None when `dir`
/// is not a mount point. `dir` is taken as is: pass a canonical path.
pub fn mount_type(dir: &Path) -> Result<Option<String>, String> {
    Ok(read_mounts()?
        .into_iter()
        .rev()
        .find(|m| m.mount_point == dir)
        .map(|m| m.fstype))
}

/// Creates the emptyDir's directory with mode 0777 whatever the umask; keeps one that exists.
fn make_volume_dir(dir: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(format!(
                "emptyDir {}: exists and is not a directory",
                dir.display()
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("lstat", dir, &e)),
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io_error("mkdir", parent, &e))?;
    }
    match DirBuilder::new().mode(EMPTY_DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Made by someone else meanwhile: it must be a directory, and is kept as it is.
            return match std::fs::symlink_metadata(dir) {
                Ok(meta) if meta.is_dir() => Ok(()),
                _ => Err(format!(
                    "emptyDir {}: exists and is not a directory",
                    dir.display()
                )),
            };
        }
        Err(e) => return Err(io_error("mkdir", dir, &e)),
    }
    // The umask took bits off: set them through a descriptor that cannot follow a link.
    let fd = open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| os_error("open", dir, e))?;
    nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(EMPTY_DIR_MODE))
        .map_err(|e| os_error("chmod", dir, e))
}

fn canonical(dir: &Path) -> Result<PathBuf, String> {
    std::fs::canonicalize(dir).map_err(|e| io_error("realpath", dir, &e))
}

/// Unmounts every mount at or under `real` (a canonical path), deepest and topmost first,
/// until the mount table shows none.
fn unmount_all_under(real: &Path) -> Result<(), String> {
    for _ in 0..UNMOUNT_ROUNDS {
        let mut under: Vec<(usize, usize, PathBuf)> = read_mounts()?
            .into_iter()
            .enumerate()
            .filter(|(_, m)| m.mount_point.starts_with(real))
            .map(|(i, m)| (m.mount_point.components().count(), i, m.mount_point))
            .collect();
        if under.is_empty() {
            return Ok(());
        }
        // Deepest first; at one path, the last mounted (the visible one) first.
        under.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        for (_, _, point) in under {
            unmount(&point)?;
        }
    }
    Err(format!(
        "{}: file systems are still mounted under it after {UNMOUNT_ROUNDS} rounds of unmounting",
        real.display()
    ))
}

fn unmount(point: &Path) -> Result<(), String> {
    match umount2(point, MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) => Ok(()),
        // Gone already (an unmount propagated from a peer, or a stacked mount went first).
        Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EBUSY) => {
            match umount2(point, MntFlags::UMOUNT_NOFOLLOW | MntFlags::MNT_DETACH) {
                Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(os_error("unmount (detach)", point, e)),
            }
        }
        Err(e) => Err(os_error("unmount", point, e)),
    }
}

/// One line of /proc/self/mountinfo, the parts this module needs.
#[derive(Debug, PartialEq)]
struct MountEntry {
    mount_point: PathBuf,
    fstype: String,
}

fn read_mounts() -> Result<Vec<MountEntry>, String> {
    let text = std::fs::read("/proc/self/mountinfo")
        .map_err(|e| io_error("read", Path::new("/proc/self/mountinfo"), &e))?;
    Ok(parse_mountinfo(&text))
}

/// Parses mountinfo(5): `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [TAGS...] - FSTYPE ...`,
/// with spaces, tabs, newlines and backslashes in paths written as octal escapes.
fn parse_mountinfo(text: &[u8]) -> Vec<MountEntry> {
    text.split(|b| *b == b'\n')
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
            let point = fields.get(4)?;
            let dash = fields.iter().skip(6).position(|f| *f == b"-")? + 6;
            let fstype = fields.get(dash + 1)?;
            Some(MountEntry {
                mount_point: PathBuf::from(OsString::from_vec(unescape_octal(point))),
                fstype: String::from_utf8_lossy(&unescape_octal(fstype)).into_owned(),
            })
        })
        .collect()
}

fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let digits = field.get(i + 1..i + 4);
        match digits {
            Some(d) if field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) => {
                let value = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            _ => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Walk {
    Remove,
    Measure,
}

/// A directory being walked: the entries still to visit, its identity (to check the way back
/// up through `..`), and its name in its parent.
struct Frame {
    names: Vec<CString>,
    dev: u64,
    ino: u64,
    name: CString,
}

/// Walks the tree under `dir` without following links or entering other mounts, holding one
/// directory descriptor at a time (the way back up goes through `..`, checked against the
/// directory it came from), so a tree of any depth is walked with bounded descriptors and
/// stack. Measure sums allocated bytes; Remove empties the tree (`dir` itself stays).
fn walk(dir: &Path, what: Walk) -> Result<u64, String> {
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let root = open(dir, dir_flags, Mode::empty()).map_err(|e| os_error("open", dir, e))?;
    let root_stat = fstat(&root).map_err(|e| os_error("stat", dir, e))?;
    let root_mount = mount_id(&root);
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut total = allocated(&root_stat);
    let mut stack = vec![Frame {
        names: list(&root).map_err(|e| os_error("read directory", dir, e))?,
        dev: root_stat.st_dev,
        ino: root_stat.st_ino,
        name: CString::default(),
    }];
    let mut cur = root;
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.pop() else {
            let Some(done) = stack.pop() else { break };
            let Some(parent) = stack.last() else { break };
            let up = openat(
                &cur,
                c"..",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| os_error("open", &shown(dir, &stack, c".."), e))?;
            let up_stat =
                fstat(&up).map_err(|e| os_error("stat", &shown(dir, &stack, c".."), e))?;
            if (up_stat.st_dev, up_stat.st_ino) != (parent.dev, parent.ino) {
                return Err(format!(
                    "{}: moved while it was walked",
                    shown(dir, &stack, &done.name).display()
                ));
            }
            cur = up;
            if what == Walk::Remove {
                match unlinkat(&cur, done.name.as_c_str(), UnlinkatFlags::RemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(e) => return Err(os_error("remove", &shown(dir, &stack, &done.name), e)),
                }
            }
            continue;
        };
        let stat = match fstatat(&cur, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(os_error("lstat", &shown(dir, &stack, &name), e)),
        };
        if !is_dir(&stat) {
            match what {
                Walk::Measure => {
                    if stat.st_nlink <= 1 || seen.insert((stat.st_dev, stat.st_ino)) {
                        total = total.saturating_add(allocated(&stat));
                    }
                }
                Walk::Remove => match unlinkat(&cur, name.as_c_str(), UnlinkatFlags::NoRemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(e) => return Err(os_error("remove", &shown(dir, &stack, &name), e)),
                },
            }
            continue;
        }
        if stat.st_dev != root_stat.st_dev {
            match what {
                Walk::Measure => continue,
                Walk::Remove => return Err(other_mount(dir, &stack, &name)),
            }
        }
        let child = match openat(&cur, name.as_c_str(), dir_flags, Mode::empty()) {
            Ok(child) => child,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(os_error("open", &shown(dir, &stack, &name), e)),
        };
        let child_stat =
            fstat(&child).map_err(|e| os_error("stat", &shown(dir, &stack, &name), e))?;
        if (child_stat.st_dev, child_stat.st_ino) != (stat.st_dev, stat.st_ino) {
            return Err(format!(
                "{}: replaced while it was walked",
                shown(dir, &stack, &name).display()
            ));
        }
        let child_mount = mount_id(&child);
        if root_mount.is_some() && child_mount.is_some() && child_mount != root_mount {
            // A bind mount from the same file system: same device, another mount.
            match what {
                Walk::Measure => continue,
                Walk::Remove => return Err(other_mount(dir, &stack, &name)),
            }
        }
        if what == Walk::Measure {
            total = total.saturating_add(allocated(&stat));
        }
        let names =
            list(&child).map_err(|e| os_error("read directory", &shown(dir, &stack, &name), e))?;
        stack.push(Frame {
            names,
            dev: stat.st_dev,
            ino: stat.st_ino,
            name,
        });
        cur = child;
    }
    Ok(total)
}

fn other_mount(dir: &Path, stack: &[Frame], name: &CStr) -> String {
    format!(
        "refusing to remove {}: it is another mount",
        shown(dir, stack, name).display()
    )
}

/// The names in a directory, without `.` and `..`, read through the descriptor's /proc link
/// (which reaches the directory itself, however long its path).
fn list(dir: &OwnedFd) -> Result<Vec<CString>, Errno> {
    let errno = |e: io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO));
    let entries = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())).map_err(errno)?;
    let mut names = Vec::new();
    for entry in entries {
        let name = entry.map_err(errno)?.file_name();
        // Names from the kernel hold no NUL.
        if let Ok(name) = CString::new(name.into_vec()) {
            names.push(name);
        }
    }
    Ok(names)
}

/// The id of the mount a descriptor is on (from /proc/self/fdinfo), when the kernel tells.
fn mount_id(fd: &OwnedFd) -> Option<u64> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("mnt_id:"))
        .and_then(|id| id.trim().parse().ok())
}

/// The path of `name` in the directory at the top of `stack`, for messages.
fn shown(dir: &Path, stack: &[Frame], name: &CStr) -> PathBuf {
    let mut path = dir.to_path_buf();
    for frame in stack.iter().skip(1) {
        path.push(std::ffi::OsStr::from_bytes(frame.name.as_bytes()));
    }
    path.push(std::ffi::OsStr::from_bytes(name.to_bytes()));
    path
}

fn is_dir(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

fn allocated(stat: &FileStat) -> u64 {
    u64::try_from(stat.st_blocks)
        .unwrap_or(0)
        .saturating_mul(512)
}

/// The file types a hostPath check tells apart (the kubelet's FileType).
#[derive(Clone, Copy, PartialEq, Debug)]
enum FileKind {
    Directory,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    fn name(self) -> &'static str {
        match self {
            FileKind::Directory => "Directory",
            FileKind::File => "File",
            FileKind::Socket => "Socket",
            FileKind::CharDevice => "CharDevice",
            FileKind::BlockDevice => "BlockDevice",
        }
    }
}

/// Whether the path exists, links followed (the kubelet's PathExists: any error is "no").
fn exists(path: &Path) -> bool {
    std::fs::metadata(path).is_ok()
}

fn type_matched(path: &Path, expected: FileKind, description: &str) -> Result<(), String> {
    if !exists(path) {
        return Err(format!("hostPath {} doesn't exist", path.display()));
    }
    let kind = file_kind(path).map_err(|why| {
        format!(
            "hostPath type check failed, {} is not a {description}, unable to determine its type: {why}",
            path.display()
        )
    })?;
    if kind != expected {
        return Err(format!(
            "hostPath type check failed: {} is not a {description}, it's a {}",
            path.display(),
            kind.name()
        ));
    }
    Ok(())
}

fn file_kind(path: &Path) -> Result<FileKind, String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "path {} does not exist",
                go_quote(&path.to_string_lossy())
            ))
        }
        Err(e) => return Err(io_error("stat", path, &e)),
    };
    let kind = meta.file_type();
    if kind.is_dir() {
        Ok(FileKind::Directory)
    } else if kind.is_file() {
        Ok(FileKind::File)
    } else if kind.is_socket() {
        Ok(FileKind::Socket)
    } else if kind.is_char_device() {
        Ok(FileKind::CharDevice)
    } else if kind.is_block_device() {
        Ok(FileKind::BlockDevice)
    } else {
        Err("only recognise file, directory, socket, block device and character device".into())
    }
}

/// DirectoryOrCreate: the directory with its parents, mode 0755 (less the umask, as upstream).
fn make_host_dir(path: &Path) -> Result<(), String> {
    match DirBuilder::new().recursive(true).mode(0o755).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error("mkdir", path, &e)),
    }
}

/// FileOrCreate: an empty file, mode 0644 (less the umask, as upstream); an existing entry of
/// any kind is left alone; the parent directory must exist.
fn make_host_file(path: &Path) -> Result<(), String> {
    let created: io::Result<File> = OpenOptions::new()
        .read(true)
        .create(true)
        .append(true)
        .mode(0o644)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        // A directory appeared there: the type check that follows says so.
        Err(e) if e.raw_os_error() == Some(nix::libc::EISDIR) => Ok(()),
        Err(e) => Err(io_error("open", path, &e)),
    }
}

/// A Go `%q` rendering: double quotes, with quotes, backslashes and control characters escaped.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An error in Go's words: `op path: reason`, the reason in lower case.
fn os_error(op: &str, path: &Path, errno: Errno) -> String {
    format!("{op} {}: {}", path.display(), lower_first(errno.desc()))
}

fn io_error(op: &str, path: &Path, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => os_error(op, path, Errno::from_raw(code)),
        None => format!("{op} {}: {e}", path.display()),
    }
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn disk_empty_dir_is_0777_with_parents_and_idempotent() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp
            .path()
            .join("pods/uid/volumes/kubernetes.io~empty-dir/cache");
        empty_dir(&dir, Medium::Disk, None).expect("create");
        assert!(dir.is_dir());
        assert_eq!(mode_of(&dir), 0o777);
        std::fs::write(dir.join("kept"), b"x").expect("write");
        empty_dir(&dir, Medium::Disk, Some(10)).expect("again");
        assert_eq!(std::fs::read(dir.join("kept")).expect("read"), b"x");
    }

    #[test]
    fn empty_dir_refuses_a_symlink_or_a_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("mkdir");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&elsewhere, &link).expect("symlink");
        let err = empty_dir(&link, Medium::Disk, None).expect_err("a link");
        assert!(err.contains("is not a directory"), "{err}");
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").expect("write");
        assert!(empty_dir(&file, Medium::Memory, None).is_err());
    }

    #[test]
    fn teardown_removes_the_tree_and_nothing_outside() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside_dir = tmp.path().join("host");
        std::fs::create_dir(&outside_dir).expect("mkdir");
        std::fs::write(outside_dir.join("precious"), b"keep me").expect("write");
        let outside_file = tmp.path().join("precious-file");
        std::fs::write(&outside_file, b"keep me too").expect("write");

        let vol = tmp.path().join("vol");
        empty_dir(&vol, Medium::Disk, None).expect("create");
        std::fs::create_dir_all(vol.join("a/b/c")).expect("mkdir");
        std::fs::write(vol.join("a/b/c/f"), b"data").expect("write");
        std::fs::write(vol.join("top"), b"data").expect("write");
        std::os::unix::fs::symlink(&outside_dir, vol.join("a/to-dir")).expect("symlink");
        std::os::unix::fs::symlink(&outside_file, vol.join("to-file")).expect("symlink");
        std::os::unix::fs::symlink("../../host", vol.join("a/b/relative")).expect("symlink");
        std::fs::hard_link(&outside_file, vol.join("hard")).expect("link");
        teardown(&vol).expect("teardown");
        assert!(!vol.exists());
        assert_eq!(
            std::fs::read(outside_dir.join("precious")).expect("read"),
            b"keep me"
        );
        assert_eq!(std::fs::read(&outside_file).expect("read"), b"keep me too");
        // Missing: nothing to do.
        teardown(&vol).expect("teardown again");
    }

    #[test]
    fn teardown_of_a_symlink_removes_only_the_link() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let target = tmp.path().join("target");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("f"), b"x").expect("write");
        let vol = tmp.path().join("vol");
        std::os::unix::fs::symlink(&target, &vol).expect("symlink");
        teardown(&vol).expect("teardown");
        assert!(std::fs::symlink_metadata(&vol).is_err());
        assert_eq!(std::fs::read(target.join("f")).expect("read"), b"x");
    }

    #[test]
    fn teardown_handles_trees_deeper_than_path_max() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let vol = tmp.path().join("vol");
        empty_dir(&vol, Medium::Disk, None).expect("create");
        let mut cur = open(
            &vol,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .expect("open");
        // 1200 levels of "deep/" is 6000 bytes of path: more than PATH_MAX.
        for _ in 0..1200 {
            nix::sys::stat::mkdirat(&cur, c"deep", Mode::from_bits_truncate(0o755))
                .expect("mkdirat");
            cur = openat(
                &cur,
                c"deep",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .expect("openat");
        }
        let file = openat(
            &cur,
            c"leaf",
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .expect("create leaf");
        drop(file);
        drop(cur);
        assert!(disk_usage(&vol).expect("usage") > 0);
        teardown(&vol).expect("teardown");
        assert!(!vol.exists());
    }

    #[test]
    fn disk_usage_counts_blocks_once_and_follows_no_link() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("big-outside");
        let mut big = File::create(&outside).expect("create");
        big.write_all(&vec![7u8; 4 << 20]).expect("write");
        big.sync_all().expect("sync");

        let vol = tmp.path().join("vol");
        empty_dir(&vol, Medium::Disk, None).expect("create");
        let empty = disk_usage(&vol).expect("usage");
        let mut f = File::create(vol.join("data")).expect("create");
        f.write_all(&vec![1u8; 256 << 10]).expect("write");
        f.sync_all().expect("sync");
        std::fs::hard_link(vol.join("data"), vol.join("data-again")).expect("link");
        std::os::unix::fs::symlink(&outside, vol.join("link")).expect("symlink");
        std::os::unix::fs::symlink(tmp.path(), vol.join("dir-link")).expect("symlink");

        let used = disk_usage(&vol).expect("usage");
        let data_blocks = std::fs::metadata(vol.join("data")).expect("stat").blocks() * 512;
        assert!(data_blocks >= 256 << 10, "{data_blocks}");
        assert!(used >= empty + data_blocks, "{used} {empty} {data_blocks}");
        // Counted once, and the 4 MiB outside not at all.
        assert!(used < empty + 2 * data_blocks, "{used}");
        assert!(disk_usage(&tmp.path().join("missing")).is_err());
    }

    /// Unmounts (lazily) every mount under a directory when dropped, before the directory goes.
    struct Unmounter(PathBuf);

    impl Drop for Unmounter {
        fn drop(&mut self) {
            for _ in 0..16 {
                let mut points: Vec<PathBuf> = read_mounts()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| m.mount_point)
                    .filter(|p| p.starts_with(&self.0))
                    .collect();
                if points.is_empty() {
                    return;
                }
                points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
                for point in points {
                    let _ = umount2(&point, MntFlags::MNT_DETACH);
                }
            }
        }
    }

    #[test]
    fn removal_refuses_to_enter_another_mount() {
        if !nix::unistd::geteuid().is_root() {
            minik_testkit::cannot_run("root", "the test bind-mounts and mounts a tmpfs");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let real = canonical(tmp.path()).expect("realpath");
        let _unmount = Unmounter(real.clone());
        let source = real.join("source");
        std::fs::create_dir(&source).expect("mkdir");
        std::fs::write(source.join("precious"), b"keep").expect("write");
        let vol = real.join("vol");
        std::fs::create_dir_all(vol.join("bound")).expect("mkdir");
        if let Err(e) = mount(
            Some(&source),
            &vol.join("bound"),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            minik_testkit::cannot_run("mount", format!("cannot bind-mount: {e}"));
            return;
        }
        // A bind mount of the same file system: same device, another mount.
        let err = walk(&vol, Walk::Remove).expect_err("bind mount");
        assert!(err.contains("it is another mount"), "{err}");
        assert_eq!(
            std::fs::read(source.join("precious")).expect("read"),
            b"keep"
        );
        umount2(&vol.join("bound"), MntFlags::empty()).expect("unmount");

        // A tmpfs: another device.
        std::fs::create_dir_all(vol.join("a/tmp")).expect("mkdir");
        mount(
            Some("tmpfs"),
            &vol.join("a/tmp"),
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=64k"),
        )
        .expect("tmpfs");
        std::fs::write(vol.join("a/tmp/file"), b"on tmpfs").expect("write");
        let err = walk(&vol, Walk::Remove).expect_err("tmpfs");
        assert!(err.contains("it is another mount"), "{err}");
        assert_eq!(
            std::fs::read(vol.join("a/tmp/file")).expect("read"),
            b"on tmpfs"
        );
        // Teardown unmounts it first, then removes everything.
        teardown(&vol).expect("teardown");
        assert!(!vol.exists());
        assert_eq!(
            std::fs::read(source.join("precious")).expect("read"),
            b"keep"
        );
    }

    #[test]
    fn exceeded_message_is_the_kubelets() {
        assert_eq!(
            exceeded_message("cache", "1Gi"),
            "Usage of EmptyDir volume \"cache\" exceeds the limit \"1Gi\". "
        );
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }

    #[test]
    fn host_path_unset_checks_nothing() {
        host_path_check(Path::new("/does/not/exist"), None).expect("unset");
        host_path_check(Path::new("/does/not/exist"), Some("")).expect("empty");
        let err = host_path_check(Path::new("/a/../etc"), None).expect_err("backsteps");
        assert_eq!(err, "invalid HostPath `/a/../etc`: must not contain '..'");
    }

    #[test]
    fn host_path_directory_types() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let made = tmp.path().join("x/y/z");
        host_path_check(&made, Some("DirectoryOrCreate")).expect("create");
        assert!(made.is_dir());
        assert_eq!(mode_of(&made) & !0o022, 0o755 & !0o022);
        host_path_check(&made, Some("DirectoryOrCreate")).expect("again");
        host_path_check(&made, Some("Directory")).expect("is a directory");

        let missing = tmp.path().join("missing");
        assert_eq!(
            host_path_check(&missing, Some("Directory")).expect_err("missing"),
            format!("hostPath {} doesn't exist", missing.display())
        );
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").expect("write");
        assert_eq!(
            host_path_check(&file, Some("Directory")).expect_err("a file"),
            format!(
                "hostPath type check failed: {} is not a directory, it's a File",
                file.display()
            )
        );
        assert_eq!(
            host_path_check(&file, Some("DirectoryOrCreate")).expect_err("a file"),
            format!(
                "hostPath type check failed: {} is not a directory, it's a File",
                file.display()
            )
        );
    }

    #[test]
    fn host_path_file_types() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let made = tmp.path().join("new-file");
        host_path_check(&made, Some("FileOrCreate")).expect("create");
        let meta = std::fs::metadata(&made).expect("stat");
        assert!(meta.is_file());
        assert_eq!(meta.len(), 0);
        assert_eq!(mode_of(&made) & !0o022, 0o644);
        std::fs::write(&made, b"content").expect("write");
        host_path_check(&made, Some("FileOrCreate")).expect("exists");
        assert_eq!(std::fs::read(&made).expect("read"), b"content");
        host_path_check(&made, Some("File")).expect("is a file");

        let orphan = tmp.path().join("no-parent/file");
        let err = host_path_check(&orphan, Some("FileOrCreate")).expect_err("no parent");
        assert_eq!(
            err,
            format!("open {}: no such file or directory", orphan.display())
        );
        assert_eq!(
            host_path_check(tmp.path(), Some("File")).expect_err("a dir"),
            format!(
                "hostPath type check failed: {} is not a file, it's a Directory",
                tmp.path().display()
            )
        );
        assert_eq!(
            host_path_check(tmp.path(), Some("FileOrCreate")).expect_err("a dir"),
            format!(
                "hostPath type check failed: {} is not a file, it's a Directory",
                tmp.path().display()
            )
        );
        // Links are followed.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&made, &link).expect("symlink");
        host_path_check(&link, Some("File")).expect("through a link");
    }

    #[test]
    fn host_path_special_types() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let socket = tmp.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        host_path_check(&socket, Some("Socket")).expect("socket");
        assert_eq!(
            host_path_check(&socket, Some("File")).expect_err("not a file"),
            format!(
                "hostPath type check failed: {} is not a file, it's a Socket",
                socket.display()
            )
        );
        host_path_check(Path::new("/dev/null"), Some("CharDevice")).expect("char device");
        assert_eq!(
            host_path_check(Path::new("/dev/null"), Some("BlockDevice")).expect_err("char"),
            "hostPath type check failed: /dev/null is not a block device, it's a CharDevice"
        );
        assert_eq!(
            host_path_check(tmp.path(), Some("Socket")).expect_err("dir"),
            format!(
                "hostPath type check failed: {} is not a socket file, it's a Directory",
                tmp.path().display()
            )
        );
        let fifo = tmp.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).expect("mkfifo");
        let err = host_path_check(&fifo, Some("File")).expect_err("fifo");
        assert!(
            err.contains("unable to determine its type: only recognise file"),
            "{err}"
        );
        assert_eq!(
            host_path_check(tmp.path(), Some("Dir")).expect_err("unknown"),
            "Dir is an invalid volume type"
        );
    }

    #[test]
    fn mountinfo_lines_are_parsed_with_escapes() {
        let text = b"22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:2 - ext3 /dev/root rw\n\
40 35 0:50 / /a\\134b rw - tmpfs tmpfs rw,size=1024k\n\
garbage\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(
            mounts,
            vec![
                MountEntry {
                    mount_point: "/proc".into(),
                    fstype: "proc".into()
                },
                MountEntry {
                    mount_point: "/mnt/with space".into(),
                    fstype: "ext3".into()
                },
                MountEntry {
                    mount_point: "/a\\b".into(),
                    fstype: "tmpfs".into()
                },
            ]
        );
    }
}
