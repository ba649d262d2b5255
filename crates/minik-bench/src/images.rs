//! `minik-bench images`: image pulls (issue 17). Builds a multi-layer image that looks like a
//! Debian-based one out of this machine's own files (shared libraries, programs, data, Python
//! modules, headers: real content that gzips about as a real layer does), pushes it to a
//! docker-registry on loopback, then times, round after round:
//!
//! - `skopeo copy` into a fresh OCI layout (download and verify, no unpack): the baseline the
//!   issue names;
//! - on that copy, `umoci unpack` (the whole image into one bundle, plus umoci's mtree of it) and
//!   `tar -xzf` of each layer into a directory of its own (what minik makes: one directory per
//!   layer), each added to the copy's time: download + unpack, the fair comparison for minik;
//! - a `sync` after the copy: what writing the copy to disk costs (skopeo does not fsync);
//! - minik's registry client alone ([`RegistryClient`]: resolve, the config, every layer blob
//!   downloaded in parallel into a file, verified and fsynced, as a pull does before it unpacks):
//!   the same work as `skopeo copy`;
//! - minik's [`ImageService::pull`] on a fresh [`Store`] (cold: download, verify, unpack), and
//!   again on the same store (warm: every layer present, only the manifest and the config).
//!
//! Every figure is printed with its median and minimum over the rounds, and minik's with its ratio
//! to the skopeo baselines of the same run.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use minik_image::{ImageService, Platform, Reference, RegistriesConfig, RegistryClient, Store};
use minik_testkit::registry::Registry;

use crate::machine::{cpu_time_of, Machine};
use crate::stats::{median, ms};

/// The repository and tag the image is pushed as.
const NAME: &str = "bench/debianish:1";
/// Files larger than this are left out, so that every layer is many files, as in a real image.
const MAX_FILE: u64 = 4 << 20;
/// The ratio the issue asks for: minik's cold pull against `skopeo copy` of the same image.
const TARGET: f64 = 1.0;

/// Flags of `minik-bench images`.
#[derive(clap::Args, Debug)]
pub struct ImagesArgs {
    /// Timed rounds (each: every baseline, a cold pull and a warm pull).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Untimed rounds first (page cache, binaries, the registry warmed up).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Megabytes (10^6 bytes) of files in each layer, base layer first.
    #[arg(long, value_delimiter = ',', default_value = "30,10,5,2,1")]
    layers_mb: Vec<u64>,
    /// Where the scratch directory goes (removed afterwards) [default: the system's temporary
    /// directory]. On ext4 without a journal, creating files where many were deleted in the last
    /// minutes is several times slower (see the file creation line of the output); a fresh
    /// directory at the root of the filesystem gets inodes of its own.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// What one layer is made of: the first of `roots` (paths under `/`) that exist, walked in
/// order until the layer's size is reached.
struct LayerKind {
    what: &'static str,
    roots: &'static [&'static str],
}

/// A Debian-based image's layers, base first: a base system's libraries, then programs, data
/// and documentation, an interpreter's modules, headers. Layer `i` is `KINDS[i % 5]`.
const KINDS: &[LayerKind] = &[
    LayerKind {
        what: "shared libraries",
        roots: &[
            "usr/lib/x86_64-linux-gnu",
            "usr/lib/aarch64-linux-gnu",
            "usr/lib64",
            "usr/lib",
        ],
    },
    LayerKind {
        what: "programs",
        roots: &["usr/bin", "usr/sbin"],
    },
    LayerKind {
        what: "data and documentation",
        roots: &["usr/share"],
    },
    LayerKind {
        what: "Python modules",
        roots: &[
            "usr/lib/python3",
            "usr/lib/python3.11",
            "usr/lib/python3.12",
            "usr/share",
        ],
    },
    LayerKind {
        what: "C headers",
        roots: &["usr/include", "usr/share"],
    },
];

/// The entries one layer holds, as paths relative to the walked base, parents first.
#[derive(Debug, Default, PartialEq, Eq)]
struct Picked {
    entries: Vec<PathBuf>,
    bytes: u64,
    files: usize,
    symlinks: usize,
    /// The roots that gave something.
    roots: Vec<String>,
}

