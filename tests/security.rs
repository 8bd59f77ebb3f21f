//! Security against real clusters: TLS with a CA and server certificate made
//! in the test (require, verify-ca, verify-full; a wrong CA and a wrong host
//! name fail), a planted password that must appear nowhere, `.pgpass` and
//! `PG*` variables, the privilege check, and hostile input (quoting through
//! the whole pipeline, malformed conninfo, unreachable servers).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use shardready::conn::Target;
use shardready::sandbox::TestCluster;

const PASSWORD: &str = "planted-S3cret!pw";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn shardready(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = common::shardready();
    c.args(args).env_remove("DATABASE_URL");
    for v in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "PGPASSFILE",
        "PGSSLMODE",
    ] {
        c.env_remove(v);
    }
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// A CA, a server certificate for `localhost` signed by it, and a second,
/// unrelated CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new(server_uid: u32, server_gid: u32) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "shardready test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        server
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key).unwrap();
        let other_key = KeyPair::generate().unwrap();
        let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let other_cert = other.self_signed(&other_key).unwrap();
        let w = |name: &str, body: String, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            std::os::unix::fs::chown(&p, Some(server_uid), Some(server_gid)).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        // A client certificate for role `certuser`, signed by the CA.
        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(rcgen::DnType::CommonName, "certuser");
        let client_cert = client.signed_by(&client_key, &ca_cert, &ca_key).unwrap();
        let (v1_cert, v1_key) = v1_self_signed("localhost");
        w("ca.pem", ca_cert.pem(), 0o644);
        w("other-ca.pem", other_cert.pem(), 0o644);
        w("server.crt", server_cert.pem(), 0o644);
        w("server.key", server_key.serialize_pem(), 0o600);
        w("v1.crt", v1_cert, 0o644);
        w("v1.key", v1_key, 0o600);
        let me = (nix_uid(), nix_gid());
        let w_mine = |name: &str, body: String, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            std::os::unix::fs::chown(&p, Some(me.0), Some(me.1)).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        w_mine("client.crt", client_cert.pem(), 0o644);
        w_mine("client.key", client_key.serialize_pem(), 0o600);
        w_mine("client-open.key", client_key.serialize_pem(), 0o644);
        Pki { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn nix_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

fn nix_gid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().gid()
}

/// An X.509 **version 1** self-signed certificate and its key (PEM), as
/// `CREATE EXTENSION citus` makes for its node: no extensions, so no SAN;
/// the host name is the common name.
fn v1_self_signed(cn: &str) -> (String, String) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509Builder, X509NameBuilder};
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(0).unwrap(); // 0 is version 1
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = b.build();
    assert_eq!(cert.version(), 0, "a version 1 certificate");
    (
        String::from_utf8(cert.to_pem().unwrap()).unwrap(),
        String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
    )
}

/// A cluster with TLS on (the CA-signed certificate, or the v1 self-signed
/// one), a password-protected role `app`, and a role `certuser` that logs
/// in with a client certificate signed by the CA.
fn tls_cluster() -> (TestCluster, Pki) {
    tls_cluster_with("server")
}

fn tls_cluster_with(cert: &str) -> (TestCluster, Pki) {
    let c = TestCluster::start().unwrap();
    let data = c.sandbox().data_dir();
    let meta = std::fs::metadata(&data).unwrap();
    let pki = Pki::new(meta.uid(), meta.gid());
    let (crt, key) = if cert == "v1" {
        ("v1.crt", "v1.key")
    } else {
        ("server.crt", "server.key")
    };
    for sql in [
        "ALTER SYSTEM SET ssl = on".to_string(),
        format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}'",
            pki.path(crt).display()
        ),
        format!(
            "ALTER SYSTEM SET ssl_key_file = '{}'",
            pki.path(key).display()
        ),
        format!(
            "ALTER SYSTEM SET ssl_ca_file = '{}'",
            pki.path("ca.pem").display()
        ),
        format!("CREATE ROLE app LOGIN SUPERUSER PASSWORD '{PASSWORD}'"),
        "CREATE ROLE certuser LOGIN".to_string(),
    ] {
        c.sandbox().psql_command(&sql).unwrap();
    }
    // Passwords for `app` over TCP; everything else as before.
    let hba = data.join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!(
            "host all app 127.0.0.1/32 scram-sha-256\nhost all app ::1/128 scram-sha-256\n\
             hostssl all certuser 127.0.0.1/32 cert\nhost all certuser 127.0.0.1/32 reject\n{old}"
        ),
    )
    .unwrap();
    c.sandbox().psql_command("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    (c, pki)
}

