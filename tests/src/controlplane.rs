//! A real Kubernetes control plane for tests — `etcd` and `kube-apiserver` on 127.0.0.1, started
//! the way controller-runtime's envtest starts them: self-signed certificates, a service-account
//! signing key, RBAC on, no kubelet and no controllers (Periscope only reads the API).
//!
//! The binaries are built from the Go module proxy by `bash tests/controlplane/build.sh`, which
//! caches them under `${PERISCOPE_CACHE:-$HOME/.cache/periscope}/controlplane/<k8s-version>/bin/`;
//! `PERISCOPE_CONTROLPLANE_BIN` points at another directory holding `etcd` and `kube-apiserver`.
//!
//! ```no_run
//! let cp = periscope_tests::controlplane::ControlPlane::start();
//! // Any client that reads kubeconfigs talks to it as a cluster admin (O=system:masters):
//! println!("KUBECONFIG={}", cp.kubeconfig_path().display());
//! ```
//!
//! Everything lives in one temp dir (certificates, etcd's data, both logs, kubeconfigs) that is
//! removed, with both processes killed, when the [`ControlPlane`] is dropped. Without a
//! controller-manager nothing reconciles: namespaces stay `Terminating` once deleted, no
//! `default` ServiceAccount appears (the `ServiceAccount` admission plugin is off so pods can still
//! be created), pods stay `Pending`.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

/// How long [`ControlPlane::start`] and [`ControlPlane::start_apiserver`] wait for `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The service network kube-apiserver allocates ClusterIPs from.
const SERVICE_CLUSTER_IP_RANGE: &str = "10.0.0.0/24";

/// The issuer of ServiceAccount tokens (its value only has to be consistent).
const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The Kubernetes version `tests/controlplane/go.mod` builds (e.g. `v1.37.2`).
pub fn kubernetes_version() -> String {
    let go_mod = crate::repo_root().join("tests/controlplane/go.mod");
    let text = std::fs::read_to_string(&go_mod)
        .unwrap_or_else(|e| panic!("read {}: {e}", go_mod.display()));
    text.lines()
        .map(|l| l.trim().trim_start_matches("require").trim())
        .find_map(|l| {
            let version = l
                .strip_prefix("k8s.io/kubernetes ")?
                .split_whitespace()
                .next()?;
            version.starts_with('v').then(|| version.to_owned())
        })
        .unwrap_or_else(|| panic!("{} requires no k8s.io/kubernetes version", go_mod.display()))
}

/// The directory holding the `etcd` and `kube-apiserver` binaries: `PERISCOPE_CONTROLPLANE_BIN`,
/// else the cache `tests/controlplane/build.sh` fills.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PERISCOPE_CONTROLPLANE_BIN") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("PERISCOPE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/periscope")))
        .expect("neither PERISCOPE_CACHE nor HOME is set: cannot find the control plane's cache");
    cache
        .join("controlplane")
        .join(kubernetes_version())
        .join("bin")
}

/// The binary `name` in [`bin_dir`]; fails with how to build it when it is missing.
fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the control plane with `bash tests/controlplane/build.sh` \
         (or point PERISCOPE_CONTROLPLANE_BIN at a directory holding etcd and kube-apiserver)",
        path.display()
    );
    path
}

/// `n` distinct loopback ports that were free a moment ago (all held until all are picked).
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    std::array::from_fn(|i| {
        listeners[i]
            .local_addr()
            .expect("local address of a bound port")
            .port()
    })
}

/// The last `lines` lines of the file at `path` (or why it could not be read).
fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Kills `child` (SIGKILL) and reaps it, if it still runs.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The certificates and keys of one control plane, as PEM files in its dir.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    admin_cert_der: CertificateDer<'static>,
    admin_key_der: Vec<u8>,
}

