//! Database-agnostic helpers for running a server as a child process: who it runs as, how it is
//! spawned (own process group, parent-death signal), whether a pid is alive, and how it is
//! stopped with escalating signals. A MariaDB driver reuses all of this; nothing here knows
//! PostgreSQL.

use std::ffi::CStr;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, User, geteuid, getppid, setgid, setgroups, setuid};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::driver::DriverError;

pub(crate) fn io_err(what: impl Into<String>, source: io::Error) -> DriverError {
    DriverError::Io {
        what: what.into(),
        source,
    }
}

/// The OS account a server runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// `name`, or when absent: `root_default` if we are root (database servers refuse to run as
    /// root), else the current user.
    pub fn resolve(name: Option<&str>, root_default: &str) -> Result<RunAs, DriverError> {
        let euid = geteuid().as_raw();
        let user = match name {
            Some(n) => Self::by_name(n)?,
            None if euid == 0 => Self::by_name(root_default)?,
            None => Self::by_uid(euid)?,
        };
        if euid != 0 && user.uid != euid {
            return Err(DriverError::Failed(format!(
                "cannot run as user {:?}: switching users needs root, and torpor runs as uid {euid}",
                user.name
            )));
        }
        Ok(user)
    }

    pub fn by_name(name: &str) -> Result<RunAs, DriverError> {
        // nix reports a name with a NUL as no such user; say what is wrong with it instead.
        if name.contains('\0') {
            return Err(DriverError::Failed(format!("invalid user name {name:?}")));
        }
        User::from_name(name)
            .map_err(|e| io_err("looking up OS user", e.into()))?
            .map(RunAs::from)
            .ok_or_else(|| DriverError::Failed(format!("no such OS user {name:?}")))
    }

    pub fn by_uid(uid: u32) -> Result<RunAs, DriverError> {
        User::from_uid(Uid::from_raw(uid))
            .map_err(|e| io_err("looking up OS user", e.into()))?
            .map(RunAs::from)
            .ok_or_else(|| DriverError::Failed(format!("no passwd entry for uid {uid}")))
    }

    /// Whether this user is the one torpor already runs as (then no uid switch is needed).
    fn is_current(&self) -> bool {
        self.uid == geteuid().as_raw()
    }
}

impl From<User> for RunAs {
    fn from(u: User) -> Self {
        RunAs {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }
    }
}

/// A command that runs `program` as `user`, in its own process group (a Ctrl-C on torpor's
/// terminal must not reach the server: torpor stops it in order), with a clean environment,
/// stdin closed, and a parent-death signal so that a killed torpor does not leave it running.
pub fn command(program: &Path, user: &RunAs, death_signal: Signal) -> ChildCommand {
    command_in(program, user, death_signal, None)
}

/// [`command`], with the child joining the cgroup whose `cgroup.procs` is `cgroup` before it
/// runs anything, so every process it forks is in it too. Joining needs torpor's own rights,
/// so the child switches to `user` itself, after joining. A child that can't join runs
/// outside; the freezer checks before it freezes.
pub fn command_in(
    program: &Path,
    user: &RunAs,
    death_signal: Signal,
    cgroup: Option<&CStr>,
) -> ChildCommand {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .current_dir("/")
        .stdin(Stdio::null())
        .process_group(0);
    for key in ["TZ", "LANG", "LC_ALL"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    let switch = (!user.is_current()).then(|| (Uid::from_raw(user.uid), Gid::from_raw(user.gid)));
    if cgroup.is_none()
        && let Some((uid, gid)) = switch
    {
        // std drops the supplementary groups (setgroups(0)) when it switches uid as root.
        cmd.uid(uid.as_raw()).gid(gid.as_raw());
    }
    let cgroup = cgroup.map(CStr::to_owned);
    let parent = Pid::this();
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // syscalls (open, write, close, setgroups, setgid, setuid, prctl, getppid) without
    // allocating: the path was made before the fork, nix's wrappers call the syscalls directly,
    // and an Errno becomes an io::Error without allocating either.
    //
    // std runs pre_exec closures after its own setgid/setuid, which matters: the kernel clears
    // PDEATHSIG when the credentials change, so it must be set after the switch. The kernel
    // sends it when the *thread* that forked the child exits, which is why `spawn` forks from a
    // thread that lives as long as the process.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(procs) = &cgroup {
                join_cgroup(procs);
                if let Some((uid, gid)) = switch {
                    if geteuid().is_root() {
                        setgroups(&[])?;
                    }
                    setgid(gid)?;
                    setuid(uid)?;
                }
            }
            nix::sys::prctl::set_pdeathsig(death_signal)?;
            // The parent may have died between fork and prctl; then nobody will signal us, nor
            // read this error, so an errno that needs no allocation says enough.
            if getppid() != parent {
                return Err(io::Error::from(Errno::ECHILD));
            }
            Ok(())
        });
    }
    ChildCommand { cmd, death_signal }
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is `procs` ("0" names the
/// writer). Runs between fork and exec: raw syscalls only, and a failure is left to the
/// freezer to find.
fn join_cgroup(procs: &CStr) {
    // SAFETY: `procs` is a valid NUL-terminated path; the fd is checked before use and closed.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
        }
    }
}