fn url(c: &TestCluster, host: &str, extra: &str) -> String {
    format!(
        "postgresql://app:{}@{host}:{}/postgres?{extra}",
        url::form_urlencoded::byte_serialize(PASSWORD.as_bytes()).collect::<String>(),
        c.sandbox().state.port
    )
}

async fn ssl_in_use(t: &Target) -> Result<bool, String> {
    let c = t.connect().await.map_err(|e| e.to_string())?;
    Ok(c.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await
    .map_err(|e| e.to_string())?
    .get(0))
}

#[tokio::test]
async fn tls_require_verify_ca_verify_full() {
    let (c, pki) = tls_cluster();
    let ca = pki.path("ca.pem").display().to_string();
    let other = pki.path("other-ca.pem").display().to_string();
    let t = |host: &str, q: &str| Target::parse(&url(&c, host, q)).unwrap();

    assert!(ssl_in_use(&t("127.0.0.1", "sslmode=require"))
        .await
        .unwrap());
    assert!(!ssl_in_use(&t("127.0.0.1", "sslmode=disable"))
        .await
        .unwrap());
    assert!(ssl_in_use(&t(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}")
    ))
    .await
    .unwrap());
    assert!(ssl_in_use(&t(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}")
    ))
    .await
    .unwrap());
    // A wrong CA fails under verify-ca and verify-full.
    let e = ssl_in_use(&t(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    ))
    .await
    .unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    assert!(ssl_in_use(&t(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={other}")
    ))
    .await
    .is_err());
    // A host name the certificate does not name fails under verify-full
    // only (the certificate is for `localhost`).
    let e = ssl_in_use(&t(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // verify-* without a CA says what to set (unless ~/.postgresql/root.crt
    // exists, which libpq would use).
    if dirs_home_root_crt().is_none() {
        let e = ssl_in_use(&t("localhost", "sslmode=verify-full"))
            .await
            .unwrap_err();
        assert!(e.contains("sslrootcert"), "{e}");
        assert!(!e.contains(PASSWORD));
    }
    // require with a root file verifies the chain, as libpq does.
    assert!(ssl_in_use(&t(
        "127.0.0.1",
        &format!("sslmode=require&sslrootcert={other}")
    ))
    .await
    .is_err());
}

fn dirs_home_root_crt() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var("HOME").ok()?).join(".postgresql/root.crt");
    p.is_file().then_some(p)
}

/// What `CREATE EXTENSION citus` leaves a node with: a self-signed X.509 v1
/// certificate. Every sslmode behaves as under libpq.
#[tokio::test]
async fn tls_every_sslmode_against_a_v1_self_signed_certificate() {
    let (c, pki) = tls_cluster_with("v1");
    let v1 = pki.path("v1.crt").display().to_string();
    let other = pki.path("other-ca.pem").display().to_string();
    let t = |host: &str, q: &str| Target::parse(&url(&c, host, q)).unwrap();
    assert!(!ssl_in_use(&t("127.0.0.1", "sslmode=disable"))
        .await
        .unwrap());
    for mode in ["allow", "prefer", "require"] {
        assert!(
            ssl_in_use(&t("127.0.0.1", &format!("sslmode={mode}")))
                .await
                .unwrap(),
            "{mode}"
        );
    }
    // The v1 certificate is its own CA: verify-ca accepts it as sslrootcert,
    // verify-full too for the name it carries (its CN, there is no SAN).
    assert!(ssl_in_use(&t(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={v1}")
    ))
    .await
    .unwrap());
    assert!(ssl_in_use(&t(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={v1}")
    ))
    .await
    .unwrap());
    let e = ssl_in_use(&t(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={v1}"),
    ))
    .await
    .unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    assert!(ssl_in_use(&t(
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={other}")
    ))
    .await
    .is_err());
    // The CLI connects under the default sslmode (prefer).
    let db = url(&c, "127.0.0.1", "");
    let out = shardready(&["tailspin", "schema", "--db", &db], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = shardready(&["analyze", "--db", &db], &[]);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(2),
        "{}",
        text(&out)
    );
}

