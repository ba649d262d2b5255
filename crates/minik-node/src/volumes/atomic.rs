//! Atomic projection of a set of files into a volume directory, the way the kubelet writes
//! secret, configMap, downwardAPI and projected volumes.
//!
//! The files live in a hidden timestamped directory (`..2026_01_02_15_04_05.123456789`); the
//! `..data` symlink points at it; every top-level name of the payload is a symlink `NAME ->
//! ..data/NAME`. An update writes a new timestamped directory, points a new `..data_tmp` link
//! at it and renames that link over `..data` (one atomic step), then drops the links of names
//! that left the payload and the old directory. A reader of the volume sees the old set of
//! files or the new one, never a mix; a crash leaves `..data` at the old or the new directory,
//! and the next write removes whatever a crash left behind. Names starting with `..` at the top
//! level are the writer's own.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The link to the current timestamped directory.
pub const DATA_DIR: &str = "..data";
/// The link made for the next `..data`, renamed over it.
pub const NEW_DATA_DIR: &str = "..data_tmp";

const MAX_FILE_NAME: usize = 255;
const MAX_PATH: usize = 4096;
/// The deepest tree the comparison with the current version walks (a payload path has at most
/// `MAX_PATH / 2` components; a deeper tree on disk is not the writer's and is rewritten).
const MAX_DEPTH: usize = MAX_PATH / 2 + 1;

/// One file of a payload: its content and its permission bits (at most 0o7777).
pub trait Projection {
    /// The file's content.
    fn data(&self) -> &[u8];
    /// The file's mode, set exactly (the umask does not apply).
    fn mode(&self) -> u32;
}

impl Projection for (Vec<u8>, u32) {
    fn data(&self) -> &[u8] {
        &self.0
    }
    fn mode(&self) -> u32 {
        self.1
    }
}

impl Projection for super::payload::FileProjection {
    fn data(&self) -> &[u8] {
        &self.data
    }
    fn mode(&self) -> u32 {
        self.mode
    }
}

impl<P: Projection> Projection for &P {
    fn data(&self) -> &[u8] {
        (*self).data()
    }
    fn mode(&self) -> u32 {
        (*self).mode()
    }
}

/// Writes payloads into one target directory atomically. Not synchronized: the caller runs one
/// write at a time per target.
#[derive(Debug, Clone)]
pub struct AtomicWriter {
    target: PathBuf,
}

impl AtomicWriter {
    /// A writer for `target`, which must be an existing directory (not a symlink).
    pub fn new(target: &Path) -> Result<Self, String> {
        match fs::symlink_metadata(target) {
            Ok(meta) if meta.is_dir() => Ok(Self {
                target: target.to_path_buf(),
            }),
            Ok(_) => Err(format!("{} is not a directory", target.display())),
            Err(e) => Err(io_error("stat", target, &e)),
        }
    }

    /// The directory this writer writes into.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Projects `payload` (relative path → file) into the target directory, files owned by
    /// `owner` (uid, gid) when given. Returns whether anything changed: writing what is
    /// already there (same paths, contents, modes and owners) changes nothing and returns
    /// false. An invalid payload (absolute paths, `..` components, a top-level name starting
    /// with `..`, a name both a file and a directory, a mode above 0o7777) is refused before
    /// anything is touched.
    pub fn write<P: Projection>(
        &self,
        payload: &BTreeMap<String, P>,
        owner: Option<(u32, u32)>,
    ) -> Result<bool, String> {
        let payload = validate_payload(payload)?;
        let current = self.current_version()?;
        self.remove_leftovers(current.as_deref())?;

        let tops: BTreeSet<&str> = payload.keys().map(|path| top_level(path)).collect();
        let stale = self.stale_links(&tops)?;
        let same = match &current {
            Some(version) => same_content(&self.target.join(version), &payload, owner)?,
            None => false,
        };
        if same {
            let fixed = self.make_links(&tops)?;
            self.remove_links(&stale)?;
            return Ok(fixed || !stale.is_empty());
        }

        let version = self.new_version_dir()?;
        let version_path = self.target.join(&version);
        let prepared = write_files(&version_path, &payload, owner)
            .and_then(|()| self.make_links(&tops).map(drop))
            .and_then(|()| self.swap_data_link(&version));
        if let Err(e) = prepared {
            let _ = fs::remove_file(self.target.join(NEW_DATA_DIR));
            let _ = fs::remove_dir_all(&version_path);
            return Err(e);
        }
        self.remove_links(&stale)?;
        if let Some(old) = current {
            let old_path = self.target.join(&old);
            match fs::remove_dir_all(&old_path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove", &old_path, &e)),
            }
        }
        Ok(true)
    }

