//! The process driver's freezer: each server runs in a cgroup v2 of its own, under torpor's
//! cgroup, which `cgroup.freeze` freezes and thaws as a whole. The server is spawned inside
//! it, since moving a pid later would not move the children it already forked; postgres's
//! children call setsid, so signals to a process group would miss them too.
//!
//! The cgroup's name comes from the data directory, so that the next torpor finds the cgroup of
//! a server an earlier one left behind, frozen perhaps, and thaws it before it stops it.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

/// How long a freeze or thaw may take to complete (it takes well under 10 ms here).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
const SETTLE_POLL: Duration = Duration::from_millis(1);

#[derive(Debug)]
pub(crate) struct Cgroup {
    dir: PathBuf,
    /// `cgroup.procs`, ready for the forked child, which must not allocate.
    procs: CString,
}

impl Cgroup {
    /// The cgroup of the server on `data_dir`, found but not created.
    pub(crate) fn for_data_dir(data_dir: &Path) -> Result<Cgroup, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
        let mount = v2_mount(&mountinfo).ok_or("no cgroup v2 hierarchy is mounted")?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
        let own = v2_path(&own).ok_or("torpor is in no cgroup v2")?;
        let digest = Sha1::digest(data_dir.as_os_str().as_bytes());
        let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let dir = mount
            .join(own.trim_start_matches('/'))
            .join(format!("torpor-{name}"));
        let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes())
            .map_err(|_| format!("{} has a NUL byte", dir.display()))?;
        Ok(Cgroup { dir, procs })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// What a child writes its pid into to join, before it execs the server.
    pub(crate) fn procs(&self) -> &std::ffi::CStr {
        &self.procs
    }

    /// Makes the cgroup if it is missing; an error says why freezing is not possible here.
    pub(crate) fn create(&self) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("can't make cgroup {}: {e}", self.dir.display()))?;
        let freeze = self.dir.join("cgroup.freeze");
        if !freeze.exists() {
            return Err(format!(
                "{} is missing: the kernel's cgroup v2 has no freezer (Linux 5.2 or later has)",
                freeze.display()
            ));
        }
        for file in ["cgroup.freeze", "cgroup.procs"] {
            let path = self.dir.join(file);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| format!("can't write {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Whether `pid` runs in this cgroup.
    pub(crate) fn contains(&self, pid: u32) -> bool {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|procs| procs.lines().any(|l| l.trim() == pid.to_string()))
            .unwrap_or(false)
    }

    /// Whether the cgroup is frozen now (`frozen 1` in cgroup.events); false if it's gone.
    pub(crate) fn is_frozen(&self) -> bool {
        std::fs::read_to_string(self.dir.join("cgroup.events"))
            .map(|events| events.lines().any(|l| l.trim() == "frozen 1"))
            .unwrap_or(false)
    }

    /// Freezes every process in the cgroup; returns once the kernel says they all are. A
    /// freeze that doesn't complete is undone.
    pub(crate) async fn freeze(&self) -> io::Result<()> {
        self.write_freeze(true)?;
        if let Err(e) = self.settle(true).await {
            let _ = self.write_freeze(false);
            return Err(e);
        }
        Ok(())
    }

    /// Thaws the cgroup, if it exists; returns once the kernel says it is thawed.
    pub(crate) async fn thaw(&self) -> io::Result<()> {
        if !self.dir.exists() {
            return Ok(());
        }
        self.write_freeze(false)?;
        self.settle(false).await
    }

    /// Removes the cgroup once no process is left in it; a cgroup still in use stays.
    pub(crate) fn remove(&self) {
        let _ = std::fs::remove_dir(&self.dir);
    }

    fn write_freeze(&self, frozen: bool) -> io::Result<()> {
        let value = if frozen { "1" } else { "0" };
        std::fs::write(self.dir.join("cgroup.freeze"), value).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "writing {value} to {}/cgroup.freeze: {e}",
                    self.dir.display()
                ),
            )
        })
    }

    async fn settle(&self, frozen: bool) -> io::Result<()> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while self.is_frozen() != frozen {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "cgroup {} did not {} within {}s",
                        self.dir.display(),
                        if frozen { "freeze" } else { "thaw" },
                        SETTLE_TIMEOUT.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
        Ok(())
    }
}

/// Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on most machines today,
/// /sys/fs/cgroup/unified on hybrid ones.
fn v2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        (fstype == "cgroup2").then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// This process's cgroup v2 path, from the `0::` line of /proc/self/cgroup.
fn v2_path(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_mount_and_path_are_found_on_hybrid_and_unified_machines() {
        let hybrid = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            v2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(v2_mount(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(v2_mount("1 0 0:1 / / rw - ext4 /dev/vda rw\n"), None);
        assert_eq!(
            v2_path("4:memory:/x\n0::/user.slice/torpor.service\n"),
            Some("/user.slice/torpor.service".into())
        );
        assert_eq!(v2_path("4:memory:/x\n"), None);
    }

    #[test]
    fn a_data_dir_names_one_cgroup() {
        let (Ok(a), Ok(b), Ok(c)) = (
            Cgroup::for_data_dir(Path::new("/d/one")),
            Cgroup::for_data_dir(Path::new("/d/one")),
            Cgroup::for_data_dir(Path::new("/d/two")),
        ) else {
            // No cgroup v2 on this machine: nothing to name.
            return;
        };
        assert_eq!(a.dir(), b.dir());
        assert_ne!(a.dir(), c.dir());
        assert!(a.procs().to_bytes().ends_with(b"/cgroup.procs"));
    }
}
