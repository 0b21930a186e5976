use super::*;

fn feather_entry() -> RuntimeEntry {
    RuntimeEntry::feather(Some(
        "/usr/local/bin/containerd-shim-feather-v1".to_string(),
    ))
}

/// A containerd 1.x config as an operator keeps it: comments, runc options, a mirror.
const V2_WITH_COMMENTS: &str = r#"# Managed by hand. Do not lose this comment.
version = 2
root = "/var/lib/containerd"

[plugins]
  # CRI settings
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.10" # pinned
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
"#;

/// A containerd 2.x config in the `version = 3` layout.
const V3_WITH_COMMENTS: &str = r#"version = 3

# Our mirror config lives in certs.d.
[plugins.'io.containerd.cri.v1.images'.registry]
  config_path = '/etc/containerd/certs.d'

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = 'io.containerd.runc.v2' # the default
"#;

#[test]
fn v2_config_gains_the_entry_and_keeps_comments_and_other_runtimes() {
    let edit = ensure_runtime(Some(V2_WITH_COMMENTS), ConfigVersion::V3, &feather_entry())
        .expect("v2 config edits");
    assert!(edit.changed);
    assert_eq!(edit.version, ConfigVersion::V2);
    // Everything the operator wrote is still there, byte for byte, before the new table.
    assert!(
        edit.text.starts_with(V2_WITH_COMMENTS),
        "original text must be preserved:\n{}",
        edit.text
    );
    assert!(edit.text.contains(
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.feather]\n\
         runtime_type = \"io.containerd.feather.v1\"\n\
         runtime_path = \"/usr/local/bin/containerd-shim-feather-v1\"\n"
    ));
    assert_eq!(
        verify_runtime(&edit.text, &feather_entry()).expect("entry verifies"),
        ConfigVersion::V2
    );
    // The 2.x plugin path must not have been touched in a 1.x config.
    assert!(!edit.text.contains("io.containerd.cri.v1.runtime"));
}

#[test]
fn v3_config_gains_the_entry_under_the_cri_runtime_plugin() {
    let edit = ensure_runtime(Some(V3_WITH_COMMENTS), ConfigVersion::V2, &feather_entry())
        .expect("v3 config edits");
    assert!(edit.changed);
    assert_eq!(edit.version, ConfigVersion::V3);
    assert!(edit.text.starts_with(V3_WITH_COMMENTS), "{}", edit.text);
    assert!(
        edit.text
            .contains("[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.feather]")
            || edit
                .text
                .contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.feather]"),
        "{}",
        edit.text
    );
    assert!(!edit.text.contains("io.containerd.grpc.v1.cri"));
    verify_runtime(&edit.text, &feather_entry()).expect("entry verifies");
}

#[test]
fn a_config_that_already_has_the_entry_is_left_byte_identical() {
    for original in [V2_WITH_COMMENTS, V3_WITH_COMMENTS] {
        let first = ensure_runtime(Some(original), ConfigVersion::V3, &feather_entry())
            .expect("first edit");
        let second = ensure_runtime(Some(&first.text), ConfigVersion::V3, &feather_entry())
            .expect("second edit");
        assert!(!second.changed, "second pass changed:\n{}", second.text);
        assert_eq!(second.text, first.text);
    }
}

#[test]
fn an_entry_with_the_wrong_type_is_corrected_and_its_options_kept() {
    let original = r#"version = 3
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.feather]
  runtime_type = "io.containerd.wasmtime.v1"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.feather.options]
    SomeOption = true # keep me
"#;
    let entry = RuntimeEntry::feather(None);
    let edit = ensure_runtime(Some(original), ConfigVersion::V3, &entry).expect("edits");
    assert!(edit.changed);
    assert!(
        edit.text
            .contains("runtime_type = \"io.containerd.feather.v1\"")
    );
    assert!(!edit.text.contains("wasmtime"));
    assert!(edit.text.contains("SomeOption = true # keep me"));
    verify_runtime(&edit.text, &entry).expect("entry verifies");
}

