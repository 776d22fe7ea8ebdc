//! Test fixtures: a real `redis-server` per test on a free loopback port, as
//! redis-rs's own suite does, which the test can stop, pause and restart.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "redis-server was not found on PATH and REDIS_URL is unset: install it (apt-get install -y redis-server) or set REDIS_URL to a Redis 7 server";

/// A `redis-server` process owned by the test, stopped on drop.
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    /// Certificate and key files: the server then speaks TLS only.
    tls: Option<(PathBuf, PathBuf)>,
    /// `--replicaof 127.0.0.1 <port>`: a replica of that master.
    master: Option<u16>,
    /// `--cluster-enabled yes`: a cluster node (with no slots until assigned).
    cluster: bool,
    /// `--appendonly yes --appendfsync always`: every acknowledged write
    /// survives a kill and restart.
    durable: bool,
    dir: PathBuf,
    child: Option<Child>,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("local addr").port()
}

/// A free port whose cluster bus port (port + 10,000) is free too.
fn free_cluster_port() -> u16 {
    for _ in 0..1_000 {
        let port = free_port();
        if port <= 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair (port, port + 10000) for a cluster node");
}

fn unique_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "outbox-redis-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create the server's directory");
    dir
}

impl RedisServer {
    /// Starts a server on a free port.
    pub fn start() -> Self {
        Self::spawn(free_port(), None)
    }

    /// Starts a server that requires `password`.
    pub fn with_password(password: &str) -> Self {
        Self::spawn(free_port(), Some(password.to_owned()))
    }

    /// Starts a TLS-only server with the given PEM certificate and key.
    pub fn with_tls(cert_pem: &str, key_pem: &str) -> Self {
        let dir = unique_dir();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, cert_pem).expect("write the certificate");
        std::fs::write(&key, key_pem).expect("write the key");
        let mut server = Self {
            port: free_port(),
            password: None,
            tls: Some((cert, key)),
            master: None,
            cluster: false,
            durable: false,
            dir,
            child: None,
        };
        server.launch();
        server
    }

    /// Starts a server that fsyncs every write before it answers, so a
    /// reservation it confirmed survives [`stop`](Self::stop) and
    /// [`restart`](Self::restart).
    pub fn durable() -> Self {
        let mut server = Self {
            port: free_port(),
            password: None,
            tls: None,
            master: None,
            cluster: false,
            durable: true,
            dir: unique_dir(),
            child: None,
        };
        server.launch();
        server
    }

    /// Starts a cluster-enabled node (no slots assigned): enough for
    /// `CLUSTER KEYSLOT`, Redis's own answer to which slot a key hashes to.
    pub fn cluster_node() -> Self {
        let mut node = Self {
            port: free_cluster_port(),
            password: None,
            tls: None,
            master: None,
            cluster: true,
            durable: false,
            dir: unique_dir(),
            child: None,
        };
        node.launch();
        node
    }

    /// Starts a replica of `master` and waits until its link is up.
    pub fn replica_of(master: &RedisServer) -> Self {
        let mut replica = Self {
            port: free_port(),
            password: None,
            tls: None,
            master: Some(master.port),
            cluster: false,
            durable: false,
            dir: unique_dir(),
            child: None,
        };
        replica.launch();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
        {
            assert!(
                Instant::now() < deadline,
                "the replica did not link to its master within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        replica
    }

    fn spawn(port: u16, password: Option<String>) -> Self {
        let mut server = Self {
            port,
            password,
            tls: None,
            master: None,
            cluster: false,
            durable: false,
            dir: unique_dir(),
            child: None,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some((cert, key)) => command
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &self.port.to_string(),
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key),
        };
        command
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(if self.durable {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "everysec"]
            })
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        if let Some(master) = self.master {
            command.args(["--replicaof", "127.0.0.1", &master.to_string()]);
        }
        if self.cluster {
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ]);
            // Fail over within seconds, whatever the replica's data age, as
            // Redis's own tests do; replicas sync without the 5 s delay.
            command.args([
                "--cluster-node-timeout",
                "1000",
                "--cluster-replica-validity-factor",
                "0",
                "--repl-diskless-sync-delay",
                "0",
            ]);
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(error) => panic!("could not start redis-server: {error}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.cli(&["PING"]) == "PONG" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>` (with the password, if any), or
    /// `rediss://localhost:<port>` for a TLS server.
    pub fn url(&self) -> String {
        if self.tls.is_some() {
            return format!("rediss://localhost:{}", self.port);
        }
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs one command through `redis-cli` and returns its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some((cert, _)) = &self.tls {
            command.arg("--tls").arg("--cacert").arg(cert);
        }
        if let Some(password) = &self.password {
            command.args(["--no-auth-warning", "-a", password]);
        }
        let output = match command.args(args).output() {
            Ok(output) => output,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(error) => panic!("could not run redis-cli: {error}"),
        };
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// True while the process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (as a crash would) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: it keeps nothing).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Stops (`SIGSTOP`) or resumes (`SIGCONT`) the server process: its
    /// connections stay open and nothing answers, as with a hung host.
    pub fn freeze(&self, frozen: bool) {
        let pid = self
            .child
            .as_ref()
            .expect("server running")
            .id()
            .to_string();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// `CLIENT PAUSE <ms> ALL`: the server holds every client's commands.
    pub fn pause(&self, duration: Duration) {
        let reply = self.cli(&["CLIENT", "PAUSE", &duration.as_millis().to_string(), "ALL"]);
        assert_eq!(reply, "OK", "CLIENT PAUSE answered {reply}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A frozen server would not die of SIGKILL before it is resumed on
            // some systems; resume it first.
            let _ = Command::new("kill")
                .args([
                    "-CONT",
                    &self.child.as_ref().map_or(0, Child::id).to_string(),
                ])
                .status();
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where the shared-server tests run: `REDIS_URL` when set, else a server of
/// our own (kept alive by the returned guard).
pub fn shared_server() -> (String, Option<RedisServer>) {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let server = RedisServer::start();
            (server.url(), Some(server))
        }
    }
}

/// A string unique to this test run, for key namespaces on a shared server.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}-{}-{nanos}", std::process::id())
}

/// A deterministic shuffle (xorshift), so failures reproduce.
pub fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = usize::try_from(seed % (i as u64 + 1)).expect("fits");
        items.swap(i, j);
    }
}

