//! Unpacks one image layer (a tar, plain or compressed with gzip or zstd) into a fresh directory
//! in the form overlayfs stacks as a lowerdir, and computes the layer's diff_id on the way.
//!
//! A layer is untrusted input. How nothing is written outside the destination:
//!
//! - Every entry path is cleaned lexically ([`clean_path`]): a leading `/` and `.` components go,
//!   `..` pops a component and an entry whose `..` would leave the layer is refused.
//! - The destination is a fresh directory only this function writes while it runs, so the only
//!   adversary is the tar's content, not a concurrent process: checking each parent directory
//!   with `lstat` before acting on a path is enough (no openat walk needed). A parent that is a
//!   symbolic link (`evil -> /etc`, then `evil/passwd`) or not a directory is refused, never
//!   followed. The last component is created with calls that do not follow it (`O_EXCL |
//!   O_NOFOLLOW`, `symlink`, `link` without `AT_SYMLINK_FOLLOW`, `mknod`, `lchown`, `lutimes`,
//!   `lsetxattr`), after whatever an earlier entry left there was removed.
//! - Symbolic link targets are kept verbatim: they are resolved inside the container later.
//! - A hard link's target must be an earlier entry of this layer, found through real directories.
//!
//! Whiteouts become what overlayfs reads: `.wh.NAME` a 0:0 character device `NAME`,
//! `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory. Both need root.
//!
//! Extended attributes (PAX `SCHILY.xattr.*`): `trusted.overlay.*` from a layer are dropped
//! (overlayfs metadata must not be forged by an image); without root only `user.*` ones are
//! set (the other namespaces need privileges). One that cannot be set is skipped with a warning
//! (a host without SELinux refuses `security.selinux`, tmpfs may refuse `user.*`), except
//! `security.capability`: a program relies on its file capabilities, so that failure is an error.
//!
//! On error the destination holds part of the layer: the caller removes it.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::sys::time::TimeVal;
use sha2::{Digest as _, Sha256};

use crate::{Compression, Digest, ImageError};

/// How much a layer may hold before it is refused as a bomb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnpackLimits {
    /// Total bytes of entry content (what the tar headers declare and what is written).
    pub max_bytes: u64,
    /// Number of tar entries.
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> UnpackLimits {
        UnpackLimits {
            max_bytes: 64 << 30,
            max_entries: 4_000_000,
        }
    }
}

/// What unpacking a layer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unpacked {
    /// sha256 of the decompressed tar stream, as the image config's `rootfs.diff_ids` lists it.
    pub diff_id: Digest,
    /// Bytes of file content written.
    pub size: u64,
    /// Tar entries read.
    pub entries: u64,
}

/// Recognises gzip (`1f 8b`) and zstd (`28 b5 2f fd`) from a blob's first bytes; anything else
/// is taken as uncompressed.
pub(crate) fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Reads up to the first 4 bytes of `file` to recognise its compression, then rewinds it.
pub(crate) fn sniff_file(file: &mut File) -> io::Result<Compression> {
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    file.rewind()?;
    Ok(sniff(&head[..n]))
}

/// The decompressed content of `r`.
pub(crate) fn decompress<'r, R: Read + 'r>(
    compression: Compression,
    r: R,
) -> io::Result<Box<dyn Read + 'r>> {
    Ok(match compression {
        Compression::None => Box::new(io::BufReader::new(r)),
        // Several gzip members one after the other are one stream (what `pigz`/`cat` make).
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
    })
}

/// Cleans a tar entry path lexically: drops `/` and `.` components, resolves `..` against what
/// came before. `Err` says why when a `..` would leave the root. The result is relative and may be
/// empty (the root itself).
pub(crate) fn clean_path(raw: &[u8]) -> Result<PathBuf, String> {
    if raw.contains(&0) {
        return Err("the path contains a NUL byte".to_string());
    }
    let mut out = PathBuf::new();
    for component in Path::new(OsStr::from_bytes(raw)).components() {
        match component {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err("the path escapes the root with '..'".to_string());
                }
            }
            Component::Normal(name) => out.push(name),
        }
    }
    Ok(out)
}

