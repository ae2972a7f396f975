//! `bannin-collector cluster init`: everything a cluster needs, written at
//! once — a local demo that runs as generated, and the templates of a real
//! deployment.
//!
//! In `DIR`: a Bannin PKI (`pki/`: the CA, the collectors' shared server
//! certificate, one collector certificate per collector, one certificate per
//! NATS server, an admin operator's), one `nats-server` configuration per
//! server (`nats/NAME.conf`: JetStream, mTLS with `verify_and_map`, an
//! authorization that admits only the collectors, routes between the
//! servers), one `collector.toml` per collector (`collectors/NAME/`), the
//! admin's `operator.toml`, and `start` / `stop` scripts that run it all on
//! this machine.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use bannin_proto::identity::{CollectorName, OperatorName, PeerIdentity};

use crate::pki::{PkiDir, PkiError, write_file};

/// What `cluster init` is asked for.
#[derive(Debug, Clone)]
pub struct InitPlan {
    /// Where everything is written.
    pub dir: PathBuf,
    /// The collectors' names.
    pub collectors: Vec<CollectorName>,
    /// The NATS servers' names (1 or 3).
    pub nats: Vec<String>,
    /// The address everything listens on (the demo: 127.0.0.1).
    pub host: IpAddr,
    /// The first port: NATS clients from it, routes from +100, monitoring
    /// from +200, collectors from +300.
    pub base_port: u16,
    /// The admin operator.
    pub admin: OperatorName,
    /// The collector binary the `start` script runs.
    pub collector_bin: PathBuf,
    /// Replace files that exist.
    pub force: bool,
}

/// Why `cluster init` stopped.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The request does not make a cluster.
    #[error("{0}")]
    Plan(String),
    /// Making a certificate failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// The files written, for the caller to show.
#[derive(Debug)]
pub struct Written {
    /// The script that starts the demo.
    pub start: PathBuf,
    /// The script that stops it.
    pub stop: PathBuf,
    /// The admin's CLI configuration.
    pub operator: PathBuf,
    /// Each collector's configuration.
    pub collectors: Vec<PathBuf>,
    /// Each NATS server's configuration.
    pub nats: Vec<PathBuf>,
}

impl InitPlan {
    fn port(&self, offset: u16, i: usize) -> Result<u16, InitError> {
        u16::try_from(i)
            .ok()
            .and_then(|i| self.base_port.checked_add(offset)?.checked_add(i))
            .ok_or_else(|| InitError::Plan(format!("--base-port {} is too high", self.base_port)))
    }

