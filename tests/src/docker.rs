//! Offline Docker test images and cleanup for the container tests. No image can be pulled here,
//! so [`TestImages::make`] imports small busybox images from this machine's static busybox; and
//! every container and image a test makes carries the `trellis-test=<uuid>` label, which a
//! [`DockerGuard`] removes when the test ends, passing or failing. The helpers are synchronous:
//! they run the `docker` CLI with `std::process::Command`.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::Path,
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

/// The label every Docker object a test makes carries, with the test's uuid as its value.
pub const TEST_LABEL: &str = "trellis-test";

/// The label Trellis puts on the containers it deploys, with the cluster's id as its value.
pub const CLUSTER_LABEL: &str = "io.trellis.cluster";

/// The static busybox the images are made from (Debian's `busybox-static`).
const BUSYBOX: &str = "/bin/busybox";

/// Prints `tick <n>` every second until SIGTERM, then exits 0.
///
/// A PID 1 has no default signal handlers, so without the trap SIGTERM is ignored and
/// `docker stop` waits out its 10 s grace period before SIGKILL. A trap runs only once the
/// foreground command ends, but it interrupts `wait`: hence `sleep 1 & wait $!`.
const TICK_SCRIPT: &str = concat!(
    "trap 'exit 0' TERM; ",
    "i=0; while :; do echo tick $i; i=$((i+1)); sleep 1 & wait $!; done"
);

/// Like [`TICK_SCRIPT`], first waiting `$READY_AFTER` seconds (0 when unset) before touching
/// `/tmp/ready`, the file the healthcheck tests; `READY_AFTER=never` never touches it. Every wait
/// is `& wait $!`, so SIGTERM stops the container at once in each phase.
const HEALTH_SCRIPT: &str = concat!(
    "trap 'exit 0' TERM; ",
    "if [ \"${READY_AFTER:-0}\" = never ]; then while :; do sleep 1 & wait $!; done; fi; ",
    "sleep \"${READY_AFTER:-0}\" & wait $!; ",
    "touch /tmp/ready; ",
    "i=0; while :; do echo tick $i; i=$((i+1)); sleep 1 & wait $!; done"
);

/// Healthy once `/tmp/ready` exists; unhealthy after two failed checks a second apart.
const HEALTHCHECK: &str =
    r#"HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD ["/bin/test","-f","/tmp/ready"]"#;

/// Three busybox images, tagged with a fresh uuid and labelled `trellis-test=<uuid>`. Their
/// `PATH` is `/bin`, set in the image because `docker exec` ignores the `ENTRYPOINT`.
#[derive(Debug, Clone)]
pub struct TestImages {
    /// The uuid: the images' tag and `trellis-test` label value. Give it to a [`DockerGuard`]
    /// and to the containers the test runs (`--label trellis-test=<uuid>`).
    pub label: String,
    /// `trellis-test/bb:<uuid>`: prints `tick <n>` every second, stops at once on SIGTERM.
    pub bb: String,
    /// `trellis-test/bb-health:<uuid>`: like `bb`, with a healthcheck that passes once
    /// `$READY_AFTER` seconds have gone by (0 when unset; `never` never passes).
    pub bb_health: String,
    /// `trellis-test/bb-v2:<uuid>`: `bb` with the label `version=2`, so another image id.
    pub bb_v2: String,
}

impl TestImages {
    /// Imports the three images (about 0.1 s each). Panics with Docker's error when an import
    /// fails, removing the images it made before.
    pub fn make() -> TestImages {
        let label = uuid::Uuid::new_v4().simple().to_string();
        let tick_cmd = format!("CMD {}", json_cmd(TICK_SCRIPT));
        let health_cmd = format!("CMD {}", json_cmd(HEALTH_SCRIPT));
        let label_change = format!("LABEL {TEST_LABEL}={label}");
        let import_as = |name: &str, changes: &[&str]| {
            let tag = format!("trellis-test/{name}:{label}");
            let mut all = vec![label_change.as_str(), "ENV PATH=/bin"];
            all.extend_from_slice(changes);
            if let Err(e) = import(&tag, &all) {
                drop(DockerGuard::new(&label));
                panic!("{e}");
            }
            tag
        };
        let bb = import_as("bb", &[&tick_cmd]);
        let bb_health = import_as("bb-health", &[HEALTHCHECK, &health_cmd]);
        let bb_v2 = import_as("bb-v2", &["LABEL version=2", &tick_cmd]);
        TestImages {
            label,
            bb,
            bb_health,
            bb_v2,
        }
    }
}

