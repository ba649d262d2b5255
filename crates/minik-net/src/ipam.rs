//! Pod addresses of one node, allocated on disk as the CNI `host-local` plugin does: a directory
//! per pod CIDR with one file per address in use, named by the address and holding its owner
//! (a pod uid and interface), and the last address handed out, so the next allocation goes on
//! from there (round robin: a freed address is not reused at once). Every operation holds an
//! exclusive lock on a file of the directory, so two processes (or threads) never hand out one
//! address twice. An owner that died without releasing (the agent killed with -9) is found by
//! [`Ipam::reclaim`], which releases every address whose owner is not alive.
//!
//! Each owner also has a file named after it (`owner-` and the owner, escaped) that holds its
//! address, so that allocating and releasing read two small files instead of every address's:
//! with 200 pods, reading them all took 4 ms an allocation. The address files stay the truth:
//! the owner file is written before the address file and removed after it, so an owner with
//! an address always has one, and one that points to an address its owner does not hold (a
//! crash in between) counts for nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::cidr::Cidr;
use crate::Error;

/// The file every operation locks.
const LOCK_FILE: &str = "lock";
/// The file that holds the address last handed out.
const LAST_FILE: &str = "last_reserved_ip";
/// The start of the name of an owner's file.
const OWNER_PREFIX: &str = "owner-";
/// The longest owner: escaped, its file name stays within the 255 bytes of a name.
const MAX_OWNER: usize = 80;

/// The addresses of one pod CIDR, kept in a directory.
#[derive(Clone, Debug)]
pub(crate) struct Ipam {
    dir: PathBuf,
    cidr: Cidr,
}

