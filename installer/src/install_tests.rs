use super::*;

/// A node laid out in a temp dir: an "image" with a shim, a host shim dir, a containerd dir.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Self {
        let node = Self {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        fs::create_dir_all(node.path("image")).expect("image dir");
        node.put_shim("1");
        node
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The shim in the image: a script that answers `-v` the way containerd-shim's flag does.
    fn put_shim(&self, version: &str) {
        let shim = self.path("image").join(SHIM_BINARY);
        fs::write(
            &shim,
            format!("#!/bin/sh\n[ \"$1\" = -v ] && echo \"{SHIM_BINARY} version {version}\"\n"),
        )
        .expect("write shim");
        fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn restart_marker(&self) -> PathBuf {
        self.path("restarted")
    }

    fn plan(&self) -> InstallPlan {
        InstallPlan {
            shim_source: self.path("image").join(SHIM_BINARY),
            shim_dir: self.path("host/usr/local/bin"),
            host_shim_dir: Some(PathBuf::from("/usr/local/bin")),
            containerd_config: self.path("host/etc/containerd/config.toml"),
            version_for_new_config: ConfigVersion::V3,
            restart_command: vec![
                "touch".to_string(),
                self.restart_marker().display().to_string(),
            ],
        }
    }
}

#[test]
fn first_run_installs_and_restarts_second_run_changes_nothing() {
    let node = Node::new();
    let plan = node.plan();

    let first = run(&plan).expect("first install");
    assert!(first.shim_changed && first.config_changed && first.containerd_restarted);
    assert_eq!(first.config_version, ConfigVersion::V3);
    assert_eq!(first.shim_version, format!("{SHIM_BINARY} version 1"));
    assert!(node.restart_marker().exists(), "restart command ran");
    let config = fs::read_to_string(&plan.containerd_config).expect("config written");
    assert!(config.contains("runtime_path = \"/usr/local/bin/containerd-shim-feather-v1\""));
    let mode = fs::metadata(plan.shim_dir.join(SHIM_BINARY))
        .expect("shim installed")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);

    fs::remove_file(node.restart_marker()).expect("reset marker");
    let second = run(&plan).expect("second install");
    assert!(!second.shim_changed && !second.config_changed && !second.containerd_restarted);
    assert!(
        !node.restart_marker().exists(),
        "no restart without a config change"
    );
    assert_eq!(
        fs::read_to_string(&plan.containerd_config).expect("config"),
        config
    );
}

#[test]
fn a_new_shim_is_copied_without_restarting_containerd() {
    let node = Node::new();
    let plan = node.plan();
    run(&plan).expect("first install");
    fs::remove_file(node.restart_marker()).expect("reset marker");

    node.put_shim("2");
    let report = run(&plan).expect("upgrade");
    assert!(report.shim_changed && !report.config_changed && !report.containerd_restarted);
    assert_eq!(report.shim_version, format!("{SHIM_BINARY} version 2"));
}

#[test]
fn an_existing_v2_config_keeps_its_permissions_and_gets_the_v2_entry() {
    let node = Node::new();
    let plan = node.plan();
    fs::create_dir_all(plan.containerd_config.parent().expect("parent")).expect("mkdir");
    fs::write(&plan.containerd_config, "version = 2 # containerd 1.7\n").expect("write");
    fs::set_permissions(&plan.containerd_config, fs::Permissions::from_mode(0o600)).expect("chmod");

    let report = run(&plan).expect("install");
    assert_eq!(report.config_version, ConfigVersion::V2);
    let config = fs::read_to_string(&plan.containerd_config).expect("config");
    assert!(config.starts_with("version = 2 # containerd 1.7\n"));
    assert!(config.contains("io.containerd.grpc.v1.cri"));
    let mode = fs::metadata(&plan.containerd_config)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_shim_that_does_not_run_fails_verification() {
    let node = Node::new();
    let shim = node.path("image").join(SHIM_BINARY);
    fs::write(&shim, "#!/bin/sh\nexit 3\n").expect("broken shim");
    let err = run(&node.plan()).expect_err("broken shim is not ready");
    assert!(format!("{err:#}").contains("exited with"), "{err:#}");
}

#[test]
fn a_failing_restart_command_is_an_error_naming_it() {
    let node = Node::new();
    let mut plan = node.plan();
    plan.restart_command = vec!["false".to_string()];
    let err = run(&plan).expect_err("restart failed");
    assert!(
        err.to_string().contains("restart command `false`"),
        "{err:#}"
    );
}

#[test]
fn an_unparsable_config_is_left_alone_and_named() {
    let node = Node::new();
    let plan = node.plan();
    fs::create_dir_all(plan.containerd_config.parent().expect("parent")).expect("mkdir");
    fs::write(&plan.containerd_config, "version = [").expect("write");
    let err = run(&plan).expect_err("bad config");
    assert!(format!("{err:#}").contains("config.toml"), "{err:#}");
    assert_eq!(
        fs::read_to_string(&plan.containerd_config).expect("config"),
        "version = ["
    );
    assert!(!node.restart_marker().exists());
}

#[test]
fn copy_compares_every_byte_of_files_larger_than_a_chunk() {
    let node = Node::new();
    let (source, dest) = (node.path("big-source"), node.path("big-dest"));
    let mut bytes = vec![7u8; 200 * 1024 + 3];
    fs::write(&source, &bytes).expect("source");
    assert!(copy_if_different(&source, &dest).expect("first copy"));
    assert!(!copy_if_different(&source, &dest).expect("identical"));

    // Same length, one byte changed in the last partial chunk: must be copied again.
    let last = bytes.len() - 1;
    bytes[last] = 8;
    fs::write(&source, &bytes).expect("source changed");
    assert!(copy_if_different(&source, &dest).expect("changed copy"));
    assert_eq!(fs::read(&dest).expect("dest"), bytes);
}
