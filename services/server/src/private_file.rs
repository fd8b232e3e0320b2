//! Files that hold keys and secrets: created readable by their owner only
//! (0600), and refused when group or others can reach them — like ssh, which
//! refuses a private key that others can read.

use std::{
    io::{self, Read},
    path::{Path, PathBuf},
};

/// A key or secret file that group or others may read or write.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} is open to group or others (mode {mode:04o}): a key or secret file must be 0600; \
     chmod 600 it, and replace the secret if anyone else may have read it",
    path.display()
)]
pub struct ExposedFile {
    /// The file.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
}

/// Why a key or secret file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    /// Opening or reading it failed (`NotFound` included).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Group or others may read or write it.
    #[error(transparent)]
    Exposed(#[from] ExposedFile),
}

impl PrivateFileError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Reads a key or secret file, refusing it when group or others may read or
/// write it. The mode is checked on the opened file, so a file swapped in
/// between the check and the read is not read.
pub fn read_private_file(path: &Path) -> Result<Vec<u8>, PrivateFileError> {
    let io = |source| PrivateFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    check_private(path, &file.metadata().map_err(io)?)?;
    let mut contents = Vec::new();
    file.read_to_end(&mut contents).map_err(io)?;
    Ok(contents)
}

/// Refuses `path` (whose metadata is `metadata`) if group or others may read
/// or write it.
pub fn check_private(path: &Path, metadata: &std::fs::Metadata) -> Result<(), ExposedFile> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(ExposedFile {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, metadata);
    Ok(())
}

/// Creates `path` with `contents`, readable by this user only (0600 on Unix);
/// fails if it exists.
pub fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    io::Write::write_all(&mut file, contents)?;
    file.sync_all()
}

/// Makes `path`, if it exists, readable by this user only (0600), for files
/// this process owns but did not create with that mode (a database an older
/// version created 0644). Returns whether it had to be tightened.
pub fn restrict_to_owner(path: &Path) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error),
        };
        let mode = metadata.permissions().mode() & 0o7777;
        let owner_only = if metadata.is_dir() { 0o700 } else { 0o600 };
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & owner_only))?;
            return Ok(true);
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(false)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_file_open_to_others_is_refused_and_an_owner_only_one_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        write_private_file(&path, b"s3cret").expect("written");
        assert_eq!(read_private_file(&path).expect("0600 reads"), b"s3cret");
        for mode in [0o640, 0o604, 0o620, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let error = read_private_file(&path).expect_err("open to others");
            assert_eq!(
                error.to_string(),
                format!(
                    "{} is open to group or others (mode {mode:04o}): a key or secret file \
                     must be 0600; chmod 600 it, and replace the secret if anyone else may \
                     have read it",
                    path.display()
                )
            );
        }
        assert!(restrict_to_owner(&path).expect("chmod"));
        assert_eq!(
            std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        assert!(!restrict_to_owner(&path).expect("already 0600"));
        assert!(
            read_private_file(&dir.path().join("absent"))
                .expect_err("absent")
                .is_not_found()
        );
    }
}
