//! Test support: the real `relay` binary on a free loopback port, real HTTP, real stores.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod meetingbaas_fake;

pub const API_KEY: &str = "test-api-key-4f1c9a";
pub const API_KEY_2: &str = "rotated-api-key-77d0e2b1";
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const CALLBACK_SECRET: &str = "cb-secret-0d9e8f7a6b";
pub const CLIENT_SECRET: &str = "client-secret-1a2b3c4d5e6f";

/// Every setting the relay reads (its own list, `Config::VARS`) and the AWS endpoint override:
/// cleared so the caller's environment cannot leak into a test.
pub fn settings() -> impl Iterator<Item = &'static str> {
    relay_core::config::Config::VARS
        .into_iter()
        .chain(["AWS_ENDPOINT_URL_DYNAMODB"])
}

/// The management key the tests give `relay serve` (`RELAY_TESTING_MANAGEMENT_KEY`), so that
/// they can call its `@connections` API as its own client does; without it that API answers
/// 403 (docs/security.md). A relay started with `RelayOptions::own_management_key` makes its
/// own random key, as it does outside the tests.
pub const MANAGEMENT_KEY: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

/// The `Authorization` value of a test's own call to `@connections`.
pub fn management_auth() -> String {
    format!("RelayManagementKey {MANAGEMENT_KEY}")
}

/// Every configured secret, for leak checks.
pub const SECRETS: [&str; 5] = [
    API_KEY,
    API_KEY_2,
    WEBHOOK_SECRET,
    CALLBACK_SECRET,
    CLIENT_SECRET,
];

pub struct Relay {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub lines: Arc<Mutex<Vec<String>>>,
    args: Vec<String>,
    /// The DynamoDB endpoint and tables the functions use (`RELAY_TEST_HOST=lambda`).
    pub dynamodb: Option<FunctionTables>,
    /// `RELAY_TEST_HOST=lambda`: the functions under their Runtime API (scripts/lambda_loop.py,
    /// its own process group), stopped with the relay.
    functions: Option<Child>,
}

#[derive(Clone, Debug)]
pub struct FunctionTables {
    pub endpoint: String,
    pub events: String,
    pub connections: String,
    /// The functions' Secrets Manager secret on `endpoint`.
    pub secret_arn: String,
}

/// Which host the end-to-end tests run the handlers in: `relay serve` itself (unset), or the
/// real function bootstraps under a Lambda Runtime API that `relay serve --lambda-endpoint`
/// invokes (`lambda`; scripts/test runs the suites that way a second time).
pub fn lambda_host() -> bool {
    match std::env::var("RELAY_TEST_HOST").as_deref() {
        Ok("lambda") => true,
        Ok("") | Err(_) => false,
        Ok(other) => panic!("RELAY_TEST_HOST={other}: only `lambda` (or unset) is known"),
    }
}

/// The template parameter behind each relay setting a test may give the functions (the
/// relay's environment variable name, as template.yaml maps it).
const SETTINGS_FOR_FUNCTIONS: [&str; 8] = [
    "MEETINGBAAS_API_URL",
    "MEETINGBAAS_API_VERSION",
    "RECONCILE_AFTER_SECONDS",
    "RECONCILE_INTERVAL_SECONDS",
    "RETENTION_DAYS",
    "MAX_BODY_BYTES",
    "CORS_ALLOW_ORIGINS",
    "FANOUT_CONCURRENCY",
];

pub struct RelayOptions {
    pub data_dir: PathBuf,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// No secrets in the environment: development mode, as a new user first runs it.
    pub bare: bool,
    /// Run under `ulimit -n` this many open files (through `sh -c`).
    pub max_open_files: Option<u32>,
    /// No `RELAY_TESTING_MANAGEMENT_KEY`: the relay makes its own key, which no test knows.
    pub own_management_key: bool,
}

impl RelayOptions {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            extra_args: Vec::new(),
            env: Vec::new(),
            bare: false,
            max_open_files: None,
            own_management_key: false,
        }
    }
}

