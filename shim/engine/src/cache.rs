//! The on-disk cache of compiled artifacts.
//!
//! Key: sha256 of the wasm bytes plus a digest of the engine's precompile compatibility hash
//! (wasmtime version, target, every setting that changes generated code), so an engine upgrade
//! or a settings change simply misses. Entry: `FWCACHE1` magic, sha256 of the payload, then
//! wasmtime's serialized artifact. A reader recomputes the checksum before handing the payload
//! to wasmtime, and wasmtime itself checks the artifact's header and compatibility: a truncated,
//! corrupt, foreign or incompatible entry is deleted and the wasm compiled again. Writes go to a
//! temp file in the same directory, fsync, then rename: concurrent writers of one key cannot
//! produce a torn entry, and the last rename wins with identical content.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Precompiled;

const MAGIC: &[u8; 8] = b"FWCACHE1";
const HEADER_LEN: usize = MAGIC.len() + 32;

/// The artifact cache directory of one engine.
#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    /// Hex digest of the engine's compatibility hash; part of every key.
    engine_key: String,
}

/// A `Hasher` that feeds everything into sha256, so a `Hash` value gets a stable digest
/// (std's `DefaultHasher` output may change between Rust releases).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        // Not used: the full digest is read from the inner hasher.
        0
    }
}

/// Why a cache entry was not used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reject {
    Truncated,
    BadMagic,
    ChecksumMismatch,
    NotAnArtifact,
    WrongArtifactKind,
}

impl DiskCache {
    /// Open (create) the cache directory for this engine.
    pub(crate) fn open(dir: &Path, engine: &wasmtime::Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..16]);
        Ok(DiskCache {
            dir: dir.to_path_buf(),
            engine_key,
        })
    }

    /// Path of the entry for a wasm digest.
    pub(crate) fn entry_path(&self, wasm_digest: &str) -> PathBuf {
        self.dir
            .join(format!("{wasm_digest}-{}.cwasm", self.engine_key))
    }

    /// Read and check an entry. `Ok(None)`: no entry. `Err(reject)`: an entry that must not be
    /// used (the caller deletes it and recompiles). `Ok(Some(payload))`: a payload written by
    /// this cache, intact, that wasmtime recognises as the expected kind of artifact.
    pub(crate) fn read(
        &self,
        wasm_digest: &str,
        expected: Precompiled,
    ) -> std::io::Result<Result<Option<Vec<u8>>, Reject>> {
        let path = self.entry_path(wasm_digest);
        let mut bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ok(None)),
            Err(e) => return Err(e),
        };
        Ok(check_entry(&bytes, expected).map(|()| {
            bytes.drain(..HEADER_LEN);
            Some(bytes)
        }))
    }

    /// Delete an entry that failed its checks (a missing file is fine: another loader won).
    pub(crate) fn discard(&self, wasm_digest: &str) {
        let path = self.entry_path(wasm_digest);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), "cannot delete bad cache entry: {e}"),
        }
    }

    /// Store a serialized artifact atomically (temp file + fsync + rename).
    pub(crate) fn write(&self, wasm_digest: &str, artifact: &[u8]) -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)?;
        tmp.write_all(MAGIC)?;
        tmp.write_all(&Sha256::digest(artifact))?;
        tmp.write_all(artifact)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.entry_path(wasm_digest))
            .map_err(|e| e.error)?;
        Ok(())
    }
}

/// The checks an entry must pass before its payload reaches `deserialize`.
fn check_entry(bytes: &[u8], expected: Precompiled) -> Result<(), Reject> {
    if bytes.len() < HEADER_LEN {
        return Err(Reject::Truncated);
    }
    let (magic, rest) = bytes.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(Reject::BadMagic);
    }
    let (checksum, payload) = rest.split_at(32);
    if Sha256::digest(payload).as_slice() != checksum {
        return Err(Reject::ChecksumMismatch);
    }
    match wasmtime::Engine::detect_precompiled(payload) {
        None => Err(Reject::NotAnArtifact),
        Some(kind) if kind != expected => Err(Reject::WrongArtifactKind),
        Some(_) => Ok(()),
    }
}

/// Deserialize a core module from a payload that passed [`DiskCache::read`].
#[allow(unsafe_code)]
pub(crate) fn deserialize_module(
    engine: &wasmtime::Engine,
    payload: &[u8],
) -> wasmtime::Result<wasmtime::Module> {
    // SAFETY: `Module::deserialize` requires bytes produced by `Module::serialize` of a
    // compatible engine and not tampered with. The payload comes from our own cache directory
    // (root-owned, written only by this code through `DiskCache::write`), its sha256 matched
    // the checksum written with it (no truncation or corruption), and wasmtime recognised it as
    // a module artifact; wasmtime then checks version and engine compatibility itself and
    // returns an error (not UB) on mismatch.
    unsafe { wasmtime::Module::deserialize(engine, payload) }
}

/// Deserialize a component from a payload that passed [`DiskCache::read`].
#[allow(unsafe_code)]
pub(crate) fn deserialize_component(
    engine: &wasmtime::Engine,
    payload: &[u8],
) -> wasmtime::Result<wasmtime::component::Component> {
    // SAFETY: as for `deserialize_module`: our own checksummed entry, recognised by wasmtime
    // as a component artifact; wasmtime checks compatibility and errors out on mismatch.
    unsafe { wasmtime::component::Component::deserialize(engine, payload) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(payload: &[u8]) -> Vec<u8> {
        let mut e = MAGIC.to_vec();
        e.extend_from_slice(&Sha256::digest(payload));
        e.extend_from_slice(payload);
        e
    }

    #[test]
    fn entries_failing_any_check_are_rejected() {
        assert_eq!(
            check_entry(b"FWCACHE1", Precompiled::Module),
            Err(Reject::Truncated)
        );
        let mut foreign = entry(b"not an artifact at all");
        assert_eq!(
            check_entry(&foreign, Precompiled::Module),
            Err(Reject::NotAnArtifact)
        );
        foreign[0] = b'X';
        assert_eq!(
            check_entry(&foreign, Precompiled::Module),
            Err(Reject::BadMagic)
        );
        let mut corrupt = entry(b"payload");
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert_eq!(
            check_entry(&corrupt, Precompiled::Module),
            Err(Reject::ChecksumMismatch)
        );
    }
}
