//! The data directory is private to the server's user, as PostgreSQL's is: it holds the
//! catalog (with the tenant-token secret), the admin key and every tenant's records, so a
//! local user who could read it could mint tokens for any tenant or read any tenant's data.
//!
//! - The process creates files 0600 and directories 0700 (umask 077): the catalog, every
//!   pool, bridge and silo file with its WAL and shared memory, and whatever comes later.
//! - A new data directory is created 0700; an existing one that its group or others may
//!   enter is refused at start, with the command that fixes it.
//! - The soft limit on open files is raised to the hard limit, so connections and silo files
//!   have the room the operating system allows.

use std::path::Path;

use anyhow::{Context, bail};

/// Files and directories this process creates are its user's alone.
pub fn restrict_new_files() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates `dir` 0700, or checks that an existing one is not open to group or others.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        return builder
            .create(dir)
            .with_context(|| format!("creating data directory {}", dir.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)
            .with_context(|| format!("reading data directory {}", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "data directory {dir} has mode {mode:04o}: its group or others may read it, and it \
                 holds the catalog, its token secret and every tenant's data. Make it private, \
                 then start again:\n    chmod 0700 {dir}",
                dir = dir.display(),
                mode = mode & 0o7777,
            );
        }
    }
    Ok(())
}

/// Raises the soft limit on open files to the hard limit; returns the limit in force
/// (`None`: unlimited, or not a Unix system).
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            let raised = Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                return raised.current;
            }
        }
        limit.current
    }
    #[cfg(not(unix))]
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_data_directory_open_to_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        prepare_data_dir(&data).unwrap();
        let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "created private");
        prepare_data_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = prepare_data_dir(&data).unwrap_err().to_string();
        assert!(err.contains("chmod 0700") && err.contains("0755"), "{err}");
    }

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let raised = raise_open_files_limit();
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(raised, limit.current);
        assert_eq!(limit.current, limit.maximum);
    }
}
