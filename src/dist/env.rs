//! Which rank this process is, read from the variables an external launcher sets: torchrun
//! (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`), `mpirun`
//! (`OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_SIZE`, `OMPI_COMM_WORLD_LOCAL_RANK`) and Slurm's
//! `srun` (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, rank 0 on the first host of
//! `SLURM_JOB_NODELIST`). The first family present wins, in that order.

use super::DistError;
use std::fmt;

/// Who started this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// torchrun, or `train` itself starting one worker per GPU.
    Torchrun,
    /// OpenMPI's `mpirun`, or `train` itself running it for `trainer=ddp_cpu`.
    Mpirun,
    /// Slurm's `srun`.
    Slurm,
}

impl Launcher {
    /// The variable that carries the world size under this launcher.
    pub fn world_var(self) -> &'static str {
        match self {
            Launcher::Torchrun => "WORLD_SIZE",
            Launcher::Mpirun => "OMPI_COMM_WORLD_SIZE",
            Launcher::Slurm => "SLURM_NTASKS",
        }
    }
}

impl fmt::Display for Launcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Launcher::Torchrun => "torchrun-style variables",
            Launcher::Mpirun => "mpirun",
            Launcher::Slurm => "srun",
        })
    }
}

/// This process's place in a data-parallel job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankInfo {
    /// The global rank, `0..world`.
    pub rank: usize,
    /// The number of processes.
    pub world: usize,
    /// The rank among the processes of this node (the GPU index).
    pub local_rank: usize,
    /// Rank 0's host for the rendezvous, when the launcher names one.
    pub master_addr: Option<String>,
    /// Rank 0's rendezvous port, when the launcher names one.
    pub master_port: Option<u16>,
    /// Where the numbers came from.
    pub launcher: Launcher,
}

impl RankInfo {
    /// `MASTER_ADDR:MASTER_PORT`, when both are known.
    pub fn master(&self) -> Option<String> {
        Some(format!(
            "{}:{}",
            self.master_addr.as_deref()?,
            self.master_port?
        ))
    }
}

fn setup(message: String, hint: &str) -> DistError {
    DistError::Setup {
        message,
        hint: hint.to_string(),
    }
}

fn number<T: std::str::FromStr>(
    get: &dyn Fn(&str) -> Option<String>,
    var: &str,
) -> Result<Option<T>, DistError> {
    match get(var) {
        None => Ok(None),
        Some(text) => text.trim().parse().map(Some).map_err(|_| {
            setup(
                format!("{var}={text:?} is not a non-negative integer"),
                "set it to a number, or unset it when no launcher started this process",
            )
        }),
    }
}

/// The first host of a Slurm node list: `node[003-007,9],gpu1` gives `node003`.
pub fn first_slurm_host(nodelist: &str) -> Option<String> {
    let mut depth = 0;
    let end = nodelist
        .char_indices()
        .find(|&(_, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
            c == ',' && depth == 0
        })
        .map_or(nodelist.len(), |(i, _)| i);
    let first = nodelist[..end].trim();
    if first.is_empty() {
        return None;
    }
    match first.split_once('[') {
        None => Some(first.to_string()),
        Some((prefix, rest)) => {
            let inner = rest.split(']').next()?;
            let start = inner.split([',', '-']).next()?.trim();
            let suffix = rest.split_once(']').map_or("", |(_, s)| s);
            (!start.is_empty()).then(|| format!("{prefix}{start}{suffix}"))
        }
    }
}

