//! Development secrets: `relay serve` with no settings makes an API key and a client secret,
//! keeps them in the data dir (mode 0600) so restarts and `relay token` / `relay
//! send-test-event` agree, and prints them once. Settings in the environment always win.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read or write development secrets in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("development secrets file {0} is damaged; delete it to make new ones")]
    Damaged(PathBuf),
}

#[derive(Clone, Serialize, Deserialize)]
pub struct DevSecrets {
    pub api_key: String,
    pub client_secret: String,
}

const FILE: &str = "dev-secrets.json";

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

pub fn load(data_dir: &Path) -> Result<Option<DevSecrets>, SecretsError> {
    let p = path(data_dir);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| SecretsError::Damaged(p)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SecretsError::Io { path: p, source }),
    }
}

/// Loads the data dir's development secrets, making them on first use. `bool`: newly made.
pub fn load_or_create(data_dir: &Path) -> Result<(DevSecrets, bool), SecretsError> {
    if let Some(s) = load(data_dir)? {
        return Ok((s, false));
    }
    let io = |source| SecretsError::Io {
        path: path(data_dir),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let secrets = DevSecrets {
        api_key: format!("dev_{}", random_hex(16)),
        client_secret: random_hex(32),
    };
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io)?;
        let json = serde_json::to_vec_pretty(&secrets).map_err(|e| io(std::io::Error::other(e)))?;
        f.write_all(&json).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path(data_dir)).map_err(io)?;
    Ok((secrets, true))
}
