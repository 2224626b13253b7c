//! The control plane beside the collective engine: a TCP star around rank 0 that carries the
//! rendezvous (the NCCL unique id), failure reports and a watchdog, so that no rank ever waits
//! forever on a collective.
//!
//! * Rank 0 listens at `MASTER_ADDR:MASTER_PORT`; every other rank connects and says its rank.
//! * A rank that fails sends `FAIL <rank> <error>`; rank 0 forwards it to everyone. A connection
//!   that closes without `DONE` is a rank that died (killed, crashed). Either way every rank prints
//!   `error: rank R failed: ...` and exits with status 1 at once, even from inside a collective.
//! * Each collective runs under a deadline (`trainer.collective_timeout_s`); a watchdog thread
//!   turns an expired deadline into a failure report of this rank.

use super::DistError;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the watchdog looks at the deadline, and the connect-retry interval.
const TICK: Duration = Duration::from_millis(100);
/// How long rank 0 waits for the others' `DONE` at a clean end.
const FINISH_WAIT: Duration = Duration::from_secs(30);

/// Shared between the main thread, the readers and the watchdog.
struct Shared {
    rank: usize,
    /// Connections to write to: every peer on rank 0, rank 0 elsewhere.
    writers: Mutex<Vec<TcpStream>>,
    /// The running collective and its deadline.
    deadline: Mutex<Option<(&'static str, Instant, Duration)>>,
    /// Set once this rank finished cleanly or reported its own failure: closed connections are
    /// then expected.
    finished: AtomicBool,
    /// Peers that said `DONE` (rank 0).
    done: AtomicUsize,
}

impl Shared {
    fn send_all(&self, line: &str) {
        if let Ok(mut writers) = self.writers.lock() {
            for w in writers.iter_mut() {
                let _ = w.write_all(line.as_bytes());
                let _ = w.flush();
            }
        }
    }

    /// Tells everyone that `rank` failed (forwarding through rank 0), then ends this process.
    fn abort(&self, rank: usize, message: &str) -> ! {
        self.finished.store(true, Ordering::SeqCst);
        self.send_all(&fail_line(rank, message));
        eprintln!("error: rank {rank} failed: {message}");
        if rank != self.rank {
            eprintln!("hint: rank {} stops because rank {rank} did", self.rank);
        }
        std::process::exit(1)
    }
}

fn fail_line(rank: usize, message: &str) -> String {
    format!("FAIL {rank} {}\n", message.replace(['\n', '\r'], " | "))
}

/// This rank's end of the control plane.
pub struct Control {
    shared: Arc<Shared>,
    world: usize,
    timeout: Duration,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Control(rank {} of {})", self.shared.rank, self.world)
    }
}

fn collective_err(rank: usize, reason: impl ToString) -> DistError {
    DistError::Collective {
        op: "rendezvous",
        rank,
        reason: reason.to_string(),
    }
}

/// Binds rank 0's listening socket on every interface at `port` (0: any free port).
pub fn bind(port: u16) -> Result<TcpListener, DistError> {
    TcpListener::bind(("0.0.0.0", port)).map_err(|e| DistError::Setup {
        message: format!("rank 0 cannot listen on port {port}: {e}"),
        hint: "choose another MASTER_PORT (a free port on rank 0's host)".to_string(),
    })
}

