//! A directory-backed FIFO of byte blobs (already-encoded remote-write bodies), so that data
//! the ingest gateway acknowledged survives a storage outage and a process restart.
//!
//! # Layout on disk
//!
//! One file per entry, named `{seq:020}.rw` (zero-padded decimal, so a directory listing sorts
//! in sequence order). Each file is a 20-byte header followed by the blob:
//!
//! | bytes  | content                                   |
//! |--------|-------------------------------------------|
//! | 0..8   | magic `PMTSPL\0\x01` (format version 1)   |
//! | 8..16  | payload length, `u64` little endian       |
//! | 16..20 | CRC-32 (IEEE) of the payload, little end. |
//!
//! A push writes `{seq:020}.rw.tmp` and renames it to its final name, so a crash never leaves
//! a half-written entry under a valid name. A `.lock` file holds an exclusive advisory lock
//! for as long as the queue is open: two processes cannot share a directory.
//!
//! # Guarantees
//!
//! - **Durability.** With `sync = false` (the default, [`SpillQueue::open`]) an entry is in the
//!   OS page cache once [`SpillQueue::push`] returns: it survives a crash or kill of the process,
//!   not a power loss or kernel crash. With `sync = true` ([`SpillQueue::open_with`]) the file
//!   and the directory are fsynced before `push` returns, which also survives a power loss.
//! - **Order.** [`SpillQueue::front`] returns the entry with the lowest sequence number.
//!   Sequence numbers grow strictly, also across restarts (they continue after the highest
//!   found at open). Pushes racing each other from several threads get an arbitrary order.
//! - **At-least-once.** An entry leaves only through [`SpillQueue::remove`]; a crash between
//!   delivery and `remove` (or a `remove` whose unlink was not yet on disk at a power loss)
//!   makes it reappear after restart.
//! - **Corruption.** [`SpillQueue::open`] checks each file's header and length (cheap; it does
//!   not read the payloads); the payload checksum is verified when `front` reads it. A file
//!   that fails either check is renamed `*.corrupt`, logged with `tracing::warn!` and skipped;
//!   it never fails `open` or `front`. Leftover `*.tmp` files are deleted at open.
//! - **Size.** [`SpillQueue::bytes`] counts payload bytes (headers excluded), including pushes
//!   in progress; a push fails with [`SpillError::Full`] if it would exceed `max_bytes`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

/// Magic bytes at the start of each entry file (format version in the last byte).
const MAGIC: [u8; 8] = *b"PMTSPL\0\x01";
/// Header size: magic + length + checksum.
const HEADER_LEN: usize = 8 + 8 + 4;
/// Final entry suffix.
const ENTRY_EXT: &str = ".rw";
/// Temporary file suffix (appended to the final name).
const TMP_EXT: &str = ".tmp";
/// Suffix appended to entries moved aside as corrupt.
const CORRUPT_EXT: &str = ".corrupt";
/// Name of the lock file inside the directory.
const LOCK_FILE: &str = ".lock";

/// Errors from the spill queue.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    /// The blob does not fit in the configured byte budget.
    #[error("spill is full ({used} of {max} bytes)")]
    Full {
        /// Payload bytes in use (including pushes in progress).
        used: u64,
        /// The configured maximum.
        max: u64,
    },
    /// A filesystem operation failed.
    #[error("spill I/O error in {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl SpillError {
    fn io(path: &Path, source: io::Error) -> Self {
        SpillError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Mutable state behind the queue's mutex.
#[derive(Debug)]
struct State {
    /// Committed entries: sequence → payload length.
    entries: BTreeMap<u64, u64>,
    /// Payload bytes of committed entries plus reservations of pushes in progress.
    used: u64,
    /// The next sequence number to hand out.
    next_seq: u64,
}

/// A directory-backed FIFO of byte blobs; see the [module documentation](self) for the format
/// and guarantees. `Send + Sync`: share it behind an `Arc`.
#[derive(Debug)]
pub struct SpillQueue {
    dir: PathBuf,
    max_bytes: u64,
    sync: bool,
    state: Mutex<State>,
    /// Holds the exclusive advisory lock on `dir/.lock` while the queue is open.
    _lock: File,
}

/// What `open` makes of one directory entry name.
enum Name {
    /// `{seq}.rw`
    Entry(u64),
    /// `*.tmp`
    Tmp,
    /// `{seq}.rw.corrupt` (kept so sequence numbers are never reused).
    Corrupt(u64),
    /// Anything else: left alone.
    Other,
}

fn classify(name: &str) -> Name {
    if name.ends_with(TMP_EXT) {
        return Name::Tmp;
    }
    if let Some(seq) = name.strip_suffix(ENTRY_EXT).and_then(parse_seq) {
        return Name::Entry(seq);
    }
    if let Some(seq) = name
        .strip_suffix(CORRUPT_EXT)
        .and_then(|s| s.strip_suffix(ENTRY_EXT))
        .and_then(parse_seq)
    {
        return Name::Corrupt(seq);
    }
    Name::Other
}

fn parse_seq(stem: &str) -> Option<u64> {
    if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
        stem.parse().ok()
    } else {
        None
    }
}