    /// The name of the directory `..data` points at, if any.
    fn current_version(&self) -> Result<Option<String>, String> {
        let link = self.target.join(DATA_DIR);
        let pointed = match fs::read_link(&link) {
            Ok(pointed) => pointed,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("readlink", &link, &e)),
        };
        let name = pointed
            .to_str()
            .filter(|name| is_version_name(name))
            .ok_or_else(|| {
                format!(
                    "{} points at {}, not at a directory of this writer",
                    link.display(),
                    pointed.display()
                )
            })?;
        Ok(Some(name.to_string()))
    }

    /// Removes what an interrupted write left: a `..data_tmp` link and timestamped
    /// directories other than `keep`.
    fn remove_leftovers(&self, keep: Option<&str>) -> Result<(), String> {
        let entries = fs::read_dir(&self.target).map_err(|e| io_error("read", &self.target, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("read", &self.target, &e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            let leftover = name == NEW_DATA_DIR
                || (is_version_name(name) && is_timestamp_name(name) && Some(name) != keep);
            if !leftover {
                continue;
            }
            let removed = match entry.file_type() {
                Ok(kind) if kind.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove", &path, &e)),
            }
        }
        Ok(())
    }

    /// The writer's links (`NAME -> ..data/NAME`) whose name is no longer in the payload.
    fn stale_links(&self, tops: &BTreeSet<&str>) -> Result<Vec<String>, String> {
        let entries = fs::read_dir(&self.target).map_err(|e| io_error("read", &self.target, &e))?;
        let mut stale = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("read", &self.target, &e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with("..") || tops.contains(name) {
                continue;
            }
            if fs::read_link(entry.path()).ok() == Some(data_link_target(name)) {
                stale.push(name.to_string());
            }
        }
        Ok(stale)
    }

    /// Makes the link of every top-level name; returns whether one was missing or wrong. A
    /// name taken by something that is not a link is an error.
    fn make_links(&self, tops: &BTreeSet<&str>) -> Result<bool, String> {
        let mut changed = false;
        for name in tops {
            let path = self.target.join(name);
            let wanted = data_link_target(name);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    if fs::read_link(&path).ok() == Some(wanted.clone()) {
                        continue;
                    }
                    fs::remove_file(&path).map_err(|e| io_error("remove", &path, &e))?;
                }
                Ok(_) => {
                    return Err(format!(
                        "{}: exists and is not a link into {DATA_DIR}",
                        path.display()
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("lstat", &path, &e)),
            }
            std::os::unix::fs::symlink(&wanted, &path)
                .map_err(|e| io_error("symlink", &path, &e))?;
            changed = true;
        }
        Ok(changed)
    }

    fn remove_links(&self, names: &[String]) -> Result<(), String> {
        for name in names {
            let path = self.target.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove", &path, &e)),
            }
        }
        Ok(())
    }

    /// Creates a new, empty timestamped directory (mode 0755) and returns its name.
    fn new_version_dir(&self) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut nanos = now.subsec_nanos();
        for _ in 0..1000 {
            let name = version_name(now.as_secs(), nanos);
            let path = self.target.join(&name);
            match DirBuilder::new().mode(0o755).create(&path) {
                Ok(()) => {
                    // The umask may have taken bits off: others must be able to read it.
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                        .map_err(|e| io_error("chmod", &path, &e))?;
                    return Ok(name);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    nanos = (nanos + 1) % 1_000_000_000;
                }
                Err(e) => return Err(io_error("mkdir", &path, &e)),
            }
        }
        Err(format!(
            "{}: cannot find a free name for a new data directory",
            self.target.display()
        ))
    }

    /// Points `..data` at `version`: a new link `..data_tmp`, renamed over `..data`.
    fn swap_data_link(&self, version: &str) -> Result<(), String> {
        let tmp = self.target.join(NEW_DATA_DIR);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("remove", &tmp, &e)),
        }
        std::os::unix::fs::symlink(version, &tmp).map_err(|e| io_error("symlink", &tmp, &e))?;
        let data = self.target.join(DATA_DIR);
        fs::rename(&tmp, &data).map_err(|e| io_error("rename", &tmp, &e))?;
        sync_dir(&self.target)
    }
}

