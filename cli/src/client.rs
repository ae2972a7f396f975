//! The operator's connection to the collector: `operator.toml`, and an mTLS
//! client of the `Operator` service.

use std::path::{Path, PathBuf};

use anyhow::Context;
use bannin_proto::config::load_toml;
use bannin_proto::tls::{self, TlsMaterial, TlsPaths};
use bannin_proto::v1::operator_client::OperatorClient;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

/// Default location of the operator config (written by `bannin up`).
pub const DEFAULT_CONFIG: &str = "bannin-data/operator.toml";

/// `operator.toml`: where the collector is and who the operator is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorConfig {
    /// `host:port` of the collector.
    pub collector: String,
    /// DNS name in the collector's certificate.
    #[serde(default = "default_server_name")]
    pub server_name: String,
    /// CA certificate.
    pub ca: PathBuf,
    /// Operator certificate.
    pub cert: PathBuf,
    /// Operator key (mode 0600).
    pub key: PathBuf,
}

fn default_server_name() -> String {
    "bannin-collector".into()
}

/// Which operator config to use: `--config`, else `BANNIN_CONFIG`, else the default.
pub fn config_path(flag: Option<PathBuf>) -> PathBuf {
    // Where the operator config is: the documented $BANNIN_CONFIG.
    #[allow(clippy::disallowed_methods)]
    flag.or_else(|| std::env::var_os("BANNIN_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

impl OperatorConfig {
    /// Loads `path`; relative paths inside are relative to the file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            anyhow::bail!(
                "no operator config at {} (pass --config FILE, set BANNIN_CONFIG, or run `bannin up` to create a dev setup)",
                path.display()
            );
        }
        let (mut config, errors): (Self, _) = load_toml(path).map_err(anyhow::Error::new)?;
        errors.into_result().map_err(anyhow::Error::new)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.ca = base.join(&config.ca);
        config.cert = base.join(&config.cert);
        config.key = base.join(&config.key);
        Ok(config)
    }

    /// Connects to the collector's operator API.
    pub async fn connect(&self) -> anyhow::Result<OperatorClient<Channel>> {
        let material = TlsMaterial::load(&TlsPaths {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        })
        .context("loading operator certificate")?;
        let channel = tls::connect(
            &self.collector,
            &self.server_name,
            tls::client_config(&material)?,
        )
        .await
        .with_context(|| format!("connecting to the collector at {}", self.collector))?;
        Ok(OperatorClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
    }
}