impl Relay {
    pub fn start(opts: RelayOptions) -> Relay {
        if lambda_host() {
            assert!(
                !opts.bare,
                "development mode runs handlers in relay serve: not a Lambda-host test"
            );
            return Self::start_lambda(opts);
        }
        let mut args = vec![
            "serve".to_owned(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--data-dir".to_owned(),
            opts.data_dir.display().to_string(),
        ];
        args.extend(opts.extra_args.iter().cloned());
        let mut cmd = match opts.max_open_files {
            None => Command::new(env!("CARGO_BIN_EXE_relay")),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_relay"));
                sh
            }
        };
        cmd.args(&args);
        for var in settings() {
            cmd.env_remove(var);
        }
        if !opts.bare {
            cmd.env("MEETINGBAAS_API_KEY", format!("{API_KEY},{API_KEY_2}"))
                .env("MEETINGBAAS_WEBHOOK_SECRET", WEBHOOK_SECRET)
                .env("MEETINGBAAS_CALLBACK_SECRET", CALLBACK_SECRET)
                .env("RELAY_CLIENT_SECRET", CLIENT_SECRET);
        }
        cmd.env("RUST_LOG", "debug")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1");
        if !opts.own_management_key {
            cmd.env("RELAY_TESTING_MANAGEMENT_KEY", MANAGEMENT_KEY);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, opts.data_dir, args, Arc::default(), None, None)
    }

