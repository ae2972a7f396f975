//! Creations in watched directories, as they happen (inotify): each new name,
//! each file renamed in, each file closed after writing is queued for the
//! odd-name and archive checks of `file_odd_name`, which is woken at once
//! instead of waiting for its next walk. Directories are watched down to the
//! sensor's `max_depth`, new ones as they appear, up to `max_watches`; the
//! periodic walk stays, and covers whatever inotify could not (a full queue,
//! the watch limit, a directory filled before its watch was added).
//!
//! Symlinks are never followed.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::host::HostRoot;

/// Most paths queued between sweeps; past it the next sweep walks everything.
const MAX_QUEUED: usize = 50_000;

/// What the reader has seen since the last sweep.
#[derive(Default)]
pub struct Created {
    /// Host paths, with the depth of the directory they appeared in (1: a
    /// configured path).
    pub paths: VecDeque<(PathBuf, usize)>,
    /// Events were lost (the kernel's queue or ours overflowed): walk everything.
    pub overflowed: bool,
    /// Directories watched.
    pub watches: usize,
    /// Directories left unwatched because of the watch limit (or an error).
    pub unwatched: usize,
    /// Why the reader stopped, if it did.
    pub failed: Option<String>,
}

/// Where the reader stands.
struct Watcher {
    inotify: Inotify,
    root: HostRoot,
    dirs: HashMap<WatchDescriptor, (PathBuf, usize)>,
    max_depth: usize,
    max_watches: usize,
}

/// Creations, renames into, writes closed, and attribute changes (a `chmod +x`
/// after the download is what makes a dropped file an executable).
const MASK: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_ONLYDIR)
    .union(AddWatchFlags::IN_DONT_FOLLOW);

impl Watcher {
    /// Watches `dir` (read at `depth`) and the directories below it that the
    /// walk would read; what cannot be watched is counted in `unwatched`.
    fn watch_tree(&mut self, dir: &Path, depth: usize, queue: &Mutex<Created>) {
        if self.dirs.len() >= self.max_watches {
            bannin_proto::lock(queue).unwatched += 1;
            return;
        }
        match self.inotify.add_watch(&self.root.join(dir), MASK) {
            Ok(wd) => {
                self.dirs.insert(wd, (dir.to_path_buf(), depth));
                bannin_proto::lock(queue).watches = self.dirs.len();
            }
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => return,
            Err(error) => {
                tracing::debug!(dir = %dir.display(), %error, "Cannot watch a directory");
                bannin_proto::lock(queue).unwatched += 1;
                return;
            }
        }
        if depth >= self.max_depth {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self.root.join(dir)) else {
            return;
        };
        for entry in entries.flatten() {
            // DirEntry::file_type does not follow symlinks.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.watch_tree(&dir.join(entry.file_name()), depth + 1, queue);
            }
        }
    }
}

/// Starts watching `paths` (host paths under `root`) in a reader thread that
/// queues what appears in `queue` and notifies `wake`.
pub fn start(
    root: HostRoot,
    paths: Vec<PathBuf>,
    max_depth: usize,
    max_watches: usize,
    queue: Arc<Mutex<Created>>,
    wake: Arc<tokio::sync::Notify>,
) -> Result<(), String> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC)
        .map_err(|e| format!("inotify unavailable ({e}): creations are seen at each walk only"))?;
    let mut watcher = Watcher {
        inotify,
        root,
        dirs: HashMap::new(),
        max_depth,
        max_watches,
    };
    std::thread::Builder::new()
        .name("bannin-inotify".into())
        .spawn(move || {
            for p in &paths {
                watcher.watch_tree(p, 1, &queue);
            }
            read_loop(&mut watcher, &queue, &wake);
        })
        .map_err(|e| format!("cannot start the inotify reader: {e}"))?;
    Ok(())
}

fn read_loop(w: &mut Watcher, queue: &Mutex<Created>, wake: &tokio::sync::Notify) {
    loop {
        let events = match w.inotify.read_events() {
            Ok(events) => events,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(error) => {
                tracing::error!(%error, "inotify read failed; creations are seen at each walk only");
                bannin_proto::lock(queue).failed = Some(format!("inotify failed: {error}"));
                return;
            }
        };
        let mut new_dirs = Vec::new();
        {
            let mut q = bannin_proto::lock(queue);
            for e in events {
                if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    q.overflowed = true;
                    continue;
                }
                if e.mask.contains(AddWatchFlags::IN_IGNORED) {
                    w.dirs.remove(&e.wd);
                    q.watches = w.dirs.len();
                    continue;
                }
                let (Some(name), Some((dir, depth))) = (e.name, w.dirs.get(&e.wd)) else {
                    continue;
                };
                let path = dir.join(name);
                if e.mask.contains(AddWatchFlags::IN_ISDIR) && *depth < w.max_depth {
                    new_dirs.push((path.clone(), depth + 1));
                }
                if q.paths.len() < MAX_QUEUED {
                    q.paths.push_back((path, *depth));
                } else {
                    q.overflowed = true;
                }
            }
        }
        // Outside the lock: a new tree may take a while to watch.
        for (dir, depth) in new_dirs {
            w.watch_tree(&dir, depth, queue);
        }
        wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_for(queue: &Mutex<Created>, what: impl Fn(&Created) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if what(&bannin_proto::lock(queue)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn creations_below_the_watched_paths_are_queued_with_their_depth() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("w/old")).expect("dirs");
        let queue = Arc::new(Mutex::new(Created::default()));
        let wake = Arc::new(tokio::sync::Notify::new());
        start(
            HostRoot(dir.path().to_path_buf()),
            vec![PathBuf::from("/w")],
            3,
            100,
            queue.clone(),
            wake,
        )
        .expect("inotify");
        assert!(
            wait_for(&queue, |q| q.watches == 2),
            "both directories watched"
        );
        std::fs::write(dir.path().join("w/old/a.bin"), b"data").expect("write");
        std::fs::create_dir(dir.path().join("w/new")).expect("mkdir");
        assert!(
            wait_for(&queue, |q| q.watches == 3),
            "the new directory is watched"
        );
        std::fs::write(dir.path().join("w/new/b"), b"x").expect("write");
        assert!(wait_for(&queue, |q| q
            .paths
            .iter()
            .any(|(p, _)| p == Path::new("/w/new/b"))));
        let q = bannin_proto::lock(&queue);
        assert!(q.paths.contains(&(PathBuf::from("/w/old/a.bin"), 2)));
        assert!(q.paths.contains(&(PathBuf::from("/w/new"), 1)));
        assert!(q.paths.contains(&(PathBuf::from("/w/new/b"), 2)));
        assert!(!q.overflowed && q.unwatched == 0);
    }

    #[test]
    fn the_watch_limit_is_counted_not_exceeded() {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["w/a", "w/b", "w/c"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("dirs");
        }
        let queue = Arc::new(Mutex::new(Created::default()));
        start(
            HostRoot(dir.path().to_path_buf()),
            vec![PathBuf::from("/w")],
            3,
            2,
            queue.clone(),
            Arc::new(tokio::sync::Notify::new()),
        )
        .expect("inotify");
        assert!(wait_for(&queue, |q| q.watches == 2 && q.unwatched == 2));
    }
}
