//! emptyDir volumes against the real kernel: tmpfs mounts with a sizeLimit, teardown that
//! unmounts and never deletes outside its own tree, disk usage that does not cross mounts.
//! Needs root (mounts); every test unmounts what it mounted, even when it fails.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use minik_node::volumes::host::{disk_usage, empty_dir, mount_type, teardown, Medium};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// A temporary directory whose mounts are all undone before it is removed.
struct Sandbox {
    dir: tempfile::TempDir,
    real: PathBuf,
}

impl Sandbox {
    /// A sandbox, or None (after saying why) when this host cannot mount.
    fn new(test: &str) -> Option<Sandbox> {
        if !nix::unistd::geteuid().is_root() {
            minik_testkit::cannot_run("root", format!("{test} mounts file systems"));
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let real = fs::canonicalize(dir.path()).expect("realpath");
        let sandbox = Sandbox { dir, real };
        let probe = sandbox.path("probe");
        fs::create_dir(&probe).expect("mkdir");
        if let Err(e) = mount(
            Some("tmpfs"),
            &probe,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=64k"),
        ) {
            minik_testkit::cannot_run("mount", format!("{test}: cannot mount a tmpfs: {e}"));
            return None;
        }
        sandbox.unmount_all();
        Some(sandbox)
    }

    fn path(&self, name: &str) -> PathBuf {
        debug_assert!(self.dir.path().exists());
        self.real.join(name)
    }

    /// The mount points under the sandbox, as the kernel lists them.
    fn mounts(&self) -> Vec<PathBuf> {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        info.lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|point| point.starts_with(&self.real))
            .collect()
    }

