//! The CRD YAML in `crds/`, generated from the types (`make crds` runs the `crdgen` binary).

use kube::CustomResourceExt;

use crate::WasmApp;
use crate::types::CRD_NAME;

/// Path of the checked-in CRD, relative to the repository root.
pub fn crd_path() -> String {
    format!("crds/{CRD_NAME}.yaml")
}

/// The CRD as YAML, with a header saying where it comes from.
pub fn crd_yaml() -> anyhow::Result<String> {
    let body = serde_yaml::to_string(&WasmApp::crd())?;
    Ok(format!(
        "# Generated from operator/src/types.rs by `make crds`; do not edit by hand.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_crd_matches_the_types() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(crd_path());
        let checked_in = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}; run `make crds`", path.display()));
        let generated = crd_yaml().expect("CRD serializes");
        assert!(
            checked_in == generated,
            "{} differs from what operator/src/types.rs generates: run `make crds` and commit the result",
            path.display()
        );
    }
}