/// Runs `requests` through `tasks` tasks that each take the next request,
/// and returns how many `try_reserve` answered true.
pub async fn run<L1, L2>(
    provider: std::sync::Arc<outbox_redis::TwoTier<L1, L2>>,
    requests: Vec<String>,
    tasks: usize,
) -> usize
where
    L1: outbox_redis::LocalCache + 'static,
    L2: outbox_redis::RemoteStore + 'static,
{
    let requests = std::sync::Arc::new(requests);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (provider, requests, next) = (provider.clone(), requests.clone(), next.clone());
        set.spawn(async move {
            let mut accepted = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(token) = requests.get(i) else { break };
                if provider.try_reserve(token).await.expect("reserve") {
                    accepted += 1;
                }
            }
            accepted
        });
    }
    let mut accepted = 0;
    while let Some(joined) = set.join_next().await {
        accepted += joined.expect("task");
    }
    accepted
}

/// A real Redis Cluster: 3 masters and 3 replicas on free loopback ports,
/// created with `redis-cli --cluster create`, stopped on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts 6 nodes, creates the cluster and waits for `cluster_state:ok`.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..6).map(|_| RedisServer::cluster_node()).collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        let output = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_ok(Duration::from_secs(20));
        cluster
    }

    /// `redis-cluster://` URL naming every master as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .take(3)
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis-cluster://{}", seeds.join(","))
    }

    /// Waits until every running node reports `cluster_state:ok` and sees
    /// three masters, and every running replica is linked to its master.
    pub fn wait_ok(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let ok = self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                let info = n.cli(&["CLUSTER", "INFO"]);
                let replication = n.cli(&["INFO", "replication"]);
                // A replica counts once its link to its master is up.
                let linked = replication.contains("role:master")
                    || replication.contains("master_link_status:up");
                info.contains("cluster_state:ok") && info.contains("cluster_size:3") && linked
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster was not ok within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The running node that masters `slot`.
    pub fn master_of(&self, slot: u16) -> usize {
        let running = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a running node");
        let nodes = running.cli(&["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let port: u16 = fields[1]
                .split(['@', ':'])
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            for range in &fields[8..] {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>())
                    && (lo..=hi).contains(&slot)
                {
                    return self
                        .nodes
                        .iter()
                        .position(|n| n.port() == port)
                        .expect("a known node");
                }
            }
        }
        panic!("no master for slot {slot}:\n{nodes}");
    }

    /// Promotes the replica of master `master` with `CLUSTER FAILOVER` (the
    /// graceful, operator-driven kind: the old master becomes its replica)
    /// and waits until the cluster is ok again; answers the new master.
    pub fn fail_over(&self, master: usize) -> usize {
        let id = self.nodes[master].cli(&["CLUSTER", "MYID"]);
        let nodes = self.nodes[master].cli(&["CLUSTER", "NODES"]);
        let replica = nodes
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|fields| fields.len() > 3 && fields[2].contains("slave") && fields[3] == id)
            .and_then(|fields| fields[1].split(['@', ':']).nth(1)?.parse::<u16>().ok())
            .and_then(|port| self.nodes.iter().position(|n| n.port() == port))
            .unwrap_or_else(|| panic!("no replica of node {master}:\n{nodes}"));
        assert_eq!(self.nodes[replica].cli(&["CLUSTER", "FAILOVER"]), "OK");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.nodes[replica].cli(&["ROLE"]).starts_with("master") {
            assert!(
                Instant::now() < deadline,
                "the replica was not promoted within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_ok(Duration::from_secs(20));
        replica
    }

    /// Waits until every replica of master `master` has all of its writes
    /// (replication offsets equal), so stopping it loses nothing.
    pub fn wait_replicated(&self, master: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info = self.nodes[master].cli(&["INFO", "replication"]);
            // master_repl_offset:N, and slaveK:ip=…,port=…,state=…,offset=N,lag=…
            let master_offset = info.lines().find_map(|l| {
                l.strip_prefix("master_repl_offset:")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            });
            let replicas: Vec<u64> = info
                .lines()
                .filter(|l| l.starts_with("slave"))
                .filter_map(|l| {
                    l.split(',')
                        .find_map(|kv| kv.strip_prefix("offset=")?.parse().ok())
                })
                .collect();
            if let Some(offset) = master_offset
                && !replicas.is_empty()
                && replicas.iter().all(|&r| r >= offset)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the replicas of node {master} did not catch up within 10 s:\n{info}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Keys held by each running master.
    pub fn keys_per_master(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.is_running() && n.cli(&["ROLE"]).starts_with("master"))
            .map(|n| n.cli(&["DBSIZE"]).parse().unwrap_or(0))
            .collect()
    }
}

/// Upper bound on fresh tokens in a run: one bit each, allocated up front so
/// the bookkeeping itself does not grow.
pub const MAX_TOKENS: u64 = 1 << 24;

/// This process's resident memory, in KiB (from /proc).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// What the workers share: one bit per fresh token, and counters.
pub struct Tally {
    pub accepted: Vec<std::sync::atomic::AtomicU64>,
    pub issued: std::sync::atomic::AtomicU64,
    pub twice: std::sync::atomic::AtomicU64,
    pub answers: std::sync::atomic::AtomicU64,
    pub errors: std::sync::atomic::AtomicU64,
    /// When the last error happened, in ms after `started`, and the first.
    pub first_error_ms: std::sync::atomic::AtomicU64,
    pub last_error_ms: std::sync::atomic::AtomicU64,
    pub started: Instant,
    pub stop: std::sync::atomic::AtomicBool,
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

impl Tally {
    /// Empty, with room for `MAX_TOKENS` tokens.
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU64};
        Self {
            accepted: (0..MAX_TOKENS / 64).map(|_| AtomicU64::new(0)).collect(),
            issued: AtomicU64::new(0),
            twice: AtomicU64::new(0),
            answers: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error_ms: AtomicU64::new(u64::MAX),
            last_error_ms: AtomicU64::new(0),
            started: Instant::now(),
            stop: AtomicBool::new(false),
        }
    }

    /// The time from the first error to the last one, if any.
    pub fn error_window(&self) -> Option<Duration> {
        let first = self.first_error_ms.load(Ordering::Relaxed);
        let last = self.last_error_ms.load(Ordering::Relaxed);
        (first != u64::MAX).then(|| Duration::from_millis(last.saturating_sub(first)))
    }

    /// Records that token `n` was accepted; counts it if it already was.
    pub fn accept(&self, n: u64) {
        let bit = 1 << (n % 64);
        let word = usize::try_from(n / 64).expect("fits");
        if self.accepted[word].fetch_or(bit, Ordering::Relaxed) & bit != 0 {
            self.twice.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Half fresh tokens, half duplicates of the last 10,000, until told to stop.
pub async fn worker<L1, L2>(
    provider: std::sync::Arc<outbox_redis::TwoTier<L1, L2>>,
    tally: std::sync::Arc<Tally>,
    mut seed: u64,
) where
    L1: outbox_redis::LocalCache,
    L2: outbox_redis::RemoteStore,
{
    while !tally.stop.load(Ordering::Relaxed) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let high = tally.issued.load(Ordering::Relaxed);
        let n = if seed.is_multiple_of(2) || high == 0 {
            tally.issued.fetch_add(1, Ordering::Relaxed)
        } else {
            high.saturating_sub(1 + (seed >> 8) % high.min(10_000))
        };
        if n >= MAX_TOKENS {
            break;
        }
        let result = provider.try_reserve(&format!("soak-{n}")).await;
        if let Ok(accepted) = result {
            tally.answers.fetch_add(1, Ordering::Relaxed);
            if accepted {
                tally.accept(n);
            }
        } else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            let at = u64::try_from(tally.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            tally.first_error_ms.fetch_min(at, Ordering::Relaxed);
            tally.last_error_ms.fetch_max(at, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
