//! A store of named JSON records under one barrier prefix, cached in memory: the shape that
//! groups and certificate roles share (`LIST`, `GET`, create/update, `DELETE` by name).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::barrier::{View, ViewBatch};
use crate::request::list_response;
use crate::{CoreError, Operation, Request, Response};

pub(crate) struct Named<T> {
    view: View,
    cache: RwLock<HashMap<String, T>>,
    writes: Mutex<()>,
}

impl<T> std::fmt::Debug for Named<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Named")
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned + Clone> Named<T> {
    pub(crate) fn new(view: View) -> Self {
        Named {
            view,
            cache: RwLock::new(HashMap::new()),
            writes: Mutex::new(()),
        }
    }

    /// Loads every stored record (at unseal).
    pub(crate) fn load_all(&self) -> Result<(), CoreError> {
        let mut map = HashMap::new();
        for name in self.view.list("")? {
            let entry = self.view.get(&name)?.ok_or(CoreError::Integrity)?;
            let value = serde_json::from_slice(&entry.plain).map_err(|_| CoreError::Integrity)?;
            map.insert(name, value);
        }
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = map;
        Ok(())
    }

    pub(crate) fn exists(&self, name: &str) -> bool {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<T> {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Every record, sorted by name.
    pub(crate) fn all(&self) -> Vec<(String, T)> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<(String, T)> = cache.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Serializes read-modify-write sequences.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `value` under `name` (hold [`Named::lock`] around a read-modify-write).
    pub(crate) fn put(&self, name: &str, value: &T) -> Result<(), CoreError> {
        let mut batch = ViewBatch::default();
        batch.put(name, serde_json::to_vec(value).expect("record serializes"));
        self.view.apply(batch)?;
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), value.clone());
        Ok(())
    }

    pub(crate) fn remove(&self, name: &str) -> Result<(), CoreError> {
        let _guard = self.lock();
        let mut batch = ViewBatch::default();
        batch.delete(name);
        self.view.apply(batch)?;
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        Ok(())
    }

    /// The usual API below the store's path: `LIST` of names, `GET` a record, create/update
    /// through `write`, `DELETE`.
    pub(crate) fn handle(
        &self,
        req: &Request,
        rest: &str,
        write: impl FnOnce(&str, Value) -> Result<T, CoreError>,
    ) -> Result<Response, CoreError> {
        let to_json = |v: &T| serde_json::to_value(v).expect("record serializes");
        match (req.operation, rest) {
            (Operation::List, "") => list_response(self.view.list_children("")?),
            (_, "") => Err(CoreError::UnsupportedOperation),
            (Operation::Read, name) => self
                .get(name)
                .map(|v| Response::data(to_json(&v)))
                .ok_or_else(|| CoreError::NotFound(String::new())),
            (Operation::Create | Operation::Update, name) => {
                let input = req.data.clone().unwrap_or_else(|| json!({}));
                Ok(Response::data(to_json(&write(name, input)?)))
            }
            (Operation::Delete, name) => {
                self.remove(name)?;
                Ok(Response::no_content())
            }
            _ => Err(CoreError::UnsupportedOperation),
        }
    }
}
