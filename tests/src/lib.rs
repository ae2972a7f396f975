//! Test harness for Bannin's end-to-end tests and the fleet benchmark: a
//! throwaway PKI made with rcgen, collectors and agents run as real processes
//! (so they can be SIGKILLed), and an operator client over real mTLS.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod browser;
pub mod https;
pub mod nats;
pub mod netns;
pub mod sandbox;
pub mod sim;
pub mod stall;

use bannin_collector::pki::{Ca, PkiDir, Validity, write_file};
use bannin_proto::identity::{HostId, OperatorName, PeerIdentity};
use bannin_proto::tls::{self, TlsMaterial, TlsPaths};
use bannin_proto::v1::operator_client::OperatorClient;
use tonic::transport::Channel;

/// What a test needs that a machine may not have.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    /// Root: network namespaces, nftables, fanotify, the proc connector,
    /// installing packages.
    Root,
    /// A program on `PATH`, and the Debian package that has it.
    Program(&'static str, &'static str),
    /// Debian's chromium and chromium-driver (the console tests).
    Browser,
    /// This many open files: the soft limit is raised to it when the hard
    /// limit allows (children started after inherit it).
    OpenFiles(u64),
    /// The OCSF schema validator (tests/ocsf/setup.sh: a Python virtual
    /// environment with the published schema's packages, from PyPI).
    OcsfValidator,
}

impl Need {
    /// Why the test cannot run here, if it cannot.
    fn lacking(self) -> Option<String> {
        match self {
            Self::Root if !netns::is_root() => Some("needs root".into()),
            Self::Program(program, package) if !on_path(program) => {
                Some(format!("needs {program} (apt-get install {package})"))
            }
            Self::OcsfValidator if !ocsf_python().is_file() => Some(format!(
                "needs the OCSF validator at {} (run tests/ocsf/setup.sh; it needs python3-venv)",
                ocsf_python().display()
            )),
            Self::Browser if !browser::available() => Some(
                "needs chromium and chromedriver (apt-get install chromium chromium-driver)".into(),
            ),
            Self::OpenFiles(n) => {
                use nix::sys::resource::{Resource, getrlimit, setrlimit};
                let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
                if soft >= n {
                    return None;
                }
                if hard < n {
                    // Root may raise the hard limit too.
                    if netns::is_root() && setrlimit(Resource::RLIMIT_NOFILE, n, n).is_ok() {
                        return None;
                    }
                    return Some(format!(
                        "needs {n} open files; the hard limit is {hard} (ulimit -Hn)"
                    ));
                }
                setrlimit(Resource::RLIMIT_NOFILE, n, hard)
                    .err()
                    .map(|e| format!("needs {n} open files; raising the limit failed: {e}"))
            }
            _ => None,
        }
    }
}

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The Python of the OCSF validator's virtual environment (tests/ocsf/setup.sh).
pub fn ocsf_python() -> PathBuf {
    workspace().join("target/ocsf-venv/bin/python3")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Whether the running test has what it `needs` here. When it has not, the
/// test is skipped: the reason is written where `cargo test` shows it (past
/// its output capture) and this returns `false`, so the test returns. Under
/// CI (`CI` set, as `.ci/run` and most CI systems do), a skip fails the test
/// instead: CI installs everything, so a missing need there is a broken
/// machine, not a reason.
///
/// ```ignore
/// if !bannin_tests::runnable(&[Need::Root]) {
///     return;
/// }
/// ```
pub fn runnable(needs: &[Need]) -> bool {
    use std::io::Write;
    let reasons: Vec<String> = needs.iter().filter_map(|n| n.lacking()).collect();
    if reasons.is_empty() {
        return true;
    }
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let why = reasons.join("; ");
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {why} — under CI nothing may be skipped"
    );
    // Straight to the terminal: libtest captures print!, not stderr itself.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    false
}