impl Control {
    /// Rank 0: waits up to twice `timeout` for the `world - 1` other ranks and hands each
    /// `payload` (twice, so that a rank that cannot reach rank 0 reports that first).
    pub fn serve(
        listener: TcpListener,
        world: usize,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Control, DistError> {
        let addr = listener
            .local_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string());
        listener
            .set_nonblocking(true)
            .map_err(|e| collective_err(0, e))?;
        let started = Instant::now();
        let mut peers: Vec<(usize, TcpStream)> = Vec::new();
        while peers.len() + 1 < world {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream
                        .set_nonblocking(false)
                        .map_err(|e| collective_err(0, e))?;
                    stream
                        .set_read_timeout(Some(timeout))
                        .map_err(|e| collective_err(0, e))?;
                    let mut line = String::new();
                    BufReader::new(&stream)
                        .read_line(&mut line)
                        .map_err(|e| collective_err(0, e))?;
                    let rank = line
                        .strip_prefix("HELLO ")
                        .and_then(|r| r.trim().parse::<usize>().ok())
                        .filter(|&r| r > 0 && r < world)
                        .ok_or_else(|| {
                            collective_err(0, format!("unexpected greeting {:?}", line.trim()))
                        })?;
                    if peers.iter().any(|(r, _)| *r == rank) {
                        return Err(collective_err(
                            0,
                            format!("two processes claim rank {rank}; check the rank variables"),
                        ));
                    }
                    let mut w = &stream;
                    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
                    w.write_all(format!("WELCOME {hex}\n").as_bytes())
                        .map_err(|e| collective_err(0, e))?;
                    stream
                        .set_read_timeout(None)
                        .map_err(|e| collective_err(0, e))?;
                    peers.push((rank, stream));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if started.elapsed() > 2 * timeout {
                        return Err(DistError::RendezvousTimeout {
                            addr,
                            secs: started.elapsed().as_secs_f64(),
                            joined: peers.len() + 1,
                            world,
                        });
                    }
                    std::thread::sleep(TICK / 5);
                }
                Err(e) => return Err(collective_err(0, e)),
            }
        }
        let mut writers = Vec::new();
        for (_, s) in &peers {
            writers.push(s.try_clone().map_err(|e| collective_err(0, e))?);
        }
        let control = Control::start(0, world, timeout, writers);
        for (rank, stream) in peers {
            let shared = Arc::clone(&control.shared);
            std::thread::spawn(move || read_peer(shared, rank, stream));
        }
        Ok(control)
    }

    /// Any other rank: connects to rank 0 at `addr` (retrying until `timeout`), says its rank and
    /// returns rank 0's payload.
    pub fn join(
        rank: usize,
        world: usize,
        addr: &str,
        timeout: Duration,
    ) -> Result<(Control, Vec<u8>), DistError> {
        let started = Instant::now();
        let unreachable = |reason: String| DistError::Unreachable {
            rank,
            addr: addr.to_string(),
            secs: timeout.as_secs_f64(),
            reason,
        };
        let stream = loop {
            let attempt = addr
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve the address: {e}"))
                .and_then(|mut addrs| {
                    let a: SocketAddr = addrs.next().ok_or("the name has no address")?;
                    let left = timeout.saturating_sub(started.elapsed()).max(TICK);
                    TcpStream::connect_timeout(&a, left.min(Duration::from_secs(5)))
                        .map_err(|e| e.to_string())
                });
            match attempt {
                Ok(s) => break s,
                Err(reason) if started.elapsed() >= timeout => return Err(unreachable(reason)),
                Err(_) => std::thread::sleep(TICK),
            }
        };
        let mut w = &stream;
        w.write_all(format!("HELLO {rank}\n").as_bytes())
            .map_err(|e| unreachable(e.to_string()))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| unreachable(e.to_string()))?;
        let mut reader = BufReader::new(stream.try_clone().map_err(|e| collective_err(rank, e))?);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| unreachable(format!("no welcome from rank 0: {e}")))?;
        let hex = line
            .trim()
            .strip_prefix("WELCOME")
            .map(str::trim)
            .ok_or_else(|| collective_err(rank, format!("unexpected reply {:?}", line.trim())))?;
        let payload = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|e| collective_err(rank, e))?;
        stream
            .set_read_timeout(None)
            .map_err(|e| collective_err(rank, e))?;
        let control = Control::start(rank, world, timeout, vec![stream]);
        let shared = Arc::clone(&control.shared);
        std::thread::spawn(move || read_root(shared, reader));
        Ok((control, payload))
    }

    fn start(rank: usize, world: usize, timeout: Duration, writers: Vec<TcpStream>) -> Control {
        let shared = Arc::new(Shared {
            rank,
            writers: Mutex::new(writers),
            deadline: Mutex::new(None),
            finished: AtomicBool::new(false),
            done: AtomicUsize::new(0),
        });
        let watched = Arc::clone(&shared);
        std::thread::spawn(move || watchdog(watched));
        Control {
            shared,
            world,
            timeout,
        }
    }

    /// Runs `op` (a collective named `name`) under the deadline.
    pub fn during<T>(&self, name: &'static str, op: impl FnOnce() -> T) -> T {
        if let Ok(mut d) = self.shared.deadline.lock() {
            *d = Some((name, Instant::now(), self.timeout));
        }
        let out = op();
        if let Ok(mut d) = self.shared.deadline.lock() {
            *d = None;
        }
        out
    }

    /// Tells every rank that this one failed with `message` (they stop at once); this rank then
    /// reports its own error and exits.
    pub fn report_failure(&self, message: &str) {
        self.shared.finished.store(true, Ordering::SeqCst);
        self.shared.send_all(&fail_line(self.shared.rank, message));
    }

    /// The clean end, after the last barrier: the others say `DONE`, rank 0 waits for them.
    pub fn finish(&self) {
        if self.shared.rank != 0 {
            self.shared.finished.store(true, Ordering::SeqCst);
            self.shared
                .send_all(&format!("DONE {}\n", self.shared.rank));
            return;
        }
        let started = Instant::now();
        while self.shared.done.load(Ordering::SeqCst) + 1 < self.world
            && started.elapsed() < FINISH_WAIT
        {
            std::thread::sleep(TICK / 5);
        }
        self.shared.finished.store(true, Ordering::SeqCst);
    }
}

