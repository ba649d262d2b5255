//! Network namespaces pinned at a path (a bind mount of a thread's `ns/net` file), as the `oci`
//! runtime keeps each pod's, and running code inside one. Entering a namespace (`setns`)
//! changes only the calling thread, so code that must run inside one runs on a thread of its
//! own that ends with it: a socket made there stays in that namespace, and so do the children
//! the thread starts (`nft`) and the `/proc/sys/net` files it opens.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::Error;

/// Runs `f` on a new thread, inside the network namespace pinned at `netns` (the calling
/// thread's own when `None`), and returns what it returns. Blocks until `f` is done.
pub fn run_in<T, F>(netns: Option<&Path>, f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let netns = netns.map(Path::to_path_buf);
    let error = |netns: &Option<PathBuf>, source| Error::Netns {
        action: "running code in",
        path: netns.clone().unwrap_or_else(|| "of the agent".into()),
        source,
    };
    let inside = netns.clone();
    let thread = std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || -> Result<T, Error> {
            if let Some(path) = &inside {
                enter(path)?;
            }
            Ok(f())
        })
        .map_err(|e| error(&netns, e))?;
    thread
        .join()
        .map_err(|_| error(&netns, io::Error::other("its thread panicked")))?
}

/// [`run_in`] for async callers: the caller's task waits without blocking its thread.
pub(crate) async fn run_in_async<T, F>(netns: Option<&Path>, f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let netns = netns.map(Path::to_path_buf);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let path = netns.clone();
    let spawned = std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            let result = match &path {
                Some(path) => enter(path).map(|()| f()),
                None => Ok(f()),
            };
            let _ = tx.send(result);
        });
    let error = |source| Error::Netns {
        action: "running code in",
        path: netns.clone().unwrap_or_else(|| "of the agent".into()),
        source,
    };
    spawned.map_err(error)?;
    rx.await
        .map_err(|_| error(io::Error::other("its thread panicked")))?
}

/// Moves the calling thread into the network namespace pinned at `path`.
fn enter(path: &Path) -> Result<(), Error> {
    let error = |source| Error::Netns {
        action: "entering",
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(error)?;
    setns(file, CloneFlags::CLONE_NEWNET).map_err(|e| error(e.into()))
}

/// Makes a new network namespace and pins it at `path` (a file that must not exist yet), with
/// its loopback interface up. It lives until [`remove`].
pub async fn create(path: &Path) -> Result<(), Error> {
    let target = path.to_path_buf();
    let made = run_in_async(None, move || -> io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        File::create_new(&target)?;
        let pinned = mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        );
        if let Err(e) = pinned {
            let _ = std::fs::remove_file(&target);
            return Err(e.into());
        }
        Ok(())
    })
    .await?;
    made.map_err(|source| Error::Netns {
        action: "creating",
        path: path.to_path_buf(),
        source,
    })?;
    let netlink = crate::link::Netlink::open(Some(path)).await?;
    if let Err(e) = netlink.set_up("lo").await {
        let _ = remove(path);
        return Err(e);
    }
    Ok(())
}

/// Unpins the network namespace at `path` and removes the file; the namespace ends when no
/// process is left in it, and its interfaces with it (a veth's peer too). A path that is not
/// there is no error.
pub fn remove(path: &Path) -> Result<(), Error> {
    // Not mounted (made by hand, or removed half-way before): nothing to unmount.
    let _ = umount2(path, MntFlags::MNT_DETACH);
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Netns {
            action: "removing",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Whether a network namespace is pinned at `path`.
pub fn exists(path: &Path) -> bool {
    // nsfs' magic number.
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0 == NSFS_MAGIC)
        .unwrap_or(false)
}