/// Checks one payload path and returns it cleaned (no empty or `.` components): relative, no
/// `..` component, a top-level name not starting with `..`, names of at most 255 bytes and a
/// path of at most 4096, no NUL.
pub fn validate_path(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err("invalid path: must not be empty: \"\"".into());
    }
    if path.starts_with('/') {
        return Err(format!("invalid path: must be relative path: {path}"));
    }
    if path.len() > MAX_PATH {
        return Err(format!(
            "invalid path: must be less than or equal to {MAX_PATH} characters"
        ));
    }
    if path.contains('\0') {
        return Err(format!("invalid path: must not contain NUL: {path:?}"));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        if part == ".." {
            return Err(format!("invalid path: must not contain '..': {path}"));
        }
        if part.len() > MAX_FILE_NAME {
            return Err(format!(
                "invalid path: filenames must be less than or equal to {MAX_FILE_NAME} characters"
            ));
        }
        if !part.is_empty() && part != "." {
            parts.push(part);
        }
    }
    match parts.first() {
        None => Err(format!("invalid path: must name a file: {path}")),
        Some(first) if first.starts_with("..") => {
            Err(format!("invalid path: must not start with '..': {path}"))
        }
        Some(_) => Ok(parts.join("/")),
    }
}

/// The payload with cleaned paths, checked as a whole.
fn validate_payload<P: Projection>(
    payload: &BTreeMap<String, P>,
) -> Result<BTreeMap<String, &P>, String> {
    let mut clean: BTreeMap<String, &P> = BTreeMap::new();
    for (path, file) in payload {
        let cleaned = validate_path(path)?;
        if file.mode() > 0o7777 {
            return Err(format!(
                "invalid mode {:o} for {path}: must be at most 7777 (octal)",
                file.mode()
            ));
        }
        if clean.insert(cleaned.clone(), file).is_some() {
            return Err(format!(
                "invalid payload: {cleaned} is named more than once"
            ));
        }
    }
    for path in clean.keys() {
        for (at, _) in path.match_indices('/') {
            if clean.contains_key(&path[..at]) {
                return Err(format!(
                    "invalid payload: {} is both a file and the directory of {path}",
                    &path[..at]
                ));
            }
        }
    }
    Ok(clean)
}

fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

fn data_link_target(name: &str) -> PathBuf {
    Path::new(DATA_DIR).join(name)
}

/// A single name of the writer's own (`..` and more), other than its two links.
fn is_version_name(name: &str) -> bool {
    name.len() > 2
        && name.starts_with("..")
        && !name.contains('/')
        && name != DATA_DIR
        && name != NEW_DATA_DIR
}

/// Whether `name` has the shape of a timestamped directory: `..YYYY_MM_DD_HH_MM_SS.` and
/// digits.
fn is_timestamp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("..") else {
        return false;
    };
    let bytes = rest.as_bytes();
    let shape = b"dddd_dd_dd_dd_dd_dd.";
    bytes.len() > shape.len()
        && shape.iter().zip(bytes).all(|(want, got)| match want {
            b'd' => got.is_ascii_digit(),
            other => other == got,
        })
        && bytes[shape.len()..].iter().all(u8::is_ascii_digit)
}

