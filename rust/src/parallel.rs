//! Thread control for the core: every parallel op runs inside a rayon pool of
//! a size the caller chooses (Python passes `torch.get_num_threads()` or the
//! `AUTOTIMM_NUM_THREADS` override). Pools are built once per size and reused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::ThreadPool;

fn pools() -> &'static Mutex<HashMap<usize, Arc<ThreadPool>>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<ThreadPool>>>> = OnceLock::new();
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
        match map.get(&num_threads) {
            Some(pool) => Some(Arc::clone(pool)),
            None => rayon::ThreadPoolBuilder::new()
                .num_threads(num_threads)
                .build()
                .ok()
                .map(|pool| {
                    let pool = Arc::new(pool);
                    map.insert(num_threads, Arc::clone(&pool));
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
