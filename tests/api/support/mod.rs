//! Real peers for the notification tests: an SMTP server we did not write (aiosmtpd),
//! a Telegram Bot API stand-in, and a server that accepts connections and never answers.

pub mod smtp;
pub mod telegram;

use std::net::SocketAddr;

/// Accepts TCP connections and holds them open without a byte: a hung server.
pub async fn silent_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// A TCP relay to `target` on 127.0.0.1 that can hang: while it does, it accepts
/// connections and never answers (a server that hangs); once [`HangingRelay::recover`]ed,
/// new connections are passed through.
pub struct HangingRelay {
    pub port: u16,
    hung: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HangingRelay {
    pub async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hung = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = hung.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    held.push(socket);
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
                    }
                });
            }
        });
        Self { port, hung }
    }

    pub fn recover(&self) {
        self.hung.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A port on 127.0.0.1 where nothing listens.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