/// A configured command plus the signal its child gets if torpor goes away; `spawn` also
/// sends it when the caller stopped waiting before the child could be handed over.
pub struct ChildCommand {
    cmd: Command,
    death_signal: Signal,
}

impl std::ops::Deref for ChildCommand {
    type Target = Command;
    fn deref(&self) -> &Command {
        &self.cmd
    }
}

impl std::ops::DerefMut for ChildCommand {
    fn deref_mut(&mut self) -> &mut Command {
        &mut self.cmd
    }
}

type SpawnJob = Box<dyn FnOnce() + Send>;

/// Forks every child from one thread that never exits: PR_SET_PDEATHSIG fires when the forking
/// thread ends, and tokio's blocking-pool threads end after a few idle seconds.
fn spawner() -> Result<&'static mpsc::Sender<SpawnJob>, DriverError> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    if let Some(s) = SPAWNER.get() {
        return Ok(s);
    }
    let (tx, rx) = mpsc::channel::<SpawnJob>();
    std::thread::Builder::new()
        .name("torpor-spawner".into())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                job();
            }
        })
        .map_err(|e| io_err("starting the process spawner thread", e))?;
    // A racing caller may have won; its thread is used and ours exits when `tx` drops.
    let _ = SPAWNER.set(tx);
    SPAWNER
        .get()
        .ok_or_else(|| DriverError::Failed("process spawner missing".into()))
}

/// Spawns `cmd` from the long-lived spawner thread, registered with the caller's runtime.
pub async fn spawn(cmd: ChildCommand) -> io::Result<Child> {
    let ChildCommand {
        mut cmd,
        death_signal,
    } = cmd;
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: SpawnJob = Box::new(move || {
        let _runtime = handle.enter();
        if let Err(Ok(orphan)) = tx.send(cmd.spawn()) {
            // The caller was cancelled: treat the child as if its parent had died.
            if let Some(pid) = orphan.id() {
                let _ = signal(pid, death_signal);
            }
        }
    });
    let sender = spawner().map_err(|e| io::Error::other(e.to_string()))?;
    sender
        .send(job)
        .map_err(|_| io::Error::other("process spawner thread is gone"))?;
    rx.await
        .map_err(|_| io::Error::other("process spawner dropped the request"))?
}

/// Runs `cmd` to completion, feeding it `stdin` (never put secrets on argv: /proc shows argv to
/// everyone) and collecting stdout and stderr.
pub async fn run(mut cmd: ChildCommand, stdin: Option<Vec<u8>>) -> io::Result<Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = spawn(cmd).await?;
    let writer = child.stdin.take();
    let feed = async move {
        if let (Some(mut w), Some(bytes)) = (writer, stdin) {
            w.write_all(&bytes).await?;
            w.shutdown().await?;
        }
        io::Result::Ok(())
    };
    let (fed, output) = tokio::join!(feed, child.wait_with_output());
    let output = output?;
    // A child that exits early closes its stdin; its exit status tells more than EPIPE does.
    if output.status.success() {
        fed?;
    }
    Ok(output)
}

/// A server's offline bootstrap mode (`postgres --single`, `mariadbd --bootstrap`), which
/// reads SQL on stdin.
pub struct Script {
    /// The program and mode, for errors.
    pub program: &'static str,
    /// What the script does, for errors and the log.
    pub task: &'static str,
    /// The error lines in the output, without anything that could echo a statement (and with
    /// it a password).
    pub errors: fn(&str) -> Vec<String>,
}

