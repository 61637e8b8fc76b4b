//! One torpor per data directory. Two torpors on one directory would each take the other's
//! server for a leftover of a crash and stop it, and both would write the same files.
//!
//! The lock is an flock on a file beside the directory (`<data_dir>.lock`): initdb and
//! install-db want the directory itself empty, and a file beside it outlives a wiped one. The
//! kernel drops an flock when its holder exits, however it exits, so a crashed torpor never
//! leaves a stale lock; the file stays and only says which pid held it last. The lock is
//! opened close-on-exec, so the servers torpor starts do not inherit it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::child::io_err;
use crate::driver::DriverError;

/// How long a lock that is taken is tried again before it counts as another torpor's.
const RELEASE_GRACE: Duration = Duration::from_secs(1);

/// Held for as long as this value lives.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

/// Who holds a data directory's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub lock: PathBuf,
    /// The pid the holder wrote into the lock file; None if it has not written it yet.
    pub pid: Option<u32>,
}

/// `<data_dir>.lock`.
pub fn lock_path(data_dir: &Path) -> Result<PathBuf, DriverError> {
    let (Some(parent), Some(name)) = (data_dir.parent(), data_dir.file_name()) else {
        return Err(DriverError::Failed(format!(
            "data_dir {} must name a directory below another one",
            data_dir.display()
        )));
    };
    let mut file = name.to_os_string();
    file.push(".lock");
    Ok(parent.join(file))
}

impl DataDirLock {
    /// Takes the lock on `data_dir`, or fails naming the directory and the pid holding it.
    /// Creates the directory's parents (not the directory) to have somewhere to put the file.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, DriverError> {
        let path = lock_path(data_dir)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| io_err(format!("creating {}", parent.display()), e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err(format!("opening the lock file {}", path.display()), e))?;
        // A lock just released can still be held for a moment by a child this process is
        // forking (any thread's): the child shares every open file until its exec closes the
        // close-on-exec ones. Only a holder that stays is another torpor.
        let deadline = Instant::now() + RELEASE_GRACE;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(in_use(data_dir, path.clone(), read_pid(&mut file)));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(io_err(format!("locking {}", path.display()), e));
                }
            }
        }
        // Ours now: say who we are, for the error the next one gets.
        let pid = std::process::id();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{pid}"))
            .map_err(|e| io_err(format!("writing {}", path.display()), e))?;
        tracing::debug!(lock = %path.display(), pid, "data directory locked");
        Ok(DataDirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who holds the lock on `data_dir` now, if anyone, without creating or changing a file.
    pub fn holder(data_dir: &Path) -> Result<Option<Holder>, DriverError> {
        let path = lock_path(data_dir)?;
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(io_err(
                    format!("opening the lock file {}", path.display()),
                    e,
                ));
            }
        };
        // A shared lock is granted unless someone holds the exclusive one; it ends when `file`
        // closes below.
        match file.try_lock_shared() {
            Ok(()) => Ok(None),
            Err(TryLockError::WouldBlock) => Ok(Some(Holder {
                pid: read_pid(&mut file),
                lock: path,
            })),
            Err(TryLockError::Error(e)) => Err(io_err(format!("locking {}", path.display()), e)),
        }
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(64).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn in_use(data_dir: &Path, lock: PathBuf, pid: Option<u32>) -> DriverError {
    DriverError::InUse {
        data_dir: data_dir.to_path_buf(),
        lock,
        pid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_next_learns_its_pid() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("a").join("data");
        assert_eq!(DataDirLock::holder(&data).unwrap(), None);

        let first = DataDirLock::acquire(&data).unwrap();
        assert_eq!(first.path(), root.path().join("a").join("data.lock"));
        assert!(!data.exists(), "the data dir itself is left to initdb");

        // Another open file description conflicts even within this process.
        let err = DataDirLock::acquire(&data).unwrap_err();
        let me = std::process::id();
        match &err {
            DriverError::InUse {
                data_dir,
                lock,
                pid,
            } => {
                assert_eq!(data_dir, &data);
                assert_eq!(lock, first.path());
                assert_eq!(*pid, Some(me));
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&data.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("pid {me}")), "{msg}");
        assert!(msg.contains("data.lock"), "{msg}");

        let seen = DataDirLock::holder(&data).unwrap().unwrap();
        assert_eq!(seen.pid, Some(me));
        // Looking did not take it away.
        assert!(DataDirLock::acquire(&data).is_err());

        drop(first);
        assert_eq!(DataDirLock::holder(&data).unwrap(), None);
        let _again = DataDirLock::acquire(&data).unwrap();
    }

    #[test]
    fn a_root_data_dir_has_no_place_for_a_lock() {
        assert!(lock_path(Path::new("/")).is_err());
        assert_eq!(
            lock_path(Path::new("/x/pgdata")).unwrap(),
            PathBuf::from("/x/pgdata.lock")
        );
    }
}