/// Walks `roots` (relative to `base`) in name order and picks regular files (each at most
/// `max_file` bytes, none of `used`) and symbolic links until the files add up to `target`
/// bytes, with every parent directory of what it picks. What it picks is added to `used`, so
/// that no two layers hold the same file.
fn pick(
    base: &Path,
    roots: &[&str],
    target: u64,
    max_file: u64,
    used: &mut HashSet<PathBuf>,
) -> Picked {
    let mut picked = Picked::default();
    let mut dirs: HashSet<PathBuf> = HashSet::new();
    for root in roots {
        if picked.bytes >= target {
            break;
        }
        let before = picked.files + picked.symlinks;
        walk(
            base,
            Path::new(root),
            target,
            max_file,
            used,
            &mut dirs,
            &mut picked,
        );
        if picked.files + picked.symlinks > before {
            picked.roots.push(format!("/{root}"));
        }
    }
    picked
}

fn walk(
    base: &Path,
    rel: &Path,
    target: u64,
    max_file: u64,
    used: &mut HashSet<PathBuf>,
    dirs: &mut HashSet<PathBuf>,
    picked: &mut Picked,
) {
    let Ok(read) = std::fs::read_dir(base.join(rel)) else {
        return;
    };
    let mut names: Vec<_> = read.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        if picked.bytes >= target {
            return;
        }
        let child = rel.join(&name);
        let Ok(meta) = std::fs::symlink_metadata(base.join(&child)) else {
            continue;
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            walk(base, &child, target, max_file, used, dirs, picked);
            continue;
        }
        let is_file = kind.is_file() && meta.len() <= max_file;
        if !(is_file || kind.is_symlink()) || used.contains(&child) {
            continue;
        }
        // Parents first, so that the archive creates each directory before what it holds.
        let mut parents: Vec<PathBuf> = child
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty() && !dirs.contains(*p))
            .map(Path::to_path_buf)
            .collect();
        parents.reverse();
        for parent in parents {
            dirs.insert(parent.clone());
            picked.entries.push(parent);
        }
        if is_file {
            picked.bytes += meta.len();
            picked.files += 1;
        } else {
            picked.symlinks += 1;
        }
        used.insert(child.clone());
        picked.entries.push(child);
    }
}

/// One layer of the image as built.
struct BuiltLayer {
    what: &'static str,
    picked: Picked,
    /// The compressed blob's size, as the registry serves it.
    blob: u64,
}

/// Runs a tool to completion; an error with its output if it fails.
fn run_tool(command: &mut Command) -> anyhow::Result<()> {
    let what = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    ensure!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// Runs a tool and answers how long it took, wall clock.
fn timed(command: &mut Command) -> anyhow::Result<Duration> {
    let started = Instant::now();
    run_tool(command)?;
    Ok(started.elapsed())
}

/// Whether `tool` is on `PATH`.
fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

fn skopeo() -> Command {
    let mut command = Command::new("skopeo");
    command.arg("--insecure-policy");
    command
}

/// Flushes every dirty page of the machine, so that what one step wrote is not written back
/// during the next step's timing. Answers how long it took.
fn sync() -> anyhow::Result<Duration> {
    timed(&mut Command::new("sync"))
}

/// The layout's manifest for `tag` (an OCI layout as umoci and skopeo write it).
fn layout_manifest(layout: &Path, tag: &str) -> anyhow::Result<serde_json::Value> {
    let read_json = |path: PathBuf| -> anyhow::Result<serde_json::Value> {
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
    };
    let index = read_json(layout.join("index.json"))?;
    let digest = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .with_context(|| format!("{}: no manifest tagged {tag:?}", layout.display()))?;
    read_json(blob_path(layout, digest)?)
}

/// Where a layout keeps the blob `digest` (`sha256:HEX`).
fn blob_path(layout: &Path, digest: &str) -> anyhow::Result<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .with_context(|| format!("unexpected digest {digest:?}"))?;
    Ok(layout.join("blobs/sha256").join(hex))
}

/// The digests and sizes of a layout manifest's layers.
fn layers_of(manifest: &serde_json::Value) -> anyhow::Result<Vec<(String, u64)>> {
    manifest["layers"]
        .as_array()
        .context("the manifest has no layers")?
        .iter()
        .map(|l| {
            let digest = l["digest"].as_str().context("a layer without digest")?;
            let size = l["size"].as_u64().context("a layer without size")?;
            Ok((digest.to_string(), size))
        })
        .collect()
}