/// Reads the rank variables through `get` (`std::env::var` in the binary); `None` when no
/// launcher's variables are set.
pub fn detect(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<RankInfo>, DistError> {
    let port = || number::<u16>(get, "MASTER_PORT");
    let info = if let (Some(rank), Some(world)) = (
        number::<usize>(get, "RANK")?,
        number::<usize>(get, "WORLD_SIZE")?,
    ) {
        RankInfo {
            rank,
            world,
            local_rank: number(get, "LOCAL_RANK")?.unwrap_or(0),
            master_addr: get("MASTER_ADDR"),
            master_port: port()?,
            launcher: Launcher::Torchrun,
        }
    } else if let (Some(rank), Some(world)) = (
        number::<usize>(get, "OMPI_COMM_WORLD_RANK")?,
        number::<usize>(get, "OMPI_COMM_WORLD_SIZE")?,
    ) {
        RankInfo {
            rank,
            world,
            local_rank: number(get, "OMPI_COMM_WORLD_LOCAL_RANK")?.unwrap_or(0),
            master_addr: get("MASTER_ADDR"),
            master_port: port()?,
            launcher: Launcher::Mpirun,
        }
    } else if let (Some(rank), Some(world)) = (
        number::<usize>(get, "SLURM_PROCID")?,
        number::<usize>(get, "SLURM_NTASKS")?,
    ) {
        let job_port = number::<u64>(get, "SLURM_JOB_ID")?.map(|id| 15_000 + (id % 10_000) as u16);
        RankInfo {
            rank,
            world,
            local_rank: number(get, "SLURM_LOCALID")?.unwrap_or(0),
            master_addr: get("MASTER_ADDR")
                .or_else(|| get("SLURM_JOB_NODELIST").and_then(|l| first_slurm_host(&l))),
            master_port: port()?.or(job_port),
            launcher: Launcher::Slurm,
        }
    } else {
        return Ok(None);
    };
    if info.world == 0 || info.rank >= info.world {
        return Err(setup(
            format!(
                "the rank variables ({}) say rank {} of a world of {}; the rank must be below the \
                 world size",
                info.launcher, info.rank, info.world
            ),
            "let the launcher set them, or fix RANK / WORLD_SIZE by hand",
        ));
    }
    if info.local_rank >= info.world {
        return Err(setup(
            format!(
                "the local rank {} ({}) is not below the world size {}",
                info.local_rank, info.launcher, info.world
            ),
            "let the launcher set LOCAL_RANK",
        ));
    }
    Ok(Some(info))
}

/// Checks the launcher's world size against `trainer.devices × trainer.num_nodes` (when
/// `devices` is a number).
pub fn check_world(
    info: &RankInfo,
    devices: Option<usize>,
    num_nodes: usize,
) -> Result<(), DistError> {
    let Some(devices) = devices else {
        return Ok(());
    };
    let expected = devices * num_nodes;
    if info.world != expected {
        return Err(setup(
            format!(
                "the world size {} from {} ({}={}) does not match trainer.devices × \
                 trainer.num_nodes = {devices} × {num_nodes} = {expected}",
                info.world,
                info.launcher,
                info.launcher.world_var(),
                info.world
            ),
            &format!(
                "start {expected} processes, or set trainer.devices={} (or trainer.devices=auto)",
                info.world / num_nodes.max(1)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn no_variables_means_no_launcher() {
        assert_eq!(detect(&env(&[])).unwrap(), None);
    }

    #[test]
    fn torchrun_variables_come_first() {
        let info = detect(&env(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "10.0.0.2"),
            ("MASTER_PORT", "29500"),
            ("OMPI_COMM_WORLD_RANK", "0"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((info.rank, info.world, info.local_rank), (3, 4, 1));
        assert_eq!(info.launcher, Launcher::Torchrun);
        assert_eq!(info.master().as_deref(), Some("10.0.0.2:29500"));
    }

    #[test]
    fn mpirun_and_slurm_variables_are_read() {
        let info = detect(&env(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((info.rank, info.world, info.local_rank), (1, 2, 1));
        assert_eq!(info.master(), None);
        let info = detect(&env(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[012-015,20],login1"),
            ("SLURM_JOB_ID", "123456"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((info.rank, info.world, info.local_rank), (5, 8, 1));
        assert_eq!(info.master().as_deref(), Some("gpu012:18456"));
    }

    #[test]
    fn slurm_node_lists_give_their_first_host() {
        assert_eq!(first_slurm_host("node1").as_deref(), Some("node1"));
        assert_eq!(first_slurm_host("a,b").as_deref(), Some("a"));
        assert_eq!(first_slurm_host("n[7,9-11]").as_deref(), Some("n7"));
        assert_eq!(
            first_slurm_host("r1-n[003-004]-ib").as_deref(),
            Some("r1-n003-ib")
        );
        assert_eq!(first_slurm_host(""), None);
    }

    #[test]
    fn inconsistent_variables_are_errors_naming_them() {
        let err = detect(&env(&[("RANK", "2"), ("WORLD_SIZE", "2")])).unwrap_err();
        assert!(err.to_string().contains("rank 2 of a world of 2"), "{err}");
        let err = detect(&env(&[("RANK", "x"), ("WORLD_SIZE", "2")])).unwrap_err();
        assert!(err.to_string().contains("RANK=\"x\""), "{err}");
        let info = detect(&env(&[("RANK", "0"), ("WORLD_SIZE", "3")]))
            .unwrap()
            .unwrap();
        let err = check_world(&info, Some(2), 1).unwrap_err();
        assert!(err.to_string().contains("WORLD_SIZE=3"), "{err}");
        assert!(err.to_string().contains("2 × 1 = 2"), "{err}");
        assert!(check_world(&info, None, 1).is_ok());
        assert!(check_world(&info, Some(3), 1).is_ok());
    }
}
