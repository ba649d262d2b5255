//! The flags the suites that run the `minik` binary share.

use std::path::PathBuf;

/// `--minik`, `--json` and `--work-dir`, flattened into each suite's own flags.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// The minik binary to measure [default: `minik` next to this executable].
    #[arg(long)]
    pub minik: Option<PathBuf>,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where the scratch directories go (data dirs and raw baselines; removed afterwards).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

impl Common {
    /// The binary to measure.
    pub fn minik(&self) -> anyhow::Result<PathBuf> {
        crate::up::minik_path(self.minik.clone())
    }

    /// A scratch directory named `prefix...` under `--work-dir` (or the system's temporary
    /// directory), removed when dropped.
    pub fn scratch(&self, prefix: &str) -> anyhow::Result<tempfile::TempDir> {
        let mut builder = tempfile::Builder::new();
        builder.prefix(prefix);
        Ok(match &self.work_dir {
            Some(dir) => builder.tempdir_in(dir)?,
            None => builder.tempdir()?,
        })
    }
}