/// Unpacks the layer in `blob` into `dest`, which must exist and be empty. `layer_name` (the
/// digest, usually) names the layer in errors.
pub(crate) fn unpack_layer(
    blob: &Path,
    layer_name: &str,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<Unpacked, ImageError> {
    unpack_as(
        blob,
        layer_name,
        dest,
        limits,
        nix::unistd::geteuid().is_root(),
    )
}

/// Bytes of headers, PAX records and long names allowed around one entry's content.
const META_ALLOWANCE: u64 = 4 << 20;
/// Bytes allowed after the end-of-archive marker (record padding).
const TRAILING_ALLOWANCE: u64 = 1 << 20;
const BLOCK: u64 = 512;

/// [`unpack_layer`], with whether to do what needs root (ownership, device nodes, whiteouts,
/// privileged xattrs) given: tests run the unprivileged path as root too.
fn unpack_as(
    blob: &Path,
    layer: &str,
    dest: &Path,
    limits: &UnpackLimits,
    privileged: bool,
) -> Result<Unpacked, ImageError> {
    let not_empty = fs::read_dir(dest)
        .map_err(ImageError::io(format!(
            "layer {layer}: reading the destination {}",
            dest.display()
        )))?
        .next()
        .is_some();
    if not_empty {
        return Err(ImageError::Unpack {
            layer: layer.to_string(),
            entry: String::new(),
            why: format!("the destination {} is not empty", dest.display()),
        });
    }
    let mut file = File::open(blob).map_err(ImageError::io(format!(
        "layer {layer}: opening {}",
        blob.display()
    )))?;
    let compression = sniff_file(&mut file).map_err(ImageError::io(format!(
        "layer {layer}: reading {}",
        blob.display()
    )))?;
    let stream = decompress(compression, file).map_err(|e| ImageError::Unpack {
        layer: layer.to_string(),
        entry: String::new(),
        why: format!("cannot start decompressing ({compression:?}): {e}"),
    })?;
    let meter = Rc::new(Meter {
        pos: Cell::new(0),
        limit: Cell::new(META_ALLOWANCE),
        over: Cell::new(false),
        zeros: Cell::new(0),
    });
    let mut reader = MeteredReader {
        inner: stream,
        hasher: Sha256::new(),
        meter: meter.clone(),
    };
    let mut x = Extractor {
        layer,
        dest,
        limits,
        privileged,
        known_dirs: HashSet::new(),
        dirs: BTreeMap::new(),
        consumed: 0,
        size: 0,
        entries: 0,
        buf: vec![0; 64 << 10],
    };
    x.run(&mut reader, &meter)?;
    x.finish_dirs()?;
    Ok(Unpacked {
        diff_id: digest_of(reader.hasher)?,
        size: x.size,
        entries: x.entries,
    })
}

/// What [`MeteredReader`] shares with the loop driving the tar reader.
struct Meter {
    /// Decompressed bytes read so far.
    pos: Cell<u64>,
    /// `pos` may not go past this: the tar reader may only read what the entries account for.
    limit: Cell<u64>,
    /// The limit was hit.
    over: Cell<bool>,
    /// How many zero bytes end what was read (an end-of-archive marker is 512 of them).
    zeros: Cell<u64>,
}

/// Hashes the decompressed stream and keeps the tar reader within what the entries declare, so
/// that a PAX header or a long name cannot make it buffer gigabytes.
struct MeteredReader<R> {
    inner: R,
    hasher: Sha256,
    meter: Rc<Meter>,
}

impl<R: Read> Read for MeteredReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let m = &self.meter;
        let room = m.limit.get().saturating_sub(m.pos.get());
        if room == 0 {
            m.over.set(true);
            return Err(io::Error::other("more data than the entries account for"));
        }
        let want = usize::try_from(room).unwrap_or(usize::MAX).min(buf.len());
        let n = self.inner.read(&mut buf[..want])?;
        let got = &buf[..n];
        self.hasher.update(got);
        m.pos.set(m.pos.get() + n as u64);
        match got.iter().rposition(|&b| b != 0) {
            Some(i) => m.zeros.set((n - 1 - i) as u64),
            None => m.zeros.set(m.zeros.get() + n as u64),
        }
        Ok(n)
    }
}

/// An entry's metadata.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Option<u64>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Extractor<'a> {
    layer: &'a str,
    dest: &'a Path,
    limits: &'a UnpackLimits,
    privileged: bool,
    /// Relative paths checked to be real directories (cleared when anything is removed).
    known_dirs: HashSet<PathBuf>,
    /// Directory entries, whose mode, owner and times are set at the end, children first.
    dirs: BTreeMap<PathBuf, Meta>,
    /// Content bytes counted against `max_bytes`.
    consumed: u64,
    size: u64,
    entries: u64,
    buf: Vec<u8>,
}

