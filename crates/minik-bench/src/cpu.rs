//! Where the shared cores went during a phase: CPU used by the server, by this tool, and by
//! everything else on the machine (other builds and tests), from `/proc`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::machine::{cpu_time_of, machine_busy};

/// CPU readings at the start of a phase.
pub struct CpuMeter {
    server_pid: u32,
    server: Duration,
    bench: Duration,
    machine: Duration,
    wall: Instant,
}

/// CPU used over one or more phases.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuUse {
    pub wall: Duration,
    pub server: Duration,
    pub bench: Duration,
    /// Busy time of the whole machine not spent in the server or this tool.
    pub others: Duration,
}

impl CpuMeter {
    pub fn start(server_pid: u32) -> anyhow::Result<CpuMeter> {
        Ok(CpuMeter {
            server_pid,
            server: cpu_time_of(server_pid)?,
            bench: cpu_time_of(std::process::id())?,
            machine: machine_busy()?,
            wall: Instant::now(),
        })
    }

    pub fn stop(&self) -> anyhow::Result<CpuUse> {
        let server = cpu_time_of(self.server_pid)?.saturating_sub(self.server);
        let bench = cpu_time_of(std::process::id())?.saturating_sub(self.bench);
        let machine = machine_busy()?.saturating_sub(self.machine);
        Ok(CpuUse {
            wall: self.wall.elapsed(),
            server,
            bench,
            others: machine.saturating_sub(server + bench),
        })
    }
}

impl CpuUse {
    pub fn add(&mut self, other: CpuUse) {
        self.wall += other.wall;
        self.server += other.server;
        self.bench += other.bench;
        self.others += other.others;
    }

    fn share(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9) * 100.0
    }

    fn per_op(cpu: Duration, ops: usize) -> f64 {
        cpu.as_secs_f64() * 1e6 / ops.max(1) as f64
    }

    /// The rate the server could reach if its CPU per operation stayed the same and it had
    /// every core of the machine to itself: an upper bound that other processes' noise does
    /// not move much.
    pub fn server_ceiling(&self, ops: usize) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores as f64 * 1e6 / Self::per_op(self.server, ops).max(1e-9)
    }

    /// A progress line: each party's share of one core (100% = one core busy), microseconds
    /// per operation, and the server's CPU-bound ceiling.
    pub fn line(&self, ops: usize) -> String {
        format!(
            "CPU (100% = one core): server {:.0}% ({:.0} us/op; all cores would allow {:.0}/s), minik-bench {:.0}% ({:.0} us/op), other processes {:.0}%",
            self.share(self.server),
            Self::per_op(self.server, ops),
            self.server_ceiling(ops),
            self.share(self.bench),
            Self::per_op(self.bench, ops),
            self.share(self.others),
        )
    }

    pub fn to_json(self, ops: usize) -> Value {
        json!({
            "wall_seconds": self.wall.as_secs_f64(),
            "server_cpu_seconds": self.server.as_secs_f64(),
            "bench_cpu_seconds": self.bench.as_secs_f64(),
            "other_processes_cpu_seconds": self.others.as_secs_f64(),
            "server_cpu_us_per_op": Self::per_op(self.server, ops),
            "bench_cpu_us_per_op": Self::per_op(self.bench, ops),
            "server_cpu_ceiling_per_second": self.server_ceiling(ops),
        })
    }
}
