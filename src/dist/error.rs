//! Why data-parallel training could not start or had to stop.

/// A failure of the launch, the rendezvous or a collective.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// The launcher's rank variables are missing, malformed or contradict each other or the config.
    #[error("{message}")]
    Setup {
        /// What is wrong.
        message: String,
        /// What to do instead.
        hint: String,
    },
    /// The strategy needs a collective backend this binary was built without.
    #[error("{what} needs a build with the `{feature}` feature; this binary was built without it")]
    NotBuilt {
        /// The trainer setting that asked for it.
        what: &'static str,
        /// The missing cargo feature.
        feature: &'static str,
        /// The build command.
        build: &'static str,
    },
    /// Rank 0's rendezvous address could not be reached in time.
    #[error("rank {rank} could not reach rank 0 at {addr} within {secs:.0} s: {reason}")]
    Unreachable {
        /// This rank.
        rank: usize,
        /// `MASTER_ADDR:MASTER_PORT`.
        addr: String,
        /// The timeout.
        secs: f64,
        /// The last connection error.
        reason: String,
    },
    /// Rank 0 waited in vain for the other ranks to join.
    #[error("rank 0 waited {secs:.0} s at {addr} but only {joined} of {world} ranks joined")]
    RendezvousTimeout {
        /// The listening address.
        addr: String,
        /// The timeout.
        secs: f64,
        /// Ranks (rank 0 included) that joined.
        joined: usize,
        /// The expected world size.
        world: usize,
    },
    /// Another rank failed; this one stops too.
    #[error("rank {rank} failed: {message}")]
    PeerFailed {
        /// The rank that failed.
        rank: usize,
        /// Its error.
        message: String,
    },
    /// The collective engine (MPI, NCCL) or the control connection reported an error.
    #[error("{op} failed on rank {rank}: {reason}")]
    Collective {
        /// The operation.
        op: &'static str,
        /// This rank.
        rank: usize,
        /// What the engine said.
        reason: String,
    },
    /// The test-only hook `TRAIN_INJECT_FAIL_AT_RANK` stopped this rank.
    #[error("injected failure at step {step} (TRAIN_INJECT_FAIL_AT_RANK={rank}:{step})")]
    Injected {
        /// This rank.
        rank: usize,
        /// The optimizer step.
        step: u64,
    },
    /// A worker process started by `train` failed; the job's exit status is its status.
    #[error("{who} {status}")]
    WorkerFailed {
        /// Which worker (a rank, or `mpirun`).
        who: String,
        /// How it ended.
        status: String,
        /// The exit code to pass on.
        code: u8,
    },
    /// Spawning or watching the worker processes failed.
    #[error("cannot start the worker processes ({command}): {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl DistError {
    /// What to type instead.
    pub fn hint(&self) -> Option<String> {
        match self {
            DistError::Setup { hint, .. } => Some(hint.clone()),
            DistError::NotBuilt { build, .. } => Some(format!("build with: {build}")),
            DistError::Unreachable { .. } => Some(
                "check MASTER_ADDR/MASTER_PORT (rank 0's host and a free port reachable from every \
                 node), or raise trainer.collective_timeout_s if rank 0 starts slowly"
                    .to_string(),
            ),
            DistError::RendezvousTimeout { .. } => Some(
                "start every rank (the launcher's process count must equal the world size), or \
                 raise trainer.collective_timeout_s"
                    .to_string(),
            ),
            DistError::PeerFailed { .. } => {
                Some("the failed rank's own error is above in the job's output".to_string())
            }
            DistError::Collective { .. } | DistError::Injected { .. } => None,
            DistError::WorkerFailed { .. } => {
                Some("the failing rank's own error is above in the job's output".to_string())
            }
            DistError::Spawn { .. } => Some(
                "for trainer=ddp_cpu install OpenMPI (`apt-get install openmpi-bin`) so that \
                 `mpirun` is on PATH"
                    .to_string(),
            ),
        }
    }
}