fn entry_name(seq: u64) -> String {
    format!("{seq:020}{ENTRY_EXT}")
}

fn encode_header(blob: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..16].copy_from_slice(&(blob.len() as u64).to_le_bytes());
    h[16..20].copy_from_slice(&crc32(blob).to_le_bytes());
    h
}

/// Parses a header: `(payload length, checksum)`, or why it is not valid.
fn decode_header(h: &[u8]) -> Result<(u64, u32), &'static str> {
    if h.len() < HEADER_LEN {
        return Err("shorter than the header");
    }
    if h[..8] != MAGIC {
        return Err("bad magic");
    }
    let len = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(h[16..20].try_into().expect("4 bytes"));
    Ok((len, crc))
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), table-driven.
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Why reading an entry did not produce its payload.
enum ReadFailure {
    /// The file is gone.
    Missing,
    /// The file exists but its content is invalid.
    Corrupt(String),
    /// Any other I/O error (permission, EIO, ...): reported to the caller.
    Io(io::Error),
}

/// Reads and verifies one entry file.
fn read_entry(path: &Path) -> Result<Bytes, ReadFailure> {
    let mut buf = Vec::new();
    match File::open(path).and_then(|mut f| f.read_to_end(&mut buf)) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadFailure::Missing),
        Err(e) => return Err(ReadFailure::Io(e)),
    }
    let (len, crc) = decode_header(&buf).map_err(|why| ReadFailure::Corrupt(why.to_owned()))?;
    let actual = (buf.len() - HEADER_LEN) as u64;
    if actual != len {
        return Err(ReadFailure::Corrupt(format!(
            "length {actual}, header says {len}"
        )));
    }
    let mut payload = Bytes::from(buf);
    let payload = payload.split_off(HEADER_LEN);
    if crc32(&payload) != crc {
        return Err(ReadFailure::Corrupt("checksum mismatch".to_owned()));
    }
    Ok(payload)
}

/// Checks one entry's header against its file size without reading the payload; returns the
/// payload length.
fn check_entry(path: &Path) -> Result<u64, ReadFailure> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadFailure::Missing),
        Err(e) => return Err(ReadFailure::Io(e)),
    };
    let size = file.metadata().map_err(ReadFailure::Io)?.len();
    let mut h = [0u8; HEADER_LEN];
    if size < HEADER_LEN as u64 {
        return Err(ReadFailure::Corrupt(format!(
            "{size} bytes, shorter than the header"
        )));
    }
    file.read_exact(&mut h).map_err(ReadFailure::Io)?;
    let (len, _) = decode_header(&h).map_err(|why| ReadFailure::Corrupt(why.to_owned()))?;
    let actual = size - HEADER_LEN as u64;
    if actual != len {
        return Err(ReadFailure::Corrupt(format!(
            "length {actual}, header says {len}"
        )));
    }
    Ok(len)
}

/// Renames a bad entry to `*.corrupt` (best effort: if even that fails, deletes it, so a bad
/// file can never block the queue).
fn move_aside(path: &Path, why: &str) {
    let mut aside = path.as_os_str().to_owned();
    aside.push(CORRUPT_EXT);
    let aside = PathBuf::from(aside);
    match fs::rename(path, &aside) {
        Ok(()) => tracing::warn!(
            path = %path.display(), moved_to = %aside.display(), reason = why,
            "spill: skipping corrupt entry"
        ),
        Err(e) => {
            tracing::warn!(
                path = %path.display(), reason = why, error = %e,
                "spill: skipping corrupt entry; could not move it aside, deleting it"
            );
            let _ = fs::remove_file(path);
        }
    }
}