impl Ipam {
    /// The allocations of `cidr` under `root` (`root/10.244.1.0_24`), the directory made if
    /// missing.
    pub(crate) fn open(root: &Path, cidr: Cidr) -> Result<Ipam, Error> {
        let dir = root.join(format!("{}_{}", cidr.network(), cidr.prefix()));
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            action: "creating the IPAM directory",
            path: dir.clone(),
            source,
        })?;
        Ok(Ipam { dir, cidr })
    }

    /// The directory of the allocations.
    #[cfg(test)]
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The address of `owner`: the one it has, or a free one. Fails with [`Error::Exhausted`]
    /// when every address of the pod CIDR is in use.
    pub(crate) fn allocate(&self, owner: &str) -> Result<Ipv4Addr, Error> {
        check_owner(owner)?;
        let _lock = self.lock()?;
        if let Some(address) = self.held(owner)? {
            return Ok(address);
        }
        let used = self.addresses()?;
        let address = next_free(self.cidr, self.last()?, &used).ok_or(Error::Exhausted {
            cidr: self.cidr,
            in_use: used.len(),
        })?;
        self.write(&owner_file(owner), &address.to_string())?;
        self.write(&address.to_string(), &format!("{owner}\n"))?;
        self.write(LAST_FILE, &address.to_string())?;
        Ok(address)
    }

    /// The address `owner` holds, if any.
    pub(crate) fn lookup(&self, owner: &str) -> Result<Option<Ipv4Addr>, Error> {
        check_owner(owner)?;
        let _lock = self.lock()?;
        self.held(owner)
    }

    /// Releases the address of `owner`; returns it (`None` if it had none).
    pub(crate) fn release(&self, owner: &str) -> Result<Option<Ipv4Addr>, Error> {
        check_owner(owner)?;
        let _lock = self.lock()?;
        let held = self.held(owner)?;
        if let Some(address) = held {
            self.remove(&address.to_string())?;
        }
        self.remove(&owner_file(owner))?;
        Ok(held)
    }

    /// Releases every address whose owner `is_live` does not accept; returns them with their
    /// owners. Owner files that point nowhere go too.
    pub(crate) fn reclaim(
        &self,
        is_live: impl Fn(&str) -> bool,
    ) -> Result<Vec<(Ipv4Addr, String)>, Error> {
        let _lock = self.lock()?;
        let allocations = self.read()?;
        let stale: Vec<(Ipv4Addr, String)> = allocations
            .iter()
            .filter(|(_, owner)| !is_live(owner))
            .map(|(address, owner)| (*address, owner.clone()))
            .collect();
        for (address, _) in &stale {
            self.remove(&address.to_string())?;
        }
        let kept: BTreeSet<String> = allocations
            .into_iter()
            .filter(|(_, owner)| is_live(owner))
            .map(|(_, owner)| owner_file(&owner))
            .collect();
        for name in self.names()? {
            if name.starts_with(OWNER_PREFIX) && !kept.contains(&name) {
                self.remove(&name)?;
            }
        }
        Ok(stale)
    }

    /// Every address in use, with its owner.
    #[cfg(test)]
    pub(crate) fn allocations(&self) -> Result<BTreeMap<Ipv4Addr, String>, Error> {
        let _lock = self.lock()?;
        self.read()
    }

    /// Removes the directory and every allocation in it.
    pub(crate) fn remove_all(&self) -> Result<(), Error> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::Io {
                action: "removing the IPAM directory",
                path: self.dir.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Takes the directory's lock; it is let go when the file is dropped (closed).
    fn lock(&self) -> Result<File, Error> {
        let path = self.dir.join(LOCK_FILE);
        let io = |source| Error::Io {
            action: "locking the IPAM directory",
            path: path.clone(),
            source,
        };
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        Ok(file)
    }

    /// The allocations on disk: files named by an address of the pod range. A file that cannot
    /// be read as text still holds its address (with an owner nobody has, so reclaim frees it).
    fn read(&self) -> Result<BTreeMap<Ipv4Addr, String>, Error> {
        let io = |source| Error::Io {
            action: "reading the IPAM directory",
            path: self.dir.clone(),
            source,
        };
        let range = self.cidr.pod_range();
        let mut allocations = BTreeMap::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let Some(address) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            if !range.contains(&u32::from(address)) {
                continue;
            }
            let owner = match std::fs::read(entry.path()) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).trim_end().to_string(),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            };
            allocations.insert(address, owner);
        }
        Ok(allocations)
    }

    /// The address last handed out, if the file says one.
    fn last(&self) -> Result<Option<Ipv4Addr>, Error> {
        let path = self.dir.join(LAST_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text.trim().parse().ok()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                action: "reading the last allocated address",
                path,
                source,
            }),
        }
    }

    /// Writes `name` whole: a temporary file renamed over it, so that a crash leaves the old
    /// content or the new, never half of it.
    fn write(&self, name: &str, content: &str) -> Result<(), Error> {
        let path = self.dir.join(name);
        let temporary = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&temporary, content)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|source| Error::Io {
                action: "writing an address allocation",
                path,
                source,
            })
    }

    /// Removes file `name` of the directory; one that is not there is no error.
    fn remove(&self, name: &str) -> Result<(), Error> {
        let path = self.dir.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::Io {
                action: "releasing an address",
                path,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// The address `owner` holds: the one its owner file names, if that address's file says
    /// `owner`.
    fn held(&self, owner: &str) -> Result<Option<Ipv4Addr>, Error> {
        let Some(address) = self
            .read_file(&owner_file(owner))?
            .and_then(|text| text.trim().parse::<Ipv4Addr>().ok())
        else {
            return Ok(None);
        };
        let holder = self.read_file(&address.to_string())?;
        Ok((holder.as_deref().map(str::trim_end) == Some(owner)).then_some(address))
    }

    /// The addresses in use: the names of the address files, without reading them.
    fn addresses(&self) -> Result<BTreeSet<Ipv4Addr>, Error> {
        let range = self.cidr.pod_range();
        Ok(self
            .names()?
            .iter()
            .filter_map(|name| name.parse::<Ipv4Addr>().ok())
            .filter(|address| range.contains(&u32::from(*address)))
            .collect())
    }

    /// The names of the files of the directory.
    fn names(&self) -> Result<Vec<String>, Error> {
        let io = |source| Error::Io {
            action: "reading the IPAM directory",
            path: self.dir.clone(),
            source,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            if let Some(name) = entry.map_err(io)?.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    /// The text of file `name`, `None` if it is not there. Bytes that are not UTF-8 are
    /// replaced (such an owner matches no one).
    fn read_file(&self, name: &str) -> Result<Option<String>, Error> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                action: "reading",
                path,
                source,
            }),
        }
    }
}

/// The name of `owner`'s file: `owner-` and the owner, every byte but letters, digits, `.`,
/// `_` and `-` escaped as `%XX`.
fn owner_file(owner: &str) -> String {
    let mut name = String::from(OWNER_PREFIX);
    for byte in owner.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
            name.push(char::from(byte));
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    name
}

/// An owner is one line of text of at most [`MAX_OWNER`] bytes: it is what the address file
/// holds, and it names its own file.
fn check_owner(owner: &str) -> Result<(), Error> {
    if owner.is_empty() || owner.len() > MAX_OWNER || owner.chars().any(char::is_control) {
        return Err(Error::Config(format!(
            "{owner:?} cannot own a pod address: an owner is one line of 1 to {MAX_OWNER} bytes"
        )));
    }
    Ok(())
}

