//! One process per data directory: an advisory lock on `<data-dir>/LOCK`, holding the pid of
//! its owner so that a second opener is told who has it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;

use crate::error::{Error, Result};

/// Further attempts to take a held lock, [`RETRY_PAUSE`] apart, before the dir is in use.
const RETRIES: usize = 20;
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(25);

/// The held lock; released when dropped (and by the kernel when the process dies).
#[derive(Debug)]
pub(super) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Locks `dir`, or says which process holds it.
    pub(super) fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join("LOCK");
        let io = |op: &str| {
            let op = format!("{op} {}", path.display());
            move |source| Error::Io { op, source }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("opening"))?;
        // A lock released a moment ago can still be held for a moment: a process that forks
        // (to run a child) shares the lock through the forked copy of the file until the
        // child execs. A few short retries tell that apart from an owner that stays.
        let mut locked = file.try_lock();
        for _ in 0..RETRIES {
            if !matches!(locked, Err(TryLockError::WouldBlock)) {
                break;
            }
            std::thread::sleep(RETRY_PAUSE);
            locked = file.try_lock();
        }
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // A holder that has not written its pid yet is still a holder.
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "another process".to_owned(),
                };
                return Err(Error::DataDirInUse {
                    dir: dir.display().to_string(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io("locking")(e)),
        }
        file.set_len(0).map_err(io("writing"))?;
        file.seek(SeekFrom::Start(0)).map_err(io("writing"))?;
        write!(file, "{}", std::process::id()).map_err(io("writing"))?;
        Ok(Self { _file: file })
    }
}