impl Pki {
    /// Generates a CA, a serving certificate for 127.0.0.1/localhost, an admin client
    /// certificate (O=system:masters) and a service-account signing key, all ECDSA P-256, and
    /// writes them as PEM files into `dir`.
    fn generate(dir: &Path) -> Pki {
        let write = |name: &str, pem: &str| {
            std::fs::write(dir.join(name), pem).unwrap_or_else(|e| panic!("write {name}: {e}"));
        };

        let ca_key = KeyPair::generate().expect("generate the CA key");
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "periscope-test-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
        let ca = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("generate the serving key");
        let mut server_params = CertificateParams::default();
        server_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        server_params.subject_alt_names = vec![
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            // The first address of the service network: the `kubernetes` Service's ClusterIP.
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            SanType::DnsName("localhost".try_into().expect("a valid DNS name")),
            SanType::DnsName(
                "kubernetes.default.svc"
                    .try_into()
                    .expect("a valid DNS name"),
            ),
        ];
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params
            .signed_by(&server_key, &ca)
            .expect("sign the serving certificate");

        let admin_key = KeyPair::generate().expect("generate the admin key");
        let mut admin_params = CertificateParams::default();
        admin_params
            .distinguished_name
            .push(DnType::CommonName, "periscope-admin");
        admin_params
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        admin_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin_params
            .signed_by(&admin_key, &ca)
            .expect("sign the admin certificate");

        let sa_key = KeyPair::generate().expect("generate the service-account key");

        write("ca.crt", &ca_cert.pem());
        write("apiserver.crt", &server_cert.pem());
        write("apiserver.key", &server_key.serialize_pem());
        write("admin.crt", &admin_cert.pem());
        write("admin.key", &admin_key.serialize_pem());
        write("sa.key", &sa_key.serialize_pem());
        write("sa.pub", &sa_key.public_key_pem());

        Pki {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            admin_cert_der: admin_cert.der().clone(),
            admin_key_der: admin_key.serialize_der(),
        }
    }
}

/// One of the two processes.
#[derive(Clone, Copy)]
enum Which {
    Etcd,
    Apiserver,
}

/// A running etcd + kube-apiserver on 127.0.0.1, stopped and removed when dropped.
pub struct ControlPlane {
    dir: tempfile::TempDir,
    pki: Pki,
    etcd: Option<Child>,
    etcd_url: String,
    apiserver: Option<Child>,
    apiserver_port: u16,
    /// Extra kube-apiserver flags, kept across restarts.
    apiserver_args: Vec<String>,
    kubeconfig: PathBuf,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver on free loopback ports, writes an admin kubeconfig, and
    /// waits until kube-apiserver's `/readyz` answers 200 (failing, with the tail of both logs,
    /// if it does not within 60 s).
    pub fn start() -> ControlPlane {
        ControlPlane::start_with(&[])
    }