/// The next free pod address of `cidr` after `last` (or from the start), going round the pod
/// range once; `None` when all are in `used`. The network, gateway and broadcast addresses
/// are never handed out.
pub(crate) fn next_free(
    cidr: Cidr,
    last: Option<Ipv4Addr>,
    used: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let range = cidr.pod_range();
    let (first, end) = (*range.start(), *range.end());
    if range.is_empty() {
        return None;
    }
    let count = u64::from(end - first) + 1;
    // Start after the last address if it is in the range, else at the first.
    let start = match last.map(u32::from) {
        Some(l) if range.contains(&l) => u64::from(l - first) + 1,
        _ => 0,
    };
    (0..count)
        .map(|i| Ipv4Addr::from(first + ((start + i) % count) as u32))
        .find(|a| !used.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::{Arc, Barrier};

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn next_free_goes_round_robin_and_skips_reserved_addresses() {
        let pod = cidr("10.244.1.0/29"); // .2 to .6 for pods
        let mut used = BTreeSet::new();
        assert_eq!(next_free(pod, None, &used), Some(ip("10.244.1.2")));
        assert_eq!(
            next_free(pod, Some(ip("10.244.1.2")), &used),
            Some(ip("10.244.1.3"))
        );
        // After the end it wraps to the first pod address, not the gateway.
        assert_eq!(
            next_free(pod, Some(ip("10.244.1.6")), &used),
            Some(ip("10.244.1.2"))
        );
        // A last address outside the range (another CIDR before) starts over.
        assert_eq!(
            next_free(pod, Some(ip("10.0.0.9")), &used),
            Some(ip("10.244.1.2"))
        );
        used.extend([ip("10.244.1.4"), ip("10.244.1.5")]);
        assert_eq!(
            next_free(pod, Some(ip("10.244.1.3")), &used),
            Some(ip("10.244.1.6"))
        );
        used.extend([ip("10.244.1.2"), ip("10.244.1.3"), ip("10.244.1.6")]);
        assert_eq!(next_free(pod, Some(ip("10.244.1.3")), &used), None);
        assert_eq!(next_free(cidr("10.0.0.0/31"), None, &BTreeSet::new()), None);
        assert_eq!(
            next_free(cidr("10.0.0.0/30"), None, &BTreeSet::new()),
            Some(ip("10.0.0.2"))
        );
    }

    proptest! {
        #[test]
        fn next_free_is_free_and_in_range(
            prefix in 24u8..=30,
            last: Option<u32>,
            used in proptest::collection::btree_set(0u32..256, 0..256),
        ) {
            let pod = Cidr::new(ip("10.244.1.0"), prefix).unwrap();
            let used: BTreeSet<Ipv4Addr> =
                used.into_iter().map(|o| Ipv4Addr::from(u32::from(pod.network()) + o)).collect();
            match next_free(pod, last.map(Ipv4Addr::from), &used) {
                Some(address) => {
                    prop_assert!(pod.pod_range().contains(&u32::from(address)));
                    prop_assert!(!used.contains(&address));
                }
                None => prop_assert!(pod.pod_range().all(|a| used.contains(&Ipv4Addr::from(a)))),
            }
        }
    }

    #[test]
    fn allocate_is_idempotent_release_frees_and_exhaustion_names_the_cidr() {
        let root = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(root.path(), cidr("10.244.1.0/29")).unwrap();
        let a = ipam.allocate("pod-a eth0").unwrap();
        assert_eq!(a, ip("10.244.1.2"));
        assert_eq!(ipam.allocate("pod-a eth0").unwrap(), a);
        assert_eq!(ipam.lookup("pod-a eth0").unwrap(), Some(a));
        assert_eq!(ipam.lookup("pod-z eth0").unwrap(), None);
        let b = ipam.allocate("pod-b eth0").unwrap();
        assert_eq!(b, ip("10.244.1.3"));
        assert_eq!(ipam.release("pod-a eth0").unwrap(), Some(a));
        assert_eq!(ipam.release("pod-a eth0").unwrap(), None);
        // Round robin: the freed .2 is not the next one handed out.
        assert_eq!(ipam.allocate("pod-c eth0").unwrap(), ip("10.244.1.4"));
        for owner in ["pod-d eth0", "pod-e eth0", "pod-f eth0"] {
            ipam.allocate(owner).unwrap();
        }
        let err = ipam.allocate("pod-g eth0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no IP addresses available in pod CIDR 10.244.1.0/29: all 5 are in use"
        );
        // Another handle on the same directory (another process) sees the same allocations.
        let again = Ipam::open(root.path(), cidr("10.244.1.0/29")).unwrap();
        assert_eq!(again.allocations().unwrap().len(), 5);
        assert!(ipam.allocate("").is_err());
        assert!(ipam.allocate("two\nlines").is_err());
        assert!(ipam.allocate(&"x".repeat(81)).is_err());
        ipam.remove_all().unwrap();
        assert!(!ipam.dir().exists());
    }

    #[test]
    fn reclaim_after_a_crash_releases_what_no_live_owner_holds() {
        let root = tempfile::tempdir().unwrap();
        let pod = cidr("10.244.2.0/24");
        let ipam = Ipam::open(root.path(), pod).unwrap();
        let kept = ipam.allocate("live eth0").unwrap();
        let leaked = ipam.allocate("dead eth0").unwrap();
        // A crash mid-write leaves a temporary file; an unreadable owner is garbage.
        std::fs::write(ipam.dir().join(".10.244.2.9.tmp"), "half").unwrap();
        std::fs::write(ipam.dir().join("10.244.2.50"), [0xff, 0xfe]).unwrap();
        std::fs::write(ipam.dir().join("not-an-address"), "x").unwrap();
        // Simulate the crash: the handle is dropped without releasing.
        drop(ipam);
        let ipam = Ipam::open(root.path(), pod).unwrap();
        let reclaimed = ipam.reclaim(|owner| owner == "live eth0").unwrap();
        let reclaimed: Vec<Ipv4Addr> = reclaimed.into_iter().map(|(a, _)| a).collect();
        assert_eq!(reclaimed, vec![leaked, ip("10.244.2.50")]);
        let left: Vec<Ipv4Addr> = ipam.allocations().unwrap().into_keys().collect();
        assert_eq!(left, vec![kept]);
    }

    #[test]
    fn owner_files_are_escaped_names() {
        assert_eq!(owner_file("6f1c-2d3e eth0"), "owner-6f1c-2d3e%20eth0");
        assert_eq!(owner_file("a/../b"), "owner-a%2F..%2Fb");
        assert_eq!(owner_file("é"), "owner-%C3%A9");
        let longest = owner_file(&"\u{7f}".repeat(MAX_OWNER));
        assert!(longest.len() <= 255, "{}", longest.len());
    }

    /// A crash between the writes of an allocation or a release leaves an owner file that
    /// points to an address the owner does not hold: it counts for nothing, and reclaim
    /// removes it.
    #[test]
    fn owner_files_left_by_a_crash_count_for_nothing() {
        let root = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(root.path(), cidr("10.244.4.0/29")).unwrap();
        // Points to an address with no file (the crash came before it was written).
        std::fs::write(ipam.dir().join(owner_file("a eth0")), "10.244.4.2").unwrap();
        // Points to an address another owner holds (released, crash, handed out again).
        let b = ipam.allocate("b eth0").unwrap();
        std::fs::write(ipam.dir().join(owner_file("c eth0")), b.to_string()).unwrap();
        std::fs::write(ipam.dir().join(owner_file("d eth0")), "garbage").unwrap();
        assert_eq!(ipam.release("a eth0").unwrap(), None);
        assert_eq!(ipam.release("c eth0").unwrap(), None);
        assert_eq!(ipam.allocations().unwrap().len(), 1, "b keeps its address");
        let c = ipam.allocate("c eth0").unwrap();
        assert_ne!(c, b);
        assert_eq!(ipam.allocate("c eth0").unwrap(), c);
        assert!(ipam
            .reclaim(|o| o == "b eth0" || o == "c eth0")
            .unwrap()
            .is_empty());
        let mut names = ipam.names().unwrap();
        names.sort();
        assert_eq!(
            names,
            [
                b.to_string(),
                c.to_string(),
                LAST_FILE.to_string(),
                LOCK_FILE.to_string(),
                owner_file("b eth0"),
                owner_file("c eth0"),
            ]
        );
    }

    /// Threads, each with its own handle and lock file descriptor as separate processes have,
    /// allocate at once: every owner gets an address and no address goes to two owners.
    #[test]
    fn concurrent_allocations_never_share_an_address() {
        let root = tempfile::tempdir().unwrap();
        let pod = cidr("10.244.3.0/25"); // 125 pod addresses
        let threads = 8;
        let per_thread = 15;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let root = root.path().to_path_buf();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let ipam = Ipam::open(&root, pod).unwrap();
                    barrier.wait();
                    (0..per_thread)
                        .map(|i| {
                            let owner = format!("pod-{t}-{i} eth0");
                            // Twice: the second call must give the same address.
                            let first = ipam.allocate(&owner).unwrap();
                            assert_eq!(ipam.allocate(&owner).unwrap(), first);
                            (owner, first)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut owners_by_address = BTreeMap::new();
        for handle in handles {
            for (owner, address) in handle.join().unwrap() {
                assert!(pod.pod_range().contains(&u32::from(address)));
                if let Some(other) = owners_by_address.insert(address, owner.clone()) {
                    panic!("{address} was handed to {other} and to {owner}");
                }
            }
        }
        assert_eq!(owners_by_address.len(), threads * per_thread);
        let on_disk = Ipam::open(root.path(), pod).unwrap().allocations().unwrap();
        assert_eq!(on_disk, owners_by_address);
    }
}