/// `..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN` for a UTC time.
fn version_name(secs: u64, nanos: u32) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "..{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}.{nanos:09}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// Whether the directory `dir` holds exactly the payload: the same regular files with the same
/// contents, modes (and owners, when given), and no other entry.
fn same_content<P: Projection>(
    dir: &Path,
    payload: &BTreeMap<String, &P>,
    owner: Option<(u32, u32)>,
) -> Result<bool, String> {
    let mut files = BTreeMap::new();
    let mut dirs = BTreeSet::new();
    match list_tree(dir, "", 0, &mut files, &mut dirs) {
        Ok(true) => {}
        Ok(false) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error("read", dir, &e)),
    }
    if files.len() != payload.len() {
        return Ok(false);
    }
    let wanted_dirs: BTreeSet<&str> = payload
        .keys()
        .flat_map(|path| path.match_indices('/').map(move |(at, _)| &path[..at]))
        .collect();
    if dirs.iter().map(String::as_str).collect::<BTreeSet<_>>() != wanted_dirs {
        return Ok(false);
    }
    for (path, file) in payload {
        let Some(meta) = files.get(path.as_str()) else {
            return Ok(false);
        };
        if meta.mode() & 0o7777 != file.mode()
            || meta.len() != file.data().len() as u64
            || owner.is_some_and(|(uid, gid)| (meta.uid(), meta.gid()) != (uid, gid))
        {
            return Ok(false);
        }
        let full = dir.join(path);
        match same_bytes(&full, file.data()) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_error("read", &full, &e)),
        }
    }
    Ok(true)
}

/// Lists the regular files and directories under `dir` (relative paths, `prefix` first);
/// false when it holds anything else or is too deep.
fn list_tree(
    dir: &Path,
    prefix: &str,
    depth: usize,
    files: &mut BTreeMap<String, fs::Metadata>,
    dirs: &mut BTreeSet<String>,
) -> io::Result<bool> {
    if depth > MAX_DEPTH {
        return Ok(false);
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Ok(false);
        };
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = fs::symlink_metadata(entry.path())?;
        if meta.is_dir() {
            if !list_tree(&entry.path(), &rel, depth + 1, files, dirs)? {
                return Ok(false);
            }
            dirs.insert(rel);
        } else if meta.is_file() {
            files.insert(rel, meta);
        } else {
            return Ok(false);
        }
    }
    Ok(true)
}

fn same_bytes(path: &Path, want: &[u8]) -> io::Result<bool> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)?;
    let mut have = Vec::with_capacity(want.len());
    Read::by_ref(&mut file)
        .take(want.len() as u64 + 1)
        .read_to_end(&mut have)?;
    Ok(have == want)
}

/// Writes every file of the payload under `dir` (directories 0755), each synced, then the
/// directories.
fn write_files<P: Projection>(
    dir: &Path,
    payload: &BTreeMap<String, &P>,
    owner: Option<(u32, u32)>,
) -> Result<(), String> {
    let mut made_dirs = BTreeSet::new();
    for (path, file) in payload {
        let mut parent = dir.to_path_buf();
        for part in path.split('/').take(path.split('/').count() - 1) {
            parent.push(part);
            if made_dirs.insert(parent.clone()) {
                DirBuilder::new()
                    .mode(0o755)
                    .create(&parent)
                    .map_err(|e| io_error("mkdir", &parent, &e))?;
                fs::set_permissions(&parent, fs::Permissions::from_mode(0o755))
                    .map_err(|e| io_error("chmod", &parent, &e))?;
            }
        }
        write_file(&dir.join(path), file.data(), file.mode(), owner)?;
    }
    for made in made_dirs.iter().rev() {
        sync_dir(made)?;
    }
    sync_dir(dir)
}

fn write_file(
    path: &Path,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), String> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_error("create", path, &e))?;
    file.write_all(data)
        .map_err(|e| io_error("write", path, &e))?;
    if let Some((uid, gid)) = owner {
        // Before the mode: a chown clears the set-id bits.
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(|e| io_error("chown", path, &e))?;
    }
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| io_error("chmod", path, &e))?;
    file.sync_all().map_err(|e| io_error("sync", path, &e))
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| io_error("open", dir, &e))?;
    handle.sync_all().map_err(|e| io_error("sync", dir, &e))
}