/// sslcert/sslkey authenticate us; a key others can read is refused with
/// the chmod to run; under prefer, a server whose TLS we cannot speak is
/// retried in plain text (libpq's fallback), under require it fails.
#[tokio::test]
async fn tls_client_certificates_and_the_prefer_fallback() {
    let (c, pki) = tls_cluster();
    let ca = pki.path("ca.pem").display().to_string();
    let crt = pki.path("client.crt").display().to_string();
    let key = pki.path("client.key").display().to_string();
    let open = pki.path("client-open.key").display().to_string();
    let port = c.sandbox().state.port;
    let cert_url = |extra: &str| {
        format!("postgresql://certuser@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}{extra}")
    };
    let t = Target::parse(&cert_url(&format!("&sslcert={crt}&sslkey={key}"))).unwrap();
    let client = t.connect().await.unwrap();
    let who: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "certuser");
    // Without the certificate the server refuses us.
    assert!(Target::parse(&cert_url(""))
        .unwrap()
        .connect()
        .await
        .is_err());
    // A key file others can read: refused before connecting, with the fix.
    let e = Target::parse(&cert_url(&format!("&sslcert={crt}&sslkey={open}")))
        .unwrap()
        .connect()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("chmod 0600"), "{e}");

    // A server that only speaks TLS 1.1 (below libpq's minimum, 1.2).
    c.sandbox()
        .psql_command("ALTER SYSTEM SET ssl_min_protocol_version = 'TLSv1'")
        .unwrap();
    c.sandbox()
        .psql_command("ALTER SYSTEM SET ssl_max_protocol_version = 'TLSv1.1'")
        .unwrap();
    c.sandbox().psql_command("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = |q: &str| Target::parse(&url(&c, "127.0.0.1", q)).unwrap();
    assert!(!ssl_in_use(&t("sslmode=prefer")).await.unwrap());
    assert!(ssl_in_use(&t("sslmode=require")).await.is_err());
}

