//! A data dir as it lies on disk — its files and their modes — for the tests
//! that check it is private. Shared by path with the binary's own tests.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

/// `path`'s permission bits, e.g. `0o600`.
pub fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

/// The files under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `dir`'s mode, and each file under it whose mode is not 0600 (as
/// `name mode`, relative to `dir`): `("0700", [])` for a private data dir.
pub fn exposure_of(dir: &Path) -> (String, Vec<String>) {
    let loose = files_under(dir)
        .iter()
        .filter(|file| mode_of(file) != 0o600)
        .map(|file| {
            let name = file.strip_prefix(dir).expect("under dir").display();
            format!("{name} {:04o}", mode_of(file))
        })
        .collect();
    (format!("{:04o}", mode_of(dir)), loose)
}