    /// Like [`ControlPlane::start`], with extra kube-apiserver flags (such as
    /// `--watch-cache=false`), used on every start of it.
    pub fn start_with(apiserver_args: &[&str]) -> ControlPlane {
        let etcd_bin = binary("etcd");
        binary("kube-apiserver");
        let dir = tempfile::Builder::new()
            .prefix("periscope-controlplane-")
            .tempdir()
            .expect("create the control plane's temp dir");
        let pki = Pki::generate(dir.path());
        let [client_port, peer_port, apiserver_port] = free_ports();
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");

        let etcd_log = dir.path().join("etcd.log");
        let log = File::create(&etcd_log).expect("create etcd.log");
        let etcd = Command::new(etcd_bin)
            .arg("--name=periscope")
            .arg(format!("--data-dir={}", dir.path().join("etcd").display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=periscope={peer_url}"))
            .arg("--unsafe-no-fsync")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone etcd.log"))
            .stderr(log)
            .spawn()
            .expect("start etcd");

        let mut cp = ControlPlane {
            kubeconfig: dir.path().join("admin.kubeconfig"),
            dir,
            pki,
            etcd: Some(etcd),
            etcd_url,
            apiserver: None,
            apiserver_port,
            apiserver_args: apiserver_args.iter().map(|a| a.to_string()).collect(),
        };
        cp.write_kubeconfig();
        cp.wait_etcd();
        cp.start_apiserver();
        cp
    }

    /// The admin kubeconfig (client certificate, O=system:masters).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// kube-apiserver's URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }

    /// The PEM of the CA that signed the serving and client certificates.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// The control plane's temp dir (certificates, etcd data, logs, kubeconfigs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// etcd's client URL, `http://127.0.0.1:<port>` (plain HTTP, loopback only).
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// What kube-apiserver logged so far (every run of it, in order).
    pub fn apiserver_log(&self) -> String {
        std::fs::read(self.apiserver_log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// What etcd logged so far.
    pub fn etcd_log(&self) -> String {
        std::fs::read(self.etcd_log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Writes to `path` a kubeconfig for this cluster that authenticates with the bearer `token`
    /// (e.g. a ServiceAccount's token from the TokenRequest API).
    pub fn token_kubeconfig(&self, token: &str, path: &Path) {
        self.write_kubeconfig_with(path, serde_json::json!({ "token": token }));
    }

    /// Stops kube-apiserver alone (SIGTERM, then SIGKILL after 15 s); etcd and its data stay.
    pub fn stop_apiserver(&mut self) {
        let mut child = self.apiserver.take().expect("kube-apiserver is running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        kill(&mut child);
    }

    /// Starts kube-apiserver (again) on the same port with the same certificates and etcd, and
    /// waits for `/readyz` as [`ControlPlane::start`] does.
    pub fn start_apiserver(&mut self) {
        assert!(
            self.apiserver.is_none(),
            "kube-apiserver is already running"
        );
        let dir = self.dir.path();
        let file = |name: &str| dir.join(name).display().to_string();
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(self.apiserver_log_path())
            .expect("open kube-apiserver.log");
        let _ = writeln!(log, "--- periscope: starting kube-apiserver ---");
        let child = Command::new(binary("kube-apiserver"))
            .arg("--advertise-address=127.0.0.1")
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={}", self.apiserver_port))
            .arg(format!("--cert-dir={}", file("apiserver-certs")))
            .arg(format!("--tls-cert-file={}", file("apiserver.crt")))
            .arg(format!("--tls-private-key-file={}", file("apiserver.key")))
            .arg(format!("--client-ca-file={}", file("ca.crt")))
            .arg(format!("--etcd-servers={}", self.etcd_url))
            .arg(format!(
                "--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"
            ))
            .arg(format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"))
            .arg(format!("--service-account-key-file={}", file("sa.pub")))
            .arg(format!(
                "--service-account-signing-key-file={}",
                file("sa.key")
            ))
            // 1.37 refuses a loopback advertise address for the `kubernetes` Service's
            // endpoints ("may not be in the loopback range"); nothing here needs them.
            .arg("--endpoint-reconciler-type=none")
            .arg("--authorization-mode=RBAC")
            // Without a controller-manager no `default` ServiceAccount appears, and this plugin
            // would refuse every pod for lacking it (envtest turns it off too).
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--allow-privileged=true")
            .arg("--profiling=false")
            .args(&self.apiserver_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone kube-apiserver.log"))
            .stderr(log)
            .spawn()
            .expect("start kube-apiserver");
        self.apiserver = Some(child);
        self.wait_apiserver_ready();
    }

    fn apiserver_log_path(&self) -> PathBuf {
        self.dir.path().join("kube-apiserver.log")
    }

    fn etcd_log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Both logs' tails, for failure messages.
    fn logs_tail(&self) -> String {
        format!(
            "--- kube-apiserver.log (tail) ---\n{}\n--- etcd.log (tail) ---\n{}",
            tail(&self.apiserver_log_path(), 60),
            tail(&self.etcd_log_path(), 30)
        )
    }

    /// Fails with both logs if the process in `which` has exited. (The children stay in `self`
    /// while waiting, so a failure's unwinding still kills them in `Drop`.)
    fn check_running(&mut self, which: Which) {
        let (name, child) = match which {
            Which::Etcd => ("etcd", self.etcd.as_mut()),
            Which::Apiserver => ("kube-apiserver", self.apiserver.as_mut()),
        };
        if let Some(Ok(Some(status))) = child.map(|c| c.try_wait()) {
            panic!("{name} exited early with {status}\n{}", self.logs_tail());
        }
    }

    /// Waits until etcd answers `/health` with `"health":"true"`.
    fn wait_etcd(&mut self) {
        let url = format!("{}/health", self.etcd_url);
        let start = Instant::now();
        loop {
            self.check_running(Which::Etcd);
            let last = match crate::http_get(&url) {
                Ok((200, body)) if body.contains("\"true\"") => return,
                Ok((status, body)) => format!("{status}: {body}"),
                Err(e) => e,
            };
            assert!(
                start.elapsed() < READY_TIMEOUT,
                "etcd not healthy after {READY_TIMEOUT:?}; last /health: {last}\n{}",
                self.logs_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until kube-apiserver's `/readyz` answers 200.
    fn wait_apiserver_ready(&mut self) {
        let start = Instant::now();
        loop {
            self.check_running(Which::Apiserver);
            let last = match self.https_get("/readyz") {
                Ok((200, _)) => return,
                Ok((status, body)) => format!("{status}: {body}"),
                Err(e) => e,
            };
            if start.elapsed() > READY_TIMEOUT {
                let verbose = self
                    .https_get("/readyz?verbose")
                    .map(|(s, b)| format!("{s}: {b}"))
                    .unwrap_or_else(|e| e);
                panic!(
                    "kube-apiserver not ready after {READY_TIMEOUT:?}; last /readyz: {last}\n\
                     /readyz?verbose: {verbose}\n{}",
                    self.logs_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path` on kube-apiserver as the admin, over TLS verified against the CA: the status
    /// and the raw rest of the response, or why the request failed. (A minimal HTTP/1.1 client,
    /// so the harness needs no async runtime of its own.)
    fn https_get(&self, path: &str) -> Result<(u16, String), String> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.pki.ca_der.clone())
            .map_err(|e| format!("CA certificate: {e}"))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pki.admin_key_der.clone()));
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![self.pki.admin_cert_der.clone()], key)
        .map_err(|e| format!("client certificate: {e}"))?;
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
        let conn = rustls::ClientConnection::new(Arc::new(config), name)
            .map_err(|e| format!("TLS: {e}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.apiserver_port));
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .and_then(|()| sock.set_write_timeout(Some(Duration::from_secs(5))))
            .map_err(|e| format!("socket timeouts: {e}"))?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes())
            .map_err(|e| format!("send request: {e}"))?;
        let mut response = Vec::new();
        if let Err(e) = tls.read_to_end(&mut response) {
            // A peer that closes without close_notify still sent a complete response.
            if e.kind() != std::io::ErrorKind::UnexpectedEof || response.is_empty() {
                return Err(format!("read response: {e}"));
            }
        }
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
        Ok((status, body.to_owned()))
    }

    /// Writes the admin kubeconfig.
    fn write_kubeconfig(&self) {
        let dir = self.dir.path();
        self.write_kubeconfig_with(
            &self.kubeconfig,
            serde_json::json!({
                "client-certificate": dir.join("admin.crt"),
                "client-key": dir.join("admin.key"),
            }),
        );
    }

    /// Writes a kubeconfig (JSON, which is YAML) for this cluster with the given `user` entry.
    fn write_kubeconfig_with(&self, path: &Path, user: serde_json::Value) {
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": "periscope-test",
                "cluster": {
                    "server": self.server_url(),
                    "certificate-authority": self.dir.path().join("ca.crt"),
                },
            }],
            "users": [{ "name": "periscope-test", "user": user }],
            "contexts": [{
                "name": "periscope-test",
                "context": { "cluster": "periscope-test", "user": "periscope-test" },
            }],
            "current-context": "periscope-test",
        });
        let text = serde_json::to_string_pretty(&config).expect("serialize a kubeconfig");
        std::fs::write(path, text)
            .unwrap_or_else(|e| panic!("write kubeconfig {}: {e}", path.display()));
    }
}

impl Drop for ControlPlane {
    /// Kills kube-apiserver and etcd and waits for them; the temp dir goes with the struct.
    fn drop(&mut self) {
        if let Some(mut child) = self.apiserver.take() {
            kill(&mut child);
        }
        if let Some(mut child) = self.etcd.take() {
            kill(&mut child);
        }
    }
}

/// A `kube` client for the cluster a kubeconfig file describes (its current context).
pub async fn kube_client(kubeconfig: &Path) -> kube::Client {
    let kubeconfig_file = kube::config::Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("read kubeconfig {}: {e}", kubeconfig.display()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig_file, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("load kubeconfig {}: {e}", kubeconfig.display()));
    kube::Client::try_from(config).expect("build a kube client")
}

/// Creates every object of a multi-document YAML text, such as what `periscope rbac` prints.
pub async fn create_all(client: &kube::Client, yaml: &str) {
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
    for document in yaml.split("\n---\n") {
        let object: DynamicObject = serde_yaml_ng::from_str(document).expect("a YAML object");
        let types = object.types.clone().expect("apiVersion and kind");
        let (group, version) = types
            .api_version
            .split_once('/')
            .unwrap_or(("", &types.api_version));
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &types.kind));
        let api: Api<DynamicObject> = match object.metadata.namespace.as_deref() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        api.create(&PostParams::default(), &object)
            .await
            .expect("create an object");
    }
}

/// A token for ServiceAccount `namespace/name` from the TokenRequest API.
pub async fn service_account_token(client: &kube::Client, namespace: &str, name: &str) -> String {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::{Api, PostParams};
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_token_request(
            name,
            &PostParams::default(),
            &TokenRequest {
                spec: Some(TokenRequestSpec::default()),
                ..Default::default()
            },
        )
        .await
        .expect("token request")
        .status
        .and_then(|s| s.token)
        .expect("a token")
}
