//! MQTT throughput and latency: events per second through the durable
//! outbox (SQLite) and the broker to a subscriber, and the latency from
//! `publish_event` to the subscriber, p50/p95, with the embedded broker
//! (rumqttd) and with mosquitto (skipped if it is not installed). MQTT
//! 3.1.1, QoS 1, loopback.
//!
//! Run: `cargo bench --bench mqtt`. Prints a table; nothing is asserted.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use glimpse::event::{Event, EventKind};
use glimpse::mqtt::{Mqtt, MqttConfig};
use tokio::sync::mpsc;

const THROUGHPUT_EVENTS: usize = 3000;
const LATENCY_EVENTS: usize = 300;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A subscriber of our own on `<prefix>/+/event`, reporting (id, when).
async fn subscriber(
    port: u16,
    ready: tokio::sync::oneshot::Sender<()>,
) -> mpsc::UnboundedReceiver<(String, Instant)> {
    let mut options = rumqttc::MqttOptions::new(format!("bench-sub-{port}"), "127.0.0.1", port);
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 64);
    client
        .subscribe("bench/+/event", rumqttc::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut ready = Some(ready);
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let now = Instant::now();
                    let event: serde_json::Value =
                        serde_json::from_slice(&p.payload).expect("json");
                    let _ = tx.send((event["id"].as_str().unwrap_or_default().to_owned(), now));
                }
                Ok(_) => {}
                // The broker went away (the end of a run): stop quietly.
                Err(_) => return,
            }
        }
    });
    rx
}

fn event(n: usize) -> Event {
    Event::new(
        "front",
        EventKind::Description,
        format!("a red square appeared at the top left ({n})"),
        (Duration::ZERO, Duration::from_secs(1)),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn measure(name: &str, config: MqttConfig, port: u16) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mqtt = Mqtt::start(&config, vec!["front".into()], dir.path())
        .await
        .expect("start mqtt");
    assert!(
        mqtt.handle.wait_connected(Duration::from_secs(10)).await,
        "connected"
    );
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut received = subscriber(port, ready_tx).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), ready_rx).await;

    // Throughput: publish as fast as the outbox takes them.
    let start = Instant::now();
    for n in 0..THROUGHPUT_EVENTS {
        mqtt.handle.publish_event(event(n)).await.expect("publish");
    }
    let written = start.elapsed();
    let mut got = 0;
    while got < THROUGHPUT_EVENTS {
        match tokio::time::timeout(Duration::from_secs(30), received.recv()).await {
            Ok(Some(_)) => got += 1,
            _ => break,
        }
    }
    let total = start.elapsed();
    let rate = got as f64 / total.as_secs_f64();
    let write_rate = THROUGHPUT_EVENTS as f64 / written.as_secs_f64();

    // Latency: one event every 5 ms, each timed to its arrival.
    let mut sent = HashMap::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handle = mqtt.handle.clone();
    let producer = tokio::spawn(async move {
        for n in 0..LATENCY_EVENTS {
            let e = event(n);
            let _ = tx.send((e.id.clone(), Instant::now()));
            handle.publish_event(e).await.expect("publish");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while latencies.len() < LATENCY_EVENTS && Instant::now() < deadline {
        tokio::select! {
            Some((id, at)) = rx.recv() => { sent.insert(id, at); }
            Some((id, at)) = received.recv() => {
                if let Some(start) = sent.remove(&id) {
                    latencies.push(at - start);
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let _ = producer.await;
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<24} {got:>6}/{THROUGHPUT_EVENTS} events {rate:>8.0} ev/s end to end ({write_rate:>6.0} ev/s into the outbox)   latency p50 {:>6.2} ms  p95 {:>6.2} ms  (n={})",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.95)),
        latencies.len()
    );
    mqtt.shutdown().await;
}

fn mosquitto(dir: &std::path::Path, port: u16) -> Option<Child> {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    )
    .ok()?;
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    wait_port(port);
    Some(child)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "MQTT 3.1.1, QoS 1, loopback, events of ~250 bytes JSON, outbox in a temporary directory"
    );
    let base = MqttConfig {
        prefix: "bench".into(),
        discovery: false,
        ..MqttConfig::default()
    };
    let port = free_port();
    let embedded = MqttConfig {
        listen: format!("127.0.0.1:{port}"),
        ..base.clone()
    };
    runtime.block_on(measure("embedded broker (rumqttd)", embedded, port));

    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    match mosquitto(dir.path(), port) {
        Some(mut child) => {
            let external = MqttConfig {
                broker: format!("mqtt://127.0.0.1:{port}"),
                ..base
            };
            runtime.block_on(measure("mosquitto", external, port));
            let _ = child.kill();
            let _ = child.wait();
        }
        None => println!("mosquitto                 skipped: not installed"),
    }
}
