//! Streamed transactions kept until they end: with protocol version 2 the server sends a large
//! transaction's changes while it runs, and never again in the same session, so they wait on
//! disk (not in memory) until its Stream Commit, and are dropped at its Stream Abort.
//!
//! One file per open transaction under the state dir, holding each message as it came
//! (`length`, `xid`, payload); removed when the transaction ends, and the whole folder at the
//! start of every session (a crash leaves the server to send the transaction again).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A transaction that streamed more than this fails the listener (the disk is not endless).
pub const SPOOL_LIMIT: u64 = 8 << 30;

/// One open streamed transaction.
pub struct Spool {
    path: PathBuf,
    file: BufWriter<File>,
    /// Bytes written so far.
    pub bytes: u64,
    /// Changes of watched tables so far, without those of aborted subtransactions.
    pub changes: u64,
    /// Changes of aborted subtransactions (rolled-back savepoints): kept on disk, left out.
    pub discarded: u64,
    /// The watched tables those changes are of, in order of first change.
    pub tables: Vec<Arc<str>>,
    /// Changes so far by (sub)transaction, for what an abort drops.
    changes_by_xid: HashMap<u32, u64>,
    /// Subtransactions rolled back: their messages are left out at the commit.
    aborted: HashSet<u32>,
}

impl Spool {
    pub fn create(dir: &Path, xid: u32) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let path = dir.join(format!("{xid}.spool"));
        Ok(Spool {
            file: BufWriter::new(File::create(&path)?),
            path,
            bytes: 0,
            changes: 0,
            discarded: 0,
            tables: Vec::new(),
            changes_by_xid: HashMap::new(),
            aborted: HashSet::new(),
        })
    }

    /// Keeps one message of (sub)transaction `xid`, holding `changes` changes of watched tables.
    pub fn push(&mut self, xid: u32, payload: &[u8], changes: u64) -> io::Result<()> {
        let length =
            u32::try_from(payload.len()).map_err(|_| io::Error::other("a message over 4 GiB"))?;
        self.file.write_all(&length.to_be_bytes())?;
        self.file.write_all(&xid.to_be_bytes())?;
        self.file.write_all(payload)?;
        self.bytes += 8 + u64::from(length);
        if changes > 0 {
            self.changes += changes;
            *self.changes_by_xid.entry(xid).or_default() += changes;
        }
        Ok(())
    }

    /// A subtransaction rolled back (the server may say so more than once: it counts once).
    pub fn abort_subtransaction(&mut self, subxid: u32) {
        if self.aborted.insert(subxid) {
            let dropped = self.changes_by_xid.remove(&subxid).unwrap_or(0);
            self.changes -= dropped;
            self.discarded += dropped;
        }
    }

    /// The messages kept, in order, without those of aborted subtransactions.
    pub fn replay(mut self) -> io::Result<Replay> {
        self.file.flush()?;
        let reader = BufReader::new(File::open(&self.path)?);
        Ok(Replay {
            reader,
            spool: self,
        })
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Reads a committed transaction's messages back; the file goes when this does.
pub struct Replay {
    reader: BufReader<File>,
    spool: Spool,
}

impl Replay {
    /// The next message kept (a payload as the server sent it); `None` at the end.
    pub fn next_message(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            let mut header = [0u8; 8];
            match self.reader.read_exact(&mut header) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(error) => return Err(error),
            }
            let [l0, l1, l2, l3, x0, x1, x2, x3] = header;
            let length = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
            let xid = u32::from_be_bytes([x0, x1, x2, x3]);
            let mut payload = vec![0; length];
            self.reader.read_exact(&mut payload)?;
            if !self.spool.aborted.contains(&xid) {
                return Ok(Some(payload));
            }
        }
    }
}

/// Empties the folder of a listener's spools (left by a run that crashed).
pub fn clear(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_replays_in_order_without_aborted_subtransactions() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::create(dir.path(), 901).unwrap();
        spool.push(901, b"first", 1).unwrap();
        spool.push(905, b"in a savepoint rolled back", 2).unwrap();
        spool.push(906, b"in a savepoint kept", 1).unwrap();
        spool.push(901, b"last", 1).unwrap();
        assert_eq!((spool.changes, spool.discarded), (5, 0));
        spool.abort_subtransaction(905);
        spool.abort_subtransaction(905);
        assert_eq!((spool.changes, spool.discarded), (3, 2), "counted once");
        let path = dir.path().join("901.spool");
        assert!(path.exists());
        let mut replay = spool.replay().unwrap();
        let mut messages = Vec::new();
        while let Some(message) = replay.next_message().unwrap() {
            messages.push(message);
        }
        assert_eq!(
            messages,
            [&b"first"[..], b"in a savepoint kept", b"last"].map(<[u8]>::to_vec)
        );
        drop(replay);
        assert!(!path.exists(), "removed after the commit");
        let aborted = Spool::create(dir.path(), 902).unwrap();
        drop(aborted);
        assert!(
            !dir.path().join("902.spool").exists(),
            "removed after an abort"
        );
        clear(dir.path()).unwrap();
        clear(dir.path()).unwrap();
    }
}