/// Path of a workspace binary, built on first use.
///
/// `cargo test` builds the binaries of a package only for that package's own
/// integration tests, so the first call runs `cargo build --bins` for the
/// workspace (with the cargo and target directory of the running test, a no-op
/// when they are fresh). Set `BANNIN_SKIP_BUILD=1` to use what is there.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let dir = BUILT
        .get_or_init(build_binaries)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing after the build",
        path.display()
    );
    path
}

fn build_binaries() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut dir = exe.parent().ok_or("no exe dir")?.to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    if std::env::var_os("BANNIN_SKIP_BUILD").is_some() {
        return Ok(dir);
    }
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_owned();
    let target_dir = dir.parent().ok_or("no target dir")?.to_owned();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--workspace", "--bins", "--quiet"])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir);
    if profile == "release" {
        command.arg("--release");
    }
    let status = command
        .status()
        .map_err(|e| format!("running cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --workspace --bins failed: {status}"));
    }
    Ok(dir)
}

/// Space `dir` takes on disk as `du` counts it (blocks of every file and
/// directory), leaving out its entries named in `skip`.
pub fn du(dir: &Path, skip: &[&str]) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::symlink_metadata(dir).map_or(0, |m| m.blocks() * 512);
    own + std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| !skip.iter().any(|s| e.file_name() == *s))
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => du(&e.path(), &[]),
                    Ok(m) => m.blocks() * 512,
                    Err(_) => 0,
                })
                .sum::<u64>()
        })
        .unwrap_or(0)
}

/// A free port on 127.0.0.1 (bound and released; fine for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A throwaway PKI in a directory.
#[derive(Clone)]
pub struct TestPki {
    /// The PKI directory.
    pub dir: PkiDir,
}

impl TestPki {
    /// Creates a CA and a collector certificate for `bannin-collector`, `localhost` and 127.0.0.1.
    pub fn new(root: &Path) -> Self {
        let dir = PkiDir(root.join("pki"));
        dir.init(
            &["bannin-collector".into(), "localhost".into()],
            &["127.0.0.1".parse().expect("ip")],
            false,
        )
        .expect("pki init");
        Self { dir }
    }

    /// Issues (or reuses) an agent certificate; returns TLS paths.
    pub fn agent(&self, host: &str) -> TlsPaths {
        let id = PeerIdentity::Agent(HostId::new(host).expect("host id"));
        self.client(&id)
    }

    /// Issues (or reuses) an operator certificate; returns TLS paths.
    pub fn operator(&self, name: &str) -> TlsPaths {
        let id = PeerIdentity::Operator(OperatorName::new(name).expect("name"));
        self.client(&id)
    }

    /// Issues (or reuses) a cluster collector's certificate (its NATS
    /// client certificate and log signer); returns TLS paths.
    pub fn collector(&self, name: &str) -> TlsPaths {
        let id = PeerIdentity::Collector(
            bannin_proto::identity::CollectorName::new(name).expect("collector name"),
        );
        self.client(&id)
    }

    fn client(&self, id: &PeerIdentity) -> TlsPaths {
        let (cert, key) = self.dir.client(id);
        if !cert.exists() {
            self.dir.issue(id, 30, false).expect("issue");
        }
        TlsPaths {
            ca: self.dir.ca_cert(),
            cert,
            key,
        }
    }

    /// An agent certificate from this CA that expired yesterday.
    pub fn expired_agent(&self, host: &str, out: &Path) -> TlsPaths {
        let ca = self.dir.load_ca().expect("ca");
        let now = time::OffsetDateTime::now_utc();
        let issued = ca
            .issue_client(
                &PeerIdentity::Agent(HostId::new(host).expect("host")),
                Validity {
                    not_before: now - time::Duration::days(30),
                    not_after: now - time::Duration::days(1),
                },
            )
            .expect("issue");
        self.write(out, "expired", issued.cert_pem, issued.key_pem)
    }

    /// An agent certificate for `host` from a different CA.
    pub fn foreign_agent(&self, host: &str, out: &Path) -> TlsPaths {
        let ca = Ca::generate("Some other CA").expect("ca");
        let issued = ca
            .issue_client(
                &PeerIdentity::Agent(HostId::new(host).expect("host")),
                Validity::days(30),
            )
            .expect("issue");
        self.write(out, "foreign", issued.cert_pem, issued.key_pem)
    }

