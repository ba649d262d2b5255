//! A container's root filesystem: the image's layers stacked read-only with overlayfs, under a
//! writable layer of the container's own, removed with the container.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// The most bytes the kernel takes as mount options (one page).
const MAX_OPTIONS: usize = 4096;

/// Mounts at `target` the layers `lowers` (base first) under the writable `upper` (with its
/// overlayfs `work` directory, on the same filesystem). All directories must exist.
pub(crate) fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), String> {
    if lowers.is_empty() {
        return Err("an image without layers cannot be a root filesystem".into());
    }
    let mut paths = Vec::new();
    for p in lowers
        .iter()
        .rev()
        .chain([&upper.to_path_buf(), &work.to_path_buf()])
    {
        let s = p
            .to_str()
            .ok_or_else(|| format!("{}: not UTF-8", p.display()))?;
        if s.contains([':', ',', '\\']) {
            return Err(format!(
                "{s}: overlayfs cannot take a path with ':', ',' or '\\' (choose another --data-dir)"
            ));
        }
        paths.push(s.to_owned());
    }
    let (work, upper) = (
        paths.pop().unwrap_or_default(),
        paths.pop().unwrap_or_default(),
    );
    let options = format!(
        "lowerdir={},upperdir={upper},workdir={work}",
        paths.join(":")
    );
    if options.len() >= MAX_OPTIONS {
        return Err(format!(
            "the image's {} layers make {} bytes of overlayfs options, more than the kernel's {MAX_OPTIONS}",
            lowers.len(),
            options.len()
        ));
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| format!("mounting the overlay root on {}: {e}", target.display()))
}

/// Unmounts a container's root (lazily: a process that still holds it does not block).
pub(crate) fn unmount(target: &Path) {
    let _ = umount2(target, MntFlags::MNT_DETACH);
}

/// Whether `path` is a mount point (its device differs from its parent's).
pub(crate) fn is_mounted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(me), Some(Ok(parent))) = (
        std::fs::symlink_metadata(path),
        path.parent().map(std::fs::symlink_metadata),
    ) else {
        return false;
    };
    me.dev() != parent.dev()
}
