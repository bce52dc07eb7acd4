//! One writer per output folder: the advisory lock a stage holds while it writes.
//!
//! A stage that writes a folder first takes an exclusive lock on a lock file in it
//! ([`Layout::lock_in`](crate::layout::Layout::lock_in), or one per member for train:
//! [`Layout::member_lock`](crate::layout::Layout::member_lock)) and holds it until it ends. A
//! second writer of the same folder stops at once with [`Error::Locked`], naming the folder and
//! the holder (pid, host, program), which the holder writes into the lock file. Readers (status,
//! downstream stages, `ferbayes predict`) never take it.
//!
//! The lock is the operating system's (`flock` on Unix, through std's [`File::try_lock`]): it
//! belongs to the open file, so it is released when the holder ends in any way, a `SIGKILL`
//! included, and a lock file left by a killed process blocks nothing. Lock files are never
//! deleted (deleting one while another process opens it would let two writers in).
//!
//! One subtlety of `flock` in a multi-threaded process: a child that another thread forks copies
//! every open file (close-on-exec closes them only at its `exec`), so for that moment a lock this
//! process has just released is still held through the child's copy. A process taking a lock
//! again that its own file names, and that it no longer holds, therefore waits for it (up to
//! [`OWN_RELEASE_WAIT`]); any other holder is refused at once.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How long a process waits for a lock file that names itself as the holder but that it no
/// longer holds (released a moment ago, still pinned by a forked child's copy of the file).
pub const OWN_RELEASE_WAIT: Duration = Duration::from_secs(10);

/// The lock files this process holds now (their paths as given to [`acquire`]).
static HELD: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn held_here(lock: &Path) -> bool {
    HELD.lock().is_ok_and(|set| set.contains(lock))
}

fn set_held(lock: &Path, held: bool) {
    if let Ok(mut set) = HELD.lock() {
        if held {
            set.insert(lock.to_owned());
        } else {
            set.remove(lock);
        }
    }
}

/// An exclusive lock on one output folder (or one train member), released when dropped.
#[derive(Debug)]
pub struct StageLock {
    /// Held open for the lock's lifetime: closing it releases the lock.
    _file: Option<File>,
    path: PathBuf,
}

impl Drop for StageLock {
    fn drop(&mut self) {
        if self._file.take().is_some() {
            set_held(&self.path, false);
        }
    }
}

impl StageLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the lock is really held (false on a file system without locks, where the
    /// stage runs with a warning).
    pub fn held(&self) -> bool {
        self._file.is_some()
    }
}

/// Who holds a lock: what the holder writes into its lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub program: String,
    /// Seconds since the Unix epoch when the lock was taken.
    pub since: u64,
}

impl Holder {
    /// This process, now.
    pub fn this_process() -> Self {
        Holder {
            pid: std::process::id(),
            host: hostname(),
            program: std::env::args_os()
                .next()
                .map(PathBuf::from)
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "ferbayes".into()),
            since: unix_now(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ago = unix_now().saturating_sub(self.since);
        write!(
            f,
            "{} pid {} on {}, for {ago} s",
            self.program, self.pid, self.host
        )
    }
}

/// Takes the exclusive lock `lock` (creating it and its folder) for writing `what` (a folder,
/// or a member of one, as the error names it). Fails at once with [`Error::Locked`] while
/// another process (or this one, through another [`StageLock`]) holds it.
pub fn acquire(lock: &Path, what: &str) -> Result<StageLock> {
    if let Some(dir) = lock.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock)
        .map_err(|e| Error::io(lock, e))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => {
                set_held(lock, true);
                break;
            }
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.seek(SeekFrom::Start(0));
                let _ = file.read_to_string(&mut text);
                let named = serde_json::from_str::<Holder>(&text).ok();
                // Our own lock, released but still pinned by a child forked by another thread
                // of this process before its exec: it clears in a moment.
                let ours_released = named
                    .as_ref()
                    .is_some_and(|h| h.pid == std::process::id() && h.host == hostname())
                    && !held_here(lock);
                if ours_released && started.elapsed() < OWN_RELEASE_WAIT {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                let holder = match named {
                    Some(h) => h.to_string(),
                    // Taken a moment ago, its holder not written yet.
                    None => "a process that is just starting".to_owned(),
                };
                return Err(Error::Locked {
                    what: what.to_owned(),
                    lock: lock.to_owned(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => {
                // A file system without locks (some network mounts): one writer cannot be
                // enforced here, which is no reason to refuse to work.
                tracing::warn!(
                    "{}: cannot lock ({e}); running without the one-writer check for {what}",
                    lock.display()
                );
                return Ok(StageLock {
                    _file: None,
                    path: lock.to_owned(),
                });
            }
        }
    }
    let json = serde_json::to_vec(&Holder::this_process()).unwrap_or_default();
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(&json))
        .and_then(|()| file.flush())
        .map_err(|e| {
            set_held(lock, false);
            Error::io(lock, e)
        })?;
    Ok(StageLock {
        _file: Some(file),
        path: lock.to_owned(),
    })
}

/// The machine's host name (Linux: the kernel's; else `HOSTNAME`), for lock holders.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".to_owned())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_naming_the_folder_and_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock = dir.path().join("out/.lock");
        let first = acquire(&lock, "out").expect("first writer");
        assert!(first.held());
        let written: Holder =
            serde_json::from_slice(&std::fs::read(&lock).expect("read")).expect("holder json");
        assert_eq!(written.pid, std::process::id());
        // A second open file of the same lock conflicts, even in this process.
        let err = acquire(&lock, "out")
            .expect_err("second writer")
            .to_string();
        let pid = format!("pid {}", std::process::id());
        assert!(
            err.contains("out is being written") && err.contains(&pid),
            "{err}"
        );
        assert!(err.contains(&lock.display().to_string()), "{err}");
        drop(first);
        // Released: the next writer gets it, and the file (kept) names the new holder.
        let again = acquire(&lock, "out").expect("free again");
        assert!(again.held() && lock.is_file());
    }

    #[test]
    fn a_lock_released_here_but_pinned_by_a_forked_copy_is_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock = dir.path().join(".lock");
        let mut first = acquire(&lock, "folder").expect("first");
        // What a child forked by another thread holds until its exec: a second descriptor of
        // the same open file, which keeps the flock after this process closes its own.
        let forked_copy = first
            ._file
            .as_ref()
            .expect("held")
            .try_clone()
            .expect("dup");
        drop(first._file.take());
        set_held(&lock, false);
        let copy_closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(forked_copy);
        });
        let started = Instant::now();
        let again = acquire(&lock, "folder").expect("taken once the copy is closed");
        let waited = started.elapsed();
        copy_closer.join().expect("join");
        assert!(again.held());
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
        // Still held by this process through `again`: a second taker is refused at once.
        let started = Instant::now();
        let err = acquire(&lock, "folder").expect_err("held here");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(err.to_string().contains("being written"), "{err}");
    }

    #[test]
    fn a_stale_lock_file_blocks_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock = dir.path().join(".lock");
        let stale = Holder {
            pid: 999_999,
            host: "elsewhere".into(),
            program: "ferbayes-train".into(),
            since: 1,
        };
        std::fs::write(&lock, serde_json::to_vec(&stale).expect("json")).expect("write");
        let got = acquire(&lock, "folder").expect("a lock file alone is no lock");
        assert!(got.held());
        let now: Holder =
            serde_json::from_slice(&std::fs::read(&lock).expect("read")).expect("holder json");
        assert_eq!(now.pid, std::process::id());
    }
}