    /// The relay in front of the real bootstraps: the functions of template.yaml under a
    /// Runtime API, with the test's secrets in a Secrets Manager secret on moto, the test's
    /// tables (its own `--dynamodb-endpoint`/`--events-table`/`--connections-table` when it
    /// gives them), and `relay serve --lambda-endpoint` invoking them.
    pub fn start_lambda(opts: RelayOptions) -> Relay {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let n: u64 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let mut endpoint = std::env::var("RELAY_TEST_DYNAMODB_ENDPOINT").ok();
        let mut events_table = format!("lambda-events-{n:x}");
        let mut connections_table = format!("lambda-conns-{n:x}");
        let mut extra = Vec::new();
        let mut it = opts.extra_args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--dynamodb-endpoint" => endpoint = it.next().cloned(),
                "--events-table" => events_table = it.next().cloned().expect("table"),
                "--connections-table" => connections_table = it.next().cloned().expect("table"),
                _ => extra.push(a.clone()),
            }
        }
        let endpoint = endpoint.expect(
            "RELAY_TEST_DYNAMODB_ENDPOINT is not set: the functions need moto (run scripts/test)",
        );
        let python = std::env::var("RELAY_TEST_MOTO_PYTHON")
            .unwrap_or_else(|_| root.join(".venv/bin/python").display().to_string());
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_relay"))
            .parent()
            .expect("bin dir")
            .to_owned();
        let relay_port = free_port();
        let runtime_port = free_port();
        let deployment = opts.data_dir.join("lambda-deployment.json");
        let secrets = serde_json::json!({
            "MEETINGBAAS_API_KEY": format!("{API_KEY},{API_KEY_2}"),
            "MEETINGBAAS_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "MEETINGBAAS_CALLBACK_SECRET": CALLBACK_SECRET,
            "RELAY_CLIENT_SECRET": CLIENT_SECRET,
        });
        let mut cmd = Command::new(&python);
        cmd.arg(root.join("scripts/lambda_loop.py"))
            .args(["--bin-dir", &bin_dir.display().to_string()])
            .args(["--runtime-port", &runtime_port.to_string()])
            .args(["--relay-url", &format!("http://127.0.0.1:{relay_port}")])
            .args(["--moto", &endpoint])
            .args(["--events-table", &events_table])
            .args(["--connections-table", &connections_table])
            .args(["--deployment", &deployment.display().to_string()]);
        for (k, v) in &opts.env {
            if SETTINGS_FOR_FUNCTIONS.contains(&k.as_str()) {
                cmd.args(["--set", &format!("{k}={v}")]);
            }
            if k == "RELAY_TESTING_SECRETS_REFRESH_SECONDS" {
                cmd.args(["--testing-secrets-refresh", v]);
            }
        }
        for var in settings() {
            cmd.env_remove(var);
        }
        cmd.env("RELAY_LOOP_SECRETS", secrets.to_string())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut functions = cmd.spawn().expect("spawn scripts/lambda_loop.py");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        {
            let out = functions.stdout.take().expect("stdout");
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    lines.lock().expect("lines").push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let secret_arn = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("\"lambda loop ready\"") => {
                    let ready: Value = serde_json::from_str(&line).expect("ready line");
                    break ready["secret_arn"].as_str().expect("secret_arn").to_owned();
                }
                Ok(_) => {}
                Err(_) => {
                    stop_group(&mut functions);
                    panic!(
                        "the functions did not start; output:\n{}",
                        lines.lock().expect("lines").join("\n")
                    );
                }
            }
        };
        let tables = FunctionTables {
            endpoint: endpoint.clone(),
            events: events_table.clone(),
            connections: connections_table.clone(),
            secret_arn,
        };
        let mut args = vec![
            "serve".to_owned(),
            "--listen".to_owned(),
            format!("127.0.0.1:{relay_port}"),
            "--data-dir".to_owned(),
            opts.data_dir.display().to_string(),
            "--dynamodb-endpoint".to_owned(),
            endpoint,
            "--events-table".to_owned(),
            events_table,
            "--connections-table".to_owned(),
            connections_table,
            "--lambda-endpoint".to_owned(),
            format!("http://127.0.0.1:{runtime_port}"),
            "--lambda-deployment".to_owned(),
            deployment.display().to_string(),
        ];
        args.extend(extra);
        let mut relay = Command::new(env!("CARGO_BIN_EXE_relay"));
        relay.args(&args);
        for var in settings() {
            relay.env_remove(var);
        }
        relay
            .env("RUST_LOG", "debug")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            // relay serve itself holds no MeetingBaaS secret here: only the client secret,
            // for its own checks of nothing (the functions hold the secrets).
            .env("RELAY_CLIENT_SECRET", CLIENT_SECRET)
            .env("MEETINGBAAS_API_KEY", format!("{API_KEY},{API_KEY_2}"));
        if !opts.own_management_key {
            relay.env("RELAY_TESTING_MANAGEMENT_KEY", MANAGEMENT_KEY);
        }
        for (k, v) in &opts.env {
            relay.env(k, v);
        }
        Self::spawn(
            relay,
            opts.data_dir,
            args,
            lines,
            Some(functions),
            Some(tables),
        )
    }

    fn spawn(
        mut cmd: Command,
        data_dir: PathBuf,
        args: Vec<String>,
        lines: Arc<Mutex<Vec<String>>>,
        functions: Option<Child>,
        dynamodb: Option<FunctionTables>,
    ) -> Relay {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn relay");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let (lines, tx) = (lines.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().expect("lines").push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v["message"] == "listening"
                    {
                        break v["addr"].as_str().expect("addr").to_owned();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "relay did not start listening; output:\n{}",
                        lines.lock().expect("lines").join("\n")
                    );
                }
            }
        };
        Relay {
            child,
            base: format!("http://{addr}"),
            data_dir,
            lines,
            args,
            functions,
            dynamodb,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "relay did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `within` for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn output(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(f) = &mut self.functions {
            stop_group(f);
        }
    }
}

/// Kills a process group (the loop, its emulator and the bootstraps) and reaps its leader.
fn stop_group(leader: &mut Child) {
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--"])
        .arg(format!("-{}", leader.id()))
        .status();
    let _ = leader.wait();
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// POSTs `body` to the webhook route with `headers`; returns status and parsed JSON body.
pub async fn post_webhook(
    client: &reqwest::Client,
    relay: &Relay,
    headers: &[(&str, String)],
    body: impl Into<reqwest::Body>,
) -> (u16, Value, String) {
    let mut req = client.post(relay.url("/api/meeting-bot/webhook"));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.body(body).send().await.expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("text");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json, text)
}

