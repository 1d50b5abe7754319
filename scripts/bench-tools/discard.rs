//! scripts/bench-tools/discard.rs — a TCP sink for benchmarks: accepts connections on
//! 127.0.0.1:PORT and reads and discards everything, a thread per connection, 1 MiB reads.
//! What a sender can do when the receiver costs (almost) nothing. Built by the bench scripts
//! with plain rustc (no dependencies): rustc -O -o discard discard.rs
use std::io::Read;
use std::net::TcpListener;

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).expect("usage: discard PORT");
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        });
    }
}
