//! The [`Answerer`] on a socket of webrtc-util's virtual network.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_proxy::Transport;
use webrtc_util::Conn;

use crate::uas::{Answerer, Mode, Out, UasStats};

/// A UAS on a virtual socket: the task [`serve`] runs, and a handle to
/// change its mode and read what it saw.
#[derive(Debug)]
pub struct VnetUas {
    answerer: Mutex<Answerer>,
    pub stats: UasStats,
}

impl VnetUas {
    /// A UAS at `me` that retransmits its 2xx until the ACK (the virtual
    /// network may lose it).
    pub fn new(me: SocketAddr, mode: Mode) -> Arc<VnetUas> {
        Arc::new(VnetUas {
            answerer: Mutex::new(Answerer::new(me, "uas", mode, true)),
            stats: UasStats::default(),
        })
    }

    pub fn set_mode(&self, mode: Mode) {
        self.answerer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_mode(mode);
    }

    fn with<R>(&self, f: impl FnOnce(&mut Answerer, &UasStats) -> R) -> R {
        f(
            &mut self.answerer.lock().unwrap_or_else(PoisonError::into_inner),
            &self.stats,
        )
    }
}

/// Answer on `conn` until it is closed.
pub async fn serve(conn: Arc<dyn Conn + Send + Sync>, uas: Arc<VnetUas>) {
    let mut buf = vec![0u8; 65536];
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        let out: Vec<Out> = tokio::select! {
            r = conn.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { return };
                let data = Bytes::copy_from_slice(&buf[..n]);
                uas.with(|a, s| a.on_message(Instant::now(), data, from, Transport::Udp, s))
            }
            _ = tick.tick() => uas.with(|a, s| a.poll(Instant::now(), s)),
        };
        for o in out {
            let _ = conn.send_to(&o.bytes, o.to).await;
        }
    }
}