impl Extractor<'_> {
    fn refuse(&self, entry: &str, why: impl Into<String>) -> ImageError {
        ImageError::Unpack {
            layer: self.layer.to_string(),
            entry: entry.to_string(),
            why: why.into(),
        }
    }

    fn stream_error(&self, entry: &str, doing: &str, e: io::Error, meter: &Meter) -> ImageError {
        if meter.over.get() {
            self.refuse(
                entry,
                format!(
                    "{doing}: the layer holds more data than its entries account for (PAX or \
                     long-name headers over {} MiB, or over {} MiB after the end of the archive)",
                    META_ALLOWANCE >> 20,
                    TRAILING_ALLOWANCE >> 20
                ),
            )
        } else {
            self.refuse(
                entry,
                format!("{doing}: the layer is not a valid tar stream (truncated or corrupt): {e}"),
            )
        }
    }

    fn full(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.dest.to_path_buf()
        } else {
            self.dest.join(rel)
        }
    }

    fn io(&self, doing: &str, rel: &Path) -> impl FnOnce(io::Error) -> ImageError {
        ImageError::io(format!(
            "layer {}: {doing} {}",
            self.layer,
            self.full(rel).display()
        ))
    }

    fn run<R: Read>(&mut self, reader: &mut R, meter: &Meter) -> Result<(), ImageError> {
        let mut archive = tar::Archive::new(&mut *reader);
        let entries = archive
            .entries()
            .map_err(|e| self.stream_error("", "reading the first entry", e, meter))?;
        let mut previous = String::new();
        for entry in entries {
            let mut entry = entry.map_err(|e| {
                self.stream_error(&previous, "reading the entry after this one", e, meter)
            })?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(self.refuse(
                    &name,
                    format!(
                        "the layer has more than {} entries",
                        self.limits.max_entries
                    ),
                ));
            }
            let declared = entry.size();
            if declared > self.limits.max_bytes.saturating_sub(self.consumed) {
                return Err(self.size_bomb(&name));
            }
            let padded = declared.div_ceil(BLOCK).saturating_mul(BLOCK);
            meter.limit.set(
                meter
                    .pos
                    .get()
                    .saturating_add(padded)
                    .saturating_add(META_ALLOWANCE),
            );
            self.entry(&mut entry, &name, meter)?;
            previous = name;
        }
        if meter.pos.get() == 0 {
            return Err(self.refuse("", "the layer is empty: not a tar stream"));
        }
        if meter.zeros.get() < BLOCK {
            return Err(self.refuse(
                &previous,
                "the layer is truncated: the tar stream ends after this entry without its \
                 end-of-archive marker",
            ));
        }
        // Read to the very end (record padding, and a compressed stream's checksum) so that the
        // diff_id is the digest of the whole tar.
        meter
            .limit
            .set(meter.pos.get().saturating_add(TRAILING_ALLOWANCE));
        let mut rest = &mut *reader;
        io::copy(&mut rest, &mut io::sink())
            .map_err(|e| self.stream_error(&previous, "reading the end of the layer", e, meter))?;
        Ok(())
    }

    fn size_bomb(&self, entry: &str) -> ImageError {
        self.refuse(
            entry,
            format!(
                "the layer holds more than {} bytes of content",
                self.limits.max_bytes
            ),
        )
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        meter: &Meter,
    ) -> Result<(), ImageError> {
        use tar::EntryType as T;
        let kind = entry.header().entry_type();
        let declared = entry.size();
        if kind.is_pax_global_extensions() {
            // Global PAX defaults (a comment, a charset): nothing minik uses.
            self.consumed += declared;
            return Ok(());
        }
        let rel = clean_path(&entry.path_bytes()).map_err(|why| self.refuse(name, why))?;
        if rel
            .file_name()
            .is_some_and(|f| f.as_bytes().starts_with(b".wh."))
        {
            self.consumed += declared;
            return self.whiteout(&rel, name);
        }
        let meta = self.meta(entry, name)?;
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => self.file(entry, &rel, &meta, name, meter),
            T::Directory => {
                self.consumed += declared;
                self.dir(&rel, meta, name)
            }
            T::Symlink => {
                self.consumed += declared;
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                self.symlink(&rel, target, &meta, name)
            }
            T::Link => {
                self.consumed += declared;
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                self.hardlink(&rel, target, name)
            }
            T::Char | T::Block | T::Fifo => {
                self.consumed += declared;
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                self.node(&rel, kind, major, minor, &meta, name)
            }
            other => Err(self.refuse(
                name,
                format!("unsupported tar entry type {:?}", other.as_byte() as char),
            )),
        }
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, ImageError> {
        let header = entry.header();
        let bad = |field: &str, e: io::Error| self.refuse(name, format!("bad {field}: {e}"));
        let mode = header.mode().map_err(|e| bad("mode", e))?;
        let uid = header.uid().map_err(|e| bad("uid", e))?;
        let gid = header.gid().map_err(|e| bad("gid", e))?;
        let mut mtime = header.mtime().ok();
        let uid =
            u32::try_from(uid).map_err(|_| self.refuse(name, format!("uid {uid} too big")))?;
        let gid =
            u32::try_from(gid).map_err(|_| self.refuse(name, format!("gid {gid} too big")))?;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(|e| bad("PAX header", e))? {
            for ext in pax {
                let ext = ext.map_err(|e| bad("PAX header", e))?;
                let key = ext.key_bytes();
                if let Some(attr) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((attr.to_vec(), ext.value_bytes().to_vec()));
                } else if key == b"mtime" {
                    // "1700000000.123456789": whole seconds are kept.
                    let value = ext.value().unwrap_or("");
                    let seconds = value.split('.').next().unwrap_or("");
                    mtime = seconds.parse::<u64>().ok();
                }
            }
        }
        Ok(Meta {
            mode: mode & 0o7777,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    /// Makes sure every parent of `rel` is a real directory, creating missing ones (mode 0755).
    fn prepare_parents(&mut self, rel: &Path, name: &str) -> Result<(), ImageError> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut prefix = PathBuf::new();
        for component in parent.components() {
            prefix.push(component);
            if self.known_dirs.contains(&prefix) {
                continue;
            }
            let path = self.dest.join(&prefix);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.refuse(
                        name,
                        format!(
                            "{} is a symbolic link: refusing to write through it",
                            prefix.display()
                        ),
                    ))
                }
                Ok(_) => {
                    return Err(
                        self.refuse(name, format!("{} is not a directory", prefix.display()))
                    )
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&path).map_err(self.io("creating", &prefix))?;
                    fs::set_permissions(&path, Permissions::from_mode(0o755))
                        .map_err(self.io("setting the mode of", &prefix))?;
                }
                Err(e) => return Err(self.io("inspecting", &prefix)(e)),
            }
            self.known_dirs.insert(prefix.clone());
        }
        Ok(())
    }

    /// Checks that `rel` is reached through real directories only; returns what is there.
    fn lookup(&self, rel: &Path) -> Result<Option<fs::Metadata>, String> {
        let mut prefix = PathBuf::new();
        if let Some(parent) = rel.parent() {
            for component in parent.components() {
                prefix.push(component);
                match fs::symlink_metadata(self.dest.join(&prefix)) {
                    Ok(m) if m.file_type().is_dir() => {}
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(format!("{} is a symbolic link", prefix.display()))
                    }
                    Ok(_) => return Err(format!("{} is not a directory", prefix.display())),
                    Err(_) => return Ok(None),
                }
            }
        }
        match fs::symlink_metadata(self.full(rel)) {
            Ok(m) => Ok(Some(m)),
            Err(_) => Ok(None),
        }
    }

    /// Removes what an earlier entry left at `rel` (its parents are checked). With `keep_dir`, a
    /// directory stays (a directory entry over a directory merges) and `true` is returned.
    fn clear(&mut self, rel: &Path, keep_dir: bool) -> Result<bool, ImageError> {
        let path = self.full(rel);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io("inspecting", rel)(e)),
            Ok(m) if m.file_type().is_dir() => {
                if keep_dir {
                    return Ok(true);
                }
                fs::remove_dir_all(&path).map_err(self.io("removing", rel))?;
                self.known_dirs.clear();
                self.dirs.retain(|dir, _| !dir.starts_with(rel));
                Ok(false)
            }
            Ok(_) => {
                fs::remove_file(&path).map_err(self.io("removing", rel))?;
                Ok(false)
            }
        }
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &Path,
        meta: &Meta,
        name: &str,
        meter: &Meter,
    ) -> Result<(), ImageError> {
        if rel.as_os_str().is_empty() {
            return Err(self.refuse(name, "a file cannot be the layer's root"));
        }
        self.prepare_parents(rel, name)?;
        self.clear(rel, false)?;
        let path = self.dest.join(rel);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&path)
            .map_err(self.io("creating", rel))?;
        let declared = entry.size();
        let mut buf = std::mem::take(&mut self.buf);
        let mut written = 0u64;
        let copied = loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(self.stream_error(name, "reading the content", e, meter)),
            };
            written += n as u64;
            if written > self.limits.max_bytes.saturating_sub(self.consumed) {
                break Err(self.size_bomb(name));
            }
            if let Err(e) = file.write_all(&buf[..n]) {
                break Err(self.io("writing", rel)(e));
            }
        };
        self.buf = buf;
        copied?;
        if written < declared && entry.header().entry_type() != tar::EntryType::GNUSparse {
            return Err(self.refuse(
                name,
                format!("the layer is truncated: the entry ends after {written} of its {declared} bytes"),
            ));
        }
        self.consumed += written.max(declared);
        self.size += written;
        // chown clears set-id bits and file capabilities: owner first, then mode and xattrs.
        if self.privileged {
            std::os::unix::fs::fchown(&file, Some(meta.uid), Some(meta.gid))
                .map_err(self.io("changing the owner of", rel))?;
        }
        file.set_permissions(Permissions::from_mode(meta.mode))
            .map_err(self.io("setting the mode of", rel))?;
        self.set_xattrs(rel, &meta.xattrs, name)?;
        if let Some(t) = meta
            .mtime
            .and_then(|s| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(s)))
        {
            file.set_times(FileTimes::new().set_accessed(t).set_modified(t))
                .map_err(self.io("setting the times of", rel))?;
        }
        Ok(())
    }

    fn dir(&mut self, rel: &Path, meta: Meta, name: &str) -> Result<(), ImageError> {
        if !rel.as_os_str().is_empty() {
            self.prepare_parents(rel, name)?;
            if !self.clear(rel, true)? {
                fs::create_dir(self.dest.join(rel)).map_err(self.io("creating", rel))?;
            }
            self.known_dirs.insert(rel.to_path_buf());
        }
        self.set_xattrs(rel, &meta.xattrs, name)?;
        self.dirs.insert(
            rel.to_path_buf(),
            Meta {
                xattrs: Vec::new(),
                ..meta
            },
        );
        Ok(())
    }

    fn symlink(
        &mut self,
        rel: &Path,
        target: Option<Vec<u8>>,
        meta: &Meta,
        name: &str,
    ) -> Result<(), ImageError> {
        let target = target.filter(|t| !t.is_empty() && !t.contains(&0));
        let Some(target) = target else {
            return Err(self.refuse(name, "a symbolic link without a valid target"));
        };
        if rel.as_os_str().is_empty() {
            return Err(self.refuse(name, "a symbolic link cannot be the layer's root"));
        }
        self.prepare_parents(rel, name)?;
        self.clear(rel, false)?;
        let path = self.dest.join(rel);
        std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
            .map_err(self.io("creating the symbolic link", rel))?;
        if self.privileged {
            std::os::unix::fs::lchown(&path, Some(meta.uid), Some(meta.gid))
                .map_err(self.io("changing the owner of", rel))?;
        }
        self.set_xattrs(rel, &meta.xattrs, name)?;
        self.set_mtime(rel, meta.mtime)
    }

    fn hardlink(
        &mut self,
        rel: &Path,
        target: Option<Vec<u8>>,
        name: &str,
    ) -> Result<(), ImageError> {
        let Some(raw) = target else {
            return Err(self.refuse(name, "a hard link without a target"));
        };
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let target = clean_path(&raw)
            .map_err(|why| self.refuse(name, format!("hard link target {shown:?}: {why}")))?;
        if rel.as_os_str().is_empty() || target.as_os_str().is_empty() {
            return Err(self.refuse(name, "a hard link to or as the layer's root"));
        }
        if target == rel {
            return Err(self.refuse(name, "a hard link to itself"));
        }
        match self.lookup(&target) {
            Ok(Some(m)) if !m.file_type().is_dir() => {}
            Ok(Some(_)) => {
                return Err(self.refuse(name, format!("hard link target {shown:?} is a directory")))
            }
            Ok(None) => {
                return Err(self.refuse(
                    name,
                    format!("hard link target {shown:?} is not an earlier entry of the layer"),
                ))
            }
            Err(why) => {
                return Err(self.refuse(
                    name,
                    format!("hard link target {shown:?} is not reachable inside the layer: {why}"),
                ))
            }
        }
        self.prepare_parents(rel, name)?;
        self.clear(rel, false)?;
        // std's hard_link is linkat(2) without AT_SYMLINK_FOLLOW: a symlink target is linked
        // itself, never followed.
        fs::hard_link(self.dest.join(&target), self.dest.join(rel))
            .map_err(self.io("creating the hard link", rel))
    }

    fn node(
        &mut self,
        rel: &Path,
        kind: tar::EntryType,
        major: u32,
        minor: u32,
        meta: &Meta,
        name: &str,
    ) -> Result<(), ImageError> {
        let flag = match kind {
            tar::EntryType::Char => SFlag::S_IFCHR,
            tar::EntryType::Block => SFlag::S_IFBLK,
            _ => SFlag::S_IFIFO,
        };
        if flag != SFlag::S_IFIFO && !self.privileged {
            return Err(self.refuse(name, format!("device node {major}:{minor} needs root")));
        }
        if rel.as_os_str().is_empty() {
            return Err(self.refuse(name, "a device node cannot be the layer's root"));
        }
        self.prepare_parents(rel, name)?;
        self.clear(rel, false)?;
        let path = self.dest.join(rel);
        mknod(
            &path,
            flag,
            Mode::from_bits_truncate(meta.mode),
            makedev(major.into(), minor.into()),
        )
        .map_err(|e| self.io("creating the node", rel)(e.into()))?;
        if self.privileged {
            std::os::unix::fs::lchown(&path, Some(meta.uid), Some(meta.gid))
                .map_err(self.io("changing the owner of", rel))?;
        }
        fs::set_permissions(&path, Permissions::from_mode(meta.mode))
            .map_err(self.io("setting the mode of", rel))?;
        self.set_xattrs(rel, &meta.xattrs, name)?;
        self.set_mtime(rel, meta.mtime)
    }

    fn whiteout(&mut self, rel: &Path, name: &str) -> Result<(), ImageError> {
        let file = rel.file_name().map(|f| f.as_bytes()).unwrap_or_default();
        let parent = rel.parent().unwrap_or(Path::new(""));
        if file == b".wh..wh..opq" {
            if !self.privileged {
                return Err(self.refuse(
                    name,
                    "an opaque-directory whiteout needs root: it is the trusted.overlay.opaque \
                     xattr",
                ));
            }
            self.prepare_parents(rel, name)?;
            return lsetxattr(&self.full(parent), b"trusted.overlay.opaque", b"y")
                .map_err(self.io("marking opaque", parent));
        }
        if file.starts_with(b".wh..wh.") {
            // AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not part of the image.
            return Ok(());
        }
        let hidden = &file[4..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(self.refuse(name, "a whiteout that names nothing"));
        }
        if !self.privileged {
            return Err(self.refuse(
                name,
                "a whiteout needs root: overlayfs whiteouts are 0:0 character devices",
            ));
        }
        self.prepare_parents(rel, name)?;
        let target = parent.join(OsStr::from_bytes(hidden));
        // A whiteout only hides lower layers: what this layer itself put there stays.
        if fs::symlink_metadata(self.dest.join(&target)).is_ok() {
            return Ok(());
        }
        mknod(
            &self.dest.join(&target),
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )
        .map_err(|e| self.io("creating the whiteout", &target)(e.into()))
    }

    fn set_xattrs(
        &self,
        rel: &Path,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        name: &str,
    ) -> Result<(), ImageError> {
        let path = self.full(rel);
        for (key, value) in xattrs {
            let shown = String::from_utf8_lossy(key);
            if key.starts_with(b"trusted.overlay.") {
                tracing::warn!(layer = self.layer, entry = name, xattr = %shown, "dropping an overlayfs xattr carried by the layer");
                continue;
            }
            if !self.privileged && !key.starts_with(b"user.") {
                tracing::debug!(layer = self.layer, entry = name, xattr = %shown, "not root: xattr skipped");
                continue;
            }
            if let Err(e) = lsetxattr(&path, key, value) {
                if key.as_slice() == b"security.capability" {
                    return Err(self.refuse(
                        name,
                        format!("setting its file capabilities (security.capability): {e}"),
                    ));
                }
                tracing::warn!(layer = self.layer, entry = name, xattr = %shown, error = %e, "xattr skipped");
            }
        }
        Ok(())
    }

    fn set_mtime(&self, rel: &Path, mtime: Option<u64>) -> Result<(), ImageError> {
        let Some(seconds) = mtime.and_then(|s| i64::try_from(s).ok()) else {
            return Ok(());
        };
        let t = TimeVal::new(seconds, 0);
        nix::sys::stat::lutimes(&self.full(rel), &t, &t)
            .map_err(|e| self.io("setting the times of", rel)(e.into()))
    }

    /// Sets the mode, owner and times of directory entries, children before parents (creating
    /// a child changes its parent's mtime; a read-only parent would refuse the child).
    fn finish_dirs(&mut self) -> Result<(), ImageError> {
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, meta) in dirs.iter().rev() {
            match self.lookup(rel) {
                Ok(Some(m)) if m.file_type().is_dir() => {}
                _ => continue,
            }
            let path = self.full(rel);
            if self.privileged {
                std::os::unix::fs::lchown(&path, Some(meta.uid), Some(meta.gid))
                    .map_err(self.io("changing the owner of", rel))?;
            }
            fs::set_permissions(&path, Permissions::from_mode(meta.mode))
                .map_err(self.io("setting the mode of", rel))?;
            self.set_mtime(rel, meta.mtime)?;
        }
        Ok(())
    }
}