/// The `payload` member of a REST event, as the exact text the relay answered.
pub fn raw_payload(event_text: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Out<'a> {
        #[serde(borrow)]
        payload: &'a serde_json::value::RawValue,
    }
    let out: Out = serde_json::from_str(event_text).expect("event JSON with a payload");
    out.payload.get().to_owned()
}

pub fn json_key_headers() -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_owned()),
        ("x-meeting-baas-api-key", API_KEY.to_owned()),
    ]
}

pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A moto server of the test's own (for tests that stop or kill it), from the venv
/// `scripts/test` makes. Absent: the test fails, it never skips.
pub struct Moto {
    pub child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python = std::env::var("RELAY_TEST_MOTO_PYTHON")
            .unwrap_or_else(|_| root.join(".venv/bin/python").display().to_string());
        assert!(
            Path::new(&python).exists(),
            "no Python with moto at {python}: run scripts/test (it installs moto[server] into .venv) or set RELAY_TEST_MOTO_PYTHON"
        );
        let port = free_port();
        let child = Command::new(&python)
            .arg(root.join("scripts/moto_server.py"))
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on {endpoint}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, endpoint }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
        assert!(ok.map(|s| s.success()).unwrap_or(false), "kill -{sig} moto");
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether process `pid` still holds the server side of the loopback TCP connection whose
/// client end is `client_port` (Linux: /proc/net/tcp and the process's fds).
pub fn holds_connection(pid: u32, server_port: u16, client_port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        panic!("/proc/net/tcp is unreadable");
    };
    let port_of = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, inode) = (cols.get(1)?, cols.get(2)?, cols.get(9)?);
            (port_of(local) == Some(server_port) && port_of(remote) == Some(client_port))
                .then(|| inode.to_string())
        })
        .filter(|inode| inode != "0")
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| {
            inodes
                .iter()
                .any(|inode| target.to_string_lossy() == format!("socket:[{inode}]"))
        })
}