/// Builds the OCI layout `dir/oci` with the image tagged `1`: one layer per entry of
/// `layers_mb`, made of this machine's files (see [`KINDS`]) with `tar` and added with `umoci
/// raw add-layer` (gzip).
fn build_image(dir: &Path, layers_mb: &[u64]) -> anyhow::Result<(PathBuf, Vec<BuiltLayer>)> {
    let layout = dir.join("oci");
    let image = format!("{}:1", layout.display());
    run_tool(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
    )?;
    run_tool(Command::new("umoci").args(["new", "--image", &image]))?;
    let mut used = HashSet::new();
    let mut built = Vec::new();
    for (i, mb) in layers_mb.iter().enumerate() {
        let kind = &KINDS[i % KINDS.len()];
        let picked = pick(
            Path::new("/"),
            kind.roots,
            mb.saturating_mul(1_000_000),
            MAX_FILE,
            &mut used,
        );
        ensure!(
            picked.files > 0,
            "layer {i}: no files found under /{}",
            kind.roots.join(", /")
        );
        let list = dir.join(format!("layer-{i}.list"));
        let mut names = Vec::new();
        for entry in &picked.entries {
            names.extend_from_slice(entry.as_os_str().as_bytes());
            names.push(0);
        }
        std::fs::write(&list, names).with_context(|| format!("writing {}", list.display()))?;
        let tar = dir.join(format!("layer-{i}.tar"));
        run_tool(
            Command::new("tar")
                .args([
                    "--create",
                    "--no-recursion",
                    "--null",
                    "--verbatim-files-from",
                    "--owner=0",
                    "--group=0",
                    "--numeric-owner",
                    "--directory=/",
                ])
                .arg(format!("--files-from={}", list.display()))
                .arg(format!("--file={}", tar.display())),
        )?;
        run_tool(
            Command::new("umoci")
                .args(["raw", "add-layer", "--image", &image])
                .arg(&tar),
        )?;
        std::fs::remove_file(&tar).with_context(|| format!("removing {}", tar.display()))?;
        std::fs::remove_file(&list).with_context(|| format!("removing {}", list.display()))?;
        built.push(BuiltLayer {
            what: kind.what,
            picked,
            blob: 0,
        });
    }
    run_tool(
        Command::new("umoci")
            .args(["config", "--image", &image])
            .arg("--config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .arg("--config.cmd=bash"),
    )?;
    run_tool(Command::new("umoci").args(["gc", "--layout"]).arg(&layout))?;
    let blobs = layers_of(&layout_manifest(&layout, "1")?)?;
    ensure!(
        blobs.len() == built.len(),
        "the image has {} layers, {} were added",
        blobs.len(),
        built.len()
    );
    for (layer, (_, size)) in built.iter_mut().zip(blobs) {
        layer.blob = size;
    }
    Ok((layout, built))
}

/// Samples of one figure, one per timed round.
#[derive(Default)]
struct Samples {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl Samples {
    fn push(&mut self, wall: Duration, cpu: Duration) {
        self.wall.push(wall);
        self.cpu.push(cpu);
    }

    fn median(&self) -> Duration {
        median(&self.wall).unwrap_or_default()
    }

    fn min(&self) -> Duration {
        self.wall.iter().min().copied().unwrap_or_default()
    }

    fn line(&self, label: &str) -> String {
        format!(
            "  {label:<54} median {:>8.1} ms   min {:>8.1} ms   CPU {:>7.1} ms",
            ms(self.median()),
            ms(self.min()),
            ms(median(&self.cpu).unwrap_or_default()),
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "median_ms": ms(self.median()),
            "min_ms": ms(self.min()),
            "cpu_median_ms": ms(median(&self.cpu).unwrap_or_default()),
            "runs_ms": self.wall.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        })
    }
}

/// The CPU time (user + system) of this process's waited-for children so far, from
/// `/proc/self/stat` (cutime, cstime).
fn children_cpu() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/self/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("/proc/self/stat has no field {}", i + 3))
    };
    // cutime and cstime are fields 16 and 17 of the whole line, 14 and 15 after the name.
    let total = ticks(13)? + ticks(14)?;
    // USER_HZ: 100 on Linux, as machine.rs assumes.
    Ok(Duration::from_millis(total * 1000 / 100))
}

/// Times a tool and the CPU it used.
fn timed_child(command: &mut Command) -> anyhow::Result<(Duration, Duration)> {
    let before = children_cpu()?;
    let wall = timed(command)?;
    Ok((wall, children_cpu()?.saturating_sub(before)))
}

