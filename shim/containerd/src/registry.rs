//! Which containers the process holds, and the decision to exit.
//!
//! One process serves every container of a containerd namespace, so "may I exit?" must be
//! answered atomically against new arrivals: a `start` action that found this process reserves a
//! slot (through `Connect` with a reservation id) before it hands our address to containerd, a
//! `create` in progress holds its id, and `Shutdown` exits only when the registry holds no
//! container, no creation and no live reservation. Once the exit is decided, reservations fail,
//! so the `start` action spawns a fresh process instead of handing out a dying one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::container::Container;

/// `Connect` ids with this prefix are reservations from our own `start` action, not task ids.
pub const RESERVATION_PREFIX: &str = "feather.reserve/";
/// How long a reservation holds the process open waiting for containerd's `Create`.
pub const RESERVATION_TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Inner {
    containers: HashMap<String, Arc<Container>>,
    creating: HashSet<String>,
    reservations: HashMap<String, Instant>,
    exiting: bool,
}

#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("the shim process is exiting; containerd must start a new one")]
    Exiting,
    #[error("container {0} already exists in this shim")]
    Exists(String),
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section below is a handful of map operations that cannot panic midway.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the process alive for container `id`, whose `start` action found this process.
    pub fn reserve(&self, id: &str) -> Result<(), RegistryError> {
        let mut inner = self.lock();
        if inner.exiting {
            return Err(RegistryError::Exiting);
        }
        inner.reservations.insert(id.to_string(), Instant::now());
        Ok(())
    }

    /// Marks `id` as being created (loading its wasm can take a while).
    pub fn begin_create(&self, id: &str) -> Result<(), RegistryError> {
        let mut inner = self.lock();
        if inner.exiting {
            return Err(RegistryError::Exiting);
        }
        if inner.containers.contains_key(id) || !inner.creating.insert(id.to_string()) {
            return Err(RegistryError::Exists(id.to_string()));
        }
        inner.reservations.remove(id);
        Ok(())
    }

    /// Ends a creation: the container is registered on success, forgotten on failure.
    pub fn finish_create(&self, id: &str, container: Option<Arc<Container>>) {
        let mut inner = self.lock();
        inner.creating.remove(id);
        if let Some(container) = container {
            inner.containers.insert(id.to_string(), container);
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Container>> {
        self.lock().containers.get(id).cloned()
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Container>> {
        self.lock().containers.remove(id)
    }

    pub fn all(&self) -> Vec<Arc<Container>> {
        self.lock().containers.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().containers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decides to exit if nothing is held; once it returns true, the decision is final.
    pub fn try_begin_exit(&self) -> bool {
        let mut inner = self.lock();
        if inner.exiting {
            return true;
        }
        inner
            .reservations
            .retain(|_, at| at.elapsed() < RESERVATION_TTL);
        if inner.containers.is_empty() && inner.creating.is_empty() && inner.reservations.is_empty()
        {
            inner.exiting = true;
        }
        inner.exiting
    }

    pub fn is_exiting(&self) -> bool {
        self.lock().exiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_holds_the_process_until_create_finishes() {
        let registry = Registry::default();
        registry.reserve("a").expect("reserve");
        assert!(!registry.try_begin_exit(), "reserved: must not exit");
        registry.begin_create("a").expect("create");
        assert!(!registry.try_begin_exit(), "creating: must not exit");
        registry.finish_create("a", None);
        assert!(registry.try_begin_exit(), "nothing held: exits");
    }

    #[test]
    fn after_the_exit_decision_nothing_new_is_accepted() {
        let registry = Registry::default();
        assert!(registry.try_begin_exit());
        assert_eq!(registry.reserve("b"), Err(RegistryError::Exiting));
        assert_eq!(registry.begin_create("b"), Err(RegistryError::Exiting));
    }

    #[test]
    fn duplicate_creates_are_refused() {
        let registry = Registry::default();
        registry.begin_create("c").expect("first");
        assert_eq!(
            registry.begin_create("c"),
            Err(RegistryError::Exists("c".into()))
        );
    }
}