/// Runs `cmd`, a `script` mode of a server, with `sql` on stdin.
pub async fn run_script(
    cluster: &str,
    script: &Script,
    cmd: ChildCommand,
    sql: String,
) -> Result<(), DriverError> {
    let started = std::time::Instant::now();
    let out = run(cmd, Some(sql.into_bytes()))
        .await
        .map_err(|e| io_err(format!("running {}", script.program), e))?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let errors = (script.errors)(&text);
    if !out.status.success() || !errors.is_empty() {
        return Err(DriverError::Failed(format!(
            "{} failed ({}): {}",
            script.task,
            out.status,
            errors.join("; ")
        )));
    }
    tracing::info!(
        cluster,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "{} done",
        script.task
    );
    Ok(())
}

/// Sends `sig` to `pid`; None only checks that the process exists and may be signalled.
pub fn signal(pid: u32, sig: impl Into<Option<Signal>>) -> Result<(), Errno> {
    let pid = i32::try_from(pid).map_err(|_| Errno::ESRCH)?;
    kill(Pid::from_raw(pid), sig)
}

/// Whether `pid` is a live process: it exists and is not a zombie waiting to be reaped.
pub fn is_alive(pid: u32) -> bool {
    match signal(pid, None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    proc_state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

/// The state letter from /proc/<pid>/stat (R, S, D, Z, …).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain ") ".
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// argv of a process, if readable.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// The working directory of a process, if we may read it.
pub fn cwd(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// Live processes whose working directory is `dir` (servers chdir into their data directory,
/// and so do the processes they fork).
pub fn processes_in(dir: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| cwd(*pid).is_some_and(|c| c == dir) && is_alive(*pid))
        .collect()
}

/// How to stop a server: a polite signal, then harder ones after grace periods.
#[derive(Debug, Clone, Copy)]
pub struct Escalation {
    pub first: Signal,
    pub second: Signal,
    /// How long to wait after `first` before sending `second`.
    pub first_grace: Duration,
    /// How long to wait after `second` before SIGKILL.
    pub second_grace: Duration,
}

/// Stops our own child and reaps it, so that its pid is really gone when this returns.
pub async fn stop_child(child: &mut Child, how: Escalation) -> Result<ExitStatus, DriverError> {
    if let Some(status) = child
        .try_wait()
        .map_err(|e| io_err("checking the server process", e))?
    {
        return Ok(status);
    }
    let Some(pid) = child.id() else {
        return child
            .wait()
            .await
            .map_err(|e| io_err("reaping the server process", e));
    };
    for (sig, grace) in [
        (how.first, Some(how.first_grace)),
        (how.second, Some(how.second_grace)),
        (Signal::SIGKILL, None),
    ] {
        if sig != how.first {
            tracing::warn!(pid, signal = %sig, "server did not stop in time; escalating");
        }
        match signal(pid, sig) {
            // ESRCH: it exited on its own just now; wait() below reaps it.
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => return Err(io_err(format!("signalling pid {pid}"), e.into())),
        }
        let waited = match grace {
            Some(g) => tokio::time::timeout(g, child.wait()).await.ok(),
            None => Some(child.wait().await),
        };
        if let Some(r) = waited {
            return r.map_err(|e| io_err("reaping the server process", e));
        }
    }
    Err(DriverError::Failed(format!("pid {pid} survived SIGKILL")))
}

/// Stops a process that is not our child (left by an earlier run). We cannot reap it; it is
/// "gone" once it no longer exists or is a zombie.
pub async fn stop_pid(pid: u32, how: Escalation) -> Result<(), DriverError> {
    const POLL: Duration = Duration::from_millis(10);
    for (sig, grace) in [
        (how.first, how.first_grace),
        (how.second, how.second_grace),
        (Signal::SIGKILL, Duration::from_secs(10)),
    ] {
        if sig != how.first {
            tracing::warn!(
                pid,
                signal = %sig,
                "process did not stop in time; escalating"
            );
        }
        match signal(pid, sig) {
            Ok(()) => {}
            Err(Errno::ESRCH) => return Ok(()),
            Err(e) => return Err(io_err(format!("signalling pid {pid}"), e.into())),
        }
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if !is_alive(pid) {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }
    if is_alive(pid) {
        Err(DriverError::Failed(format!("pid {pid} survived SIGKILL")))
    } else {
        Ok(())
    }
}

pub fn chown(path: &Path, user: &RunAs) -> Result<(), DriverError> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
        .map_err(|e| io_err(format!("chown {} to {}", path.display(), user.name), e))
}

/// Creates `dir` (and any missing parents) with `mode`, owned by `user`, and checks that
/// `user` can reach it. An existing `dir` is handed to `user` if we are allowed to.
pub fn ensure_dir(dir: &Path, mode: u32, user: &RunAs) -> Result<(), DriverError> {
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    for d in missing.iter().rev() {
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(d)
            .or_else(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| io_err(format!("creating {}", d.display()), e))?;
        if !user.is_current() {
            chown(d, user)?;
        }
    }
    let meta = std::fs::metadata(dir).map_err(|e| io_err(format!("stat {}", dir.display()), e))?;
    if !meta.is_dir() {
        return Err(DriverError::Failed(format!(
            "{} exists and is not a directory",
            dir.display()
        )));
    }
    if meta.uid() != user.uid && !user.is_current() {
        chown(dir, user)?;
    }
    if meta.permissions().mode() & 0o7777 != mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_err(format!("chmod {}", dir.display()), e))?;
    }
    check_traversable(dir, user)
}