    /// Writes everything; refuses to replace a file without `force`.
    pub fn write(&self) -> Result<Written, InitError> {
        if self.nats.len() != 1 && self.nats.len() != 3 {
            return Err(InitError::Plan(format!(
                "--nats names {} servers: JetStream needs 1 (no failover) or 3",
                self.nats.len()
            )));
        }
        // Names become file names: the same rule as host ids.
        if let Some(bad) = self
            .nats
            .iter()
            .find(|n| CollectorName::new(n.as_str()).is_err())
        {
            return Err(InitError::Plan(format!(
                "NATS server name {bad:?}: ASCII letters, digits, '.', '_' and '-', not starting with '.' or '-'"
            )));
        }
        if self.collectors.is_empty() {
            return Err(InitError::Plan("--collectors names none".into()));
        }
        let replicas = self.nats.len();
        let pki = PkiDir(self.dir.join("pki"));
        let host = self.host.to_string();
        pki.init(
            &["bannin-collector".to_owned(), "localhost".to_owned()],
            &[self.host],
            self.force,
        )?;
        let admin = PeerIdentity::Operator(self.admin.clone());
        pki.issue(&admin, 365, self.force)?;
        for c in &self.collectors {
            pki.issue(&PeerIdentity::Collector(c.clone()), 365, self.force)?;
        }
        for n in &self.nats {
            pki.issue_nats(n, &[], &[self.host], 365, self.force)?;
        }
        let users: String = self
            .collectors
            .iter()
            .map(|c| {
                format!(
                    "    {{ user: \"CN={c},OU={}\" }}\n",
                    bannin_proto::identity::COLLECTOR_OU
                )
            })
            .collect();
        let mut nats_files = Vec::new();
        let mut urls = Vec::new();
        for (i, name) in self.nats.iter().enumerate() {
            let (cert, key) = pki.nats(name);
            let routes: Vec<String> = (0..self.nats.len())
                .filter(|j| *j != i)
                .map(|j| Ok(format!("    nats-route://{host}:{}", self.port(100, j)?)))
                .collect::<Result<_, InitError>>()?;
            let cluster = if self.nats.len() > 1 {
                format!(
                    "cluster {{\n  name: bannin\n  listen: {host}:{route}\n  tls {{\n    cert_file: {cert:?}\n    key_file: {key:?}\n    ca_file: {ca:?}\n    verify: true\n    timeout: 5\n  }}\n  routes: [\n{routes}\n  ]\n}}\n",
                    route = self.port(100, i)?,
                    cert = cert.display().to_string(),
                    key = key.display().to_string(),
                    ca = pki.ca_cert().display().to_string(),
                    routes = routes.join("\n"),
                )
            } else {
                String::new()
            };
            let store = self.dir.join("nats").join(name);
            let text = format!(
                "# NATS server {name} of the Bannin cluster (written by `bannin-collector cluster init`).\n\
                 server_name: {name}\nlisten: {host}:{port}\nhttp: 127.0.0.1:{http}\n\
                 # A batch is published whole: at least the collectors' max_message_bytes.\nmax_payload: 8MB\n\n\
                 jetstream {{\n  store_dir: {store:?}\n  max_file_store: 8GB\n  max_memory_store: 256MB\n}}\n\n\
                 # Clients with a certificate of the Bannin CA, mapped to a user by subject.\n\
                 tls {{\n  cert_file: {cert:?}\n  key_file: {key:?}\n  ca_file: {ca:?}\n  verify_and_map: true\n  timeout: 5\n}}\n\n\
                 # Only the collectors: agents' and operators' certificates map to no user.\n\
                 authorization {{\n  users = [\n{users}  ]\n}}\n\n{cluster}",
                port = self.port(0, i)?,
                http = self.port(200, i)?,
                store = store.display().to_string(),
                cert = cert.display().to_string(),
                key = key.display().to_string(),
                ca = pki.ca_cert().display().to_string(),
            );
            let path = self.dir.join("nats").join(format!("{name}.conf"));
            write_file(&path, &text, 0o644, self.force)?;
            nats_files.push(path);
            urls.push(format!("\"tls://{host}:{}\"", self.port(0, i)?));
        }
        let mut collector_files = Vec::new();
        let mut listens = Vec::new();
        for (k, c) in self.collectors.iter().enumerate() {
            let dir = self.dir.join("collectors").join(c.as_str());
            let (cert, key) = pki.client(&PeerIdentity::Collector(c.clone()));
            let listen = format!("{host}:{}", self.port(300, k)?);
            let text = format!(
                "# Collector {c} of the Bannin cluster (written by `bannin-collector cluster init`).\n\
                 listen = \"{listen}\"\ndata_dir = {data:?}\n\n\
                 [tls]\nca = {ca:?}\ncert = {server_cert:?}\nkey = {server_key:?}\n\n\
                 [operators]\nbootstrap_admins = [\"{admin}\"]\n\n\
                 [cluster]\nname = \"{c}\"\nservers = [{urls}]\nreplicas = {replicas}\n\
                 # Per replica; the servers hold max_file_store (8GB) each.\nmax_bytes = 4294967296\n\n\
                 [cluster.tls]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n",
                data = dir.join("data").display().to_string(),
                ca = pki.ca_cert().display().to_string(),
                server_cert = pki.server_cert().display().to_string(),
                server_key = pki.server_key().display().to_string(),
                admin = self.admin,
                urls = urls.join(", "),
                cert = cert.display().to_string(),
                key = key.display().to_string(),
            );
            let path = dir.join("collector.toml");
            write_file(&path, &text, 0o644, self.force)?;
            collector_files.push(path);
            listens.push(listen);
        }
        let (admin_cert, admin_key) = pki.client(&admin);
        let operator = self.dir.join("operator.toml");
        write_file(
            &operator,
            &format!(
                "# The admin's `bannin` configuration: bannin --config {op} cluster\n\
                 collector = \"{first}\"\nserver_name = \"bannin-collector\"\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n",
                op = self.dir.join("operator.toml").display(),
                first = listens[0],
                ca = pki.ca_cert().display().to_string(),
                cert = admin_cert.display().to_string(),
                key = admin_key.display().to_string(),
            ),
            0o644,
            self.force,
        )?;
        let start = self.dir.join("start");
        let stop = self.dir.join("stop");
        write_file(
            &start,
            &self.start_script(&nats_files, &collector_files, &listens)?,
            0o755,
            self.force,
        )?;
        write_file(&stop, &stop_script(&self.dir), 0o755, self.force)?;
        Ok(Written {
            start,
            stop,
            operator,
            collectors: collector_files,
            nats: nats_files,
        })
    }

