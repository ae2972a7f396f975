//! A real browser for the console tests and benchmark: Debian's `chromium`,
//! headless, driven over WebDriver by `chromedriver` (fantoccini on our side).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

/// `chromedriver` and the browser it starts, in their own process group
/// (killed together on drop).
pub struct Driver {
    child: std::process::Child,
    /// Where it listens (`http://127.0.0.1:PORT`).
    pub url: String,
    profile: tempfile::TempDir,
}

/// Whether Chromium and ChromeDriver are installed (`.ci/run` installs them).
pub fn available() -> bool {
    Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists()
}

impl Driver {
    /// Starts chromedriver on `port`; `wrap` runs it somewhere else (e.g. `ip netns exec NS`).
    pub fn start(port: u16, wrap: &[&str], log: &Path) -> Self {
        use std::os::unix::process::CommandExt;
        assert!(
            available(),
            "the console tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        );
        let mut command = match wrap.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg("/usr/bin/chromedriver");
                c
            }
            None => Command::new("/usr/bin/chromedriver"),
        };
        command
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let child = command.spawn().expect("chromedriver");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile: tempfile::tempdir().expect("profile dir"),
        }
    }

    /// A new headless browser session (retries while chromedriver starts).
    pub async fn session(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ],
            }),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&self.url)
                .await
            {
                Ok(c) => return c,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no WebDriver session at {}: {e}", self.url),
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and every Chromium process it started.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Moves the calling thread into network namespace `name` (sockets it opens
/// from now on live there). Only for a thread made for it.
pub fn enter_netns(name: &str) {
    let file = std::fs::File::open(format!("/var/run/netns/{name}")).expect("netns file");
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// Where the console screenshots go: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// Saves a screenshot of the page as `NAME.png`.
pub async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("write screenshot");
}

/// Waits up to `secs` for an element.
pub async fn wait_for(client: &Client, css: &str, secs: u64) -> fantoccini::elements::Element {
    match client
        .wait()
        .at_most(Duration::from_secs(secs))
        .for_element(Locator::Css(css))
        .await
    {
        Ok(e) => e,
        Err(e) => {
            let source = client.source().await.unwrap_or_default();
            panic!("no {css} within {secs} s: {e}\npage:\n{source}")
        }
    }
}

/// Polls `check` (a script returning a boolean) until true, up to `secs`.
pub async fn wait_until_js(client: &Client, script: &str, secs: u64, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if client
            .execute(script, vec![])
            .await
            .ok()
            .and_then(|v| v.as_bool())
            == Some(true)
        {
            return;
        }
        if std::time::Instant::now() > deadline {
            let source = client.source().await.unwrap_or_default();
            panic!("timed out waiting for {what}\npage:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