/// The digest a finished hasher computed.
pub(crate) fn digest_of(hasher: Sha256) -> Result<Digest, ImageError> {
    format!("sha256:{}", hex::encode(hasher.finalize())).parse()
}

/// lsetxattr(2): sets an extended attribute without following a final symbolic link.
fn lsetxattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    let name = CString::new(name)?;
    // SAFETY: both strings are NUL-terminated and live across the call; `value` is a valid slice
    // of `value.len()` bytes that the kernel only reads.
    let rc = unsafe {
        nix::libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::*;

    /// Tests that need root skip with a message, and fail under CI where root is expected.
    fn needs_root(why: &str) -> bool {
        if nix::unistd::geteuid().is_root() {
            return false;
        }
        if std::env::var_os("CI").is_some_and(|v| v == "true") {
            panic!("cannot run without root under CI: {why}");
        }
        eprintln!("skipped, needs root: {why}");
        true
    }

    /// A tar entry with its raw name (the tar crate's own setters refuse `..` and absolute
    /// paths, which is what these tests need to write).
    fn raw(
        b: &mut tar::Builder<Vec<u8>>,
        name: &[u8],
        kind: tar::EntryType,
        mode: u32,
        link: Option<&[u8]>,
        data: &[u8],
    ) {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        if let Some(link) = link {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32, data: &[u8]) {
        raw(
            b,
            name.as_bytes(),
            tar::EntryType::Regular,
            mode,
            None,
            data,
        );
    }

    fn finish(b: tar::Builder<Vec<u8>>) -> Vec<u8> {
        b.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn zstd(bytes: &[u8]) -> Vec<u8> {
        zstd::encode_all(bytes, 3).unwrap()
    }

    struct Case {
        _tmp: tempfile::TempDir,
        blob: PathBuf,
        dest: PathBuf,
        outside: PathBuf,
    }

    fn case(bytes: &[u8]) -> Case {
        let tmp = tempfile::tempdir().unwrap();
        let blob = tmp.path().join("blob");
        fs::write(&blob, bytes).unwrap();
        let dest = tmp.path().join("deep/er/dest");
        fs::create_dir_all(&dest).unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        Case {
            _tmp: tmp,
            blob,
            dest,
            outside,
        }
    }

    fn run(c: &Case, privileged: bool) -> Result<Unpacked, ImageError> {
        unpack_as(
            &c.blob,
            "sha256:test",
            &c.dest,
            &UnpackLimits::default(),
            privileged,
        )
    }

    fn refusal(r: Result<Unpacked, ImageError>) -> String {
        match r {
            Err(e @ ImageError::Unpack { .. }) => e.to_string(),
            other => panic!("expected an unpack refusal, got {other:?}"),
        }
    }

    fn sample() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, b"./", tar::EntryType::Directory, 0o755, None, b"");
        raw(
            &mut b,
            b"./bin/",
            tar::EntryType::Directory,
            0o750,
            None,
            b"",
        );
        file(&mut b, "./bin/tool", 0o4755, b"#!/bin/sh\necho hi\n");
        file(&mut b, "etc/conf", 0o644, b"key=value\n");
        raw(
            &mut b,
            b"etc/abs",
            tar::EntryType::Symlink,
            0o777,
            Some(b"/etc/conf"),
            b"",
        );
        raw(
            &mut b,
            b"etc/rel",
            tar::EntryType::Symlink,
            0o777,
            Some(b"../bin/tool"),
            b"",
        );
        raw(
            &mut b,
            b"etc/hard",
            tar::EntryType::Link,
            0o644,
            Some(b"etc/conf"),
            b"",
        );
        raw(&mut b, b"ro/", tar::EntryType::Directory, 0o555, None, b"");
        file(&mut b, "ro/inside", 0o400, b"x");
        raw(&mut b, b"pipe", tar::EntryType::Fifo, 0o600, None, b"");
        finish(b)
    }

    fn check_sample(c: &Case, u: &Unpacked, tar_bytes: &[u8]) {
        assert_eq!(u.diff_id, Digest::of(tar_bytes));
        assert_eq!(u.entries, 10);
        assert_eq!(u.size, 18 + 10 + 1);
        let d = &c.dest;
        let tool = fs::symlink_metadata(d.join("bin/tool")).unwrap();
        assert_eq!(tool.mode() & 0o7777, 0o4755);
        assert_eq!(tool.mtime(), 1_700_000_000);
        assert_eq!(
            fs::read(d.join("bin/tool")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        assert_eq!(
            fs::symlink_metadata(d.join("bin")).unwrap().mode() & 0o7777,
            0o750
        );
        assert_eq!(
            fs::symlink_metadata(d.join("bin")).unwrap().mtime(),
            1_700_000_000
        );
        assert_eq!(
            fs::read_link(d.join("etc/abs")).unwrap(),
            Path::new("/etc/conf")
        );
        assert_eq!(
            fs::read_link(d.join("etc/rel")).unwrap(),
            Path::new("../bin/tool")
        );
        let conf = fs::metadata(d.join("etc/conf")).unwrap();
        let hard = fs::metadata(d.join("etc/hard")).unwrap();
        assert_eq!(conf.ino(), hard.ino());
        assert_eq!(
            fs::symlink_metadata(d.join("ro")).unwrap().mode() & 0o7777,
            0o555
        );
        assert!(fs::symlink_metadata(d.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo());
    }

    #[test]
    fn unpacks_plain_gzip_and_zstd_layers_with_their_diff_id() {
        let tar_bytes = sample();
        for (what, blob) in [
            ("plain", tar_bytes.clone()),
            ("gzip", gzip(&tar_bytes)),
            ("zstd", zstd(&tar_bytes)),
        ] {
            let c = case(&blob);
            let u = run(&c, false).unwrap_or_else(|e| panic!("{what}: {e}"));
            check_sample(&c, &u, &tar_bytes);
        }
    }

    #[test]
    fn the_diff_id_covers_record_padding_after_the_end_marker() {
        let mut tar_bytes = sample();
        tar_bytes.extend_from_slice(&[0u8; 8192]);
        let c = case(&gzip(&tar_bytes));
        let u = run(&c, false).unwrap();
        assert_eq!(u.diff_id, Digest::of(&tar_bytes));
    }

    #[test]
    fn as_root_owners_and_the_real_entry_point_are_used() {
        if needs_root("chown to uid 1000") {
            return;
        }
        let tar_bytes = sample();
        let c = case(&tar_bytes);
        let u = unpack_layer(&c.blob, "l", &c.dest, &UnpackLimits::default()).unwrap();
        check_sample(&c, &u, &tar_bytes);
        let tool = fs::symlink_metadata(c.dest.join("bin/tool")).unwrap();
        assert_eq!((tool.uid(), tool.gid()), (1000, 1000));
        // chown before chmod: the setuid bit survives.
        assert_eq!(tool.mode() & 0o7777, 0o4755);
        let link = fs::symlink_metadata(c.dest.join("etc/abs")).unwrap();
        assert_eq!(link.uid(), 1000);
    }

    #[test]
    fn later_entries_replace_earlier_ones_and_directories_merge() {
        let mut b = tar::Builder::new(Vec::new());
        file(&mut b, "a", 0o644, b"first");
        raw(
            &mut b,
            b"link",
            tar::EntryType::Link,
            0o644,
            Some(b"a"),
            b"",
        );
        // Replacing the hard link must not write through it into `a`.
        file(&mut b, "link", 0o644, b"second");
        raw(&mut b, b"d/", tar::EntryType::Directory, 0o755, None, b"");
        file(&mut b, "d/one", 0o644, b"1");
        raw(&mut b, b"d/", tar::EntryType::Directory, 0o700, None, b"");
        file(&mut b, "d/two", 0o644, b"2");
        raw(
            &mut b,
            b"gone/",
            tar::EntryType::Directory,
            0o755,
            None,
            b"",
        );
        file(&mut b, "gone/x", 0o644, b"x");
        raw(
            &mut b,
            b"gone",
            tar::EntryType::Symlink,
            0o777,
            Some(b"d"),
            b"",
        );
        let c = case(&finish(b));
        run(&c, false).unwrap();
        assert_eq!(fs::read(c.dest.join("a")).unwrap(), b"first");
        assert_eq!(fs::read(c.dest.join("link")).unwrap(), b"second");
        assert!(c.dest.join("d/one").exists() && c.dest.join("d/two").exists());
        assert_eq!(
            fs::symlink_metadata(c.dest.join("d")).unwrap().mode() & 0o777,
            0o700
        );
        assert!(fs::symlink_metadata(c.dest.join("gone"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    fn whiteout_layer() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, b"etc/", tar::EntryType::Directory, 0o755, None, b"");
        file(&mut b, "etc/.wh.removed", 0o644, b"");
        raw(
            &mut b,
            b"opaque/",
            tar::EntryType::Directory,
            0o755,
            None,
            b"",
        );
        file(&mut b, "opaque/.wh..wh..opq", 0o644, b"");
        file(&mut b, "opaque/kept", 0o644, b"k");
        file(&mut b, ".wh..wh.plnk", 0o644, b"");
        finish(b)
    }

    #[test]
    fn whiteouts_become_overlayfs_whiteouts_as_root() {
        if needs_root("whiteouts are 0:0 character devices") {
            return;
        }
        let c = case(&whiteout_layer());
        run(&c, true).unwrap();
        let w = fs::symlink_metadata(c.dest.join("etc/removed")).unwrap();
        assert!(w.file_type().is_char_device());
        assert_eq!(w.rdev(), 0);
        assert!(!c.dest.join("etc/.wh.removed").exists());
        assert!(!c.dest.join("opaque/.wh..wh..opq").exists());
        assert!(!c.dest.join(".wh..wh.plnk").exists());
        assert_eq!(fs::read(c.dest.join("opaque/kept")).unwrap(), b"k");
        assert_eq!(
            lgetxattr(&c.dest.join("opaque"), "trusted.overlay.opaque"),
            Some(b"y".to_vec())
        );
    }

    fn lgetxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let p = CString::new(path.as_os_str().as_bytes()).unwrap();
        let n = CString::new(name).unwrap();
        let mut buf = [0u8; 256];
        // SAFETY: NUL-terminated strings and a buffer of the length given.
        let len = unsafe {
            nix::libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        };
        usize::try_from(len).ok().map(|l| buf[..l].to_vec())
    }

    #[test]
    fn without_root_whiteouts_and_devices_are_refused_clearly() {
        let c = case(&whiteout_layer());
        let e = refusal(run(&c, false));
        assert!(
            e.contains("needs root") && e.contains("etc/.wh.removed"),
            "{e}"
        );

        let mut b = tar::Builder::new(Vec::new());
        file(&mut b, "d/.wh..wh..opq", 0o644, b"");
        let c = case(&finish(b));
        let e = refusal(run(&c, false));
        assert!(e.contains("needs root") && e.contains("opaque"), "{e}");

        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_path("dev/null").unwrap();
        h.set_entry_type(tar::EntryType::Char);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_mode(0o666);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        let bytes = finish(b);
        let c = case(&bytes);
        let e = refusal(run(&c, false));
        assert!(e.contains("device node 1:3 needs root"), "{e}");
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let c = case(&bytes);
        run(&c, true).unwrap();
        let m = fs::symlink_metadata(c.dest.join("dev/null")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), makedev(1, 3));
    }

    #[test]
    fn pax_xattrs_are_set_and_overlay_ones_dropped() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("SCHILY.xattr.user.minik", &b"yes"[..]),
            ("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..]),
        ])
        .unwrap();
        raw(&mut b, b"d/", tar::EntryType::Directory, 0o755, None, b"");
        let c = case(&finish(b));
        run(&c, nix::unistd::geteuid().is_root()).unwrap();
        let d = c.dest.join("d");
        // user xattrs may be unsupported by the test filesystem: only checked where they work.
        if lsetxattr(&c.outside, b"user.probe", b"1").is_ok() {
            assert_eq!(lgetxattr(&d, "user.minik"), Some(b"yes".to_vec()));
        }
        assert_eq!(lgetxattr(&d, "trusted.overlay.opaque"), None);
    }

    fn nothing_outside(c: &Case) {
        assert_eq!(fs::read_dir(&c.outside).unwrap().count(), 0);
        let parent = c.dest.parent().unwrap();
        assert_eq!(
            fs::read_dir(parent).unwrap().count(),
            1,
            "only dest in its parent"
        );
    }

    #[test]
    fn hostile_paths_are_refused_or_kept_inside() {
        for name in [&b"../x"[..], b"a/../../x", b"./../../../../outside/x"] {
            let mut b = tar::Builder::new(Vec::new());
            raw(&mut b, name, tar::EntryType::Regular, 0o644, None, b"evil");
            let c = case(&finish(b));
            let e = refusal(run(&c, false));
            assert!(e.contains("escapes"), "{e}");
            assert!(e.contains(&*String::from_utf8_lossy(name)), "{e}");
            nothing_outside(&c);
        }
        let mut b = tar::Builder::new(Vec::new());
        raw(
            &mut b,
            b"/etc/x",
            tar::EntryType::Regular,
            0o644,
            None,
            b"in",
        );
        raw(
            &mut b,
            b"a/../y",
            tar::EntryType::Regular,
            0o644,
            None,
            b"y",
        );
        let c = case(&finish(b));
        run(&c, false).unwrap();
        assert_eq!(fs::read(c.dest.join("etc/x")).unwrap(), b"in");
        assert_eq!(fs::read(c.dest.join("y")).unwrap(), b"y");
        nothing_outside(&c);
    }

    #[test]
    fn writing_through_a_symlink_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("somewhere");
        fs::create_dir(&target).unwrap();
        for (link, path) in [
            (
                target.to_str().unwrap().as_bytes().to_vec(),
                &b"evil/file"[..],
            ),
            (b"../../../../somewhere".to_vec(), b"evil/file"),
            (b".".to_vec(), b"evil/evil/file"),
        ] {
            let mut b = tar::Builder::new(Vec::new());
            raw(
                &mut b,
                b"evil",
                tar::EntryType::Symlink,
                0o777,
                Some(&link),
                b"",
            );
            raw(&mut b, path, tar::EntryType::Regular, 0o644, None, b"owned");
            let c = case(&finish(b));
            let e = refusal(run(&c, false));
            assert!(e.contains("symbolic link") && e.contains("evil"), "{e}");
            assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
            nothing_outside(&c);
        }
        // A directory entry, a hard link, a whiteout through the symlink: all refused.
        for (kind, link) in [
            (tar::EntryType::Directory, None),
            (tar::EntryType::Link, Some(&b"real"[..])),
        ] {
            let mut b = tar::Builder::new(Vec::new());
            file(&mut b, "real", 0o644, b"r");
            raw(
                &mut b,
                b"evil",
                tar::EntryType::Symlink,
                0o777,
                Some(target.to_str().unwrap().as_bytes()),
                b"",
            );
            raw(&mut b, b"evil/sub", kind, 0o755, link, b"");
            let c = case(&finish(b));
            let e = refusal(run(&c, false));
            assert!(e.contains("symbolic link"), "{e}");
            assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
        }
    }

    #[test]
    fn hostile_hard_links_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let secret = tmp.path().join("secret");
        fs::write(&secret, b"s").unwrap();
        for (target, expect) in [
            (&b"../../etc/passwd"[..], "escapes"),
            (b"/etc/passwd", "not an earlier entry"),
            (b"missing", "not an earlier entry"),
            (b"dir", "is a directory"),
            (b"self", "itself"),
            (b"sym/secret", "symbolic link"),
        ] {
            let mut b = tar::Builder::new(Vec::new());
            raw(&mut b, b"dir/", tar::EntryType::Directory, 0o755, None, b"");
            raw(
                &mut b,
                b"sym",
                tar::EntryType::Symlink,
                0o777,
                Some(tmp.path().to_str().unwrap().as_bytes()),
                b"",
            );
            raw(
                &mut b,
                b"self",
                tar::EntryType::Link,
                0o644,
                Some(target),
                b"",
            );
            let c = case(&finish(b));
            let e = refusal(run(&c, false));
            assert!(e.contains(expect), "{expect}: {e}");
            assert_eq!(fs::metadata(&secret).unwrap().nlink(), 1);
        }
    }

    #[test]
    fn size_and_entry_bombs_are_refused_while_streaming() {
        // 64 MiB of zeroes in one file, compressed to a few dozen KiB.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_path("zeroes").unwrap();
        h.set_size(64 << 20);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, io::repeat(0).take(64 << 20)).unwrap();
        let bomb = gzip(&finish(b));
        assert!(bomb.len() < 1 << 20);
        let c = case(&bomb);
        let limits = UnpackLimits {
            max_bytes: 1 << 20,
            max_entries: 100,
        };
        let e = unpack_as(&c.blob, "l", &c.dest, &limits, false).unwrap_err();
        assert!(e.to_string().contains("more than 1048576 bytes"), "{e}");
        // Refused on the header: nothing was written.
        assert!(!c.dest.join("zeroes").exists());

        let mut b = tar::Builder::new(Vec::new());
        for i in 0..50 {
            file(&mut b, &format!("f{i}"), 0o644, b"");
        }
        let c = case(&finish(b));
        let limits = UnpackLimits {
            max_bytes: 1 << 20,
            max_entries: 10,
        };
        let e = unpack_as(&c.blob, "l", &c.dest, &limits, false).unwrap_err();
        assert!(e.to_string().contains("more than 10 entries"), "{e}");
        assert!(!c.dest.join("f11").exists());
    }

    #[test]
    fn a_huge_pax_header_is_refused_without_buffering_it() {
        let mut b = tar::Builder::new(Vec::new());
        let big = vec![b'a'; 5 << 20];
        b.append_pax_extensions([("comment", &big[..])]).unwrap();
        file(&mut b, "f", 0o644, b"");
        let c = case(&gzip(&finish(b)));
        let e = refusal(run(&c, false));
        assert!(e.contains("more data than its entries account for"), "{e}");
    }

    #[test]
    fn truncated_and_garbage_layers_are_clear_errors() {
        let tar_bytes = sample();
        let gz = gzip(&tar_bytes);
        let truncated_gzip = &gz[..gz.len() / 2];
        let c = case(truncated_gzip);
        let e = refusal(run(&c, false));
        assert!(e.contains("truncated or corrupt"), "{e}");

        let c = case(&gz[..gz.len() - 4]); // the trailer (size) cut
        let e = refusal(run(&c, false));
        assert!(e.contains("truncated or corrupt"), "{e}");

        // Inside a file's content, inside a header, and exactly between two entries.
        for cut in [512 + 10, 512 * 3 + 100, 512 * 4] {
            let c = case(&tar_bytes[..cut]);
            let e = refusal(run(&c, false));
            assert!(e.contains("truncated"), "{cut}: {e}");
        }

        for garbage in [
            &b""[..],
            b"hello, world",
            &[0x1f, 0x8b, 1, 2, 3],
            &[0x28, 0xb5, 0x2f, 0xfd, 9, 9],
            &[7u8; 4096],
        ] {
            let c = case(garbage);
            let e = refusal(run(&c, false));
            assert!(e.contains("sha256:test"), "{e}");
        }
    }

    #[test]
    fn the_destination_must_be_empty() {
        let c = case(&sample());
        fs::write(c.dest.join("x"), b"").unwrap();
        let e = refusal(run(&c, false));
        assert!(e.contains("not empty"), "{e}");
    }

    #[test]
    fn clean_path_normalises_and_refuses_escapes() {
        assert_eq!(clean_path(b"/a/./b/").unwrap(), Path::new("a/b"));
        assert_eq!(clean_path(b"./").unwrap(), Path::new(""));
        assert_eq!(clean_path(b"a/../b").unwrap(), Path::new("b"));
        assert!(clean_path(b"..").is_err());
        assert!(clean_path(b"a/../../b").is_err());
        assert!(clean_path(b"a\0b").is_err());
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
                let c = case(&bytes);
                let _ = run(&c, false);
                nothing_outside(&c);
            }

            #[test]
            fn mutated_layers_never_panic(
                flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
                compress in any::<bool>(),
            ) {
                let mut bytes = sample();
                for (at, value) in flips {
                    let i = at.index(bytes.len());
                    bytes[i] = value;
                }
                if compress {
                    bytes = gzip(&bytes);
                }
                let c = case(&bytes);
                let _ = run(&c, false);
                nothing_outside(&c);
            }
        }
    }
}
