//! Thread control for the core: the one rule for every parallel call.
//!
//! * Every parallel op runs inside a rayon pool owned by this module; rayon's
//!   global pool is never used (it cannot be rebuilt, so a forked child, a
//!   DataLoader worker say, would wait forever on threads that it does not
//!   have). A `par_iter` outside [`with_threads`] would use the global pool.
//! * `num_threads = 0` means the available cores, capped by the
//!   `AUTOTIMM_NUM_THREADS` environment variable when it holds a positive
//!   integer ([`resolve`]); a positive value is taken as given, up to
//!   [`MAX_THREADS`].
//! * Pools are built once per size and process, and keyed by process id: a
//!   forked child inherits the parent's pools without their threads, so it
//!   leaks them and builds its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::ThreadPool;

use crate::error::{Error, Result};

/// The environment variable that caps `num_threads = 0`.
pub const THREADS_ENV: &str = "AUTOTIMM_NUM_THREADS";

/// The largest pool a call may ask for.
pub const MAX_THREADS: usize = 1024;

type Pools = HashMap<(u32, usize), Arc<ThreadPool>>;

fn pools() -> &'static Mutex<Pools> {
    static POOLS: OnceLock<Mutex<Pools>> = OnceLock::new();
    POOLS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The worker count for a requested `num_threads` (0 = available cores capped
/// by `AUTOTIMM_NUM_THREADS`); always in `1..=MAX_THREADS`.
pub fn resolve(num_threads: usize) -> usize {
    if num_threads > 0 {
        return num_threads.min(MAX_THREADS);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cap = std::env::var(THREADS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&v| v > 0)
        .unwrap_or(usize::MAX);
    cores.min(cap).clamp(1, MAX_THREADS)
}

/// This process's pool of `size` workers, built on first use.
fn pool(size: usize) -> Result<Arc<ThreadPool>> {
    let mut map = match pools().lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    let pid = std::process::id();
    if map.keys().any(|&(owner, _)| owner != pid) {
        // Pools of the parent process: their threads do not exist here, and
        // dropping them could wait on those threads, so leak them.
        let inherited = std::mem::take(&mut *map);
        std::mem::forget(inherited);
    }
    if let Some(pool) = map.get(&(pid, size)) {
        return Ok(Arc::clone(pool));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(size)
        .thread_name(|i| format!("autotimm-{i}"))
        .build()
        .map_err(|e| Error::value("num_threads", format!("cannot start {size} threads: {e}")))?;
    let pool = Arc::new(pool);
    map.insert((pid, size), Arc::clone(&pool));
    Ok(pool)
}

/// Runs `work` in this process's pool of [`resolve`]`(num_threads)` workers.
///
/// # Errors
/// If the pool's threads cannot be started (names `num_threads`).
pub fn with_threads<T: Send>(num_threads: usize, work: impl FnOnce() -> T + Send) -> Result<T> {
    Ok(pool(resolve(num_threads))?.install(work))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_the_number_of_workers() {
        assert_eq!(with_threads(1, rayon::current_num_threads).unwrap(), 1);
        assert_eq!(with_threads(2, rayon::current_num_threads).unwrap(), 2);
        assert_eq!(with_threads(1, || 7).unwrap(), 7);
        assert_eq!(resolve(MAX_THREADS + 5), MAX_THREADS);
    }

    #[test]
    fn zero_means_the_available_cores() {
        let n = with_threads(0, rayon::current_num_threads).unwrap();
        assert!(n >= 1);
        assert!(n <= std::thread::available_parallelism().map_or(1, |n| n.get()));
    }
}
