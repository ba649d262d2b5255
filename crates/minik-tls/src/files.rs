//! Files that hold secrets: written whole or not at all, readable by their owner only.

use std::path::Path;

use crate::TlsError;

/// Writes `text` to `path` readable by its owner only (mode 0600), atomically: a temporary file
/// beside it, fsync, rename, fsync of the directory, so a crash leaves the old content or the
/// new, never a torn file, and the secret is never readable by others even for a moment.
pub fn write_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("secret");
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Writes a public file (a certificate) with mode 0644, atomically.
pub(crate) fn write_public_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    write_private_file(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

/// The text of a PEM file, with the file named in the error.
pub fn read_pem(path: &Path, what: &str) -> Result<String, TlsError> {
    std::fs::read_to_string(path)
        .map_err(|e| TlsError::new(format!("cannot read the {what} {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_private_and_public_ones_readable() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.key");
        write_private_file(&key, "old").unwrap();
        write_private_file(&key, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "new");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        let cert = dir.path().join("c.crt");
        write_public_file(&cert, "cert").unwrap();
        assert_eq!(mode(&cert), 0o644);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        let err = read_pem(&dir.path().join("missing.crt"), "CA certificate").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read the CA certificate ")
                && err.to_string().contains("missing.crt"),
            "{err}"
        );
    }
}