fn io_error(op: &str, path: &Path, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let reason = nix::errno::Errno::from_raw(code).desc();
            let mut chars = reason.chars();
            let reason: String = match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => String::new(),
            };
            format!("{op} {}: {reason}", path.display())
        }
        None => format!("{op} {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Payload = BTreeMap<String, (Vec<u8>, u32)>;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files
            .iter()
            .map(|(path, data, mode)| (path.to_string(), (data.as_bytes().to_vec(), *mode)))
            .collect()
    }

    fn version(target: &Path) -> String {
        fs::read_link(target.join(DATA_DIR))
            .expect("..data")
            .to_string_lossy()
            .into_owned()
    }

    /// The `..` names in `target`, sorted (a timestamped directory sorts before `..data`).
    fn hidden(target: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(target)
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".."))
            .collect();
        names.sort();
        names
    }

    fn visible(target: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(target)
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with(".."))
            .collect();
        names.sort();
        names
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn first_write_lays_out_the_kubelets_tree() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let writer = AtomicWriter::new(tmp.path()).expect("writer");
        let files = payload(&[
            ("username", "admin", 0o644),
            ("secret/key", "k", 0o400),
            ("secret/deeper/cert", "c", 0o666),
            ("run.sh", "#!/bin/sh\n", 0o777),
        ]);
        assert!(writer.write(&files, None).expect("write"));

        let current = version(tmp.path());
        assert!(is_timestamp_name(&current), "{current}");
        assert_eq!(current.len(), "..2026_01_02_15_04_05.123456789".len());
        assert_eq!(
            hidden(tmp.path()),
            vec![current.clone(), DATA_DIR.to_string()]
        );
        assert_eq!(visible(tmp.path()), vec!["run.sh", "secret", "username"]);
        assert_eq!(
            fs::read_link(tmp.path().join("username")).expect("link"),
            Path::new("..data/username")
        );
        assert_eq!(
            fs::read_link(tmp.path().join("secret")).expect("link"),
            Path::new("..data/secret")
        );
        assert_eq!(
            fs::read(tmp.path().join("username")).expect("read"),
            b"admin"
        );
        assert_eq!(
            fs::read(tmp.path().join("secret/deeper/cert")).expect("read"),
            b"c"
        );
        // Modes exactly as given, whatever the umask (0o666 and 0o777 are above any umask).
        assert_eq!(mode(&tmp.path().join("secret/key")), 0o400);
        assert_eq!(mode(&tmp.path().join("secret/deeper/cert")), 0o666);
        assert_eq!(mode(&tmp.path().join("run.sh")), 0o777);
        assert_eq!(mode(&tmp.path().join(&current)), 0o755);
        assert_eq!(mode(&tmp.path().join(&current).join("secret")), 0o755);
    }

    #[test]
    fn the_same_payload_again_changes_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let writer = AtomicWriter::new(tmp.path()).expect("writer");
        let files = payload(&[("a", "1", 0o644), ("d/b", "2", 0o644)]);
        assert!(writer.write(&files, None).expect("write"));
        let first = version(tmp.path());
        assert!(!writer.write(&files, None).expect("again"));
        assert_eq!(version(tmp.path()), first);
        // The same paths written differently ("./a", "d//b") are the same payload.
        let spelled = payload(&[("./a", "1", 0o644), ("d//b", "2", 0o644)]);
        assert!(!writer.write(&spelled, None).expect("spelled"));
    }

    #[test]
    fn an_update_swaps_the_data_and_drops_old_names() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let writer = AtomicWriter::new(tmp.path()).expect("writer");
        let files = payload(&[
            ("keep", "old", 0o644),
            ("gone", "x", 0o644),
            ("dir/stay", "s", 0o644),
            ("dir/leave", "l", 0o644),
        ]);
        assert!(writer.write(&files, None).expect("write"));
        let first = version(tmp.path());

        let update = payload(&[("keep", "new", 0o644), ("dir/stay", "s", 0o644)]);
        assert!(writer.write(&update, None).expect("update"));
        let second = version(tmp.path());
        assert_ne!(first, second);
        assert_eq!(hidden(tmp.path()), vec![second, DATA_DIR.to_string()]);
        assert_eq!(visible(tmp.path()), vec!["dir", "keep"]);
        assert_eq!(fs::read(tmp.path().join("keep")).expect("read"), b"new");
        assert!(!tmp.path().join("dir/leave").exists());
        assert!(!writer.write(&update, None).expect("again"));
    }

    #[test]
    fn a_nested_file_leaving_its_directory_is_a_change() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let writer = AtomicWriter::new(tmp.path()).expect("writer");
        assert!(writer
            .write(&payload(&[("a/b", "1", 0o644), ("a/c", "2", 0o644)]), None)
            .expect("write"));
        assert!(writer
            .write(&payload(&[("a/b", "1", 0o644)]), None)
            .expect("write"));
        assert!(!tmp.path().join("a/c").exists());
        assert_eq!(fs::read(tmp.path().join("a/b")).expect("read"), b"1");
    }

    #[test]
    fn a_mode_change_is_a_change() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let writer = AtomicWriter::new(tmp.path()).expect("writer");
        assert!(writer
            .write(&payload(&[("f", "x", 0o644)]), None)
            .expect("write"));
        assert!(writer
            .write(&payload(&[("f", "x", 0o600)]), None)
            .expect("write"));
        assert_eq!(mode(&tmp.path().join("f")), 0o600);
    }

    #[test]
    fn an_empty_payload_empties_the_volume() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let writer = AtomicWriter::new(tmp.path()).expect("writer");
        assert!(writer
            .write(&payload(&[("f", "x", 0o644)]), None)
            .expect("write"));
        assert!(writer.write(&Payload::new(), None).expect("empty"));
        assert!(visible(tmp.path()).is_empty());
        assert!(!writer.write(&Payload::new(), None).expect("again"));
    }

    #[test]
    fn owners_are_applied_to_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let writer = AtomicWriter::new(tmp.path()).expect("writer");
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        // Root can give files away; others can only keep them.
        let owner = if me.0 == 0 { (1234, 5678) } else { me };
        let files = payload(&[("f", "x", 0o2640)]);
        assert!(writer.write(&files, Some(owner)).expect("write"));
        let meta = fs::metadata(tmp.path().join("f")).expect("stat");
        assert_eq!((meta.uid(), meta.gid()), owner);
        // The set-gid bit survives the chown (mode set after).
        assert_eq!(meta.permissions().mode() & 0o7777, 0o2640);
        assert!(!writer.write(&files, Some(owner)).expect("again"));
        if me.0 == 0 {
            assert!(writer.write(&files, Some((1234, 9999))).expect("new group"));
        }
    }

    #[test]
    fn invalid_payloads_are_refused_untouched() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let writer = AtomicWriter::new(tmp.path()).expect("writer");
        for bad in [
            "",
            "/abs",
            "../up",
            "a/../b",
            "a/..",
            "..data",
            "..data/x",
            "..2020_01_01",
            "..x",
            ".",
            "./",
            "./..data",
            "a\0b",
        ] {
            let err = writer
                .write(&payload(&[(bad, "x", 0o644)]), None)
                .expect_err(bad);
            assert!(err.starts_with("invalid path"), "{bad:?}: {err}");
        }
        let long = "n".repeat(256);
        assert!(writer
            .write(&payload(&[(&long, "x", 0o644)]), None)
            .is_err());
        let deep = "a/".repeat(2100) + "f";
        assert!(writer
            .write(&payload(&[(&deep, "x", 0o644)]), None)
            .is_err());
        let err = writer
            .write(&payload(&[("a", "x", 0o644), ("a/b", "y", 0o644)]), None)
            .expect_err("file and dir");
        assert!(err.contains("both a file and the directory"), "{err}");
        let err = writer
            .write(&payload(&[("a", "x", 0o644), ("./a", "y", 0o644)]), None)
            .expect_err("twice");
        assert!(err.contains("more than once"), "{err}");
        let err = writer
            .write(&payload(&[("a", "x", 0o17777)]), None)
            .expect_err("mode");
        assert!(err.contains("invalid mode"), "{err}");
        assert!(fs::read_dir(tmp.path()).expect("read").next().is_none());
        // `..` inside a name, or a `..name` below the top level, is fine.
        assert_eq!(validate_path("a..b/..c").expect("valid"), "a..b/..c");
        assert_eq!(validate_path("./x//y/").expect("valid"), "x/y");
    }

    #[test]
    fn leftovers_of_a_crash_are_removed_at_the_next_write() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let writer = AtomicWriter::new(tmp.path()).expect("writer");
        let files = payload(&[("a", "1", 0o644)]);
        assert!(writer.write(&files, None).expect("write"));
        let current = version(tmp.path());

        // A crash after the new directory was made, and one after the new link was made.
        let stale = tmp.path().join("..2020_01_01_00_00_00.123456789");
        fs::create_dir(&stale).expect("mkdir");
        fs::write(stale.join("a"), b"half").expect("write");
        std::os::unix::fs::symlink(
            "..2020_01_01_00_00_00.123456789",
            tmp.path().join(NEW_DATA_DIR),
        )
        .expect("symlink");
        // A link made for a name of the crashed write.
        std::os::unix::fs::symlink("..data/b", tmp.path().join("b")).expect("symlink");

        assert!(
            writer.write(&files, None).expect("again"),
            "the stale link is dropped"
        );
        assert_eq!(version(tmp.path()), current);
        assert_eq!(hidden(tmp.path()), vec![current, DATA_DIR.to_string()]);
        assert_eq!(visible(tmp.path()), vec!["a"]);
        assert!(!writer.write(&files, None).expect("settled"));
    }

    #[test]
    fn a_removed_link_is_made_again() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let writer = AtomicWriter::new(tmp.path()).expect("writer");
        let files = payload(&[("a", "1", 0o644)]);
        assert!(writer.write(&files, None).expect("write"));
        fs::remove_file(tmp.path().join("a")).expect("remove");
        assert!(writer.write(&files, None).expect("repair"));
        assert_eq!(fs::read(tmp.path().join("a")).expect("read"), b"1");
    }

    #[test]
    fn a_damaged_version_is_rewritten() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let writer = AtomicWriter::new(tmp.path()).expect("writer");
        let files = payload(&[("a", "1", 0o644)]);
        assert!(writer.write(&files, None).expect("write"));
        let current = version(tmp.path());
        fs::write(tmp.path().join(&current).join("extra"), b"?").expect("write");
        assert!(writer.write(&files, None).expect("rewrite"));
        assert_ne!(version(tmp.path()), current);
        assert!(!tmp.path().join(&current).exists());
    }

    #[test]
    fn foreign_data_links_and_entries_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        fs::write(outside.path().join("precious"), b"keep").expect("write");
        std::os::unix::fs::symlink(outside.path(), tmp.path().join(DATA_DIR)).expect("symlink");
        let writer = AtomicWriter::new(tmp.path()).expect("writer");
        let err = writer
            .write(&payload(&[("a", "1", 0o644)]), None)
            .expect_err("foreign ..data");
        assert!(err.contains("not at a directory of this writer"), "{err}");
        assert_eq!(
            fs::read(outside.path().join("precious")).expect("read"),
            b"keep"
        );

        let tmp = tempfile::tempdir().expect("tempdir");
        fs::write(tmp.path().join("a"), b"not a link").expect("write");
        let writer = AtomicWriter::new(tmp.path()).expect("writer");
        let err = writer
            .write(&payload(&[("a", "1", 0o644)]), None)
            .expect_err("taken name");
        assert!(err.contains("is not a link"), "{err}");
        // The failed write left no directory behind.
        assert!(hidden(tmp.path()).is_empty(), "{:?}", hidden(tmp.path()));
        assert!(AtomicWriter::new(&tmp.path().join("a")).is_err());
    }

    #[test]
    fn payloads_of_the_payload_module_are_written() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let writer = AtomicWriter::new(tmp.path()).expect("writer");
        let mut files = super::super::payload::Payload::new();
        files.insert(
            "ca.crt".to_string(),
            super::super::payload::FileProjection {
                data: b"pem".to_vec(),
                mode: 0o640,
            },
        );
        assert!(writer.write(&files, None).expect("write"));
        assert_eq!(fs::read(tmp.path().join("ca.crt")).expect("read"), b"pem");
        assert_eq!(mode(&tmp.path().join("ca.crt")), 0o640);
        assert!(!writer.write(&files, None).expect("again"));
    }

    #[test]
    fn version_names_are_utc_timestamps() {
        assert_eq!(version_name(0, 5), "..1970_01_01_00_00_00.000000005");
        // 2024-02-29T23:59:59Z, a leap day.
        assert_eq!(
            version_name(1_709_251_199, 123_456_789),
            "..2024_02_29_23_59_59.123456789"
        );
        assert!(is_timestamp_name("..2024_02_29_23_59_59.123456789"));
        assert!(!is_timestamp_name("..data"));
        assert!(!is_timestamp_name("..2024_02_29_23_59_59."));
        assert!(!is_timestamp_name("..2024_02_29_23_59_59.12x"));
    }
}