    fn unmount_all(&self) {
        for _ in 0..16 {
            let mut points = self.mounts();
            if points.is_empty() {
                return;
            }
            points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            for point in points {
                let _ = umount2(&point, MntFlags::MNT_DETACH);
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Before the directory goes: removing it through a bind mount would delete the source.
        self.unmount_all();
    }
}

fn bind(source: &Path, target: &Path) {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .expect("bind mount");
}

fn fill(path: &Path, bytes: usize) -> std::io::Result<()> {
    let mut file = fs::File::create(path)?;
    let chunk = vec![0x5au8; 64 << 10];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        file.write_all(&chunk[..n])?;
        left -= n;
    }
    file.sync_all()
}

#[test]
fn memory_empty_dir_honours_its_size_limit_and_tears_down() {
    let Some(sandbox) = Sandbox::new("memory_empty_dir_honours_its_size_limit_and_tears_down")
    else {
        return;
    };
    let vol = sandbox.path("pods/uid/volumes/kubernetes.io~empty-dir/cache");
    empty_dir(&vol, Medium::Memory, Some(1 << 20)).expect("setup");
    assert_eq!(mount_type(&vol).expect("mounts").as_deref(), Some("tmpfs"));
    assert_eq!(
        fs::metadata(&vol).expect("stat").permissions().mode() & 0o7777,
        0o777
    );
    // Idempotent: no second tmpfs stacked on the first.
    empty_dir(&vol, Medium::Memory, Some(1 << 20)).expect("setup again");
    assert_eq!(sandbox.mounts(), vec![vol.clone()]);

    fill(&vol.join("half"), 512 << 10).expect("within the limit");
    assert!(disk_usage(&vol).expect("usage") >= 512 << 10);
    let err = fill(&vol.join("too-much"), 2 << 20).expect_err("over the limit");
    assert_eq!(err.raw_os_error(), Some(nix::libc::ENOSPC), "{err}");

    teardown(&vol).expect("teardown");
    assert!(sandbox.mounts().is_empty());
    assert!(!vol.exists());
    assert!(vol.parent().expect("parent").is_dir());
}

#[test]
fn memory_empty_dir_without_limit_and_a_busy_teardown() {
    let Some(sandbox) = Sandbox::new("memory_empty_dir_without_limit_and_a_busy_teardown") else {
        return;
    };
    let vol = sandbox.path("vol");
    empty_dir(&vol, Medium::Memory, None).expect("setup");
    assert_eq!(mount_type(&vol).expect("mounts").as_deref(), Some("tmpfs"));
    fs::write(vol.join("open"), b"still readable").expect("write");
    // A process still holds a file: the unmount is lazy.
    let held = fs::File::open(vol.join("open")).expect("open");
    teardown(&vol).expect("teardown");
    assert!(sandbox.mounts().is_empty());
    assert!(!vol.exists());
    let mut content = String::new();
    std::io::Read::read_to_string(&mut &held, &mut content).expect("read");
    assert_eq!(content, "still readable");
}

#[test]
fn teardown_never_follows_links_out_of_the_volume() {
    let Some(sandbox) = Sandbox::new("teardown_never_follows_links_out_of_the_volume") else {
        return;
    };
    let host = sandbox.path("host");
    fs::create_dir(&host).expect("mkdir");
    fs::write(host.join("precious"), b"host data").expect("write");
    let host_file = sandbox.path("host-file");
    fs::write(&host_file, b"more host data").expect("write");

    for medium in [Medium::Memory, Medium::Disk] {
        let vol = sandbox.path("vol");
        empty_dir(&vol, medium, Some(1 << 20)).expect("setup");
        fs::create_dir_all(vol.join("a/b")).expect("mkdir");
        std::os::unix::fs::symlink(&host_file, vol.join("to-file")).expect("symlink");
        std::os::unix::fs::symlink(&host, vol.join("a/b/to-dir")).expect("symlink");
        std::os::unix::fs::symlink("../../../host", vol.join("a/b/relative")).expect("symlink");
        teardown(&vol).expect("teardown");
        assert!(!vol.exists());
        assert_eq!(fs::read(host.join("precious")).expect("read"), b"host data");
        assert_eq!(fs::read(&host_file).expect("read"), b"more host data");
    }
    assert!(sandbox.mounts().is_empty());
}

#[test]
fn teardown_unmounts_a_nested_bind_mount_and_keeps_its_source() {
    let Some(sandbox) = Sandbox::new("teardown_unmounts_a_nested_bind_mount_and_keeps_its_source")
    else {
        return;
    };
    // Same file system as the volume: only the mount table tells the bind mount apart.
    let source = sandbox.path("source");
    fs::create_dir_all(source.join("deep")).expect("mkdir");
    fs::write(source.join("deep/precious"), b"bound data").expect("write");
    let vol = sandbox.path("vol");
    empty_dir(&vol, Medium::Disk, None).expect("setup");
    fs::create_dir_all(vol.join("x/mnt")).expect("mkdir");
    bind(&source, &vol.join("x/mnt"));
    // And a tmpfs under the bind mount, and one stacked twice.
    fs::create_dir(vol.join("tmp")).expect("mkdir");
    for _ in 0..2 {
        mount(
            Some("tmpfs"),
            &vol.join("tmp"),
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=64k"),
        )
        .expect("tmpfs");
    }
    fs::write(vol.join("tmp/file"), b"x").expect("write");

    teardown(&vol).expect("teardown");
    assert!(sandbox.mounts().is_empty(), "{:?}", sandbox.mounts());
    assert!(!vol.exists());
    assert_eq!(
        fs::read(source.join("deep/precious")).expect("read"),
        b"bound data"
    );
}

#[test]
fn disk_usage_does_not_cross_mounts() {
    let Some(sandbox) = Sandbox::new("disk_usage_does_not_cross_mounts") else {
        return;
    };
    let source = sandbox.path("source");
    fs::create_dir(&source).expect("mkdir");
    fill(&source.join("big"), 4 << 20).expect("fill");
    let vol = sandbox.path("vol");
    empty_dir(&vol, Medium::Memory, Some(8 << 20)).expect("setup");
    fill(&vol.join("small"), 128 << 10).expect("fill");
    fs::create_dir(vol.join("bound")).expect("mkdir");
    bind(&source, &vol.join("bound"));
    fs::create_dir(vol.join("other-tmpfs")).expect("mkdir");
    mount(
        Some("tmpfs"),
        &vol.join("other-tmpfs"),
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=4m"),
    )
    .expect("tmpfs");
    fill(&vol.join("other-tmpfs/big"), 2 << 20).expect("fill");

    let used = disk_usage(&vol).expect("usage");
    assert!(used >= 128 << 10, "{used}");
    assert!(used < 1 << 20, "{used}: counted another mount");
    // An emptyDir on disk with a bind mount of the same file system inside.
    let disk = sandbox.path("disk");
    empty_dir(&disk, Medium::Disk, None).expect("setup");
    fs::create_dir(disk.join("bound")).expect("mkdir");
    bind(&source, &disk.join("bound"));
    assert!(disk_usage(&disk).expect("usage") < 1 << 20);

    teardown(&vol).expect("teardown");
    teardown(&disk).expect("teardown");
    assert!(fs::metadata(source.join("big")).expect("kept").len() == 4 << 20);
}

#[test]
fn memory_empty_dir_refuses_another_mount_in_place() {
    let Some(sandbox) = Sandbox::new("memory_empty_dir_refuses_another_mount_in_place") else {
        return;
    };
    let source = sandbox.path("source");
    fs::create_dir(&source).expect("mkdir");
    let vol = sandbox.path("vol");
    fs::create_dir(&vol).expect("mkdir");
    bind(&source, &vol);
    let err = empty_dir(&vol, Medium::Memory, None).expect_err("a bind mount is there");
    assert!(err.contains("already a mount point"), "{err}");
    teardown(&vol).expect("teardown");
    assert!(source.is_dir());
    assert!(sandbox.mounts().is_empty());
}
