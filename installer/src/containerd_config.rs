//! Registering the `feather` runtime in containerd's TOML config, idempotently.
//!
//! Edits go through `toml_edit` so the operator's comments, ordering and formatting survive:
//! only the `feather` runtime table is added or corrected. Both config formats are handled:
//! containerd 1.x writes `version = 2` and keeps CRI runtimes under
//! `plugins."io.containerd.grpc.v1.cri".containerd.runtimes`; containerd 2.x writes
//! `version = 3` (2.0–2.1) or `version = 4` (2.2+, same CRI layout) and keeps them under
//! `plugins."io.containerd.cri.v1.runtime".containerd.runtimes`.

use std::fmt;

use toml_edit::{DocumentMut, Item, Table, TableLike, value};

/// The containerd handler name (RuntimeClass `handler`), fixed by the project.
pub const RUNTIME_NAME: &str = "feather";
/// The shim's runtime type: containerd derives the binary name `containerd-shim-feather-v1`.
pub const RUNTIME_TYPE: &str = "io.containerd.feather.v1";

/// The two config schema versions that carry CRI runtimes in different places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigVersion {
    /// containerd 1.x (`version = 2`).
    V2,
    /// containerd 2.0/2.1 (`version = 3`).
    V3,
    /// containerd 2.2+ (`version = 4`: listeners moved into plugins; CRI runtimes unchanged).
    V4,
}

impl ConfigVersion {
    pub fn from_number(n: i64) -> Option<Self> {
        match n {
            2 => Some(Self::V2),
            3 => Some(Self::V3),
            4 => Some(Self::V4),
            _ => None,
        }
    }

    pub fn number(self) -> i64 {
        match self {
            Self::V2 => 2,
            Self::V3 => 3,
            Self::V4 => 4,
        }
    }

    /// The plugin whose `containerd.runtimes` table lists CRI runtime handlers.
    pub fn cri_runtime_plugin(self) -> &'static str {
        match self {
            Self::V2 => "io.containerd.grpc.v1.cri",
            Self::V3 | Self::V4 => "io.containerd.cri.v1.runtime",
        }
    }

    /// Table path of the `feather` runtime entry.
    fn runtime_path(self) -> [&'static str; 5] {
        [
            "plugins",
            self.cri_runtime_plugin(),
            "containerd",
            "runtimes",
            RUNTIME_NAME,
        ]
    }
}

impl fmt::Display for ConfigVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "version = {}", self.number())
    }
}

/// What the `feather` runtime entry must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEntry {
    pub runtime_type: String,
    /// Absolute host path of the shim binary, so containerd need not find it on its PATH.
    pub runtime_path: Option<String>,
}

impl RuntimeEntry {
    pub fn feather(runtime_path: Option<String>) -> Self {
        Self {
            runtime_type: RUNTIME_TYPE.to_string(),
            runtime_path,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("containerd config is not valid TOML: {0}")]
    Parse(#[from] toml_edit::TomlError),
    #[error(
        "containerd config has no top-level `version` field; only the `version = 2` (containerd 1.x) \
         and `version = 3`/`4` (containerd 2.x) formats are supported"
    )]
    MissingVersion,
    #[error(
        "containerd config field `version` is {0}; supported: 2 (containerd 1.x), 3 and 4 (containerd 2.x)"
    )]
    UnsupportedVersion(String),
    #[error("containerd config field `{path}` is of type {found}, expected a table")]
    NotATable { path: String, found: &'static str },
    #[error("containerd config has no `{path}` table")]
    MissingEntry { path: String },
    #[error("containerd config field `{path}` is {found:?}, expected {expected:?}")]
    WrongValue {
        path: String,
        found: Option<String>,
        expected: String,
    },
}

/// The result of [`ensure_runtime`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The full config text to write (identical to the input when nothing changed).
    pub text: String,
    pub changed: bool,
    pub version: ConfigVersion,
}