/// Fsyncs a directory so renames and creations in it are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

impl SpillQueue {
    /// Opens (creating the directory) with `sync = false`: entries survive a process crash,
    /// not a power loss. See [`open_with`](Self::open_with).
    pub fn open(dir: &Path, max_bytes: u64) -> Result<SpillQueue, SpillError> {
        Self::open_with(dir, max_bytes, false)
    }

    /// Opens (creating the directory) and loads what a previous process left, in order.
    /// Leftover temp files are removed; a corrupt or partial entry is skipped with a warning
    /// and renamed `*.corrupt`. With `sync`, each push fsyncs its file and the directory.
    ///
    /// Entries already on disk count towards `max_bytes` even if they exceed it (nothing is
    /// dropped; pushes fail with [`SpillError::Full`] until enough are removed). Fails with
    /// [`SpillError::Io`] if the directory cannot be created or read, or if another process
    /// holds it open (`WouldBlock`).
    pub fn open_with(dir: &Path, max_bytes: u64, sync: bool) -> Result<SpillQueue, SpillError> {
        fs::create_dir_all(dir).map_err(|e| SpillError::io(dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| SpillError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(SpillError::io(
                    &lock_path,
                    io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "spill directory is in use by another process",
                    ),
                ));
            }
            Err(fs::TryLockError::Error(e)) => return Err(SpillError::io(&lock_path, e)),
        }

        let mut found = Vec::new();
        let mut max_seen: Option<u64> = None;
        for dent in fs::read_dir(dir).map_err(|e| SpillError::io(dir, e))? {
            let dent = dent.map_err(|e| SpillError::io(dir, e))?;
            let name = dent.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = dent.path();
            match classify(name) {
                Name::Tmp => {
                    tracing::warn!(path = %path.display(), "spill: removing leftover temp file");
                    if let Err(e) = fs::remove_file(&path)
                        && e.kind() != io::ErrorKind::NotFound
                    {
                        return Err(SpillError::io(&path, e));
                    }
                }
                Name::Entry(seq) => {
                    max_seen = max_seen.max(Some(seq));
                    found.push(seq);
                }
                Name::Corrupt(seq) => max_seen = max_seen.max(Some(seq)),
                Name::Other => {}
            }
        }

        let mut entries = BTreeMap::new();
        let mut used = 0u64;
        for seq in found {
            let path = dir.join(entry_name(seq));
            match check_entry(&path) {
                Ok(len) => {
                    entries.insert(seq, len);
                    used = used.saturating_add(len);
                }
                Err(ReadFailure::Missing) => {}
                Err(ReadFailure::Corrupt(why)) => move_aside(&path, &why),
                Err(ReadFailure::Io(e)) => return Err(SpillError::io(&path, e)),
            }
        }
        let next_seq = max_seen.map_or(1, |s| s.saturating_add(1));
        if !entries.is_empty() {
            tracing::info!(
                dir = %dir.display(), entries = entries.len(), bytes = used,
                "spill: loaded entries left by a previous run"
            );
        }

