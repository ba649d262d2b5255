//! `port-forward`: forwards local ports to a pod through the API server, as kubectl does.
//! `pod/NAME`, `deploy/NAME` (or `rs/`, `rc/`) pick a pod of the workload; `svc/NAME` picks a
//! pod of the Service and turns the Service port into the pod's target port. Each local
//! connection opens its own tunnel: `POST pods/{name}/portforward?ports=N` with
//! `Upgrade: minik-portforward` (docs/api.md), then raw bytes both ways.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use super::{fail, pick, CliResult, Client, ClientFlags};

/// The `Upgrade` token of minik's raw tunnel.
const PROTOCOL: &str = "minik-portforward";

#[derive(clap::Args, Debug)]
pub struct PortForwardArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// pod/NAME (or NAME), deploy|rs|rc/NAME, or svc/NAME.
    target: String,
    /// [LOCAL:]REMOTE ports; `:REMOTE` picks a free local port.
    #[arg(required = true)]
    ports: Vec<String>,
    /// The local address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    address: std::net::IpAddr,
}

/// One validated `[LOCAL:]REMOTE`; local 0 means any free port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PortPair {
    local: u16,
    remote: u16,
}

fn parse_pair(spec: &str) -> CliResult<PortPair> {
    // A local port of 0 (or none, `:REMOTE`) is any free one, as with kubectl.
    let port = |s: &str, which: &str| -> CliResult<u16> {
        s.parse::<u16>()
            .ok()
            .filter(|p| *p > 0 || which == "local")
            .ok_or_else(|| fail!("invalid {which} port {s:?} in {spec:?}: must be 1-65535"))
    };
    match spec.split_once(':') {
        Some(("", remote)) => Ok(PortPair {
            local: 0,
            remote: port(remote, "remote")?,
        }),
        Some((local, remote)) => Ok(PortPair {
            local: port(local, "local")?,
            remote: port(remote, "remote")?,
        }),
        None => {
            let p = port(spec, "remote")?;
            Ok(PortPair {
                local: p,
                remote: p,
            })
        }
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// kubectl's translation of a Service port into the pod's port: the `targetPort` of the Service
/// port numbered `port`, resolved by name among the pod's container ports.
fn service_target(service: &Value, pod: &Value, port: u16) -> CliResult<u16> {
    let name = str_at(service, "/metadata/name");
    let ports = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let sp = ports
        .iter()
        .find(|p| p["port"].as_u64() == Some(u64::from(port)))
        .ok_or_else(|| fail!("Service {name} does not have a service port {port}"))?;
    match &sp["targetPort"] {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| fail!("Service {name} has an invalid targetPort {n}")),
        Value::String(port_name) => pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
            .find(|p| p["name"].as_str() == Some(port_name))
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| {
                fail!(
                    "pod {} does not have a named port '{port_name}'",
                    str_at(pod, "/metadata/name")
                )
            }),
        _ => Ok(port),
    }
}

pub async fn run(args: PortForwardArgs) -> CliResult {
    let client = Client::new(&args.client)?;
    let pairs = args
        .ports
        .iter()
        .map(|p| parse_pair(p))
        .collect::<CliResult<Vec<_>>>()?;
    let picked = pick::pod_of_target(&client, &args.target, "forward to").await?;
    let service = picked.owner.filter(|_| picked.kind.kind == "Service");
    let pod = picked.pod;
    let phase = str_at(&pod, "/status/phase");
    if phase != "Running" {
        return Err(fail!(
            "unable to forward port because pod is not running. Current status={phase}"
        ));
    }
    let pod_name = str_at(&pod, "/metadata/name").to_owned();
    let ns = str_at(&pod, "/metadata/namespace").to_owned();
    let mut listeners = Vec::new();
    for pair in pairs {
        let remote = match &service {
            Some(svc) => service_target(svc, &pod, pair.remote)?,
            None => pair.remote,
        };
        let listener = TcpListener::bind((args.address, pair.local))
            .await
            .map_err(|e| fail!("unable to listen on port {}: {e}", pair.local))?;
        let local = listener
            .local_addr()
            .map_err(|e| fail!("unable to listen on port {}: {e}", pair.local))?;
        println!("Forwarding from {local} -> {}", pair.remote);
        listeners.push((listener, local, remote));
    }
    let tunnel = Tunnel {
        api: client.api.clone(),
        path: format!("/api/v1/namespaces/{ns}/pods/{pod_name}/portforward"),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (listener, local, remote) in listeners {
        let tunnel = tunnel.clone();
        tasks.spawn(async move { serve(listener, local, remote, tunnel).await });
    }
    // Until interrupted, or a listener fails.
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            return Err(e);
        }
    }
    Ok(())
}

/// How to open one tunnel to the pod: the API's connection settings (TLS, credentials) and
/// the pod's portforward path.
#[derive(Clone)]
struct Tunnel {
    api: minik_client::HttpApi,
    path: String,
}

async fn serve(listener: TcpListener, local: SocketAddr, remote: u16, tunnel: Tunnel) -> CliResult {
    loop {
        let (conn, _) = listener
            .accept()
            .await
            .map_err(|e| fail!("lost the listener on {local}: {e}"))?;
        println!("Handling connection for {}", local.port());
        let tunnel = tunnel.clone();
        tokio::spawn(async move {
            if let Err(e) = forward(conn, &tunnel, remote).await {
                eprintln!(
                    "E an error occurred forwarding {} -> {remote}: {e}",
                    local.port()
                );
            }
        });
    }
}

/// Opens a tunnel to the pod's `remote` port and copies bytes between it and `conn`.
async fn forward(mut conn: TcpStream, tunnel: &Tunnel, remote: u16) -> Result<(), String> {
    let mut stream = tunnel
        .api
        .upgrade(&format!("{}?ports={remote}", tunnel.path), PROTOCOL)
        .await
        .map_err(|e| e.to_string())?;
    let _ = conn.set_nodelay(true);
    tokio::io::copy_bidirectional(&mut conn, &mut stream)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn port_pairs_parse_like_kubectl() {
        for (text, local, remote) in [
            ("8080:80", 8080, 80),
            ("80", 80, 80),
            (":80", 0, 80),
            ("0:80", 0, 80),
        ] {
            assert_eq!(
                parse_pair(text).unwrap(),
                PortPair { local, remote },
                "{text}"
            );
        }
        for bad in ["0", "x:80", "80:", "80:0", "70000", "1:2:3"] {
            assert!(parse_pair(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn service_ports_become_target_ports() {
        let svc = json!({"metadata": {"name": "web"}, "spec": {"ports": [
            {"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 9000}
        ]}});
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}
        ]}});
        assert_eq!(service_target(&svc, &pod, 80).unwrap(), 8080);
        assert_eq!(service_target(&svc, &pod, 81).unwrap(), 9000);
        assert!(service_target(&svc, &pod, 82)
            .unwrap_err()
            .to_string()
            .contains("does not have a service port 82"));
    }
}
