//! Where each job stopped reading, kept across proxy restarts so that the next window starts
//! right after it (no gap, up to `remote_write.max_window`). One small JSON file per CR in
//! `remote_write.state_directory`, replaced atomically after every successful cycle.
//!
//! It records what was read, not what was delivered: requests still queued when the process
//! dies are lost (a graceful shutdown drains the queues for `shutdown_grace` first).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    collected_until_ms: i64,
}

impl StateDir {
    pub fn new(dir: &Path) -> StateDir {
        StateDir {
            dir: dir.to_path_buf(),
        }
    }

    /// `<namespace>__<name>.json`: Kubernetes names hold no `_`, so the pair is unambiguous.
    pub fn path(&self, namespace: &str, name: &str) -> PathBuf {
        self.dir.join(format!("{namespace}__{name}.json"))
    }

    /// The saved position, if any (an unreadable file counts as none, with a warning).
    pub fn load(&self, namespace: &str, name: &str) -> Option<i64> {
        let path = self.path(namespace, name);
        let text = std::fs::read_to_string(&path).ok()?;
        match serde_json::from_str::<State>(&text) {
            Ok(s) => Some(s.collected_until_ms),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring an unreadable collector state file");
                None
            }
        }
    }

    pub fn save(&self, namespace: &str, name: &str, until_ms: i64) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(namespace, name);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string(&State {
            collected_until_ms: until_ms,
        })
        .unwrap_or_default();
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_per_resource() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(&dir.path().join("nested"));
        assert_eq!(state.load("team-a", "cr"), None);
        state.save("team-a", "cr", 1234).unwrap();
        state.save("team-a", "other", 99).unwrap();
        state.save("team-a", "cr", 5678).unwrap();
        assert_eq!(state.load("team-a", "cr"), Some(5678));
        assert_eq!(state.load("team-a", "other"), Some(99));
        std::fs::write(state.path("team-b", "x"), "not json").unwrap();
        assert_eq!(state.load("team-b", "x"), None);
    }
}