#[test]
fn a_missing_config_is_created_in_the_requested_format() {
    for (version, plugin) in [
        (ConfigVersion::V3, "io.containerd.cri.v1.runtime"),
        (ConfigVersion::V2, "io.containerd.grpc.v1.cri"),
    ] {
        let edit = ensure_runtime(None, version, &feather_entry()).expect("new config");
        assert!(edit.changed);
        assert_eq!(edit.version, version);
        assert!(
            edit.text
                .starts_with(&format!("version = {}\n", version.number())),
            "{}",
            edit.text
        );
        assert!(edit.text.contains(&format!(
            "[plugins.\"{plugin}\".containerd.runtimes.feather]"
        )));
        assert_eq!(
            verify_runtime(&edit.text, &feather_entry()).expect("verifies"),
            version
        );
    }
}

#[test]
fn a_comment_only_config_counts_as_missing_and_keeps_its_comment() {
    let edit = ensure_runtime(
        Some("# placeholder written by cloud-init\n"),
        ConfigVersion::V3,
        &feather_entry(),
    )
    .expect("edits");
    assert!(edit.changed);
    assert!(edit.text.contains("# placeholder written by cloud-init"));
    verify_runtime(&edit.text, &feather_entry()).expect("verifies");
}

#[test]
fn a_config_without_version_is_refused_naming_the_field() {
    let err = ensure_runtime(
        Some("[plugins.cri]\n  sandbox_image = \"pause\"\n"),
        ConfigVersion::V3,
        &feather_entry(),
    )
    .expect_err("v1 layout is refused");
    assert!(matches!(err, ConfigError::MissingVersion));
    assert!(err.to_string().contains("`version`"));
}

#[test]
fn an_unsupported_version_is_refused_with_its_value() {
    let err = ensure_runtime(Some("version = 7\n"), ConfigVersion::V3, &feather_entry())
        .expect_err("version 7 is refused");
    assert_eq!(
        err.to_string(),
        "containerd config field `version` is 7; supported: 2 (containerd 1.x), 3 and 4 (containerd 2.x)"
    );
}

#[test]
fn a_runtimes_key_that_is_not_a_table_is_reported_by_path() {
    let err = ensure_runtime(
        Some("version = 3\n[plugins.\"io.containerd.cri.v1.runtime\".containerd]\nruntimes = 5\n"),
        ConfigVersion::V3,
        &feather_entry(),
    )
    .expect_err("runtimes = 5 cannot hold a table");
    assert_eq!(
        err.to_string(),
        "containerd config field `plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes` is of type integer, expected a table"
    );
}

#[test]
fn invalid_toml_is_a_parse_error() {
    let err = ensure_runtime(Some("version = = 2"), ConfigVersion::V3, &feather_entry())
        .expect_err("bad TOML");
    assert!(matches!(err, ConfigError::Parse(_)));
}

#[test]
fn verify_names_the_wrong_field() {
    let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.feather]\nruntime_type = \"io.containerd.runc.v2\"\n";
    let err = verify_runtime(text, &RuntimeEntry::feather(None)).expect_err("wrong type");
    assert!(
        err.to_string().contains(
            "plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.feather.runtime_type"
        ),
        "{err}"
    );
    let err = verify_runtime("version = 3\n", &RuntimeEntry::feather(None)).expect_err("missing");
    assert!(matches!(err, ConfigError::MissingEntry { .. }), "{err}");
}

/// containerd 2.2+ writes `version = 4`; the CRI runtimes stay where version 3 has them. This
/// is the layout of the e2e harness's containerd 2.4, which pre-registers `feather` with
/// annotation pass-through that must survive.
#[test]
fn v4_config_with_a_preregistered_entry_keeps_its_annotations() {
    let original = r#"version = 4
[plugins]
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.feather]
      runtime_type = "io.containerd.feather.v1"
      pod_annotations = ["feather.dev/*"]
"#;
    let unchanged = ensure_runtime(
        Some(original),
        ConfigVersion::V3,
        &RuntimeEntry::feather(None),
    )
    .expect("v4 edits");
    assert!(!unchanged.changed);
    assert_eq!(unchanged.version, ConfigVersion::V4);
    assert_eq!(unchanged.text, original);

    let edit = ensure_runtime(Some(original), ConfigVersion::V3, &feather_entry()).expect("v4");
    assert!(edit.changed);
    assert!(edit.text.contains("pod_annotations = [\"feather.dev/*\"]"));
    assert!(
        edit.text
            .contains("runtime_path = \"/usr/local/bin/containerd-shim-feather-v1\"")
    );
    assert_eq!(
        verify_runtime(&edit.text, &feather_entry()).expect("verifies"),
        ConfigVersion::V4
    );
}
