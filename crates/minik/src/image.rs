//! `minik image ls|pull|rm|inspect|import`: the node's image store, used directly (as `crictl`
//! and `k3s ctr images` are used on a node), safely beside a running agent: the store is made
//! for several processes (crates/minik-image/src/store.rs).

use std::path::{Path, PathBuf};

use anyhow::Context;
use minik_image::{ImageRecord, ImageService, RegistriesConfig, Store};

use crate::cli::tabwriter;

/// Where a node keeps its images and how it reaches registries: flags shared by `minik node`,
/// `minik up` and `minik image`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ImageStoreArgs {
    /// The image store (default: DATA_DIR/image-store). Several nodes on one host may share one.
    #[arg(long)]
    pub image_store: Option<PathBuf>,
    /// The registry configuration, in k3s's registries.yaml format: mirrors, auth, TLS
    /// (default: DATA_DIR/registries.yaml, when it exists).
    #[arg(long, value_name = "FILE")]
    pub private_registry: Option<PathBuf>,
    /// Never fall back to a registry itself after its mirrors (k3s's flag of the same name):
    /// pulls go only to the endpoints registries.yaml lists.
    #[arg(long)]
    pub disable_default_registry_endpoint: bool,
}

impl ImageStoreArgs {
    /// The store directory for a node whose data dir is `data_dir`.
    pub fn store_dir(&self, data_dir: &Path) -> PathBuf {
        self.image_store
            .clone()
            .unwrap_or_else(|| data_dir.join("image-store"))
    }

    /// Reads the registry configuration: the flag's file (which must exist), else
    /// DATA_DIR/registries.yaml when it exists, else none.
    pub fn registries(&self, data_dir: &Path) -> anyhow::Result<RegistriesConfig> {
        let (path, required) = match &self.private_registry {
            Some(path) => (path.clone(), true),
            None => (data_dir.join("registries.yaml"), false),
        };
        match RegistriesConfig::load(&path)? {
            Some(config) => Ok(config),
            None if required => {
                anyhow::bail!("--private-registry {}: no such file", path.display())
            }
            None => Ok(RegistriesConfig::default()),
        }
    }

    /// Opens the node's image service.
    pub fn open(&self, data_dir: &Path) -> anyhow::Result<ImageService> {
        let registries = self.registries(data_dir)?;
        let dir = self.store_dir(data_dir);
        let store = Store::open(&dir)
            .with_context(|| format!("cannot open the image store {}", dir.display()))?;
        Ok(ImageService::new(
            store,
            registries,
            !self.disable_default_registry_endpoint,
        )?)
    }
}