    fn write(&self, out: &Path, stem: &str, cert: String, key: String) -> TlsPaths {
        let cert_path = out.join(format!("{stem}.pem"));
        let key_path = out.join(format!("{stem}.key"));
        write_file(&cert_path, &cert, 0o644, true).expect("write cert");
        write_file(&key_path, &key, 0o600, true).expect("write key");
        TlsPaths {
            ca: self.dir.ca_cert(),
            cert: cert_path,
            key: key_path,
        }
    }
}

/// A child process killed when dropped, with its stderr in a log file.
pub struct Proc {
    child: Child,
    /// Its log.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `command` with its stderr in `log`.
    pub fn spawn(command: Command, log: PathBuf) -> Self {
        Self::spawn_inner(command, log, None)
    }

    /// [`Proc::spawn`], with its stdout in the file `stdout`.
    pub fn spawn_with_stdout(command: Command, log: PathBuf, stdout: &Path) -> Self {
        Self::spawn_inner(command, log, Some(stdout))
    }

    fn spawn_inner(mut command: Command, log: PathBuf, stdout: Option<&Path>) -> Self {
        let file = std::fs::File::create(&log).expect("log file");
        let out = match stdout {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("stdout file")),
            None => Stdio::null(),
        };
        command.stdin(Stdio::null()).stdout(out).stderr(file).env(
            "RUST_LOG",
            std::env::var("BANNIN_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let child = command.spawn().expect("spawn");
        Self { child, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `grace` for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self, grace: Duration) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        false
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit by itself; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A collector process and what it needs.
pub struct CollectorProc {
    /// The process.
    pub proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its config file.
    pub config: PathBuf,
}

/// Operators the test collectors make admin on first start.
pub const BOOTSTRAP_ADMINS: [&str; 3] = ["alice", "auditor", "bench"];

/// Writes a collector config in `dir` (store in `dir/store`).
pub fn collector_config(dir: &Path, pki: &TestPki, port: u16, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("collector dir");
    let config = dir.join("collector.toml");
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\ndata_dir = {data:?}\n{extra}\n[tls]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n\n[operators]\nbootstrap_admins = {admins:?}\n",
        admins = BOOTSTRAP_ADMINS,
        data = dir.display().to_string(),
        ca = pki.dir.ca_cert().display().to_string(),
        cert = pki.dir.server_cert().display().to_string(),
        key = pki.dir.server_key().display().to_string(),
    );
    std::fs::write(&config, text).expect("write config");
    config
}

impl CollectorProc {
    /// Starts `bannin-collector serve` on `port` with data in `dir`, and waits until it accepts connections.
    pub fn start(dir: &Path, pki: &TestPki, port: u16, extra: &str) -> Self {
        let config = collector_config(dir, pki, port, extra);
        Self::start_with(dir, config, port)
    }

    /// Starts on a free port, and on another one if a process of a test
    /// running beside took the port first (the collector then exits with
    /// "Address already in use"): waits until this collector says it serves.
    pub fn start_free(dir: &Path, pki: &TestPki, extra: &str) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let config = collector_config(dir, pki, port, extra);
            let mut command = Command::new(bin("bannin-collector"));
            command.arg("serve").arg("--config").arg(&config);
            let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
            let mut proc = Proc::spawn(command, dir.join(format!("collector-{n}.log")));
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let log = proc.log_text();
                if log.contains("Collector serving") {
                    let addr = SocketAddr::from(([127, 0, 0, 1], port));
                    return Self { proc, addr, config };
                }
                if !proc.running() {
                    assert!(
                        log.contains("Address already in use"),
                        "collector exited: {log}"
                    );
                    break;
                }
                assert!(Instant::now() < deadline, "collector did not start: {log}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("no free port for the collector in five tries")
    }

    /// Starts with an existing config.
    pub fn start_with(dir: &Path, config: PathBuf, port: u16) -> Self {
        let mut command = Command::new(bin("bannin-collector"));
        command.arg("serve").arg("--config").arg(&config);
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let mut proc = Proc::spawn(command, dir.join(format!("collector-{n}.log")));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(proc.running(), "collector exited: {}", proc.log_text());
            assert!(
                Instant::now() < deadline,
                "collector did not listen: {}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { proc, addr, config }
    }
}

/// Options of a test agent.
#[derive(Clone)]
pub struct AgentOptions {
    /// Directories the odd-name sensor watches.
    pub watch: Vec<PathBuf>,
    /// Whether leading dots are odd.
    pub dotfiles_unexpected: bool,
    /// Sensor interval.
    pub interval_secs: u64,
    /// Spool byte cap.
    pub spool_max_bytes: u64,
    /// Extra TOML appended to `[link]`.
    pub link: String,
    /// Body of the `[response]` section.
    pub response: String,
    /// Extra environment variables of the agent process (test hooks).
    pub env: Vec<(String, String)>,
    /// Whether the listener sensor runs.
    pub net_listener: bool,
    /// Whether the connection sensor runs (with loopback peers included).
    pub net_connection: bool,
    /// Raw TOML appended to the config (whole tables, e.g. `[labels]`).
    pub extra: String,
    /// Sensors off by default in tests that this agent runs: any of accounts,
    /// process, system, hardware, net_interface.
    pub enable: Vec<&'static str>,
    /// Extra keys for one of those sensors' sections: (sensor, TOML lines).
    pub sensor_toml: Vec<(&'static str, String)>,
    /// Extra TOML lines in `[tls]`.
    pub tls_extra: String,
    /// The host root the sensors read (`root`), instead of `/`.
    pub root: Option<PathBuf>,
    /// `[sensors] learn_secs` (tests default to 0: no quiet learning window).
    pub learn_secs: u64,
    /// Extra keys of the `[sensors]` table (e.g. `fold_after = 1000000`).
    pub sensors: String,
    /// Further collectors after the first (`[collector] addresses`, cluster mode).
    pub more_collectors: Vec<SocketAddr>,
    /// Restrictions the agent process runs under (a systemd unit's, emulated).
    pub sandbox: Option<sandbox::Sandbox>,
}

/// Sensors the harness turns off unless a test enables them.
pub const OPTIONAL_SENSORS: &[&str] = &[
    "accounts",
    "process",
    "system",
    "hardware",
    "net_interface",
    "logs",
    "file_integrity",
    "resources",
    "file_access",
];

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            watch: Vec::new(),
            dotfiles_unexpected: false,
            interval_secs: 1,
            spool_max_bytes: 256 * 1024 * 1024,
            link: String::new(),
            response: String::new(),
            env: Vec::new(),
            net_listener: true,
            net_connection: false,
            extra: String::new(),
            enable: Vec::new(),
            sensor_toml: Vec::new(),
            tls_extra: String::new(),
            root: None,
            more_collectors: Vec::new(),
            learn_secs: 0,
            sensors: String::new(),
            sandbox: None,
        }
    }
}

/// Writes an agent config in `dir`.
pub fn agent_config(
    dir: &Path,
    tls: &TlsPaths,
    collector: SocketAddr,
    options: &AgentOptions,
) -> PathBuf {
    let config = dir.join("agent.toml");
    let watch: Vec<String> = options
        .watch
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    let root = options
        .root
        .as_ref()
        .map(|r| format!("root = {:?}\n", r.display().to_string()))
        .unwrap_or_default();
    let collectors = if options.more_collectors.is_empty() {
        format!("address = \"{collector}\"")
    } else {
        let all: Vec<String> = std::iter::once(collector)
            .chain(options.more_collectors.iter().copied())
            .map(|a| format!("\"{a}\""))
            .collect();
        format!("addresses = [{}]", all.join(", "))
    };
    let text = format!(
        r#"{root}[collector]
{collectors}

[tls]
ca = {ca:?}
cert = {cert:?}
key = {key:?}
{tls_extra}

[spool]
dir = {spool:?}
max_bytes = {spool_max}

[link]
heartbeat_secs = 1
backoff_initial_ms = 100
backoff_max_secs = 2
{link}

[sensors]
learn_secs = {learn_secs}
{sensors}

[sensors.net_listener]
enabled = {listener}
interval_secs = {interval}

[sensors.net_connection]
enabled = {connection}
interval_secs = {interval}
include_loopback = true

[sensors.file_odd_name]
interval_secs = {interval}
paths = [{watch}]
dotfiles_unexpected = {dots}

{optional}
[response]
{response}

{extra}
"#,
        ca = tls.ca.display().to_string(),
        cert = tls.cert.display().to_string(),
        key = tls.key.display().to_string(),
        spool = dir.join("spool").display().to_string(),
        spool_max = options.spool_max_bytes,
        link = options.link,
        tls_extra = options.tls_extra,
        listener = options.net_listener,
        interval = options.interval_secs,
        watch = watch.join(", "),
        dots = options.dotfiles_unexpected,
        response = options.response,
        connection = options.net_connection,
        extra = options.extra,
        learn_secs = options.learn_secs,
        sensors = options.sensors,
        optional = OPTIONAL_SENSORS
            .iter()
            .map(|name| {
                let extra: Vec<&str> = options
                    .sensor_toml
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, t)| t.as_str())
                    .collect();
                format!(
                    "[sensors.{name}]\nenabled = {}\ninterval_secs = {}\n{}\n",
                    options.enable.contains(name),
                    options.interval_secs,
                    extra.join("\n")
                )
            })
            .collect::<String>(),
    );
    std::fs::write(&config, text).expect("write agent config");
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod agent config");
    config
}

