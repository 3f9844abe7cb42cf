//! The node's own credential: issued by the orchestrator on the first registration with
//! the join token (`worker_token`), kept in the state directory (mode 0600), and sent as
//! the bearer token on every later call instead of the join token. With it, nobody else
//! holding the join token can act as this node.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const FILE: &str = "credential";

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// The stored credential, if any. An unreadable file is reported, not ignored: joining
/// again with the join token would be refused anyway while the orchestrator keeps it.
pub fn load(state_dir: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(path(state_dir)) {
        Ok(text) => {
            let t = text.trim();
            Ok((!t.is_empty()).then(|| t.to_string()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the credential atomically (a temporary file renamed over), readable only by
/// this user.
pub fn save(state_dir: &Path, secret: &str) -> io::Result<()> {
    let tmp = state_dir.join(format!("{FILE}.tmp"));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(secret.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path(state_dir))?;
    if let Ok(dir) = File::open(state_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saved_with_mode_0600_and_loaded_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        save(dir.path(), "pfn_abc").unwrap();
        assert_eq!(load(dir.path()).unwrap().as_deref(), Some("pfn_abc"));
        let mode = fs::metadata(path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        save(dir.path(), "pfn_def").unwrap();
        assert_eq!(load(dir.path()).unwrap().as_deref(), Some("pfn_def"));
    }
}
