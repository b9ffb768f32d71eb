//! Thread control for the core: every parallel op runs inside a rayon pool of
//! a size the caller chooses (Python passes `torch.get_num_threads()` or the
//! `AUTOTIMM_NUM_THREADS` override). Pools are built once per size and reused.
//! A forked child (a DataLoader worker) inherits the parent's pools without
//! their threads, so pools are keyed by process id and rebuilt after a fork.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::ThreadPool;

type Pools = HashMap<(u32, usize), Arc<ThreadPool>>;

fn pools() -> &'static Mutex<Pools> {
    static POOLS: OnceLock<Mutex<Pools>> = OnceLock::new();
    POOLS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Runs `work` with at most `num_threads` rayon workers (0 = rayon's default).
/// Falls back to the global pool if a dedicated pool cannot be built.
pub fn with_threads<T: Send>(num_threads: usize, work: impl FnOnce() -> T + Send) -> T {
    if num_threads == 0 {
        return work();
    }
    let pool = {
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
        let key = (pid, num_threads);
        match map.get(&key) {
            Some(pool) => Some(Arc::clone(pool)),
            None => rayon::ThreadPoolBuilder::new()
                .num_threads(num_threads)
                .build()
                .ok()
                .map(|pool| {
                    let pool = Arc::new(pool);
                    map.insert(key, Arc::clone(&pool));
                    pool
                }),
        }
    };
    match pool {
        Some(pool) => pool.install(work),
        None => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_the_number_of_workers() {
        assert_eq!(with_threads(1, rayon::current_num_threads), 1);
        assert_eq!(with_threads(2, rayon::current_num_threads), 2);
        assert_eq!(with_threads(1, || 7), 7);
    }
}