/// Rank 0's reader of one peer.
fn read_peer(shared: Arc<Shared>, rank: usize, stream: TcpStream) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => {
                if shared.finished.load(Ordering::SeqCst) {
                    return;
                }
                shared.abort(
                    rank,
                    "the process ended without reporting an error (killed, or crashed)",
                );
            }
            Ok(_) => {
                if line.starts_with("DONE") {
                    shared.done.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                if let Some((r, msg)) = parse_fail(&line) {
                    if shared.finished.load(Ordering::SeqCst) && r == shared.rank {
                        return;
                    }
                    shared.abort(r, msg);
                }
            }
        }
    }
}

/// A non-zero rank's reader of rank 0.
fn read_root(shared: Arc<Shared>, mut reader: BufReader<TcpStream>) {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => {
                if shared.finished.load(Ordering::SeqCst) {
                    return;
                }
                shared.abort(
                    0,
                    "the process ended without reporting an error (killed, or crashed)",
                );
            }
            Ok(_) => {
                if let Some((r, msg)) = parse_fail(&line) {
                    if shared.finished.load(Ordering::SeqCst) {
                        return;
                    }
                    eprintln!("error: rank {r} failed: {msg}");
                    eprintln!("hint: rank {} stops because rank {r} did", shared.rank);
                    std::process::exit(1);
                }
            }
        }
    }
}

fn parse_fail(line: &str) -> Option<(usize, &str)> {
    let rest = line.strip_prefix("FAIL ")?;
    let (rank, msg) = rest.split_once(' ')?;
    Some((rank.parse().ok()?, msg.trim_end()))
}

fn watchdog(shared: Arc<Shared>) {
    loop {
        std::thread::sleep(TICK);
        if shared.finished.load(Ordering::SeqCst) {
            return;
        }
        let expired = shared.deadline.lock().ok().and_then(|d| {
            d.filter(|(_, since, limit)| since.elapsed() > *limit)
                .map(|(name, _, limit)| (name, limit))
        });
        if let Some((name, limit)) = expired {
            let message = format!(
                "{name} timed out after {:.0} s (trainer.collective_timeout_s): another rank is \
                 stuck or far slower",
                limit.as_secs_f64()
            );
            shared.abort(shared.rank, &message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_lines_round_trip_on_one_line() {
        let line = fail_line(3, "bad\nthing");
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(parse_fail(&line), Some((3, "bad | thing")));
        assert_eq!(parse_fail("DONE 1\n"), None);
    }

    #[test]
    fn ranks_meet_and_rank_0_hands_out_the_payload() {
        let listener = bind(0).unwrap();
        let port = listener.local_addr().unwrap().port();
        let joiner = std::thread::spawn(move || {
            Control::join(1, 2, &format!("127.0.0.1:{port}"), Duration::from_secs(10)).unwrap()
        });
        let root = Control::serve(listener, 2, &[1, 2, 254], Duration::from_secs(10)).unwrap();
        let (peer, payload) = joiner.join().unwrap();
        assert_eq!(payload, vec![1, 2, 254]);
        assert_eq!(root.during("noop", || 7), 7);
        peer.finish();
        root.finish();
        assert_eq!(root.shared.done.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_unreachable_rank_0_is_a_timeout_naming_the_address() {
        let listener = bind(0).unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = Control::join(
            1,
            2,
            &format!("127.0.0.1:{port}"),
            Duration::from_millis(400),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(text.contains("rank 1 could not reach rank 0"), "{text}");
    }

    #[test]
    fn rank_0_gives_up_when_ranks_are_missing() {
        let err = Control::serve(bind(0).unwrap(), 3, &[], Duration::from_millis(300)).unwrap_err();
        assert!(
            err.to_string().contains("only 1 of 3 ranks joined"),
            "{err}"
        );
    }
}
