//! What the fuzz targets share: each one runs its input through [`timed`], which keeps the
//! slowest input of the run, so scripts/fuzz.sh can report it and time it again on its own.
//! Time is the thread's CPU time, so an input is not charged for the other processes of a busy
//! machine.

use std::sync::atomic::{AtomicU64, Ordering};

static SLOWEST_NS: AtomicU64 = AtomicU64::new(0);

/// Runs `target` on `data`. When this is the slowest input of the run so far and
/// `TORPOR_FUZZ_SLOWEST` names a file, the input goes to that file and its time, in
/// microseconds, to the same name with `.us` added.
pub fn timed(data: &[u8], target: impl FnOnce(&[u8])) {
    let start = cpu_ns();
    target(data);
    let took = cpu_ns().saturating_sub(start);
    if took <= SLOWEST_NS.fetch_max(took, Ordering::Relaxed) {
        return;
    }
    if let Some(path) = std::env::var_os("TORPOR_FUZZ_SLOWEST") {
        let mut us = path.clone();
        us.push(".us");
        let _ = std::fs::write(&path, data);
        let _ = std::fs::write(us, format!("{}\n", took / 1000));
    }
}

fn cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}