/// `minik image ...`
#[derive(clap::Args, Debug)]
pub struct ImageArgs {
    /// The node's data directory (default: ./minik-node-data/HOSTNAME, as `minik node`).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    store: ImageStoreArgs,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ImageCommand {
    /// List the images on this node: repository, tag, digest, id, size.
    #[command(alias = "list")]
    Ls {
        /// Print only the image ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Pull images from their registries (through the configured mirrors).
    Pull {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove images, and the layers no other image uses.
    #[command(alias = "rmi", alias = "remove")]
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show what is known of images, as JSON: names, digests, layers, config.
    Inspect {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Import images from `docker save` (docker-archive) or OCI archive tarballs.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from("minik-node-data").join(crate::node::host_name()));
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    tokio.block_on(async move {
        let service = args.store.open(&data_dir)?;
        match args.command {
            ImageCommand::Ls { quiet } => {
                let images = service.store().images()?;
                if quiet {
                    for image in &images {
                        println!("{}", image.id);
                    }
                } else {
                    print!("{}", table(&images));
                }
                Ok(())
            }
            ImageCommand::Pull { images } => {
                let mut failed = 0;
                for image in &images {
                    eprintln!("Pulling image {image}...");
                    match service.pull(image, &[]).await {
                        Ok(outcome) => {
                            let stats = outcome.pulled.expect("a pull always pulls");
                            println!(
                                "Pulled {image}: {} ({} of {} layers downloaded, {} in {:.1?})",
                                outcome
                                    .image
                                    .repo_digests
                                    .first()
                                    .cloned()
                                    .unwrap_or_default(),
                                stats.layers_downloaded,
                                outcome.image.layers.len(),
                                human_size(stats.downloaded),
                                stats.elapsed
                            );
                        }
                        Err(e) => {
                            eprintln!("error: pulling {image}: {e}");
                            failed += 1;
                        }
                    }
                }
                anyhow::ensure!(failed == 0, "{failed} of {} pulls failed", images.len());
                Ok(())
            }
            ImageCommand::Rm { images } => {
                let mut failed = 0;
                for image in &images {
                    match service.store().remove(image) {
                        Ok(minik_image::Removed::Untagged(name)) => println!("Untagged: {name}"),
                        Ok(minik_image::Removed::Deleted(record)) => {
                            for name in &record.names {
                                println!("Untagged: {name}");
                            }
                            println!("Deleted: {}", record.id);
                        }
                        Err(e) => {
                            eprintln!("error: {e}");
                            failed += 1;
                        }
                    }
                }
                anyhow::ensure!(failed == 0, "{failed} of {} removals failed", images.len());
                Ok(())
            }
            ImageCommand::Inspect { images } => {
                let mut out = Vec::new();
                for image in &images {
                    let record = service.store().find(image)?;
                    let config: serde_json::Value =
                        serde_json::from_slice(&service.store().blob(&record.id)?)
                            .with_context(|| format!("the config of {image} is not JSON"))?;
                    out.push(serde_json::json!({
                        "id": record.id,
                        "names": record.names,
                        "repoDigests": record.repo_digests,
                        "manifest": record.manifest,
                        "layers": record.layers,
                        "size": record.size,
                        "config": config,
                    }));
                }
                println!("{}", serde_json::to_string_pretty(&out)?);
                Ok(())
            }
            ImageCommand::Import { files } => {
                let mut failed = 0;
                for file in &files {
                    match service.import(file).await {
                        Ok(records) => {
                            for record in records {
                                println!("Imported {} ({})", record.display_name(), record.id);
                            }
                        }
                        Err(e) => {
                            eprintln!("error: importing {}: {e}", file.display());
                            failed += 1;
                        }
                    }
                }
                anyhow::ensure!(failed == 0, "{failed} of {} imports failed", files.len());
                Ok(())
            }
        }
    })
}

/// `minik image ls`: REPOSITORY TAG DIGEST IMAGE ID SIZE, one row per name (`<none>` for an
/// image without), as `crictl images --digests` lays it out.
fn table(images: &[ImageRecord]) -> String {
    let mut text = String::from("REPOSITORY\tTAG\tDIGEST\tIMAGE ID\tSIZE\n");
    for image in images {
        let digest = image
            .repo_digests
            .first()
            .and_then(|r| r.rsplit_once('@'))
            .map(|(_, d)| d.trim_start_matches("sha256:").chars().take(13).collect())
            .unwrap_or_else(|| "<none>".to_string());
        let names: Vec<(String, String)> = if image.names.is_empty() {
            let repository = image
                .repo_digests
                .first()
                .and_then(|r| r.rsplit_once('@'))
                .map(|(n, _)| n.to_string())
                .unwrap_or_else(|| "<none>".into());
            vec![(repository, "<none>".into())]
        } else {
            image
                .names
                .iter()
                .map(|n| match n.rsplit_once(':') {
                    Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
                    _ => (n.clone(), "<none>".into()),
                })
                .collect()
        };
        for (repository, tag) in names {
            text.push_str(&format!(
                "{repository}\t{tag}\t{digest}\t{}\t{}\n",
                image.id.short(),
                human_size(image.size)
            ));
        }
    }
    tabwriter::align(&text, 3)
}

/// Sizes as crictl and docker print them: decimal units, four significant digits (`%.4g`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        let decimals = if value < 10.0 {
            3
        } else if value < 100.0 {
            2
        } else {
            1
        };
        let number = format!("{value:.decimals$}");
        number
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + UNITS[unit]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_docker_prints_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(2_150_000), "2.15MB");
        assert_eq!(human_size(77_800_000_000), "77.8GB");
        assert_eq!(human_size(123_456_000), "123.5MB");
    }
}
