//! The fake MeetingBaaS in Node (tests/meetingbaas-fake/server.mjs), checked against the
//! official SDK's schemas, on a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{API_KEY, CALLBACK_SECRET, http};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Node fake MeetingBaaS on a free loopback port.
pub struct NodeFake {
    child: Child,
    pub base: String,
}

impl NodeFake {
    pub fn start() -> NodeFake {
        let root = repo_root();
        let node = std::env::var("RELAY_TEST_NODE").unwrap_or_else(|_| "/usr/bin/node".into());
        assert!(
            Path::new(&node).exists(),
            "no Node.js at {node}: these tests need it (install Node.js 20+, or set RELAY_TEST_NODE)"
        );
        let sdk = root.join("node_modules/@meeting-baas/sdk/package.json");
        let sdk_version = std::fs::read_to_string(&sdk)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["version"].as_str().map(str::to_owned));
        assert_eq!(
            sdk_version.as_deref(),
            Some("6.0.5"),
            "@meeting-baas/sdk 6.0.5 is not installed at {}: run `npm ci` at the repository root (scripts/test does)",
            sdk.display()
        );
        let mut child = Command::new(&node)
            .arg(root.join("tests/meetingbaas-fake/server.mjs"))
            .args(["--port", "0"])
            .env("FAKE_MB_API_KEY", API_KEY)
            .env("FAKE_MB_CALLBACK_SECRET", CALLBACK_SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {node}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let port = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["listening"].as_u64());
        let Some(port) = port else {
            let _ = child.kill();
            panic!(
                "the fake MeetingBaaS did not start (its first line: {line:?}); see its stderr above"
            );
        };
        NodeFake {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    pub async fn requests(&self) -> Vec<Value> {
        http()
            .get(format!("{}/__requests", self.base))
            .send()
            .await
            .expect("GET /__requests")
            .json()
            .await
            .expect("requests JSON")
    }

    pub async fn answer(&self, mode: Value) {
        let resp = http()
            .post(format!("{}/__answer", self.base))
            .json(&mode)
            .send()
            .await
            .expect("POST /__answer");
        assert!(resp.status().is_success());
    }

    /// Tells the fake what MeetingBaaS knows of a bot (`POST /__bots`).
    pub async fn set_bot(&self, bot: Value) {
        let resp = http()
            .post(format!("{}/__bots", self.base))
            .json(&bot)
            .send()
            .await
            .expect("POST /__bots");
        assert!(resp.status().is_success());
    }

    /// The one request MeetingBaaS got since `before` requests, which its schemas accepted.
    pub async fn only_request_since(&self, before: usize) -> Value {
        let all = self.requests().await;
        assert_eq!(
            all.len(),
            before + 1,
            "one request to MeetingBaaS: {all:#?}"
        );
        let r = all[before].clone();
        assert_valid(&r);
        r
    }
}

impl Drop for NodeFake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request the SDK's schemas accepted, with our key, answered with a body that passes them.
pub fn assert_valid(r: &Value) {
    assert_eq!(
        (r["valid"].as_bool(), r["response_valid"].as_bool()),
        (Some(true), Some(true)),
        "MeetingBaaS's schema ({}) refused what the relay sent: {:#}",
        r["schema"],
        r
    );
    assert_eq!(r["api_key"], "matches", "{r:#}");
}
