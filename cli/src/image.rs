//! Container images from static binaries, without a container engine: one uncompressed tar
//! layer holding the files, and an OCI image config with the entrypoint and user.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::artifact::sha256_digest;

/// One file to put in the image: `SRC:DEST[:MODE]` on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    pub source: PathBuf,
    /// Absolute path inside the image.
    pub dest: String,
    pub mode: u32,
}

impl std::str::FromStr for ImageFile {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut parts = spec.splitn(3, ':');
        let (Some(source), Some(dest)) = (parts.next(), parts.next()) else {
            return Err(format!("--file {spec:?}: expected SRC:DEST[:MODE]"));
        };
        if source.is_empty() || !dest.starts_with('/') || dest.ends_with('/') {
            return Err(format!(
                "--file {spec:?}: SRC must be set and DEST must be an absolute file path"
            ));
        }
        let mode = match parts.next() {
            None => 0o755,
            Some(m) => u32::from_str_radix(m, 8)
                .map_err(|_| format!("--file {spec:?}: MODE {m:?} is not octal"))?,
        };
        Ok(Self {
            source: PathBuf::from(source),
            dest: dest.to_string(),
            mode,
        })
    }
}

/// What `build` returns: the layer and the config to push.
#[derive(Debug)]
pub struct Image {
    pub layer_tar: Vec<u8>,
    pub config_json: Vec<u8>,
}

/// Builds the single-layer image. Timestamps are zero and entries sorted by destination, so the
/// same inputs give the same digests (pushing twice uploads nothing new).
pub fn build(files: &[ImageFile], entrypoint: &[String], user: Option<&str>) -> Result<Image> {
    if files.is_empty() {
        bail!("an image needs at least one --file");
    }
    let mut sorted: Vec<&ImageFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.dest.cmp(&b.dest));
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs_done = std::collections::BTreeSet::new();
    for file in sorted {
        // Parent directories first, as real image layers have them.
        let dest = Path::new(file.dest.trim_start_matches('/'));
        let mut parent = PathBuf::new();
        for component in dest.parent().into_iter().flat_map(Path::components) {
            parent.push(component);
            if dirs_done.insert(parent.clone()) {
                let mut header = tar::Header::new_ustar();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                header.set_mtime(0);
                builder
                    .append_data(&mut header, &parent, std::io::empty())
                    .with_context(|| format!("adding directory {}", parent.display()))?;
            }
        }
        let data = std::fs::read(&file.source)
            .with_context(|| format!("reading {}", file.source.display()))?;
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(file.mode);
        header.set_size(data.len() as u64);
        header.set_mtime(0);
        builder
            .append_data(&mut header, dest, data.as_slice())
            .with_context(|| format!("adding {}", file.dest))?;
    }
    let layer_tar = builder.into_inner().context("finishing the layer tar")?;

    let mut config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": entrypoint,
            "Env": ["PATH=/"],
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [sha256_digest(&layer_tar)] },
    });
    if let Some(user) = user {
        config["config"]["User"] = json!(user);
    }
    Ok(Image {
        config_json: serde_json::to_vec(&config)?,
        layer_tar,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn file_specs_parse_with_default_and_explicit_modes() {
        let f: ImageFile = "target/op:/feather-operator".parse().expect("spec");
        assert_eq!(f.dest, "/feather-operator");
        assert_eq!(f.mode, 0o755);
        let f: ImageFile = "a:/etc/x.conf:644".parse().expect("spec");
        assert_eq!(f.mode, 0o644);
        assert!("a:relative".parse::<ImageFile>().is_err());
        assert!("a:/dir/".parse::<ImageFile>().is_err());
        let err = "a:/x:9z".parse::<ImageFile>().expect_err("bad mode");
        assert!(err.contains("not octal"), "{err}");
    }

    #[test]
    fn the_layer_holds_the_files_with_modes_and_parents_and_is_reproducible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::write(&bin, b"\x7fELF static").expect("write");
        let files = vec![
            ImageFile {
                source: bin.clone(),
                dest: "/usr/bin/tool".into(),
                mode: 0o755,
            },
            ImageFile {
                source: bin,
                dest: "/feather".into(),
                mode: 0o700,
            },
        ];
        let image = build(&files, &["/feather".into()], Some("65532")).expect("image");
        let again = build(&files, &["/feather".into()], Some("65532")).expect("image");
        assert_eq!(image.layer_tar, again.layer_tar, "same inputs, same layer");

        let mut archive = tar::Archive::new(image.layer_tar.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").display().to_string();
            let mode = entry.header().mode().expect("mode");
            let mut body = Vec::new();
            entry.read_to_end(&mut body).expect("read");
            seen.push((path, mode, body.len()));
        }
        assert_eq!(
            seen,
            vec![
                ("feather".to_string(), 0o700, 11),
                ("usr".to_string(), 0o755, 0),
                ("usr/bin".to_string(), 0o755, 0),
                ("usr/bin/tool".to_string(), 0o755, 11),
            ]
        );

        let config: serde_json::Value = serde_json::from_slice(&image.config_json).expect("json");
        assert_eq!(config["config"]["Entrypoint"][0], "/feather");
        assert_eq!(config["config"]["User"], "65532");
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            sha256_digest(&image.layer_tar).as_str()
        );
    }

    #[test]
    fn a_missing_source_file_is_named() {
        let files = vec![ImageFile {
            source: "/nonexistent/feather-operator".into(),
            dest: "/feather-operator".into(),
            mode: 0o755,
        }];
        let err = build(&files, &[], None).expect_err("missing file");
        assert!(format!("{err:#}").contains("/nonexistent/feather-operator"));
    }
}
