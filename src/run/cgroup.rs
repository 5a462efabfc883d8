//! The memory this process may still take under its control groups' limits.
//!
//! A container, a Slurm job or `systemd-run -p MemoryMax=` limits a process
//! through the cgroup it runs in, not through `/proc/meminfo`: the kernel's
//! OOM killer ends the process at the tightest limit of its cgroup and every
//! ancestor, whatever the machine has free. [`room`] finds that cgroup from
//! `/proc/self/cgroup` on both hierarchies:
//!
//! - **v2** (`0::/path`): `memory.max` (`max`: no limit) and `memory.current`
//!   of `/sys/fs/cgroup/path` (or `/sys/fs/cgroup/unified/path` on a hybrid
//!   machine) and of each ancestor;
//! - **v1** (`N:memory:/path`): `memory.limit_in_bytes` and
//!   `memory.usage_in_bytes` of `/sys/fs/cgroup/memory/path` and each
//!   ancestor (a limit of 2⁶² bytes or more is the kernel's "no limit").
//!
//! Where the cgroup's own folder is not under the mount (a cgroup namespace
//! mounts the process's own cgroup at the root), the mount's root is read.
//! The usage counts page cache the kernel would reclaim before it kills
//! anything, so the file cache not recently used (`inactive_file` of
//! `memory.stat`; `total_inactive_file` on v1) is taken off it: the working
//! set that Docker and cAdvisor report. Swap adds the machine's free swap,
//! capped by the cgroup's swap limit (`memory.swap.max`; v1: the memory and
//! swap limit `memory.memsw.limit_in_bytes`), where one is set.

use std::path::{Path, PathBuf};

/// A v1 limit at or above this many bytes means "no limit" (the kernel
/// writes `PAGE_COUNTER_MAX` pages, 2⁶³ bytes rounded down to a page).
const V1_UNLIMITED: u64 = 1 << 62;

/// The room, in bytes, left under the tightest memory limit of this
/// process's cgroups, with the machine's free swap `swap_free` where the
/// cgroup lets it swap (`None`: no limit found, or not Linux).
pub fn room(swap_free: u64) -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    room_in(Path::new("/sys/fs/cgroup"), &membership, swap_free)
}

/// [`room`] for the cgroup mount `mount` and the contents of
/// `/proc/self/cgroup` `membership`.
pub fn room_in(mount: &Path, membership: &str, swap_free: u64) -> Option<u64> {
    let mut rooms = Vec::new();
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if controllers.is_empty() {
            let unified = [mount.to_path_buf(), mount.join("unified")]
                .into_iter()
                .find(|base| base.join("cgroup.controllers").is_file());
            if let Some(base) = unified {
                rooms.extend(tightest(&base, path, &|dir| v2_room(dir, swap_free)));
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            rooms.extend(tightest(&mount.join("memory"), path, &|dir| v1_room(dir, swap_free)));
        }
    }
    rooms.into_iter().min()
}

/// The smallest `room(dir)` from the cgroup folder `base/path` up to `base`.
fn tightest(base: &Path, path: &str, room: &dyn Fn(&Path) -> Option<u64>) -> Option<u64> {
    let mut dir: PathBuf = base.join(path.trim_start_matches('/'));
    if !dir.is_dir() {
        dir = base.to_path_buf();
    }
    let mut best: Option<u64> = None;
    loop {
        if let Some(r) = room(&dir) {
            best = Some(best.map_or(r, |b| b.min(r)));
        }
        if dir == base || !dir.pop() || !dir.starts_with(base) {
            return best;
        }
    }
}

/// A cgroup v2 folder's room: `memory.max − (memory.current −
/// inactive_file)`, plus the swap it may still take (`None` without a limit).
fn v2_room(dir: &Path, swap_free: u64) -> Option<u64> {
    let max = number(&dir.join("memory.max"))?; // "max": no limit
    let current = number(&dir.join("memory.current"))?;
    let inactive = stat(&dir.join("memory.stat"), "inactive_file").unwrap_or(0);
    let swap = match number(&dir.join("memory.swap.max")) {
        Some(limit) => limit.saturating_sub(number(&dir.join("memory.swap.current")).unwrap_or(0)),
        None => swap_free, // "max", or no swap accounting
    };
    let memory = max.saturating_sub(current.saturating_sub(inactive));
    Some(memory.saturating_add(swap.min(swap_free)))
}

/// A cgroup v1 folder's room: `limit_in_bytes − (usage_in_bytes −
/// total_inactive_file)` plus the free swap, capped by what the memory and
/// swap limit leaves (`None` without a limit).
fn v1_room(dir: &Path, swap_free: u64) -> Option<u64> {
    let limited = |file: &str| number(&dir.join(file)).filter(|&l| l < V1_UNLIMITED);
    let limit = limited("memory.limit_in_bytes")?;
    let usage = number(&dir.join("memory.usage_in_bytes"))?;
    let stat_file = dir.join("memory.stat");
    let inactive = stat(&stat_file, "total_inactive_file")
        .or_else(|| stat(&stat_file, "inactive_file"))
        .unwrap_or(0);
    let memory = limit.saturating_sub(usage.saturating_sub(inactive));
    let with_swap = memory.saturating_add(swap_free);
    Some(match limited("memory.memsw.limit_in_bytes") {
        Some(both) => {
            let used = number(&dir.join("memory.memsw.usage_in_bytes")).unwrap_or(usage);
            with_swap.min(both.saturating_sub(used.saturating_sub(inactive)))
        }
        None => with_swap,
    })
}

