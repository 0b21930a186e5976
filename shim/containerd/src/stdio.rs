//! The container's stdout/stderr: the FIFOs (or files) containerd passes in `CreateTaskRequest`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// Opens one output stream. An empty path means nobody reads it: the output is discarded.
///
/// A FIFO is opened non-blocking (so a reader that went away fails `create` with a clear error
/// instead of hanging it), then switched back to blocking writes so the guest's output is never
/// dropped when containerd reads slowly. `file://` URIs (log files) are appended to.
pub fn open_output(uri: &str, stream: &'static str) -> Result<Option<File>, String> {
    if uri.is_empty() {
        return Ok(None);
    }
    if let Some(path) = uri.strip_prefix("file://") {
        return OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(Some)
            .map_err(|e| format!("{stream}: open log file {path}: {e}"));
    }
    if uri.contains("://") {
        return Err(format!(
            "{stream}: {uri:?}: only FIFOs and file:// are supported (binary:// loggers are not)"
        ));
    }
    let path = Path::new(uri);
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc_nonblock())
        .open(path)
        .map_err(|e| format!("{stream}: open {}: {e}", path.display()))?;
    let flags = fcntl(&file, FcntlArg::F_GETFL)
        .map_err(|e| format!("{stream}: fcntl {}: {e}", path.display()))?;
    let blocking = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(&file, FcntlArg::F_SETFL(blocking))
        .map_err(|e| format!("{stream}: fcntl {}: {e}", path.display()))?;
    Ok(Some(file))
}

fn libc_nonblock() -> i32 {
    OFlag::O_NONBLOCK.bits()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn empty_path_discards_and_binary_uri_is_refused() {
        assert!(open_output("", "stdout").expect("ok").is_none());
        let err = open_output("binary:///usr/bin/logger", "stderr").expect_err("must fail");
        assert!(err.contains("stderr") && err.contains("binary://"), "{err}");
    }

    #[test]
    fn fifo_with_a_reader_receives_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("out");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc_nonblock())
            .open(&fifo)
            .expect("reader");
        let mut writer = open_output(fifo.to_str().expect("utf8"), "stdout")
            .expect("opens")
            .expect("a file");
        writer.write_all(b"hello").expect("write");
        drop(writer);
        let mut got = String::new();
        reader.read_to_string(&mut got).expect("read");
        assert_eq!(got, "hello");
    }

    #[test]
    fn fifo_without_reader_fails_naming_the_stream() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("err");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let err = open_output(fifo.to_str().expect("utf8"), "stderr").expect_err("must fail");
        assert!(err.contains("stderr"), "{err}");
    }
}