/// Starts `bannin-agent run` with a config written in `dir`.
pub fn start_agent(
    dir: &Path,
    tls: &TlsPaths,
    collector: SocketAddr,
    options: &AgentOptions,
) -> Proc {
    std::fs::create_dir_all(dir).expect("agent dir");
    let config = agent_config(dir, tls, collector, options);
    let mut command = Command::new(bin("bannin-agent"));
    command.arg("run").arg("--config").arg(&config);
    command.envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if let Some(sandbox) = &options.sandbox {
        sandbox.apply(&mut command).expect("the agent's sandbox");
    }
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    Proc::spawn(command, dir.join(format!("agent-{n}.log")))
}

/// An operator client over mTLS.
pub async fn operator_client(tls_paths: &TlsPaths, addr: SocketAddr) -> OperatorClient<Channel> {
    let material = TlsMaterial::load(tls_paths).expect("operator material");
    let config = tls::client_config(&material).expect("client config");
    let channel = tls::connect(&addr.to_string(), "bannin-collector", config)
        .await
        .expect("connect operator");
    OperatorClient::new(channel).max_decoding_message_size(256 * 1024 * 1024)
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes an operator.toml for the CLI.
pub fn operator_toml(dir: &Path, tls: &TlsPaths, addr: SocketAddr) -> PathBuf {
    let path = dir.join("operator.toml");
    let text = format!(
        "collector = \"{addr}\"\nserver_name = \"bannin-collector\"\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
        tls.ca.display().to_string(),
        tls.cert.display().to_string(),
        tls.key.display().to_string()
    );
    std::fs::write(&path, text).expect("write operator.toml");
    path
}

/// Runs `bannin ARGS --json --config OPERATOR`; returns (exit success, stdout as JSON
/// (Null when it is not JSON), stderr).
pub fn bannin_json(operator: &Path, args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = Command::new(bin("bannin"))
        .args(args)
        .args(["--json", "--config"])
        .arg(operator)
        .output()
        .expect("run bannin");
    let value = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.success(),
        value,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Threads that keep `n` cores busy until dropped (a loaded machine, for
/// tests and benchmarks that must hold under load).
pub struct CpuHogs {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl CpuHogs {
    /// Starts `n` busy threads.
    pub fn start(n: usize) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name("hog".into())
                    .spawn(move || {
                        let mut x = 0u64;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        }
                        x
                    })
                    .expect("hog thread")
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for CpuHogs {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