/// The listen port of a relay.
pub fn port_of(relay: &Relay) -> u16 {
    relay
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// The connection ids of `$connect`s, in the order the relay logged them.
pub fn connected_ids(relay: &Relay) -> Vec<String> {
    relay
        .output()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["route"] == "$connect" && v["status"] == 200)
        .filter_map(|v| v["connection_id"].as_str().map(str::to_owned))
        .collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A client token signed with the test client secret.
pub fn token(bots: &[&str], ttl_secs: i64) -> String {
    let keys = relay_core::domain::token::TokenKeys::new(CLIENT_SECRET).expect("keys");
    keys.mint(&relay_core::domain::token::Claims {
        sub: "tester".into(),
        exp: chrono::Utc::now().timestamp() + ttl_secs,
        bots: bots.iter().map(|b| b.to_string()).collect(),
        scope: relay_core::domain::token::Scope::Read,
    })
    .expect("mint")
}

/// A real WebSocket client of `relay serve`'s `/ws`, collecting every message it receives.
pub struct WsClient {
    /// Per bot: the last seq delivered, and later seqs held back until the gap before them fills.
    last_seq: std::collections::HashMap<String, u64>,
    held: std::collections::HashMap<String, std::collections::BTreeMap<u64, Value>>,
    pub tx: futures::channel::mpsc::UnboundedSender<String>,
    pub rx: tokio::sync::mpsc::UnboundedReceiver<Value>,
    /// Every text frame received, as it came off the socket (before any parsing or seq
    /// de-duplication), in arrival order.
    raw: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WsClient {
    pub async fn connect(relay: &Relay, token: &str) -> Result<WsClient, String> {
        use futures::{SinkExt, StreamExt};
        let url = format!(
            "{}/ws?token={token}",
            relay.base.replacen("http://", "ws://", 1)
        );
        let (ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sink, mut stream) = ws.split();
        let (out_tx, mut out_rx) = futures::channel::mpsc::unbounded::<String>();
        let (in_tx, in_rx) = tokio::sync::mpsc::unbounded_channel();
        let raw = Arc::new(Mutex::new(Vec::new()));
        let raw_in = raw.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    out = out_rx.next() => match out {
                        Some(text) => { if sink.send(tokio_tungstenite::tungstenite::Message::text(text)).await.is_err() { break } }
                        None => { let _ = sink.close().await; break }
                    },
                    msg = stream.next() => match msg {
                        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                            raw_in.lock().expect("raw frames").push(t.to_string());
                            if let Ok(v) = serde_json::from_str::<Value>(&t) { let _ = in_tx.send(v); }
                        }
                        Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                            let code = frame.map(|f| u16::from(f.code)).unwrap_or(0);
                            let _ = in_tx.send(serde_json::json!({"type": "__closed", "code": code}));
                            break;
                        }
                        Some(Ok(_)) => {}
                        _ => { let _ = in_tx.send(serde_json::json!({"type": "__closed", "code": 0})); break }
                    },
                }
            }
        });
        Ok(WsClient {
            last_seq: Default::default(),
            held: Default::default(),
            tx: out_tx,
            rx: in_rx,
            raw,
            task,
        })
    }

    /// Every text frame received so far, raw (no parsing, no de-duplication), in order. A
    /// frame is recorded before it reaches [`WsClient::next`].
    pub fn raw_frames(&self) -> Vec<String> {
        self.raw.lock().expect("raw frames").clone()
    }

    pub fn send(&self, v: Value) {
        let _ = self.tx.unbounded_send(v.to_string());
    }

    /// The next message, or `None` after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Value> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Messages until `wait` passes with nothing new.
    pub async fn drain(&mut self, wait: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(v) = self.next(wait).await {
            out.push(v);
        }
        out
    }

    /// Where delivery of `bot` starts: the `since` of a resume, or the snapshot's seq.
    pub fn resume_from(&mut self, bot: &str, seq: u64) {
        self.last_seq.insert(bot.to_owned(), seq);
    }

    /// What a client does with an event message: a seq it has delivered is dropped (delivery is
    /// at least once: a replayed event may also come by fan-out, a retried stream batch may
    /// repeat one); a later seq is held back until the ones before it arrive (replay and live
    /// delivery may interleave). Returns the messages now deliverable, in seq order.
    fn accept(&mut self, v: Value) -> Vec<Value> {
        let bot = v["bot_id"].as_str().unwrap_or_default().to_owned();
        let seq = v["seq"].as_u64().unwrap_or(0);
        let mut last = self.last_seq.get(&bot).copied().unwrap_or(0);
        if seq <= last {
            return Vec::new();
        }
        let held = self.held.entry(bot.clone()).or_default();
        held.insert(seq, v);
        let mut out = Vec::new();
        while let Some(next) = held.remove(&(last + 1)) {
            out.push(next);
            last += 1;
        }
        self.last_seq.insert(bot, last);
        out
    }

    fn is_event(v: &Value) -> bool {
        v["type"] == "status_update" && !v["event_id"].is_null()
    }

    /// Waits for `n` new event messages (status_update with an event_id) of `bot`, delivered as
    /// a client delivers them (see [`WsClient::accept`]), or panics.
    pub async fn events(&mut self, bot: &str, n: usize, wait: Duration) -> Vec<Value> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(v) if Self::is_event(&v) => {
                    got.extend(self.accept(v).into_iter().filter(|m| m["bot_id"] == bot))
                }
                Some(_) => {}
                None => panic!(
                    "got {} of {n} events for {bot}: {got:?}; held back: {:?}",
                    got.len(),
                    self.held.get(bot).map(|h| h.keys().collect::<Vec<_>>())
                ),
            }
        }
        got
    }

    /// Event messages that arrive until `wait` passes quietly and that the client has not
    /// delivered: the deliverable ones, then any still held back behind a gap.
    pub async fn new_events(&mut self, wait: Duration) -> Vec<Value> {
        let mut fresh = Vec::new();
        for v in self.drain(wait).await {
            if Self::is_event(&v) {
                fresh.extend(self.accept(v));
            }
        }
        for held in self.held.values_mut() {
            fresh.extend(std::mem::take(held).into_values());
        }
        fresh
    }

    /// Abruptly drops the TCP connection: no close frame.
    pub fn abort(self) {
        self.task.abort();
    }

    pub async fn close(self) {
        drop(self.tx);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}
