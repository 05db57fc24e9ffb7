//! Which launcher started this process, from the environment it set: torchrun (or any
//! launcher that sets PyTorch's variables), or SLURM's `srun`.

use std::time::Duration;

use crate::Rendezvous;

/// The launcher whose variables were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchSource {
    /// torchrun (`TORCHELASTIC_RUN_ID` set): `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, ...
    Torchrun,
    /// `RANK` and `WORLD_SIZE` without torchrun (the built-in launcher, or by hand).
    Env,
    /// SLURM: `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`.
    Slurm,
}

/// This process's place in a multi-process run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Global rank.
    pub rank: usize,
    /// Number of ranks.
    pub world: usize,
    /// Rank on this node: picks the CUDA device.
    pub local_rank: usize,
    /// The store's host.
    pub master_addr: String,
    /// The store's port.
    pub master_port: u16,
    /// torchrun's agent hosts the store (`TORCHELASTIC_USE_AGENT_STORE=True`).
    pub agent_store: bool,
    /// torchrun's `TORCHELASTIC_RESTART_COUNT`.
    pub restart_count: u64,
    /// Whose variables these are.
    pub source: LaunchSource,
}

/// A launcher's variables that do not describe a launch (a rank that is not a number, a
/// missing `MASTER_ADDR`...); the message names the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchError(pub String);

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LaunchError {}

impl Launch {
    /// Reads the process's environment; see [`Launch::from_vars`].
    ///
    /// # Errors
    /// As [`Launch::from_vars`].
    pub fn from_env() -> Result<Option<Launch>, LaunchError> {
        Launch::from_vars(|k| std::env::var(k).ok())
    }

    /// The launch described by the variables `var` returns, or `None` when no launcher's
    /// variables are set or they describe a single process.
    ///
    /// # Errors
    /// A variable that is not a number, a rank outside the world, or a missing
    /// `MASTER_ADDR`/`MASTER_PORT`; the message names the variable.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>, LaunchError> {
        Launch::read_vars(var).map_err(LaunchError)
    }

    fn read_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>, String> {
        let num = |k: &str| -> Result<Option<usize>, String> {
            match var(k) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{k}={v:?} is not a whole number")),
            }
        };
        let (rank, world, local_rank, source) = match (num("RANK")?, num("WORLD_SIZE")?) {
            (Some(r), Some(w)) => {
                let source = if var("TORCHELASTIC_RUN_ID").is_some() {
                    LaunchSource::Torchrun
                } else {
                    LaunchSource::Env
                };
                (r, w, num("LOCAL_RANK")?.unwrap_or(0), source)
            }
            (Some(_), None) => return Err("RANK is set but WORLD_SIZE is not".into()),
            (None, Some(_)) => return Err("WORLD_SIZE is set but RANK is not".into()),
            (None, None) => match (num("SLURM_PROCID")?, num("SLURM_NTASKS")?) {
                (Some(r), Some(w)) => (
                    r,
                    w,
                    num("SLURM_LOCALID")?.unwrap_or(0),
                    LaunchSource::Slurm,
                ),
                _ => return Ok(None),
            },
        };
        if world == 0 || rank >= world {
            return Err(format!("rank {rank} is not below the world size {world}"));
        }
        if world == 1 {
            return Ok(None);
        }
        let hint = match source {
            LaunchSource::Slurm => {
                " (under srun, export it in the batch script: MASTER_ADDR as the first host of \
                 $SLURM_JOB_NODELIST, MASTER_PORT as a free port)"
            }
            _ => "",
        };
        let master_addr = var("MASTER_ADDR")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("MASTER_ADDR is not set{hint}"))?;
        let port = var("MASTER_PORT").ok_or_else(|| format!("MASTER_PORT is not set{hint}"))?;
        let master_port = port
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("MASTER_PORT={port:?} is not a port number"))?;
        let agent_store = var("TORCHELASTIC_USE_AGENT_STORE")
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        let restart_count = match var("TORCHELASTIC_RESTART_COUNT") {
            None => 0,
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("TORCHELASTIC_RESTART_COUNT={v:?} is not a whole number"))?,
        };
        Ok(Some(Launch {
            rank,
            world,
            local_rank,
            master_addr,
            master_port,
            agent_store,
            restart_count,
            source,
        }))
    }

    /// The rendezvous: the agent's store under torchrun (keys under
    /// `/worker/attempt_<restart count>`, as PyTorch's env:// init does), otherwise one
    /// hosted by rank 0. A loopback `MASTER_ADDR` binds Gloo to loopback too.
    pub fn rendezvous(&self, timeout: Duration) -> Rendezvous {
        let a = self.master_addr.as_str();
        let loopback = a == "localhost" || a == "::1" || a.starts_with("127.");
        Rendezvous {
            host: self.master_addr.clone(),
            port: self.master_port,
            rank: self.rank,
            world: self.world,
            agent_store: self.agent_store,
            prefix: if self.agent_store {
                format!("/worker/attempt_{}", self.restart_count)
            } else {
                String::new()
            },
            bind: loopback.then(|| "127.0.0.1".to_string()),
            timeout,
            nccl_device: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Option<Launch>, String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Launch::from_vars(|k| m.get(k).cloned()).map_err(|e| e.0)
    }

    #[test]
    fn torchrun_variables_give_the_agent_store_and_its_prefix() {
        let l = launch(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node7"),
            ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_RUN_ID", "x"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((l.rank, l.world, l.local_rank), (3, 8, 1));
        assert_eq!(l.source, LaunchSource::Torchrun);
        let r = l.rendezvous(Duration::from_secs(5));
        assert!(r.agent_store);
        assert_eq!(r.prefix, "/worker/attempt_2");
        assert_eq!(r.bind, None);
    }

    #[test]
    fn slurm_variables_need_the_master_address() {
        let l = launch(&[
            ("SLURM_PROCID", "1"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_LOCALID", "1"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "1234"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (l.rank, l.world, l.local_rank, l.source),
            (1, 2, 1, LaunchSource::Slurm)
        );
        let r = l.rendezvous(Duration::from_secs(5));
        assert!(!r.agent_store && r.prefix.is_empty());
        assert_eq!(r.bind.as_deref(), Some("127.0.0.1"));
        let e = launch(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2")]).unwrap_err();
        assert!(e.starts_with("MASTER_ADDR is not set (under srun"), "{e}");
    }

    #[test]
    fn one_process_or_no_launcher_is_not_distributed() {
        assert_eq!(launch(&[]).unwrap(), None);
        assert_eq!(launch(&[("RANK", "0"), ("WORLD_SIZE", "1")]).unwrap(), None);
        assert_eq!(
            launch(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")]).unwrap(),
            None
        );
    }

    #[test]
    fn bad_variables_are_named() {
        let base = [("MASTER_ADDR", "h"), ("MASTER_PORT", "1")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            launch(&v).unwrap_err()
        };
        assert_eq!(
            with(&[("RANK", "x"), ("WORLD_SIZE", "2")]),
            "RANK=\"x\" is not a whole number"
        );
        assert_eq!(
            with(&[("RANK", "2"), ("WORLD_SIZE", "2")]),
            "rank 2 is not below the world size 2"
        );
        assert_eq!(with(&[("RANK", "0")]), "RANK is set but WORLD_SIZE is not");
        let e = launch(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "0"),
        ])
        .unwrap_err();
        assert_eq!(e, "MASTER_PORT=\"0\" is not a port number");
    }
}