#[tokio::test]
async fn a_planted_password_appears_nowhere() {
    let (c, _pki) = tls_cluster();
    let db = url(&c, "127.0.0.1", "sslmode=require");
    let t = Target::parse(&db).unwrap();
    {
        let mut client = t.connect().await.unwrap();
        shardready::ingest::create_tailspin_schema(&client, false)
            .await
            .unwrap();
        shardready::ingest::load_tailspin(&mut client, None, 0.002, 42, false)
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let plan = dir.path().join("plan.sql");
    let mut all = String::new();
    for args in [
        vec!["analyze", "--db", &db],
        vec!["analyze", "--format", "json", "--db", &db],
        vec![
            "plan",
            "--format",
            "sql",
            "-o",
            plan.to_str().unwrap(),
            "--db",
            &db,
        ],
        vec![
            "apply",
            "--db",
            &db,
            "--trigger-window",
            "200ms",
            "--workload",
            "600/min",
            "--report",
            report.to_str().unwrap(),
        ],
        vec!["status", "--db", &db],
        vec!["verify", "--db", &db],
        vec![
            "workload",
            "--duration",
            "1s",
            "--rate",
            "300/min",
            "--db",
            &db,
        ],
    ] {
        let out = shardready(&args, &[("SHARDREADY_LOG", "debug")]);
        assert!(
            out.status.success() || out.status.code() == Some(2),
            "{args:?}: {}",
            text(&out)
        );
        all.push_str(&text(&out));
    }
    // A wrong password: a clear error, without the password tried.
    let wrong = db.replace("planted-S3cret", "not-the-pw");
    let out = shardready(&["status", "--db", &wrong], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out);
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("not-the-pw"), "{err}");
    all.push_str(&err);
    for f in [
        plan.clone(),
        report.join("report.json"),
        report.join("report.md"),
    ] {
        all.push_str(&std::fs::read_to_string(&f).unwrap());
    }
    // The shardready tables, every row as text.
    let client = t.connect().await.unwrap();
    for table in ["plan", "step", "backfill"] {
        for r in client
            .query(&format!("SELECT t::text FROM shardready.{table} t"), &[])
            .await
            .unwrap()
        {
            all.push_str(&r.get::<_, String>(0));
        }
    }
    assert!(all.contains("app@127.0.0.1"), "targets are shown, redacted");
    assert!(!all.contains(PASSWORD), "the password leaked");
    assert!(!all.contains("S3cret"), "part of the password leaked");
}

#[tokio::test]
async fn pgpass_and_pg_variables_are_honoured() {
    let (c, _pki) = tls_cluster();
    let port = c.sandbox().state.port.to_string();
    let dir = tempfile::tempdir().unwrap();
    let pgpass = dir.path().join("pgpass");
    std::fs::write(
        &pgpass,
        format!("127.0.0.1:{port}:postgres:app:{PASSWORD}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let base = [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", port.as_str()),
        ("PGUSER", "app"),
        ("PGDATABASE", "postgres"),
    ];
    // PG* + .pgpass, no --db.
    let mut env = base.to_vec();
    env.push(("PGPASSFILE", pgpass.to_str().unwrap()));
    let out = shardready(&["status"], &env);
    assert!(out.status.success(), "{}", text(&out));
    // PGPASSWORD.
    let mut env = base.to_vec();
    env.push(("PGPASSWORD", PASSWORD));
    assert!(shardready(&["status"], &env).status.success());
    // Neither: scram refuses.
    let out = shardready(&["status"], &base);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("password"), "{}", text(&out));
}

