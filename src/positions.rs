//! Positions (resume tokens, poll cursors, slot LSNs) saved under the state dir, one file per
//! listener, written atomically so a crash leaves the old position or the new one, never half.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct PositionStore {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct SavedPosition {
    listener: String,
    position: String,
}

impl PositionStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PositionStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The saved position of a listener, if any.
    pub fn load(&self, identity: &str) -> io::Result<Option<String>> {
        let path = self.path_of(identity);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let saved: SavedPosition = serde_json::from_str(&text).map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {error}", path.display()),
            )
        })?;
        Ok(Some(saved.position))
    }

    /// Saves a position: write a temporary file, sync it, rename it over the old one.
    pub fn save(&self, identity: &str, position: &str) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let path = self.path_of(identity);
        let temporary = path.with_extension("tmp");
        let body = serde_json::to_vec(&SavedPosition {
            listener: identity.to_string(),
            position: position.to_string(),
        })?;
        let mut file = fs::File::create(&temporary)?;
        file.write_all(&body)?;
        file.sync_data()?;
        fs::rename(&temporary, &path)
    }

    pub fn remove(&self, identity: &str) -> io::Result<()> {
        match fs::remove_file(self.path_of(identity)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// One file per identity; characters unsafe in file names are spelled as `%XX`.
    fn path_of(&self, identity: &str) -> PathBuf {
        let mut name = String::with_capacity(identity.len() + 5);
        for byte in identity.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
                name.push(byte as char);
            } else {
                name.push_str(&format!("%{byte:02X}"));
            }
        }
        name.push_str(".json");
        self.dir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_per_identity() {
        let dir = tempfile::tempdir().unwrap();
        let store = PositionStore::new(dir.path().join("state"));
        assert_eq!(store.load("orders/public.orders").unwrap(), None);
        store.save("orders/public.orders", "0/16B3748").unwrap();
        store.save("items/\"Shop\".\"Order Items\"", "42").unwrap();
        store.save("orders/public.orders", "0/16B3800").unwrap();
        assert_eq!(
            store.load("orders/public.orders").unwrap().as_deref(),
            Some("0/16B3800")
        );
        assert_eq!(
            store
                .load("items/\"Shop\".\"Order Items\"")
                .unwrap()
                .as_deref(),
            Some("42")
        );
        store.remove("orders/public.orders").unwrap();
        assert_eq!(store.load("orders/public.orders").unwrap(), None);
    }

    #[test]
    fn an_unwritable_dir_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"not a dir").unwrap();
        let store = PositionStore::new(blocker.join("state"));
        assert!(store.save("a/b", "1").is_err());
    }
}