        Ok(SpillQueue {
            dir: dir.to_path_buf(),
            max_bytes,
            sync,
            state: Mutex::new(State {
                entries,
                used,
                next_seq,
            }),
            _lock: lock,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is updated in single steps that cannot panic half-way; a poisoned lock
        // still holds consistent data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(entry_name(seq))
    }

    /// Persists one blob and returns its sequence number. Writes a temp file and renames it
    /// (fsyncing both with `sync`). Fails with [`SpillError::Full`] if the queue's bytes plus
    /// `blob.len()` would exceed `max_bytes`; on any error nothing is left behind.
    pub fn push(&self, blob: &[u8]) -> Result<u64, SpillError> {
        let len = blob.len() as u64;
        let seq = {
            let mut st = self.state();
            match st.used.checked_add(len) {
                Some(total) if total <= self.max_bytes => st.used = total,
                _ => {
                    return Err(SpillError::Full {
                        used: st.used,
                        max: self.max_bytes,
                    });
                }
            }
            let seq = st.next_seq;
            st.next_seq += 1;
            seq
        };
        // The file is written outside the lock so readers and other pushers are not held up
        // by disk I/O; the bytes are reserved above.
        match self.write_entry(seq, blob) {
            Ok(()) => {
                let mut st = self.state();
                st.entries.insert(seq, len);
                Ok(seq)
            }
            Err(e) => {
                let mut st = self.state();
                st.used = st.used.saturating_sub(len);
                Err(e)
            }
        }
    }

    fn write_entry(&self, seq: u64, blob: &[u8]) -> Result<(), SpillError> {
        let path = self.path(seq);
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(TMP_EXT);
        let tmp = PathBuf::from(tmp);
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(|e| SpillError::io(&tmp, e))?;
            file.write_all(&encode_header(blob))
                .and_then(|()| file.write_all(blob))
                .map_err(|e| SpillError::io(&tmp, e))?;
            if self.sync {
                file.sync_all().map_err(|e| SpillError::io(&tmp, e))?;
            }
            drop(file);
            fs::rename(&tmp, &path).map_err(|e| SpillError::io(&path, e))?;
            if self.sync {
                sync_dir(&self.dir).map_err(|e| SpillError::io(&self.dir, e))?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// The oldest entry `(sequence, bytes)` without removing it, or `None` if empty. An entry
    /// whose file turns out corrupt (checksum, length) or missing is dropped from the queue
    /// (corrupt files are renamed `*.corrupt` with a warning) and the next one is returned.
    /// Other read errors are returned and leave the entry in place.
    pub fn front(&self) -> Result<Option<(u64, Bytes)>, SpillError> {
        loop {
            let Some((seq, _)) = self
                .state()
                .entries
                .first_key_value()
                .map(|(s, l)| (*s, *l))
            else {
                return Ok(None);
            };
            // Read outside the lock; a concurrent `remove` may delete the file meanwhile.
            let path = self.path(seq);
            match read_entry(&path) {
                Ok(payload) => return Ok(Some((seq, payload))),
                Err(ReadFailure::Io(e)) => return Err(SpillError::io(&path, e)),
                Err(failure) => {
                    let mut st = self.state();
                    let Some(&len) = st.entries.get(&seq) else {
                        // Removed concurrently: not an error, look at the next one.
                        continue;
                    };
                    match failure {
                        ReadFailure::Corrupt(why) => move_aside(&path, &why),
                        _ => tracing::warn!(
                            path = %path.display(),
                            "spill: entry file disappeared; dropping it from the queue"
                        ),
                    }
                    st.entries.remove(&seq);
                    st.used = st.used.saturating_sub(len);
                }
            }
        }
    }

    /// The sequence number of the oldest entry, if any: every entry pushed with a lower one
    /// has left the queue.
    pub fn oldest(&self) -> Option<u64> {
        self.state().entries.first_key_value().map(|(s, _)| *s)
    }

    /// The sequence numbers of the entries queued now, oldest first.
    pub fn sequences(&self) -> Vec<u64> {
        self.state().entries.keys().copied().collect()
    }

    /// One entry's payload, if it is still queued and readable (a corrupt one is left for
    /// [`SpillQueue::front`] to move aside).
    pub fn read(&self, seq: u64) -> Option<Bytes> {
        if !self.state().entries.contains_key(&seq) {
            return None;
        }
        read_entry(&self.path(seq)).ok()
    }

    /// Removes an entry once delivered; a no-op if it is absent. On an I/O error the entry
    /// stays queued.
    pub fn remove(&self, seq: u64) -> Result<(), SpillError> {
        let mut st = self.state();
        let Some(&len) = st.entries.get(&seq) else {
            return Ok(());
        };
        let path = self.path(seq);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SpillError::io(&path, e)),
        }
        st.entries.remove(&seq);
        st.used = st.used.saturating_sub(len);
        Ok(())
    }

    /// Number of entries queued (pushes in progress excluded).
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    /// Whether no entry is queued.
    pub fn is_empty(&self) -> bool {
        self.state().entries.is_empty()
    }

    /// Payload bytes in use (headers excluded; pushes in progress included).
    pub fn bytes(&self) -> u64 {
        self.state().used
    }

    /// The byte budget this queue was opened with.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The directory backing this queue.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests;
