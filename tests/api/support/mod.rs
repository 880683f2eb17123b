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

/// A port on 127.0.0.1 where nothing listens.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