    fn start_script(
        &self,
        nats: &[PathBuf],
        collectors: &[PathBuf],
        listens: &[String],
    ) -> Result<String, InitError> {
        let dir = shell_quote(&self.dir);
        let mut s = format!(
            "#!/bin/sh\n# Starts the Bannin cluster written by `bannin-collector cluster init` on this\n\
             # machine: {} NATS server(s), then {} collector(s). Logs and pids in {dir}/run.\n\
             set -eu\nrun={dir}/run\nmkdir -p \"$run\"\n\
             command -v nats-server >/dev/null || {{ echo 'nats-server is not installed (apt install nats-server)' >&2; exit 1; }}\n\
             wait_for() {{ # what, test command\n  i=0\n  until sh -c \"$2\" >/dev/null 2>&1; do\n    i=$((i+1))\n    if [ $i -gt 600 ]; then echo \"$1 did not start; see $run\" >&2; exit 1; fi\n    sleep 0.1\n  done\n}}\n",
            nats.len(),
            collectors.len()
        );
        for (path, name) in nats.iter().zip(&self.nats) {
            let _ = writeln!(
                s,
                "nohup nats-server -c {} > \"$run/nats-{name}.log\" 2>&1 &\necho $! > \"$run/nats-{name}.pid\"",
                shell_quote(path)
            );
        }
        for name in &self.nats {
            let _ = writeln!(
                s,
                "wait_for 'nats-server {name}' \"grep -q 'Server is ready' $run/nats-{name}.log\""
            );
        }
        let bin = shell_quote(&self.collector_bin);
        for ((path, c), listen) in collectors.iter().zip(&self.collectors).zip(listens) {
            let _ = writeln!(
                s,
                "nohup {bin} serve --config {} > \"$run/collector-{c}.log\" 2>&1 &\necho $! > \"$run/collector-{c}.pid\"\n\
                 wait_for 'collector {c}' \"grep -q 'Collector serving' $run/collector-{c}.log\"\necho \"collector {c}: {listen}\"",
                shell_quote(path)
            );
        }
        let _ = writeln!(
            s,
            "echo \"running. The cluster: bannin --config {dir}/operator.toml cluster   Stop: {dir}/stop\""
        );
        Ok(s)
    }
}

fn stop_script(dir: &Path) -> String {
    let dir = shell_quote(dir);
    format!(
        "#!/bin/sh\n# Stops what {dir}/start started (collectors first, then NATS).\nrun={dir}/run\n\
         for f in \"$run\"/collector-*.pid \"$run\"/nats-*.pid; do\n  [ -e \"$f\" ] || continue\n  \
         kill \"$(cat \"$f\")\" 2>/dev/null || true\n  rm -f \"$f\"\ndone\n\
         sleep 1\necho stopped\n"
    )
}

/// `path` in single quotes for sh.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dir: &Path, nats: &[&str]) -> InitPlan {
        InitPlan {
            dir: dir.to_owned(),
            collectors: vec![CollectorName::new("a").expect("name")],
            nats: nats.iter().map(|n| (*n).to_owned()).collect(),
            host: IpAddr::from([127, 0, 0, 1]),
            base_port: 14222,
            admin: OperatorName::new("admin").expect("name"),
            collector_bin: PathBuf::from("/usr/bin/bannin-collector"),
            force: false,
        }
    }

    #[test]
    fn a_plan_that_is_no_cluster_or_names_a_path_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        for nats in [&["n1", "n2"][..], &["../n1"][..], &[][..]] {
            let err = plan(dir.path(), nats).write().expect_err("refused");
            assert!(matches!(err, InitError::Plan(_)), "{err}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn everything_is_written_once_and_admits_only_the_collectors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = plan(dir.path(), &["n1", "n2", "n3"])
            .write()
            .expect("written");
        let conf = std::fs::read_to_string(&written.nats[0]).expect("nats conf");
        assert!(conf.contains("verify_and_map: true"), "{conf}");
        assert!(
            conf.contains("user: \"CN=a,OU=bannin-collector\""),
            "{conf}"
        );
        assert!(
            conf.contains(":14323") && conf.contains(":14324"),
            "routes: {conf}"
        );
        let collector = std::fs::read_to_string(&written.collectors[0]).expect("collector");
        assert!(collector.contains("collectors/a.pem"), "{collector}");
        // A second run does not overwrite.
        assert!(plan(dir.path(), &["n1", "n2", "n3"]).write().is_err());
    }
}
