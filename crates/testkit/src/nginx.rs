//! Several instances behind one address, balanced as the Ingress balances them.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::{Http, free_port};

/// nginx (installed by `scripts/services.sh`) balancing round robin over `upstreams` with the
/// stream Ingress's settings — no buffering, long reads — killed on drop. An upstream that is
/// not listening yet is skipped for that request only (`max_fails=0`), so an instance started
/// later gets its share of the next connections at once.
pub struct Nginx {
    pub http: Http,
    dir: std::path::PathBuf,
    _child: Child,
}

impl Nginx {
    pub async fn start(upstreams: &[SocketAddr]) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("kubescaler-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let servers: String = upstreams.iter().map(|u| format!("server {u} max_fails=0; ")).collect();
        let d = dir.display();
        let config = format!(
            "master_process off; pid {d}/nginx.pid; error_log {d}/error.log; daemon off;
             events {{ worker_connections 1024; }}
             http {{
               access_log off;
               client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};
               uwsgi_temp_path {d}; scgi_temp_path {d};
               upstream stream {{ {servers} }}
               server {{
                 listen 127.0.0.1:{port};
                 location / {{
                   proxy_pass http://stream;
                   proxy_http_version 1.1;
                   proxy_set_header Connection \"\";
                   proxy_buffering off;
                   proxy_read_timeout 3600s;
                 }}
               }}
             }}"
        );
        std::fs::write(dir.join("nginx.conf"), config).unwrap();
        let child = Command::new("nginx")
            .args(["-p", &d.to_string(), "-c", &dir.join("nginx.conf").display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nginx ({e}); install it with `scripts/services.sh up`"));
        let http = Http::new(SocketAddr::from(([127, 0, 0, 1], port)));
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Self { http, dir, _child: child };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "nginx did not listen on {port}: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
    }
}

impl std::ops::Deref for Nginx {
    type Target = Http;
    fn deref(&self) -> &Http {
        &self.http
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
