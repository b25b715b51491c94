//! MQTT over TLS: mosquitto with a test CA that requires client
//! certificates, and the daemon connecting with its CA and client
//! certificate files (`mqtts://`).

use std::process::Command;
use std::time::Duration;

use crate::harness::broker::{Mosquitto, Sub};
use crate::harness::daemon::Daemon;
use crate::harness::output_ok;

const SECS: Duration = Duration::from_secs(10);

#[test]
fn tls_with_a_ca_and_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let openssl = |args: &[&str]| {
        output_ok(Command::new("openssl").args(args).current_dir(d));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=glimpse test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    // Extensions make v3 certificates (webpki refuses v1 ones).
    std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for name in ["server", "client"] {
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }
    let _ = Command::new("chmod")
        .args(["644", "server.key", "client.key"])
        .current_dir(d)
        .status();
    let path = |f: &str| d.join(f).display().to_string();
    let broker = Mosquitto::start(
        d,
        &format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true",
            path("ca.pem"),
            path("server.pem"),
            path("server.key")
        ),
    );
    let mut daemon = Daemon::start(
        d,
        &format!(
            "broker = \"mqtts://127.0.0.1:{}\"\nca_file = {:?}\nclient_cert_file = {:?}\nclient_key_file = {:?}",
            broker.port,
            path("ca.pem"),
            path("client.pem"),
            path("client.key")
        ),
        &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "200")],
    );
    let port = broker.port.to_string();
    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client.key"));
    let mut sub = Sub::start(
        broker.port,
        &[
            "--cafile",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "-t",
            "glimpse/#",
            "-v",
        ],
    );
    sub.expect("status online over TLS", SECS, |l| {
        l == "glimpse/status online"
    });
    sub.expect("an event over TLS", SECS, |l| {
        l.starts_with("glimpse/front/event ")
    });
    daemon.assert_running();
    assert!(
        daemon.log().contains(&format!(
            "connected to the MQTT broker broker=mqtts://127.0.0.1:{port}"
        )),
        "{}",
        daemon.log()
    );
    daemon.stop();
}
