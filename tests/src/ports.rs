//! Free 127.0.0.1 ports in 15000..32000 for tests running in parallel in one process.

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Mutex;

const PORTS: std::ops::Range<u16> = 15000..32000;

/// Ports handed out by this process: a bind-test alone can't stop two parallel tests from
/// picking the same port before either binds it for real.
static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port that nothing listens on now and that no other test of this process was given.
pub fn free_port() -> u16 {
    let mut seed = RandomState::new().build_hasher().finish();
    let span = u64::from(PORTS.end - PORTS.start);
    let mut taken = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = PORTS.start + ((seed >> 33) % span) as u16;
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok() {
            taken.insert(port);
            return port;
        }
    }
    panic!("no free port in {PORTS:?}");
}
