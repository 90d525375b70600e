//! The database and every copy of it hold node keys and user secrets, so
//! the files this crate creates are readable by their owner only, whatever
//! the process's umask. SQLite gives the `-wal` and `-shm` files the main
//! file's mode, so creating the main file 0600 covers them too.

use std::io;
use std::path::Path;

/// Creates `path` empty with mode 0600 unless it exists (an empty file is an
/// empty SQLite database); an existing file is left as it is.
pub(crate) fn create_owner_only(path: &Path) -> io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes an existing file readable by its owner only (a copy made by
/// `VACUUM INTO` or `std::fs::copy` has the umask's or the source's mode).
pub(crate) fn restrict_to_owner(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Creates the directory `path` with mode 0700; fails if it exists.
pub(crate) fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_file_is_owner_only_and_an_existing_one_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.db");
        create_owner_only(&new).unwrap();
        assert_eq!(mode(&new), 0o600);
        let old = dir.path().join("old.db");
        std::fs::write(&old, b"kept").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o640)).unwrap();
        create_owner_only(&old).unwrap();
        assert_eq!(mode(&old), 0o640);
        assert_eq!(std::fs::read(&old).unwrap(), b"kept");
        restrict_to_owner(&old).unwrap();
        assert_eq!(mode(&old), 0o600);
    }
}
