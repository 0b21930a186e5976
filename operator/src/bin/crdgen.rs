//! Print the WasmApp CRD, or write it to the file given as the only argument.
#![forbid(unsafe_code)]

use std::io::Write;

fn main() -> anyhow::Result<()> {
    let yaml = feather_operator::crd::crd_yaml()?;
    match std::env::args_os().nth(1) {
        Some(path) => std::fs::write(&path, yaml).map_err(|error| {
            anyhow::anyhow!("writing {}: {error}", std::path::Path::new(&path).display())
        }),
        None => Ok(std::io::stdout().write_all(yaml.as_bytes())?),
    }
}