/// `["sh","-c",<script>]`, the JSON form of `CMD` (no shell of Docker's around it).
fn json_cmd(script: &str) -> String {
    serde_json::to_string(&["sh", "-c", script]).expect("JSON of strings")
}

/// `docker import`s the busybox root filesystem as `tag` with these `--change` instructions.
fn import(tag: &str, changes: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("docker");
    cmd.arg("import");
    for c in changes {
        cmd.args(["--change", c]);
    }
    cmd.args(["-", tag])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run docker: {e}"))?;
    // docker reads all of stdin before it writes its few bytes of output: no deadlock.
    let written = child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(rootfs_tar());
    let out = child
        .wait_with_output()
        .map_err(|e| format!("docker import {tag}: {e}"))?;
    if !out.status.success() || written.is_err() {
        return Err(format!(
            "docker import {tag} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            written.err().map(|e| e.to_string()).unwrap_or_default()
        ));
    }
    Ok(())
}

/// The busybox root filesystem as a tar, made once per test process. It is kept in memory and
/// piped to `docker import -`, rather than kept as a temp file, because a static is never
/// dropped and the file would outlive the process.
fn rootfs_tar() -> &'static [u8] {
    static TAR: OnceLock<Vec<u8>> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        build_rootfs(dir.path());
        tar_of(dir.path())
    })
}

/// A tar archive of `dir`'s contents, every file owned by root whoever runs the tests, so the
/// images made from it do not depend on the caller.
fn tar_of(dir: &Path) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar of {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `bin/busybox`, a relative `bin/<applet> -> busybox` link per applet and an empty `tmp/`.
/// `busybox --install -s` would make absolute links to `/usr/bin/busybox`, absent in the image.
fn build_rootfs(root: &Path) {
    use std::os::unix::fs::{PermissionsExt, symlink};
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: install Debian's busybox-static (the test images are made from it)"
    );
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    std::fs::copy(BUSYBOX, bin.join("busybox")).expect("copy busybox");
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    assert!(list.status.success(), "busybox --list failed");
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet != "busybox" {
            symlink("busybox", bin.join(applet)).expect("applet link");
        }
    }
    let tmp = root.join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir tmp");
    // Sticky and world-writable, as /tmp is everywhere; set after creation, past the umask.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
}

/// Removes, when dropped, every container and image a test made: the containers labelled
/// `trellis-test=<label>` and, once [`DockerGuard::also_cluster`] names one, those labelled
/// `io.trellis.cluster=<cluster>`; then the images labelled `trellis-test=<label>`. Dropping
/// never panics, so a failing test still reports its own assertion.
#[derive(Debug)]
pub struct DockerGuard {
    label: String,
    cluster: Option<String>,
}

impl DockerGuard {
    /// A guard for the objects labelled `trellis-test=<label>`.
    pub fn new(label: &str) -> Self {
        DockerGuard {
            label: label.to_owned(),
            cluster: None,
        }
    }

    /// Also removes the containers Trellis deploys for this cluster (`io.trellis.cluster=<id>`),
    /// which carry no test label of their own.
    pub fn also_cluster(&mut self, cluster_id: &str) {
        self.cluster = Some(cluster_id.to_owned());
    }
}

impl Drop for DockerGuard {
    fn drop(&mut self) {
        let mut containers = quiet_ids(&["ps", "-aq", "--no-trunc"], TEST_LABEL, &self.label);
        if let Some(cluster) = &self.cluster {
            containers.extend(quiet_ids(
                &["ps", "-aq", "--no-trunc"],
                CLUSTER_LABEL,
                cluster,
            ));
        }
        if !containers.is_empty() {
            // -v: anonymous volumes go with their containers.
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&containers)
                .output();
        }
        // After the containers: an image in use by one is not removed even with -f.
        let images = quiet_ids(&["images", "-q", "--no-trunc"], TEST_LABEL, &self.label);
        if !images.is_empty() {
            let _ = Command::new("docker")
                .args(["rmi", "-f"])
                .args(&images)
                .output();
        }
    }
}