#[tokio::test]
async fn apply_checks_privileges_before_changing_anything() {
    let (_c, t) = common::tailspin(0.002).await;
    let admin = t.connect().await.unwrap();
    admin
        .batch_execute(
            "CREATE ROLE weak LOGIN; GRANT CREATE ON DATABASE postgres TO weak; \
             GRANT USAGE ON SCHEMA public TO weak; GRANT SELECT ON ALL TABLES IN SCHEMA public TO weak;",
        )
        .await
        .unwrap();
    let mut cfg = t.config.clone();
    cfg.user("weak");
    let weak = Target {
        config: cfg,
        ..t.clone()
    };
    let err = shardready::apply::apply(
        &weak,
        &shardready::apply::ApplyOptions {
            progress: false,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("ownership of line_items (owned by `postgres`)"),
        "{msg}"
    );
    assert!(msg.contains("nothing was changed"));
    let has_schema: bool = admin
        .query_one("SELECT to_regnamespace('shardready') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!has_schema, "nothing was written");
}

/// Identifiers with mixed case, spaces, quotes, reserved words and
/// non-ASCII through analyze, plan, apply and verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_identifiers_through_the_whole_pipeline() {
    let (c, t) = common::cluster();
    let client = t.connect().await.unwrap();
    client
        .batch_execute(
            r#"
            CREATE SCHEMA "Ünïcode Schema";
            CREATE TABLE "Ünïcode Schema"."Tenant Accounts" ("Account ID" bigserial PRIMARY KEY, "naïve name" text);
            CREATE TABLE "Ünïcode Schema"."select" (
                "id" bigserial PRIMARY KEY,
                "Account ID" bigint REFERENCES "Ünïcode Schema"."Tenant Accounts" ("Account ID"),
                "we""ird" text,
                CONSTRAINT "order" UNIQUE ("we""ird")
            );
            CREATE TABLE "Ünïcode Schema"."Line ""Items""" (
                "id" bigserial PRIMARY KEY,
                "sel id" bigint CONSTRAINT "FK; DROP TABLE x" REFERENCES "Ünïcode Schema"."select" ("id"),
                qty int
            );
            INSERT INTO "Ünïcode Schema"."Tenant Accounts" ("naïve name") SELECT 'acct ' || g FROM generate_series(1, 5) g;
            INSERT INTO "Ünïcode Schema"."select" ("Account ID", "we""ird") SELECT 1 + g % 5, 'w' || g FROM generate_series(1, 50) g;
            INSERT INTO "Ünïcode Schema"."Line ""Items""" ("sel id", qty) SELECT 1 + g % 50, g FROM generate_series(1, 500) g;
            "#,
        )
        .await
        .unwrap();
    let db = c.url();
    let out = shardready(&["analyze", "--db", &db, "--format", "json"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tenant"]["column"], "Account ID");
    let out = shardready(&["plan", "--db", &db, "--format", "sql"], &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#""Ünïcode Schema"."Line ""Items""""#));
    let out = shardready(&["apply", "--db", &db, "--trigger-window", "200ms"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = shardready(&["verify", "--db", &db], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let n: i64 = client
        .query_one(
            r#"SELECT count(*) FROM "Ünïcode Schema"."Line ""Items""" l JOIN "Ünïcode Schema"."select" s ON s.id = l."sel id" WHERE l."Account ID" = s."Account ID""#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 500, "every row got its tenant");
    let still: bool = client
        .query_one("SELECT to_regclass('x') IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(still);
}

#[test]
fn bad_connection_input_gives_clear_errors() {
    let cases: [(&str, &str); 4] = [
        (
            "host=localhost bogus=1",
            "unknown connection parameter `bogus`",
        ),
        ("mysql://x/y", "postgresql://"),
        (
            "host=localhost port=notaport",
            "port `notaport` is not a number",
        ),
        ("dbname='unterminated", "unterminated"),
    ];
    for (db, want) in cases {
        let out = shardready(&["status", "--db", db], &[]);
        assert_eq!(out.status.code(), Some(1), "{db}");
        assert!(text(&out).contains(want), "{db}: {}", text(&out));
    }
    // Nobody listening: refused at once, with a hint.
    let port = shardready::sandbox::free_port().unwrap().to_string();
    let out = shardready(
        &[
            "status",
            "--db",
            &format!("host=127.0.0.1 port={port} user=x dbname=y"),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("is PostgreSQL running there"),
        "{}",
        text(&out)
    );
    // A server that accepts but never answers: the connect timeout ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let t0 = Instant::now();
    let out = shardready(
        &[
            "status",
            "--db",
            &format!(
                "host=127.0.0.1 port={port} user=x dbname=y connect_timeout=1 sslmode=disable"
            ),
        ],
        &[],
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "bounded by connect_timeout"
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("timed out"), "{}", text(&out));
    drop(silent);
}

#[tokio::test]
async fn databases_without_the_tables_or_with_a_bad_tenant_column() {
    let (c, _t) = common::cluster();
    let db = c.url();
    let out = shardready(&["analyze", "--db", &db], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("no tables"), "{}", text(&out));
    let out = shardready(&["workload", "--duration", "1s", "--db", &db], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("tailspin schema"), "{}", text(&out));
    let _ = Path::new("");
    let (c, _t) = common::tailspin(0.002).await;
    let out = shardready(
        &["analyze", "--db", &c.url(), "--tenant-column", "nope"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no table has a column `nope`"),
        "{}",
        text(&out)
    );
}