/// The number a cgroup file holds (`None`: missing, `max`, or not a number).
fn number(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// The value of `key` in a `memory.stat` file.
fn stat(file: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn write(dir: &Path, files: &[(&str, String)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    /// A v2 tree: the job's cgroup has no limit of its own, its parent 8 GiB
    /// with 3 GiB used of which 1 GiB is inactive file cache.
    #[test]
    fn v2_takes_the_tightest_ancestor_and_leaves_out_inactive_cache() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), &[("cgroup.controllers", "memory".into())]);
        let parent = root.path().join("slurm/job_7");
        write(
            &parent,
            &[
                ("memory.max", format!("{}\n", 8 * GIB)),
                ("memory.current", format!("{}\n", 3 * GIB)),
                ("memory.stat", format!("anon 1\ninactive_file {}\nactive_file 5\n", GIB)),
            ],
        );
        write(
            &parent.join("step_0"),
            &[("memory.max", "max\n".into()), ("memory.current", "100\n".into())],
        );
        let room = room_in(root.path(), "0::/slurm/job_7/step_0\n", 0);
        assert_eq!(room, Some(8 * GIB - (3 * GIB - GIB)));
    }

    /// v1 as on a Docker host without a cgroup namespace: the memory
    /// controller's line names the folder; the kernel's huge value at the
    /// root means no limit there.
    #[test]
    fn v1_reads_the_memory_controller_folder() {
        let root = tempfile::tempdir().unwrap();
        let memory = root.path().join("memory");
        write(
            &memory,
            &[
                ("memory.limit_in_bytes", "9223372036854771712\n".into()),
                ("memory.usage_in_bytes", format!("{}\n", 20 * GIB)),
            ],
        );
        write(
            &memory.join("docker/abc"),
            &[
                ("memory.limit_in_bytes", format!("{}\n", 4 * GIB)),
                ("memory.usage_in_bytes", format!("{}\n", 2 * GIB)),
                (
                    "memory.stat",
                    format!("inactive_file 7\ntotal_inactive_file {}\n", GIB / 2),
                ),
            ],
        );
        let membership = "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n";
        assert_eq!(room_in(root.path(), membership, 0), Some(4 * GIB - (2 * GIB - GIB / 2)));
    }

    /// Inside a cgroup namespace the process's own cgroup is the mount's
    /// root, whatever path the membership names; no limit anywhere is `None`.
    #[test]
    fn a_namespaced_cgroup_is_read_at_the_mount_root() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            &[
                ("cgroup.controllers", "memory".into()),
                ("memory.max", format!("{}\n", 2 * GIB)),
                ("memory.current", format!("{}\n", GIB)),
            ],
        );
        assert_eq!(room_in(root.path(), "0::/user.slice/x.scope\n", 0), Some(GIB));
        let unlimited = tempfile::tempdir().unwrap();
        write(
            unlimited.path(),
            &[("cgroup.controllers", "memory".into()), ("memory.max", "max\n".into())],
        );
        assert_eq!(room_in(unlimited.path(), "0::/\n", 0), None);
        assert_eq!(room_in(unlimited.path(), "garbage\n", 0), None);
    }

    /// Usage above the limit (the kernel reclaims to it) leaves no room
    /// instead of wrapping.
    #[test]
    fn usage_over_the_limit_leaves_zero() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            &[
                ("cgroup.controllers", String::new()),
                ("memory.max", "100\n".into()),
                ("memory.current", "250\n".into()),
            ],
        );
        assert_eq!(room_in(root.path(), "0::/\n", 0), Some(0));
    }

    /// Swap counts up to the machine's free swap and the cgroup's swap
    /// limit (v2), or the memory and swap limit (v1).
    #[test]
    fn swap_adds_up_to_the_cgroup_swap_limit() {
        let v2 = tempfile::tempdir().unwrap();
        let files = |swap_max: &str| {
            vec![
                ("cgroup.controllers", String::new()),
                ("memory.max", format!("{}\n", 4 * GIB)),
                ("memory.current", format!("{}\n", GIB)),
                ("memory.swap.max", swap_max.to_string()),
                ("memory.swap.current", format!("{}\n", GIB)),
            ]
        };
        write(v2.path(), &files(&format!("{}\n", 2 * GIB)));
        assert_eq!(room_in(v2.path(), "0::/\n", 10 * GIB), Some(3 * GIB + GIB));
        assert_eq!(room_in(v2.path(), "0::/\n", GIB / 2), Some(3 * GIB + GIB / 2));
        write(v2.path(), &files("max\n"));
        assert_eq!(room_in(v2.path(), "0::/\n", 10 * GIB), Some(13 * GIB));
        let v1 = tempfile::tempdir().unwrap();
        write(
            &v1.path().join("memory"),
            &[
                ("memory.limit_in_bytes", format!("{}\n", 4 * GIB)),
                ("memory.usage_in_bytes", format!("{}\n", GIB)),
                ("memory.memsw.limit_in_bytes", format!("{}\n", 5 * GIB)),
                ("memory.memsw.usage_in_bytes", format!("{}\n", GIB)),
            ],
        );
        assert_eq!(room_in(v1.path(), "4:memory:/\n", 10 * GIB), Some(4 * GIB));
        assert_eq!(room_in(v1.path(), "4:memory:/\n", 0), Some(3 * GIB));
    }
}
