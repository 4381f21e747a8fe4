//! `cargo xtask soak`: the release relay (with one virtual client inside) and `peerchat-load
//! --soak-minutes` as two processes for N minutes. `cargo xtask bench idle`: many idle members
//! in one relay process under a memory limit (a cgroup), from as many generator processes as
//! the open-files limit needs.

use crate::bench::{
    build_release, free_loopback_port, pinned, stop, wait_until_listening, BENCH_RELAY_ENV,
};
use crate::process::run;
use anyhow::{bail, Context as _, Result};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Members per generator process, within a 20,000 open-files limit.
const MEMBERS_PER_GENERATOR: usize = 9_000;

pub(crate) fn soak(
    root: &Path,
    minutes: u64,
    members: usize,
    virtual_clients: usize,
) -> Result<()> {
    let release = build_release(root)?;
    let port = free_loopback_port()?;
    // The virtual clients' keys and caches, removed afterwards.
    let data = std::env::temp_dir().join(format!("peerchat-soak-{port}"));
    let mut relay = pinned(0, &release.join("peerchat-server"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--virtual-clients", &virtual_clients.to_string()])
        .arg("--virtual-client-dir")
        .arg(&data)
        // A small archive, full within minutes, so that its growth does not hide a leak; its
        // WebRTC stays on loopback.
        .env("PEERCHAT_VIRTUAL_MEGABYTES", "4")
        .env("PEERCHAT_VIRTUAL_UDP", "127.0.0.1:0")
        .envs(BENCH_RELAY_ENV)
        .spawn()
        .context("cannot start the relay")?;
    let outcome = wait_until_listening(port).and_then(|()| {
        run(pinned(1, &release.join("peerchat-load"))
            .arg("--relay")
            .arg(format!("ws://127.0.0.1:{port}/ws"))
            .args(["--pid", &relay.id().to_string()])
            .args(["--members", &members.to_string()])
            .args(["--soak-minutes", &minutes.to_string()]))
    });
    stop(&mut relay);
    let _ = std::fs::remove_dir_all(&data);
    outcome
}

pub(crate) fn idle(root: &Path, members: usize, memory_megabytes: u64) -> Result<()> {
    // The relay needs a file per member, plus its reserves (128 logins, 128 HTTP, 256 own).
    let hard_limit: usize =
        crate::process::output_of(Command::new("sh").args(["-c", "ulimit -Hn"]))
            .context("cannot read the open-files limit")?
            .trim()
            .parse()
            .unwrap_or(usize::MAX);
    if members + 512 > hard_limit {
        bail!(
            "the hard open-files limit here is {hard_limit}: at most {} members fit in one relay process (pass --members, or raise the limit)",
            hard_limit.saturating_sub(512)
        );
    }
    let release = build_release(root)?;
    let port = free_loopback_port()?;
    let cgroup = MemoryCgroup::create(&format!("peerchat-idle-{port}"), memory_megabytes)?;
    let relay_path = release.join("peerchat-server");
    // The shell joins the cgroup, then becomes the relay (pinned to CPU 0).
    let mut relay = Command::new("sh");
    relay
        .arg("-c")
        .arg("echo $$ > \"$1\" && shift && ulimit -n \"$(ulimit -Hn)\" && exec taskset -c 0 \"$@\"")
        .arg("sh")
        .arg(cgroup.procs_file())
        .arg(&relay_path)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .envs(BENCH_RELAY_ENV)
        .env("PEERCHAT_MAX_SESSIONS", members.to_string())
        .env("PEERCHAT_MAX_PENDING_LOGINS", "128")
        .env("PEERCHAT_MAX_HTTP_CONNECTIONS", "128");
    let mut relay = relay.spawn().context("cannot start the relay")?;
    let outcome = wait_until_listening(port)
        .and_then(|()| hold_idle_members(&release, port, relay.id(), members, &cgroup));
    let alive = relay.try_wait()?.is_none();
    stop(&mut relay);
    let report = outcome?;
    if !alive {
        bail!("the relay died under the memory limit (killed by the kernel?)");
    }
    eprintln!("xtask: idle: {report}");
    Ok(())
}

/// Connects `members` idle members from generators of at most [`MEMBERS_PER_GENERATOR`] each,
/// one after the other, and reads the relay once all are in.
fn hold_idle_members(
    release: &Path,
    port: u16,
    relay_pid: u32,
    members: usize,
    cgroup: &MemoryCgroup,
) -> Result<String> {
    let mut generators: Vec<Child> = Vec::new();
    let outcome = (|| {
        for first in (0..members).step_by(MEMBERS_PER_GENERATOR) {
            let count = MEMBERS_PER_GENERATOR.min(members - first);
            let mut generator = pinned(1, &release.join("peerchat-load"))
                .arg("--relay")
                .arg(format!("ws://127.0.0.1:{port}/ws"))
                .args(["--pid", &relay_pid.to_string()])
                .args(["--first-member", &first.to_string()])
                .args(["--members", &count.to_string()])
                .args(["--rate", "0", "--hold-seconds", "600"])
                .args(["--members-per-channel", "500"])
                .stdout(Stdio::piped())
                .spawn()
                .context("cannot start peerchat-load")?;
            let stdout = generator.stdout.take().context("no stdout")?;
            generators.push(generator);
            // The generator prints one line once its members are all in.
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line)?;
            if !line.starts_with("members=") {
                bail!("a generator failed while connecting its members");
            }
            eprintln!("xtask: generator: {}", line.trim());
        }
        std::thread::sleep(Duration::from_secs(3));
        let status = std::fs::read_to_string(format!("/proc/{relay_pid}/status"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map_or_else(String::new, |value| value.trim().to_owned())
        };
        Ok(format!(
            "{members} members logged in and idle; relay VmRSS {}, VmHWM {}; cgroup peak {} MiB of a {} MiB limit",
            field("VmRSS:"),
            field("VmHWM:"),
            cgroup.peak_bytes()? / (1024 * 1024),
            cgroup.limit_megabytes,
        ))
    })();
    for mut generator in generators {
        let _ = generator.kill();
        let _ = generator.wait();
    }
    outcome
}

/// A memory cgroup (v2, or v1's memory controller) the relay runs in.
struct MemoryCgroup {
    dir: PathBuf,
    v2: bool,
    limit_megabytes: u64,
}

impl MemoryCgroup {
    fn create(name: &str, limit_megabytes: u64) -> Result<Self> {
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let dir = if v2 {
            Path::new("/sys/fs/cgroup").join(name)
        } else {
            Path::new("/sys/fs/cgroup/memory").join(name)
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the cgroup {} (root needed)", dir.display()))?;
        let limit = (limit_megabytes * 1024 * 1024).to_string();
        let file = if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        std::fs::write(dir.join(file), limit)?;
        Ok(Self {
            dir,
            v2,
            limit_megabytes,
        })
    }

    fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    fn peak_bytes(&self) -> Result<u64> {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        Ok(std::fs::read_to_string(self.dir.join(file))?
            .trim()
            .parse()?)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Empty once the relay has exited.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