/// Fails with a clear message when some ancestor of `dir` does not let `user` search it. Only
/// the primary group counts: the child runs without supplementary groups.
pub fn check_traversable(dir: &Path, user: &RunAs) -> Result<(), DriverError> {
    // As ourselves, having stat'ed `dir` through its path already proves it.
    if user.uid == 0 || user.is_current() {
        return Ok(());
    }
    for anc in dir.ancestors().skip(1) {
        if anc.as_os_str().is_empty() {
            continue;
        }
        let meta =
            std::fs::metadata(anc).map_err(|e| io_err(format!("stat {}", anc.display()), e))?;
        let mode = meta.permissions().mode();
        let bit = if meta.uid() == user.uid {
            0o100
        } else if meta.gid() == user.gid {
            0o010
        } else {
            0o001
        };
        if mode & bit == 0 {
            return Err(DriverError::Failed(format!(
                "user {} cannot reach {}: the parent directory {} (mode {:o}, owner uid {}) is \
                 not searchable by it; chmod o+x it or choose another data_dir",
                user.name,
                dir.display(),
                anc.display(),
                mode & 0o7777,
                meta.uid()
            )));
        }
    }
    Ok(())
}

/// Empties a data directory that torpor itself was initialising (never one it adopted), after
/// a failed initialisation.
pub async fn remove_dir_contents(dir: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        let removed = match entry.file_type().await {
            Ok(t) if t.is_dir() => tokio::fs::remove_dir_all(&path).await,
            _ => tokio::fs::remove_file(&path).await,
        };
        if let Err(e) = removed {
            tracing::warn!(path = %path.display(), error = %e, "cleanup after failed init");
        }
    }
}

/// Opens `path` for appending, creating it (mode 0600) owned by `user`.
pub fn open_log(path: &Path, user: &RunAs) -> Result<std::fs::File, DriverError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(format!("opening {}", path.display()), e))?;
    let meta = file
        .metadata()
        .map_err(|e| io_err(format!("stat {}", path.display()), e))?;
    if meta.uid() != user.uid && !user.is_current() {
        chown(path, user)?;
    }
    Ok(file)
}

/// The last `n` lines of a (possibly large) log file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    const WINDOW: u64 = 64 * 1024;
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if f.seek(SeekFrom::Start(len.saturating_sub(WINDOW))).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether `path` names an executable regular file.
pub fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_looked_up_by_name_and_uid() {
        let root = RunAs::by_uid(0).unwrap();
        assert_eq!((root.name.as_str(), root.uid, root.gid), ("root", 0, 0));
        assert_eq!(RunAs::by_name("root").unwrap(), root);
        let e = RunAs::by_name("no-such-user-torpor")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such OS user"), "{e}");
        let e = RunAs::by_name("a\0b").unwrap_err().to_string();
        assert!(e.contains("invalid user name"), "{e}");
    }

    #[test]
    fn liveness_and_signals() {
        assert!(is_alive(std::process::id()));
        assert_eq!(signal(std::process::id(), None), Ok(()));
        // Beyond any pid the kernel hands out.
        assert!(!is_alive(u32::MAX));
        assert_eq!(signal(u32::MAX, Signal::SIGTERM), Err(Errno::ESRCH));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!is_alive(pid));
    }
}
