//! A live inventory: pods and namespaces watched on a Kubernetes API server with `kube`'s
//! reflectors (list, then watch from the list's `resourceVersion`, with bookmarks; a relist
//! after `410 Gone`; reconnects with backoff), mapped to an [`Import`] after every change.
//!
//! Tested only against recorded list-and-watch exchanges served on loopback
//! (`tests/watch.rs`), never against a real API server.

use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::Import;
use crate::kubernetes::Objects;

/// A running watch: the latest [`Import`], replaced after every change the API server
/// reports. Dropping it stops the watch.
#[derive(Debug)]
pub struct Watch {
    current: watch::Receiver<Arc<Import>>,
    errors: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Watch {
    /// Watches with the client `kube` infers: `$KUBECONFIG` or `~/.kube/config`, else the
    /// in-cluster service account.
    pub async fn infer() -> Result<Watch, kube::Error> {
        Ok(Watch::start(Client::try_default().await?))
    }

    /// Watches every namespace's pods, and the namespaces, through `client`. The first
    /// import is published once both initial lists have arrived, so no one sees a partial
    /// cluster. Call it within a Tokio runtime: the watch runs as tasks on it.
    pub fn start(client: Client) -> Watch {
        let notify = Arc::new(Notify::new());
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (pods, pod_task) = reflect::<Pod>(&client, &notify, &errors);
        let (namespaces, ns_task) = reflect::<Namespace>(&client, &notify, &errors);
        let (tx, rx) = watch::channel(Arc::new(Import::default()));
        let rebuild = tokio::spawn(async move {
            if pods.wait_until_ready().await.is_err()
                || namespaces.wait_until_ready().await.is_err()
            {
                return;
            }
            loop {
                let import = import_of(&pods, &namespaces);
                if tx.send(Arc::new(import)).is_err() {
                    return;
                }
                // Changes that arrive while mapping leave one permit: one more rebuild.
                notify.notified().await;
            }
        });
        Watch {
            current: rx,
            errors,
            tasks: vec![pod_task, ns_task, rebuild],
        }
    }

    /// The latest import (empty until both initial lists have arrived).
    pub fn current(&self) -> Arc<Import> {
        self.current.borrow().clone()
    }

    /// Waits for the next import; `None` once the watch has stopped.
    pub async fn changed(&mut self) -> Option<Arc<Import>> {
        self.current.changed().await.ok()?;
        Some(self.current.borrow_and_update().clone())
    }

    /// A receiver of every new import, for a server that hands them on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Import>> {
        self.current.clone()
    }

    /// Every error the watch streams reported so far (each followed by a retry with backoff,
    /// or a relist), oldest first.
    pub fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn reflect<K>(
    client: &Client,
    notify: &Arc<Notify>,
    errors: &Arc<Mutex<Vec<String>>>,
) -> (Store<K>, JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let stream = watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let notify = notify.clone();
    let errors = errors.clone();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => notify.notify_one(),
                Err(e) => errors
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(format!("{} watch: {e}", K::kind(&()))),
            }
        }
    });
    (reader, task)
}

fn import_of(pods: &Store<Pod>, namespaces: &Store<Namespace>) -> Import {
    let mut objects = Objects {
        pods: pods.state(),
        namespaces: namespaces.state(),
        ..Objects::default()
    };
    // Store order is a hash map's: sort for a stable inventory.
    objects
        .pods
        .sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
    objects.namespaces.sort_by_key(|n| n.metadata.name.clone());
    objects.counts.insert("Pod".into(), objects.pods.len());
    objects
        .counts
        .insert("Namespace".into(), objects.namespaces.len());
    objects.import()
}
