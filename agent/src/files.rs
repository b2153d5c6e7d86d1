//! The one way Trellis writes a private file (credentials, keys, passwords), used by the agent and
//! the leader alike: a fresh temporary file with the given mode (never a leftover one, which could
//! be a link or keep a wider mode), written, synced, then renamed over the target, so a crash
//! leaves either the old file or the new one, never half of one.

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

/// Writes `data` to `path` atomically with permissions `mode` (for example `0o600`).
pub fn write_private(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    // A fresh file, so the mode holds even if a crashed run left one behind (or a link).
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn replaces_atomically_with_the_mode_even_over_a_leftover_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.pem");
        // A leftover temporary file with a wide mode from a crashed run.
        std::fs::write(dir.path().join("secret.pem.tmp"), b"old").unwrap();
        std::fs::set_permissions(
            dir.path().join("secret.pem.tmp"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        write_private(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!dir.path().join("secret.pem.tmp").exists());
    }
}
