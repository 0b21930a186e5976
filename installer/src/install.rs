//! One installation pass on a node: shim binary, containerd config, restart, verification.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::containerd_config::{self, ConfigVersion, RuntimeEntry};

/// The binary name containerd derives from the runtime type `io.containerd.feather.v1`.
pub const SHIM_BINARY: &str = "containerd-shim-feather-v1";

#[derive(Debug, Clone)]
pub struct InstallPlan {
    /// The shim binary shipped in the installer's image.
    pub shim_source: PathBuf,
    /// Where the host's shim directory is mounted in this container.
    pub shim_dir: PathBuf,
    /// The same directory as the host (and so containerd) sees it; used for `runtime_path`.
    pub host_shim_dir: Option<PathBuf>,
    /// containerd's config file as mounted in this container.
    pub containerd_config: PathBuf,
    /// Format written when the config file does not exist yet.
    pub version_for_new_config: ConfigVersion,
    /// Program and arguments that restart containerd; empty means "do not restart".
    pub restart_command: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    pub shim_changed: bool,
    pub config_changed: bool,
    pub containerd_restarted: bool,
    pub config_version: ConfigVersion,
    /// What the installed shim printed for `-v`.
    pub shim_version: String,
}

impl InstallPlan {
    fn runtime_entry(&self) -> RuntimeEntry {
        RuntimeEntry::feather(
            self.host_shim_dir
                .as_ref()
                .map(|dir| dir.join(SHIM_BINARY).display().to_string()),
        )
    }

    fn installed_shim(&self) -> PathBuf {
        self.shim_dir.join(SHIM_BINARY)
    }
}

/// Runs the whole pass. Idempotent: a second run on the same node changes nothing and does not
/// restart containerd.
pub fn run(plan: &InstallPlan) -> Result<InstallReport> {
    let shim_changed = copy_if_different(&plan.shim_source, &plan.installed_shim())?;
    tracing::info!(
        shim = %plan.installed_shim().display(),
        changed = shim_changed,
        "shim binary in place"
    );

    let entry = plan.runtime_entry();
    let config_path = &plan.containerd_config;
    let existing = match fs::read_to_string(config_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", config_path.display())),
    };
    let edit =
        containerd_config::ensure_runtime(existing.as_deref(), plan.version_for_new_config, &entry)
            .with_context(|| format!("containerd config {}", config_path.display()))?;
    if edit.changed {
        write_atomically(config_path, None, |file| {
            file.write_all(edit.text.as_bytes())
        })?;
        tracing::info!(config = %config_path.display(), format = %edit.version, "registered runtime `feather`");
    } else {
        tracing::info!(config = %config_path.display(), "runtime `feather` already registered");
    }

    let containerd_restarted = edit.changed && !plan.restart_command.is_empty();
    if containerd_restarted {
        restart_containerd(&plan.restart_command)?;
    }

    let (config_version, shim_version) = verify(plan)?;
    Ok(InstallReport {
        shim_changed,
        config_changed: edit.changed,
        containerd_restarted,
        config_version,
        shim_version,
    })
}

/// The handler works when the installed shim runs and the config on disk, read back, has the
/// entry. Returns the config version and the shim's version line.
pub fn verify(plan: &InstallPlan) -> Result<(ConfigVersion, String)> {
    let shim = plan.installed_shim();
    let output = Command::new(&shim)
        .arg("-v")
        .output()
        .with_context(|| format!("running the installed shim {} -v", shim.display()))?;
    if !output.status.success() {
        bail!(
            "installed shim {} -v exited with {}: {}",
            shim.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let shim_version = String::from_utf8_lossy(&output.stdout).trim().to_string();

    let config_path = &plan.containerd_config;
    let text = fs::read_to_string(config_path)
        .with_context(|| format!("re-reading {}", config_path.display()))?;
    let version = containerd_config::verify_runtime(&text, &plan.runtime_entry())
        .with_context(|| format!("containerd config {}", config_path.display()))?;
    Ok((version, shim_version))
}

/// Copies `source` over `dest` unless they are already identical. The new file is written
/// beside `dest` and renamed over it, so a shim process that runs the old binary keeps its
/// inode and containerd never execs a half-written file. Both files are streamed, never held
/// in memory: the shim is tens of megabytes and the installer runs under a 64 MiB limit.
pub fn copy_if_different(source: &Path, dest: &Path) -> Result<bool> {
    let mut new =
        fs::File::open(source).with_context(|| format!("opening shim {}", source.display()))?;
    if same_contents(&mut new, source, dest)? {
        return Ok(false);
    }
    new.rewind()
        .with_context(|| format!("reading shim {}", source.display()))?;
    write_atomically(dest, Some(0o755), |file| io::copy(&mut new, file).map(drop))?;
    Ok(true)
}

/// Whether `dest` holds exactly the bytes of `source` (opened as `new`), compared chunk by chunk.
fn same_contents(new: &mut fs::File, source: &Path, dest: &Path) -> Result<bool> {
    let mut old = match fs::File::open(dest) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("opening {}", dest.display())),
    };
    let new_len = new.metadata().map(|m| m.len());
    let old_len = old.metadata().map(|m| m.len());
    match (new_len, old_len) {
        (Ok(a), Ok(b)) if a != b => return Ok(false),
        (Ok(_), Ok(_)) => {}
        (Err(e), _) => return Err(e).with_context(|| format!("reading {}", source.display())),
        (_, Err(e)) => return Err(e).with_context(|| format!("reading {}", dest.display())),
    }
    const CHUNK: usize = 64 * 1024;
    let (mut a, mut b) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    loop {
        let n = read_chunk(new, &mut a).with_context(|| format!("reading {}", source.display()))?;
        let m =
            read_chunk(&mut old, &mut b).with_context(|| format!("reading {}", dest.display()))?;
        if a[..n] != b[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Fills `buf` unless the file ends first; returns how many bytes were read.
fn read_chunk(file: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Writes a temporary file beside `dest` with `write`, syncs it and renames it over `dest`.
fn write_atomically(
    dest: &Path,
    mode: Option<u32>,
    write: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> Result<()> {
    let dir = dest
        .parent()
        .with_context(|| format!("{} has no parent directory", dest.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(dest.file_name().unwrap_or_default());
    tmp_name.push(".feather-tmp");
    let tmp = dir.join(tmp_name);
    let result = (|| -> io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        write(&mut file)?;
        let mode = match (mode, fs::metadata(dest)) {
            (Some(mode), _) => mode,
            // Keep an existing config's permissions.
            (None, Ok(meta)) => meta.permissions().mode(),
            (None, Err(_)) => 0o644,
        };
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", dest.display()))
}

fn restart_containerd(command: &[String]) -> Result<()> {
    let (program, args) = command.split_first().context("restart command is empty")?;
    tracing::info!(command = %command.join(" "), "restarting containerd to load the new config");
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("starting restart command `{}`", command.join(" ")))?;
    if !status.success() {
        bail!(
            "restart command `{}` exited with {status}",
            command.join(" ")
        );
    }
    Ok(())
}

#[cfg(test)]
#[path = "install_tests.rs"]
mod tests;
