//! The demo's data folder: made fresh at each start (only when it is the demo's own, marked by a
//! `.dmgw-demo` file, or empty), and private files (keys, secrets) written readable by the owner only.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::DemoError;

/// The file that marks a folder as the demo's, so emptying it never hits someone else's files.
pub const MARKER: &str = ".dmgw-demo";

fn dir_error(path: &Path, reason: impl std::fmt::Display) -> DemoError {
    DemoError::DataDir {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Empty (or create) `path` for a new run and mark it as the demo's. A folder that exists, is not
/// empty and has no marker is refused. Returns the absolute path.
pub fn prepare(path: &Path) -> Result<PathBuf, DemoError> {
    let path = std::path::absolute(path).map_err(|e| dir_error(path, e))?;
    match fs::symlink_metadata(&path) {
        Ok(meta) if !meta.is_dir() => return Err(dir_error(&path, "exists and is not a folder")),
        Ok(_) => {
            let entries: Vec<fs::DirEntry> = fs::read_dir(&path)
                .map_err(|e| dir_error(&path, e))?
                .collect::<Result<_, _>>()
                .map_err(|e| dir_error(&path, e))?;
            if !entries.is_empty() && !path.join(MARKER).is_file() {
                return Err(dir_error(
                    &path,
                    format!(
                        "not empty and not made by dmgw-demo (no {MARKER} file); \
                         choose another --data-dir"
                    ),
                ));
            }
            for entry in entries {
                let p = entry.path();
                let is_dir = entry.file_type().map_err(|e| dir_error(&p, e))?.is_dir();
                let removed = if is_dir {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                removed.map_err(|e| dir_error(&p, format!("cannot remove: {e}")))?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(&path).map_err(|e| dir_error(&path, e))?;
        }
        Err(e) => return Err(dir_error(&path, e)),
    }
    write_file(
        &path.join(MARKER),
        b"made by dmgw-demo; emptied at each run\n",
    )?;
    Ok(path)
}

/// Write `bytes` to `path` (replacing it).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    fs::write(path, bytes).map_err(|source| DemoError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Write `bytes` to a new file at `path` that only its owner may read (keys, passwords).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    let err = |source| DemoError::Write {
        path: path.to_owned(),
        source,
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.flush().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_is_made_and_marked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let got = prepare(&dir).unwrap();
        assert!(got.is_absolute());
        assert!(dir.join(MARKER).is_file());
    }

    #[test]
    fn the_demos_own_folder_is_emptied() {
        let tmp = tempfile::tempdir().unwrap();
        prepare(tmp.path()).unwrap();
        fs::create_dir(tmp.path().join("tls")).unwrap();
        fs::write(tmp.path().join("tls/ca.pem"), "x").unwrap();
        fs::write(tmp.path().join("gateway.db"), "x").unwrap();
        prepare(tmp.path()).unwrap();
        let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the marker is left");
    }

    #[test]
    fn someone_elses_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
        let err = prepare(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("not made by dmgw-demo"), "{err}");
        assert!(tmp.path().join("precious.txt").is_file());
        let file = tmp.path().join("precious.txt");
        assert!(prepare(&file).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("k");
        write_private(&p, b"secret").unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
