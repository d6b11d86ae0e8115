//! The one policy for poisoned locks.
//!
//! A `std::sync::Mutex` is poisoned when a thread panicked while holding
//! it. Every such lock in this program guards plain data that each holder
//! changes in one step (a map insert, a field assignment), never through
//! an invariant spread over several steps, so the data a panicking holder
//! left is still whole: the lock is taken anyway and the program goes on.
//! A panic is already logged where it happened (and a background loop
//! that panicked is restarted); refusing every later request over it
//! would turn one bad request into an outage.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, recovering the data from a poisoned lock (see the module).
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_gives_its_data() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let mut g = m2.lock().unwrap();
            *g = 2;
            panic!("deliberate");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*lock(&m), 2);
    }
}