/// Returns `existing` (or a new config when `None` or blank) with the `feather` runtime entry
/// present and correct. `version_for_new_file` is used only when there is no config yet: an
/// existing file's own `version` decides where the entry goes.
pub fn ensure_runtime(
    existing: Option<&str>,
    version_for_new_file: ConfigVersion,
    entry: &RuntimeEntry,
) -> Result<Edit, ConfigError> {
    let original = existing.unwrap_or("");
    let mut doc: DocumentMut = original.parse()?;
    let is_blank = doc.as_table().is_empty();
    let version = if is_blank {
        doc.insert("version", value(version_for_new_file.number()));
        version_for_new_file
    } else {
        read_version(&doc)?
    };

    let path = version.runtime_path();
    let mut table: &mut dyn TableLike = doc.as_table_mut();
    for (depth, key) in path.iter().enumerate() {
        let is_leaf = depth + 1 == path.len();
        let item = table.entry(key).or_insert_with(|| {
            let mut new = Table::new();
            // Intermediate tables stay implicit so the file gains one header, not five.
            new.set_implicit(!is_leaf);
            Item::Table(new)
        });
        let found = item.type_name();
        table = item
            .as_table_like_mut()
            .ok_or_else(|| ConfigError::NotATable {
                path: dotted(&path[..=depth]),
                found,
            })?;
    }

    let mut changed = is_blank;
    changed |= set_string(table, "runtime_type", &entry.runtime_type);
    if let Some(runtime_path) = &entry.runtime_path {
        changed |= set_string(table, "runtime_path", runtime_path);
    }

    let text = if changed {
        doc.to_string()
    } else {
        original.to_string()
    };
    Ok(Edit {
        text,
        changed,
        version,
    })
}

/// Re-parses `text` and checks that the `feather` entry says what `entry` says: the proof,
/// before reporting ready, that what was written is what containerd will read.
pub fn verify_runtime(text: &str, entry: &RuntimeEntry) -> Result<ConfigVersion, ConfigError> {
    let doc: DocumentMut = text.parse()?;
    let version = read_version(&doc)?;
    let path = version.runtime_path();
    let mut item: &Item = doc.as_item();
    for (depth, key) in path.iter().enumerate() {
        item = item
            .as_table_like()
            .and_then(|t| t.get(key))
            .ok_or_else(|| ConfigError::MissingEntry {
                path: dotted(&path[..=depth]),
            })?;
    }
    let table = item.as_table_like().ok_or_else(|| ConfigError::NotATable {
        path: dotted(&path),
        found: item.type_name(),
    })?;
    let mut expected = vec![("runtime_type", &entry.runtime_type)];
    if let Some(runtime_path) = &entry.runtime_path {
        expected.push(("runtime_path", runtime_path));
    }
    for (key, want) in expected {
        let found = table.get(key).and_then(Item::as_str);
        if found != Some(want.as_str()) {
            return Err(ConfigError::WrongValue {
                path: format!("{}.{key}", dotted(&path)),
                found: found.map(str::to_string),
                expected: want.clone(),
            });
        }
    }
    Ok(version)
}

fn read_version(doc: &DocumentMut) -> Result<ConfigVersion, ConfigError> {
    let item = doc.get("version").ok_or(ConfigError::MissingVersion)?;
    item.as_integer()
        .and_then(ConfigVersion::from_number)
        .ok_or_else(|| ConfigError::UnsupportedVersion(item.to_string().trim().to_string()))
}

/// Sets `key = want` unless it already says exactly that; returns whether it changed.
fn set_string(table: &mut dyn TableLike, key: &str, want: &str) -> bool {
    if table.get(key).and_then(Item::as_str) == Some(want) {
        return false;
    }
    table.insert(key, value(want));
    true
}

/// `plugins."io.containerd.cri.v1.runtime".containerd` as containerd's docs spell it.
fn dotted(path: &[&str]) -> String {
    path.iter()
        .map(|k| {
            if k.contains('.') {
                format!("\"{k}\"")
            } else {
                (*k).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
#[path = "containerd_config_tests.rs"]
mod tests;
