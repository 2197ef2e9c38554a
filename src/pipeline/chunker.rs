//! Cuts the stream of changes into batches: at most `chunk_size` changes, closed `timeout`
//! after the first change of the batch arrived, whichever comes first.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::pipeline::Captured;

pub struct Chunker {
    receiver: mpsc::Receiver<Captured>,
    chunk_size: usize,
    timeout: Duration,
}

/// One closed batch of changes, in the order they arrived.
pub struct Chunk {
    pub changes: Vec<Captured>,
    /// From the arrival of the first change to the close of the batch.
    pub waited: Duration,
}

impl Chunker {
    pub fn new(receiver: mpsc::Receiver<Captured>, chunk_size: usize, timeout: Duration) -> Self {
        Chunker {
            receiver,
            chunk_size: chunk_size.max(1),
            timeout,
        }
    }

    /// The next batch; `None` once every sender is gone and nothing is left.
    pub async fn next_chunk(&mut self) -> Option<Chunk> {
        let mut changes = Vec::with_capacity(self.chunk_size);
        if self.receiver.recv_many(&mut changes, self.chunk_size).await == 0 {
            return None;
        }
        let opened = Instant::now();
        let deadline = opened + self.timeout;
        while changes.len() < self.chunk_size {
            let room = self.chunk_size - changes.len();
            match tokio::time::timeout_at(deadline, self.receiver.recv_many(&mut changes, room))
                .await
            {
                Ok(0) | Err(_) => break, // closed, or the batch's time is up
                Ok(_) => {}
            }
        }
        Some(Chunk {
            changes,
            waited: opened.elapsed(),
        })
    }
}