/// Everything one run measured.
#[derive(Default)]
struct Figures {
    skopeo: Samples,
    skopeo_sync: Samples,
    skopeo_umoci: Samples,
    skopeo_tar: Samples,
    download: Samples,
    cold: Samples,
    warm: Samples,
    service_new: Vec<Duration>,
    /// Time to create one empty file in the round's directory, before anything else.
    create_file: Vec<Duration>,
    downloaded: u64,
    layers_downloaded: usize,
    warm_downloaded: u64,
}

/// One round, in the fresh directory `scratch`: every baseline, then a cold and a warm pull.
/// Recorded into `figures` when given. Nothing is removed until the whole run ends: on ext4
/// without a journal, creating files right after many were deleted costs far more (the inode
/// allocator skips recently deleted inodes one by one), which would charge one step's clean-up to
/// the next step's time.
async fn round(
    scratch: &Path,
    source: &str,
    image: &str,
    registries: &RegistriesConfig,
    figures: Option<&mut Figures>,
) -> anyhow::Result<()> {
    let pid = std::process::id();
    let root = nix::unistd::geteuid().is_root();

    // skopeo copy into a fresh layout: download + verify.
    std::fs::create_dir(scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let create_file = file_creation(&scratch.join("probe"))?;
    let copy = scratch.join("skopeo");
    sync()?;
    let (copy_wall, copy_cpu) = timed_child(
        skopeo()
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{source}"))
            .arg(format!("oci:{}:1", copy.display())),
    )?;
    let copy_synced = sync()?;

    // umoci unpack of that copy: the whole image into one bundle.
    let bundle = scratch.join("bundle");
    let mut unpack = Command::new("umoci");
    unpack.arg("unpack");
    if !root {
        unpack.arg("--rootless");
    }
    unpack
        .args(["--image", &format!("{}:1", copy.display())])
        .arg(&bundle);
    let (umoci_wall, umoci_cpu) = timed_child(&mut unpack)?;
    sync()?;

    // tar -xzf of each layer of that copy into a directory of its own.
    let untar = scratch.join("untar");
    let layers = layers_of(&layout_manifest(&copy, "1")?)?;
    let before = children_cpu()?;
    let started = Instant::now();
    for (i, (digest, _)) in layers.iter().enumerate() {
        let into = untar.join(i.to_string());
        std::fs::create_dir_all(&into).with_context(|| format!("creating {}", into.display()))?;
        run_tool(
            Command::new("tar")
                .arg("-xzf")
                .arg(blob_path(&copy, digest)?)
                .arg("-C")
                .arg(&into),
        )?;
    }
    let tar_wall = started.elapsed();
    let tar_cpu = children_cpu()?.saturating_sub(before);

    // minik's client alone: what a pull downloads, into files, nothing unpacked.
    let blobs = scratch.join("minik-blobs");
    std::fs::create_dir(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    sync()?;
    let cpu_before = cpu_time_of(pid)?;
    let started = Instant::now();
    download(&blobs, image, registries).await?;
    let download_wall = started.elapsed();
    let download_cpu = cpu_time_of(pid)?.saturating_sub(cpu_before);

    // minik: a fresh store, a cold pull, then a warm one.
    let store_dir = scratch.join("minik-store");
    sync()?;
    let started = Instant::now();
    let store = Store::open(&store_dir)?;
    let service = ImageService::new(store, registries.clone(), false)?;
    let service_new = started.elapsed();
    let cpu_before = cpu_time_of(pid)?;
    let started = Instant::now();
    let cold = service.pull(image, &[]).await?;
    let cold_wall = started.elapsed();
    let cold_cpu = cpu_time_of(pid)?.saturating_sub(cpu_before);
    let cpu_before = cpu_time_of(pid)?;
    let started = Instant::now();
    let warm = service.pull(image, &[]).await?;
    let warm_wall = started.elapsed();
    let warm_cpu = cpu_time_of(pid)?.saturating_sub(cpu_before);
    drop(service);

    let (Some(cold), Some(warm)) = (cold.pulled, warm.pulled) else {
        bail!("a pull did not ask the registry");
    };
    if let Some(f) = figures {
        f.skopeo.push(copy_wall, copy_cpu);
        f.skopeo_sync.push(copy_wall + copy_synced, copy_cpu);
        f.skopeo_umoci
            .push(copy_wall + umoci_wall, copy_cpu + umoci_cpu);
        f.skopeo_tar.push(copy_wall + tar_wall, copy_cpu + tar_cpu);
        f.download.push(download_wall, download_cpu);
        f.cold.push(cold_wall, cold_cpu);
        f.warm.push(warm_wall, warm_cpu);
        f.service_new.push(service_new);
        f.create_file.push(create_file);
        f.downloaded = cold.downloaded;
        f.layers_downloaded = cold.layers_downloaded;
        f.warm_downloaded = warm.downloaded;
    }
    Ok(())
}

/// Files [`file_creation`] creates.
const PROBE_FILES: u32 = 1000;

/// How long creating one empty file in `dir` takes (the mean of [`PROBE_FILES`]): what the
/// filesystem's state costs every unpacker here, whatever it unpacks.
fn file_creation(dir: &Path) -> anyhow::Result<Duration> {
    std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    sync()?;
    let started = Instant::now();
    for i in 0..PROBE_FILES {
        let path = dir.join(i.to_string());
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    }
    Ok(started.elapsed() / PROBE_FILES)
}

/// What a pull downloads, done with minik's client alone: resolves `image`, fetches its config,
/// and every layer blob in parallel into a file of `dir` (verified, fsynced).
async fn download(dir: &Path, image: &str, registries: &RegistriesConfig) -> anyhow::Result<()> {
    let client = RegistryClient::new(registries.clone(), false)?;
    let reference: Reference = image.parse()?;
    let resolved = client.resolve(&reference, &Platform::host(), &[]).await?;
    client
        .fetch_config(&resolved.source, &reference, &resolved.manifest.config)
        .await?;
    let fetches = resolved.manifest.layers.iter().map(|layer| {
        let path = dir.join(layer.digest.hex());
        let (client, resolved, reference) = (&client, &resolved, &reference);
        async move {
            let mut file = tokio::fs::File::create(&path)
                .await
                .with_context(|| format!("creating {}", path.display()))?;
            client
                .fetch_blob(&resolved.source, reference, layer, &mut file)
                .await?;
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(fetches).await?;
    Ok(())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// Runs the benchmark and prints its figures.
pub fn run(args: ImagesArgs) -> anyhow::Result<()> {
    ensure!(args.runs > 0, "--runs must be positive");
    ensure!(
        !args.layers_mb.is_empty() && args.layers_mb.iter().all(|mb| *mb > 0),
        "--layers-mb must list at least one positive size"
    );
    let missing: Vec<&str> = ["umoci", "skopeo", "docker-registry", "tar", "sync"]
        .into_iter()
        .filter(|tool| !on_path(tool))
        .collect();
    ensure!(
        missing.is_empty(),
        "minik-bench images needs {} on PATH (apt install umoci skopeo docker-registry)",
        missing.join(", ")
    );
    let scratch = match &args.work_dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("minik-bench-images-")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new()
            .prefix("minik-bench-images-")
            .tempdir()?,
    };
    let machine = Machine::describe(scratch.path());

    let (layout, built) = build_image(scratch.path(), &args.layers_mb)?;
    let registry = Registry::start().context("docker-registry is not on PATH")?;
    let addr = registry.addr();
    let source = format!("{addr}/{NAME}");
    run_tool(
        skopeo()
            .args([
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--dest-no-creds",
            ])
            .arg(format!("oci:{}:1", layout.display()))
            .arg(format!("docker://{source}")),
    )?;
    std::fs::remove_dir_all(&layout).with_context(|| format!("removing {}", layout.display()))?;
    let registries = RegistriesConfig::parse(
        &format!("mirrors:\n  \"{addr}\":\n    endpoint: [\"http://{addr}\"]\n"),
        "minik-bench registries.yaml",
    )?;

    println!("Image pull benchmark (issue 17)");
    for line in machine.lines() {
        println!("  {line}");
    }
    let files: u64 = built.iter().map(|l| l.picked.bytes).sum();
    let blobs: u64 = built.iter().map(|l| l.blob).sum();
    println!(
        "\nImage {source}: {} layers of this machine's files, tar (owner root) + gzip by umoci, \
         files of at most {} MiB, no file in two layers:",
        built.len(),
        MAX_FILE >> 20
    );
    for (i, layer) in built.iter().enumerate() {
        println!(
            "  layer {}: {:<22} {:>6.1} MB in {:>5} files + {:>4} symlinks from {:<28} -> {:>5.1} MB gzip ({:.2}:1)",
            i + 1,
            layer.what,
            mb(layer.picked.bytes),
            layer.picked.files,
            layer.picked.symlinks,
            layer.picked.roots.join(", "),
            mb(layer.blob),
            layer.picked.bytes as f64 / layer.blob.max(1) as f64,
        );
    }
    println!(
        "  total: {:.1} MB of files, {:.1} MB compressed ({:.2}:1)",
        mb(files),
        mb(blobs),
        files as f64 / blobs.max(1) as f64
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut figures = Figures::default();
    for i in 0..args.warmup + args.runs {
        let dir = scratch.path().join(format!("round-{i}"));
        let record = (i >= args.warmup).then_some(&mut figures);
        runtime.block_on(round(&dir, &source, &source, &registries, record))?;
    }
    drop(registry);
    print_figures(&figures, args.runs, args.warmup);
    Ok(())
}

fn print_figures(f: &Figures, runs: usize, warmup: usize) {
    println!(
        "\nPulls from the loopback registry ({runs} rounds after {warmup} untimed; in each round \
         every line below, a sync before each; wall median and min, CPU of the puller median):"
    );
    println!(
        "{}",
        f.skopeo.line("skopeo copy (download + verify, no fsync)")
    );
    println!(
        "{}",
        f.skopeo_sync.line("skopeo copy + sync (its blobs on disk)")
    );
    println!(
        "{}",
        f.skopeo_umoci
            .line("skopeo copy + umoci unpack (download + unpack)")
    );
    println!(
        "{}",
        f.skopeo_tar
            .line("skopeo copy + tar -xzf each layer (download + unpack)")
    );
    println!(
        "{}",
        f.download
            .line("minik client: download + verify + fsync, no unpack")
    );
    println!(
        "{}",
        f.cold.line("minik cold pull (download + verify + unpack)")
    );
    println!("{}", f.warm.line("minik warm pull (all layers present)"));
    println!(
        "  minik cold pull downloaded {:.1} MB in {} layers; the warm pull {} bytes; \
         Store::open + ImageService::new (not in the pull's time): median {:.1} ms",
        mb(f.downloaded),
        f.layers_downloaded,
        f.warm_downloaded,
        ms(median(&f.service_new).unwrap_or_default()),
    );
    println!(
        "  file creation in the scratch directory (every unpacker pays it): median {:.1} us per \
         empty file ({PROBE_FILES} files per round)",
        median(&f.create_file).unwrap_or_default().as_secs_f64() * 1e6
    );
    let cold = f.cold.median();
    let cold_ratio = ratio(cold, f.skopeo.median());
    println!(
        "\n  ratio minik cold / skopeo copy:                      {:.2}x (min/min {:.2}x)   target <= {TARGET:.1}x: {}",
        cold_ratio,
        ratio(f.cold.min(), f.skopeo.min()),
        if cold_ratio <= TARGET { "met" } else { "NOT met" },
    );
    println!(
        "  ratio minik client download / skopeo copy:          {:.2}x",
        ratio(f.download.median(), f.skopeo.median())
    );
    println!(
        "  ratio minik cold / skopeo copy + sync:               {:.2}x",
        ratio(cold, f.skopeo_sync.median())
    );
    println!(
        "  ratio minik cold / skopeo copy + umoci unpack:       {:.2}x",
        ratio(cold, f.skopeo_umoci.median())
    );
    println!(
        "  ratio minik cold / skopeo copy + tar -xzf:           {:.2}x",
        ratio(cold, f.skopeo_tar.median())
    );
    println!(
        "  ratio minik warm / skopeo copy:                      {:.3}x",
        ratio(f.warm.median(), f.skopeo.median())
    );
    println!(
        "  ratio minik warm / skopeo copy + umoci unpack:       {:.3}x",
        ratio(f.warm.median(), f.skopeo_umoci.median())
    );
    println!(
        "\n{}",
        serde_json::json!({
            "skopeo_copy": f.skopeo.json(),
            "skopeo_copy_sync": f.skopeo_sync.json(),
            "skopeo_copy_umoci_unpack": f.skopeo_umoci.json(),
            "skopeo_copy_tar_xzf": f.skopeo_tar.json(),
            "minik_client_download": f.download.json(),
            "minik_cold": f.cold.json(),
            "minik_warm": f.warm.json(),
            "downloaded_bytes": f.downloaded,
            "file_creation_us": median(&f.create_file).unwrap_or_default().as_secs_f64() * 1e6,
            "ratio_cold_to_skopeo_copy": cold_ratio,
        })
    );
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib/b")).expect("mkdir");
        std::fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
        std::fs::write(root.join("usr/lib/a.so"), vec![1u8; 100]).expect("write");
        std::fs::write(root.join("usr/lib/b/c.so"), vec![2u8; 300]).expect("write");
        std::fs::write(root.join("usr/lib/big.so"), vec![3u8; 5000]).expect("write");
        std::fs::write(root.join("usr/lib/d.so"), vec![4u8; 50]).expect("write");
        std::os::unix::fs::symlink("a.so", root.join("usr/lib/a.so.1")).expect("symlink");
        std::fs::write(root.join("usr/bin/tool"), vec![5u8; 70]).expect("write");
        dir
    }

    #[test]
    fn picks_in_name_order_parents_first_until_the_size() {
        let dir = tree();
        let mut used = HashSet::new();
        let picked = pick(dir.path(), &["usr/lib"], 350, 1000, &mut used);
        let entries: Vec<&str> = picked
            .entries
            .iter()
            .map(|p| p.to_str().expect("utf-8"))
            .collect();
        // a.so (100) then a.so.1 (link) then b/c.so (300): 400 >= 350, stop. big.so is too big.
        assert_eq!(
            entries,
            [
                "usr",
                "usr/lib",
                "usr/lib/a.so",
                "usr/lib/a.so.1",
                "usr/lib/b",
                "usr/lib/b/c.so"
            ]
        );
        assert_eq!((picked.bytes, picked.files, picked.symlinks), (400, 2, 1));
        assert_eq!(picked.roots, ["/usr/lib"]);

        // The next layer never takes a file again, and moves on to the next root.
        let next = pick(
            dir.path(),
            &["usr/lib", "usr/bin", "missing"],
            1000,
            1000,
            &mut used,
        );
        let entries: Vec<&str> = next
            .entries
            .iter()
            .map(|p| p.to_str().expect("utf-8"))
            .collect();
        assert_eq!(
            entries,
            ["usr", "usr/lib", "usr/lib/d.so", "usr/bin", "usr/bin/tool"]
        );
        assert_eq!((next.bytes, next.files), (120, 2));
        assert_eq!(next.roots, ["/usr/lib", "/usr/bin"]);
    }

    #[test]
    fn picking_is_deterministic() {
        let dir = tree();
        let a = pick(dir.path(), &["usr"], 10_000, 1000, &mut HashSet::new());
        let b = pick(dir.path(), &["usr"], 10_000, 1000, &mut HashSet::new());
        assert_eq!(a, b);
        assert_eq!(a.files, 4);
    }

    #[test]
    fn blob_paths_need_sha256_digests() {
        let hex = "a".repeat(64);
        assert_eq!(
            blob_path(Path::new("/l"), &format!("sha256:{hex}")).expect("digest"),
            Path::new("/l/blobs/sha256").join(&hex)
        );
        assert!(blob_path(Path::new("/l"), "sha256:../../etc").is_err());
        assert!(blob_path(Path::new("/l"), &format!("sha512:{hex}")).is_err());
    }

    #[test]
    fn samples_report_median_and_min() {
        let mut s = Samples::default();
        for v in [30, 10, 20] {
            s.push(Duration::from_millis(v), Duration::from_millis(v / 10));
        }
        assert_eq!(s.median(), Duration::from_millis(20));
        assert_eq!(s.min(), Duration::from_millis(10));
        assert!(
            s.line("x").contains("median     20.0 ms"),
            "{}",
            s.line("x")
        );
        assert_eq!(Samples::default().median(), Duration::ZERO);
    }

    #[test]
    fn own_children_cpu_is_readable() {
        assert!(children_cpu().is_ok());
    }

    #[test]
    fn names_with_any_bytes_are_listed_verbatim() {
        let name = OsStr::from_bytes(b"odd\nname");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("r")).expect("mkdir");
        std::fs::write(dir.path().join("r").join(name), b"x").expect("write");
        let picked = pick(dir.path(), &["r"], 1, 10, &mut HashSet::new());
        assert_eq!(picked.entries[1], Path::new("r").join(name));
    }
}