/// The ids `docker <list> --filter label=<key>=<value>` prints; none when docker fails.
fn quiet_ids(list: &[&str], key: &str, value: &str) -> BTreeSet<String> {
    Command::new("docker")
        .args(list)
        .args(["--filter", &format!("label={key}={value}")])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A container as `docker ps -a` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRow {
    /// The full container id.
    pub id: String,
    /// Its name (without the leading `/`).
    pub name: String,
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited` or `dead`.
    pub state: String,
    /// Every label, the image's included.
    pub labels: BTreeMap<String, String>,
}

/// Every container, running or not, with the label `filter_label` (`key` or `key=value`).
/// The labels come from `docker inspect`: `docker ps` joins them as `k=v,k=v`, which is
/// ambiguous once a value holds a comma. A container removed between the two calls is left out.
pub fn docker_ps(filter_label: &str) -> Vec<ContainerRow> {
    let listed = docker(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label={filter_label}"),
        "--format",
        "{{json .}}",
    ]);
    let rows: Vec<(String, String, String)> = listed
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("docker ps line {line:?}: {e}"));
            let field = |k: &str| row[k].as_str().unwrap_or_default().to_owned();
            (field("ID"), field("Names"), field("State"))
        })
        .collect();
    if rows.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["inspect", "--format", "{{.Id}} {{json .Config.Labels}}"];
    args.extend(rows.iter().map(|(id, _, _)| id.as_str()));
    // Not `docker`: inspect fails when one container is gone, yet prints the others.
    let out = Command::new("docker")
        .args(&args)
        .output()
        .expect("run docker");
    let mut labels: BTreeMap<String, BTreeMap<String, String>> =
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let (id, json) = line.split_once(' ')?;
                let map: Option<BTreeMap<String, String>> = serde_json::from_str(json)
                    .unwrap_or_else(|e| {
                        panic!("labels of {id} from docker inspect, {json:?}: {e}")
                    });
                Some((id.to_owned(), map.unwrap_or_default()))
            })
            .collect();
    rows.into_iter()
        .filter_map(|(id, name, state)| {
            let labels = labels.remove(&id)?;
            Some(ContainerRow {
                id,
                name,
                state,
                labels,
            })
        })
        .collect()
}

/// Runs `docker <args>` and returns its trimmed stdout; panics with its output when it fails.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether `docker <args>` succeeds (its output is dropped).
pub fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits until `check` returns `Some`, polling every 100 ms, or panics with `what` after
/// `timeout`: the blocking twin of [`crate::wait_for`], for tests that drive the `docker` CLI.
pub fn poll_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain TCP port on 127.0.0.1 forwarding to this machine's Docker socket (`socat`), so several
/// node entries can reach the one engine at distinct endpoints. Dropping it cuts every
/// connection through it (socat forks one process per connection: those go too), as an engine
/// that goes away would.
pub struct TcpForward {
    proc: crate::Proc,
    /// The port.
    pub port: u16,
}

impl Drop for TcpForward {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &self.proc.id().to_string()])
            .output();
    }
}

/// Starts a [`TcpForward`]; give `port` to listen again on the port of an earlier one (an
/// engine that comes back).
pub async fn docker_over_tcp(dir: &std::path::Path, port: Option<u16>) -> TcpForward {
    let port = port.unwrap_or_else(crate::free_port);
    let mut cmd = Command::new("socat");
    cmd.arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"))
        .arg("UNIX-CONNECT:/var/run/docker.sock");
    let proc = crate::Proc::spawn(cmd, dir.join(format!("socat-{port}.log")));
    crate::wait_for(&format!("socat on {port}"), crate::PATIENCE, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    TcpForward { proc, port }
}

/// A deployment's containers on one node entry (by the labels Trellis puts on them).
pub fn on_node(deployment_id: &str, node: &str) -> Vec<ContainerRow> {
    docker_ps(&format!("io.trellis.node={node}"))
        .into_iter()
        .filter(|c| {
            c.labels.get("io.trellis.deployment").map(String::as_str) == Some(deployment_id)
        })
        .collect()
}

/// One node's instance in a `deployment { instances { nodeId … } }` answer.
pub fn instance<'a>(
    deployment: &'a serde_json::Value,
    node: &str,
) -> Option<&'a serde_json::Value> {
    deployment["instances"]
        .as_array()?
        .iter()
        .find(|i| i["nodeId"] == node)
}

/// A second Docker engine on this machine: its own `dockerd` in its own network namespace, with
/// its own data root, exec root and socket in a temporary directory, no bridge network and no
/// iptables (containers run with `--network none`), on fuse-overlayfs. Ready in about 5 s. Dropping it stops the daemon (its
/// containers go with it) and removes its directories.
pub struct SecondEngine {
    proc: Option<crate::Proc>,
    /// How many daemons it has started (each logs to its own file).
    started: usize,
    dir: tempfile::TempDir,
    /// Its socket.
    pub socket: std::path::PathBuf,
    /// Its data root (where images and containers go; the agent measures its free space).
    pub data_root: std::path::PathBuf,
}

impl SecondEngine {
    /// Starts one and waits until it answers.
    pub async fn start() -> SecondEngine {
        // Under /var/tmp: /tmp may be a tmpfs too small for images.
        let dir = tempfile::Builder::new()
            .prefix("trellis-dockerd-")
            .tempdir_in("/var/tmp")
            .expect("a directory for the second engine");
        let config = dir.path().join("daemon.json");
        std::fs::write(&config, "{}").expect("its config");
        let socket = dir.path().join("docker.sock");
        let data_root = dir.path().join("data");
        let mut engine = SecondEngine {
            proc: None,
            started: 0,
            socket,
            data_root,
            dir,
        };
        engine.spawn();
        engine
    }

    /// Starts the daemon and waits until it answers.
    fn spawn(&mut self) {
        let dir = self.dir.path();
        // In a network namespace of its own: a dockerd started with --bridge=none deletes the
        // host's docker0 (the system engine's bridge) in the namespace it runs in. Its socket
        // is a file, reachable from here all the same.
        let mut cmd = Command::new("unshare");
        cmd.args(["--net", "dockerd"])
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(&self.data_root)
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--storage-driver",
                "fuse-overlayfs",
            ]);
        self.started += 1;
        self.proc = Some(crate::Proc::spawn(
            cmd,
            dir.join(format!("dockerd-{}.log", self.started)),
        ));
        let host = self.host();
        poll_for("the second dockerd", crate::PATIENCE, || {
            Command::new("docker")
                .args(["-H", &host, "version", "--format", "{{.Server.Version}}"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| ())
        });
    }

    /// Stops the daemon (its containers go with it), empties its data root and starts a new
    /// one on the same socket: an engine that restarted and forgot every image and container,
    /// as after a node's disk was replaced.
    pub fn restart_forgetting(&mut self) {
        self.stop();
        std::fs::remove_dir_all(&self.data_root).expect("empty the data root");
        let _ = std::fs::remove_dir_all(self.dir.path().join("exec"));
        self.spawn();
    }

    /// Stops the daemon and undoes the mounts it leaves behind.
    fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.signal("-TERM");
            if proc.wait_exit(Duration::from_secs(15)).is_none() {
                proc.signal("-KILL");
                let _ = proc.wait_exit(Duration::from_secs(5));
            }
        }
        // fuse-overlayfs mounts a daemon killed hard leaves behind would block the removal.
        if let Ok(mounts) = std::fs::read_to_string("/proc/mounts") {
            let root = self.dir.path().display().to_string();
            for m in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
                if m.starts_with(&root) {
                    let _ = Command::new("umount").args(["-l", m]).output();
                }
            }
        }
    }

    /// `unix://<socket>`, for `docker -H`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs the `docker` CLI against this engine; its stdout, or a panic with its stderr.
    pub fn docker(&self, args: &[&str]) -> String {
        let host = self.host();
        let mut all = vec!["-H", host.as_str()];
        all.extend_from_slice(args);
        docker(&all)
    }

    /// Whether `docker -H <this> <args>` succeeds.
    pub fn docker_ok(&self, args: &[&str]) -> bool {
        let host = self.host();
        let mut all = vec!["-H", host.as_str()];
        all.extend_from_slice(args);
        docker_ok(&all)
    }

    /// The id of `image` on this engine, if it has it.
    pub fn image_id(&self, image: &str) -> Option<String> {
        let host = self.host();
        Command::new("docker")
            .args([
                "-H", &host, "image", "inspect", "--format", "{{.Id}}", image,
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    }

    /// The (latest) daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(
            self.dir
                .path()
                .join(format!("dockerd-{}.log", self.started)),
        )
        .unwrap_or_default()
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The id of `image` on this machine's engine.
pub fn image_id(image: &str) -> String {
    docker(&["image", "inspect", "--format", "{{.Id}}", image])
        .trim()
        .to_owned()
}

/// Imports an image of `mib` MiB (the busybox root filesystem and a file of random bytes, so
/// nothing compresses it away) as `trellis-test/big:<label>`, labelled `trellis-test=<label>`.
pub fn big_image(label: &str, mib: usize) -> String {
    let tag = format!("trellis-test/big:{label}");
    let dir = tempfile::tempdir().expect("tempdir");
    build_rootfs(dir.path());
    let mut blob = vec![0u8; mib << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in blob.chunks_mut(8) {
        // xorshift: random enough that no compression helps.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(dir.path().join("blob"), &blob).expect("the blob");
    let tar = tar_of(dir.path());
    let label_change = format!("LABEL {TEST_LABEL}={label}");
    let tick_cmd = format!("CMD {}", json_cmd(TICK_SCRIPT));
    let mut cmd = Command::new("docker");
    cmd.args([
        "import",
        "--change",
        &label_change,
        "--change",
        "ENV PATH=/bin",
        "--change",
        &tick_cmd,
        "-",
        &tag,
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("docker");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(&tar)
        .expect("the archive to docker import");
    let out = child.wait_with_output().expect("docker import");
    assert!(
        out.status.success(),
        "docker import {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tag
}

/// A Python image made from this machine's own `python3` (no registry): the interpreter, the
/// libraries `ldd` names for it and its compiled modules, the standard library (without its
/// tests) and Debian's pip, imported as `trellis-test/python:<label>` with the label
/// `trellis-test=<label>`. About 70 MB; `python3 -m pip install` of a local wheel works in it.
pub fn python_image(label: &str) -> String {
    let tag = format!("trellis-test/python:{label}");
    // Every path is relative to /, so tar stores it at the same place in the image; -h follows
    // links (the interpreter's names and merged-/usr's /lib) to the files themselves.
    let script = r#"
set -eu
cd /
libs=$( (ldd /usr/bin/python3; find /usr/lib/python3.11/lib-dynload -name '*.so' -exec ldd {} \;) \
  | awk '/=> \//{print $3} /^\t\/lib64/{print $1}' | sort -u | sed 's|^/||')
tar -h --numeric-owner --owner=0 --group=0 -cf - \
  --exclude='usr/lib/python3.11/test' --exclude='usr/lib/python3.11/idlelib' \
  --exclude='usr/lib/python3.11/tkinter' --exclude='usr/lib/python3.11/lib2to3/tests' \
  --exclude='usr/lib/python3.11/EXTERNALLY-MANAGED' \
  usr/bin/python3 usr/lib/python3.11 usr/lib/python3/dist-packages/pip $libs
"#;
    let tar = Command::new("bash")
        .args(["-c", script])
        .output()
        .expect("bash");
    assert!(
        tar.status.success(),
        "the Python rootfs: {}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let label_change = format!("LABEL {TEST_LABEL}={label}");
    let mut child = Command::new("docker")
        .args([
            "import",
            "--change",
            &label_change,
            "--change",
            "ENV PATH=/usr/bin",
            "-",
            &tag,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(&tar.stdout)
        .expect("the rootfs to docker import");
    let out = child.wait_with_output().expect("docker import");
    assert!(
        out.status.success(),
        "docker import {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tag
}

/// Waits (up to `within`) until deployment `id`'s live revision is `revision` and its last
/// rollout `succeeded`, as the API says.
pub async fn rolled_out(server: &crate::Server, id: &str, revision: i64, within: Duration) {
    crate::wait_for(&format!("revision {revision} rolled out"), within, || async {
        let r = server
            .graphql(
                "query($id: String!) { deployment(id: $id) { liveRevision lastRollout { state } } }",
                serde_json::json!({"id": id}),
            )
            .await;
        assert!(r["errors"].is_null(), "{r}");
        let d = &r["data"]["deployment"];
        (d["liveRevision"] == revision && d["lastRollout"]["state"] == "succeeded").then_some(())
    })
    .await;
}

/// A small filesystem (a tmpfs of `mib` MiB under `/var/tmp`), for a node whose Docker data
/// root is nearly full; unmounted when dropped. The tests run as root.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts it.
    pub fn mount(mib: u32) -> SmallDisk {
        let dir = tempfile::tempdir_in("/var/tmp").expect("a mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            mounted.success(),
            "mounting a tmpfs (the tests run as root)"
        );
        SmallDisk { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Joins node `node` whose engine is reached through `proxy`, marked insecure by the admin; its
/// agent measures `docker_root`. Waits until it is online and its first disk figure is in.
pub async fn join_edge(
    server: &crate::Server,
    node: &str,
    proxy: &crate::chaos::Chaos,
    docker_root: &Path,
) -> crate::Agent {
    let endpoint = format!("tcp://127.0.0.1:{}", proxy.port);
    let root = docker_root.display().to_string();
    let agent = server
        .join_agent_with(
            node,
            &["--docker-endpoint", &endpoint, "--docker-root", &root],
        )
        .await;
    server.wait_state(node, "ONLINE", crate::PATIENCE).await;
    let r = server
        .graphql(
            "mutation($id: String!) { setNodeDockerInsecure(id: $id, insecure: true) { id } }",
            serde_json::json!({"id": node}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    crate::wait_for("the node's disk figure", crate::PATIENCE, || async {
        let n = server
            .graphql(
                "query($id: String!) { node(id: $id) { diskFreeBytes } }",
                serde_json::json!({"id": node}),
            )
            .await;
        (n["data"]["node"]["diskFreeBytes"]
            .as_i64()
            .is_some_and(|f| f > 0))
        .then_some(())
    })
    .await;
    agent
}
