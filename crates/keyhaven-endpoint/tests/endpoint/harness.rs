//! What the endpoint tests run against: real valkey-servers (killed on drop), the endpoint's
//! `run()` on a temporary directory (stopped on drop), a tiny RESP client over plain or TLS
//! sockets, and test CAs made with rcgen.

use keyhaven_endpoint::{Backend, Fallback, Kind, Listener, Reader, Replica, Routes, Tls};
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How long any one wait of a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `f` until it returns `Some`, or panics naming `what` after [`WAIT`].
pub async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// ---------------------------------------------------------------------------------------
// valkey-server

/// A real valkey-server on a free port that holds `tag` = its name, so a connection
/// through the endpoint can tell which backend it reached. Killed on drop.
pub struct Valkey {
    pub name: String,
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Valkey {
    pub async fn start(name: &str) -> Valkey {
        let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/valkey-server");
        assert!(
            binary.exists(),
            "{} is missing: run scripts/setup first",
            binary.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let valkey = Valkey {
            name: name.into(),
            port,
            child,
            _dir: dir,
        };
        let mut conn = wait_for("valkey-server to answer", async || {
            Resp::connect(port).await.ok()
        })
        .await;
        conn.cmd(&["SET", "tag", name]).await.unwrap();
        valkey
    }

    pub fn backend(&self) -> Backend {
        Backend {
            host: "127.0.0.1".into(),
            port: self.port,
        }
    }

    pub fn replica(&self, lag_ms: Option<u64>) -> Replica {
        Replica {
            id: self.name.clone(),
            host: "127.0.0.1".into(),
            port: self.port,
            lag_ms,
        }
    }
}

impl Drop for Valkey {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// the endpoint

/// `keyhaven_endpoint::run` on a temporary directory, stopped when dropped.
pub struct Endpoint {
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Endpoint {
    pub fn start(routes: &Routes) -> Endpoint {
        capture_logs();
        let dir = tempfile::tempdir().unwrap();
        write_atomic(
            &dir.path().join("routes.json"),
            &serde_json::to_vec(routes).unwrap(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(keyhaven_endpoint::run(dir.path().to_path_buf(), async {
            let _ = stopped.await;
        }));
        Endpoint {
            dir,
            stop: Some(stop),
            task,
        }
    }

    /// Starts the endpoint and returns once it applied `routes`.
    pub async fn started(routes: &Routes) -> Endpoint {
        let endpoint = Endpoint::start(routes);
        endpoint.wait_for_reloads(1).await;
        endpoint
    }

    /// Replaces routes.json the way the control plane does (a new file, renamed over it)
    /// and returns once the endpoint applied it.
    pub async fn write_routes(&self, routes: &Routes) {
        let before = self.reloads();
        self.write_raw(&serde_json::to_vec(routes).unwrap());
        self.wait_for_reloads(before + 1).await;
    }

    pub fn write_raw(&self, bytes: &[u8]) {
        write_atomic(&self.dir.path().join("routes.json"), bytes);
    }

    /// How many times this endpoint applied its routes file.
    pub fn reloads(&self) -> usize {
        log_lines(&[&self.routes_file(), "applied routes"]).len()
    }

    pub async fn wait_for_reloads(&self, n: usize) {
        wait_for(
            &format!("reload {n} of {}", self.routes_file()),
            async || (self.reloads() >= n).then_some(()),
        )
        .await
    }

    pub fn routes_file(&self) -> String {
        self.dir.path().join("routes.json").display().to_string()
    }

    /// Stops `run` and waits for it to return.
    pub async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        (&mut self.task).await.unwrap().unwrap();
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(tmp, path).unwrap();
}

pub fn service(name: &str, port: u16, primary: &Valkey, tls: Option<Tls>) -> Listener {
    Listener {
        name: name.into(),
        bind: "127.0.0.1".into(),
        port,
        tls,
        primary: primary.backend(),
        kind: Kind::Service,
    }
}

pub fn reader(port: u16, primary: &Valkey, replicas: Vec<Replica>, lag_as_of_ms: u64) -> Listener {
    Listener {
        name: format!("{}-reader", primary.name),
        bind: "127.0.0.1".into(),
        port,
        tls: None,
        primary: primary.backend(),
        kind: Kind::Reader(Reader {
            replicas,
            max_lag_ms: MAX_LAG_MS,
            lag_as_of_ms,
            fallback: Fallback::Primary,
            grace_ms: 300,
        }),
    }
}

/// The lag bound of the test readers: a minute, so lag data written at the start of a
/// test stays fresh however slow the machine is.
pub const MAX_LAG_MS: u64 = 60_000;

pub fn reader_mut(listener: &mut Listener) -> &mut Reader {
    match &mut listener.kind {
        Kind::Reader(r) => r,
        Kind::Service => panic!("{} is no reader", listener.name),
    }
}

// ---------------------------------------------------------------------------------------
// logs

/// Every log line of this test binary (all tests share the one global subscriber; a test
/// finds its own lines by a path only it uses).
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

fn capture_logs() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        // Debug: a reload that only changes lag figures is logged at debug, and the tests
        // count reloads by their log lines.
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .try_init();
        buf
    });
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        // Through the test harness's capture: shown for a failed test only.
        eprint!("{}", String::from_utf8_lossy(b));
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log lines so far that contain every one of `parts`.
pub fn log_lines(parts: &[&str]) -> Vec<String> {
    let logs = LOGS.get().expect("an endpoint was started").lock().unwrap();
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------
// RESP

/// A minimal RESP2 client: enough for PING, GET and SET.
pub struct Resp<S> {
    io: BufStream<S>,
}

impl Resp<TcpStream> {
    pub async fn connect(port: u16) -> std::io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        Ok(Resp::new(stream))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Resp<S> {
    pub fn new(stream: S) -> Self {
        Resp {
            io: BufStream::new(stream),
        }
    }

    /// Sends one command; its reply as text (`(nil)` for a nil bulk string). An error
    /// reply, a closed connection or no reply within [`WAIT`] is an `Err`.
    pub async fn cmd(&mut self, args: &[&str]) -> std::io::Result<String> {
        tokio::time::timeout(WAIT, self.exchange(args))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply"))?
    }

    async fn exchange(&mut self, args: &[&str]) -> std::io::Result<String> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.io.write_all(out.as_bytes()).await?;
        self.io.flush().await?;
        let mut line = String::new();
        if self.io.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" | ":" => Ok(rest.to_string()),
            "-" => Err(std::io::Error::other(rest.to_string())),
            "$" if rest == "-1" => Ok("(nil)".into()),
            "$" => {
                let len: usize = rest.parse().map_err(std::io::Error::other)?;
                let mut data = vec![0; len + 2];
                self.io.read_exact(&mut data).await?;
                data.truncate(len);
                String::from_utf8(data).map_err(std::io::Error::other)
            }
            _ => Err(std::io::Error::other(format!("unexpected reply {line:?}"))),
        }
    }

    /// Which test valkey-server this connection reached.
    pub async fn tag(&mut self) -> String {
        self.cmd(&["GET", "tag"]).await.unwrap()
    }

    /// Whether the endpoint closed this connection: a command gets no reply.
    pub async fn is_closed(&mut self) -> bool {
        self.cmd(&["PING"]).await.is_err()
    }
}

// ---------------------------------------------------------------------------------------
// certificates and TLS

/// A CA that signs leaf certificates, as a project's CA does.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub der: CertificateDer<'static>,
}

/// A leaf certificate with its key, as PEM, and its DER to compare with what a handshake
/// presents.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate for 127.0.0.1 (its SAN), with `serial`.
    pub fn leaf(&self, serial: u64) -> Leaf {
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("leaf {serial}"));
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A TLS client that trusts this CA only.
    pub fn client(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        #[allow(deprecated)] // see keyhaven-endpoint's tls.rs: ring, no post-quantum kx
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

/// Writes a leaf's files into `dir` (by rename, as the runtime does) and names them.
pub fn install_leaf(dir: &Path, leaf: &Leaf) -> Tls {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    write_atomic(&key, leaf.key_pem.as_bytes());
    write_atomic(&cert, leaf.cert_pem.as_bytes());
    Tls {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
    }
}

/// A TLS connection to the endpoint on `port`, checked against 127.0.0.1.
pub async fn tls_connect(
    client: &tokio_rustls::TlsConnector,
    port: u16,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    tokio::time::timeout(WAIT, client.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake"))?
}

/// The certificate the server presented on `stream`.
pub fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}
