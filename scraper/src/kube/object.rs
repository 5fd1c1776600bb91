//! A watched object as the watch loops read it: its JSON, pruned to what the pipeline reads, and
//! its key.

use std::borrow::Cow;
use std::sync::OnceLock;

use ::kube::api::{ApiResource, ObjectMeta};
use ::kube::core::{DynamicResourceScope, Resource};
use serde::de::{DeserializeSeed as _, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::objects::ObjectKey;
use crate::objects::keep::{Keep, Pruning};

/// An object as kube-runtime's watcher hands it over: its JSON text, read only once the watch
/// knows what to keep of it ([`WatchedKind::json`]), and the few fields of its metadata the
/// watcher (`resourceVersion` of a watch event) and a deletion (name, namespace, uid) need, read
/// from the text the first time they are asked for: the items of a list never are.
///
/// kube's `DynamicObject` reads every object whole, twice over (its flattened fields are
/// buffered, then read again as a `Value` and a typed `ObjectMeta`), which the watch then turned
/// into one more `Value` and pruned: a third of Periscope's CPU at a start (`bench/`). Keeping
/// the text costs one copy of it; the fields no entry reads are then only scanned.
#[derive(Debug, Clone)]
pub(crate) struct RawObject {
    metadata: OnceLock<ObjectMeta>,
    json: Box<RawValue>,
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = Box::<RawValue>::deserialize(deserializer)?;
        if !json.get().starts_with('{') {
            return Err(D::Error::custom("an object that is not a JSON object"));
        }
        Ok(RawObject {
            metadata: OnceLock::new(),
            json,
        })
    }
}

impl RawObject {
    /// The metadata the watcher and deletions read; what the text does not hold (or holds wrong)
    /// is left unset.
    fn read_metadata(&self) -> ObjectMeta {
        /// What is read of the metadata; the rest of the text is only scanned.
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            metadata: Meta,
        }
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase")]
        struct Meta {
            name: Option<String>,
            namespace: Option<String>,
            uid: Option<String>,
            resource_version: Option<String>,
        }
        let metadata = serde_json::from_str::<Head>(self.json.get())
            .map(|head| head.metadata)
            .unwrap_or_default();
        ObjectMeta {
            name: metadata.name,
            namespace: metadata.namespace,
            uid: metadata.uid,
            resource_version: metadata.resource_version,
            ..ObjectMeta::default()
        }
    }
}

/// As kube's `DynamicObject`: the kind is known at run time, from the [`ApiResource`].
impl Resource for RawObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(resource: &ApiResource) -> Cow<'_, str> {
        resource.group.as_str().into()
    }

    fn version(resource: &ApiResource) -> Cow<'_, str> {
        resource.version.as_str().into()
    }

    fn kind(resource: &ApiResource) -> Cow<'_, str> {
        resource.kind.as_str().into()
    }

    fn api_version(resource: &ApiResource) -> Cow<'_, str> {
        resource.api_version.as_str().into()
    }

    fn plural(resource: &ApiResource) -> Cow<'_, str> {
        resource.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        self.metadata.get_or_init(|| self.read_metadata())
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        if self.metadata.get().is_none() {
            self.metadata = OnceLock::from(self.read_metadata());
        }
        match self.metadata.get_mut() {
            Some(metadata) => metadata,
            None => unreachable!("the metadata was set just above"),
        }
    }
}

/// The apiVersion and kind a watch asked for: its objects come in that version.
#[derive(Debug, Clone)]
pub(crate) struct WatchedKind {
    /// `group/version`, or the version alone for the core group.
    pub(crate) api_version: String,
    /// The kind.
    pub(crate) kind: String,
}

/// Why a watched object cannot be read as JSON.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ObjectJsonError {
    /// It is not a JSON object.
    #[error("an object that is not a JSON object: {0}")]
    NotAnObject(Value),
    /// Its text is not JSON (the watcher checked it was when it took it in).
    #[error("cannot read an object as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl WatchedKind {
    /// The object as JSON with only what `keep` keeps, `apiVersion` and `kind` filled in (list
    /// items may lack them), and without the `data` and `stringData` of a Secret, whatever the
    /// config says.
    pub(crate) fn json(&self, object: &RawObject, keep: &Keep) -> Result<Value, ObjectJsonError> {
        let mut value = Pruning(keep)
            .deserialize(&mut serde_json::Deserializer::from_str(object.json.get()))?;
        let Value::Object(fields) = &mut value else {
            return Err(ObjectJsonError::NotAnObject(value));
        };
        if self.kind == "Secret" && self.api_version == "v1" {
            fields.remove("data");
            fields.remove("stringData");
        }
        for (field, watched) in [("apiVersion", &self.api_version), ("kind", &self.kind)] {
            let missing = fields.get(field).is_none_or(Value::is_null);
            if missing {
                fields.insert(field.to_owned(), watched.clone().into());
            }
        }
        Ok(value)
    }

    /// The key of a deleted object, from its metadata and the watch's apiVersion and kind; `None`
    /// if it has no name.
    pub(crate) fn key_of_deleted(&self, object: &RawObject) -> Option<ObjectKey> {
        let metadata = object.meta();
        ObjectKey::new(
            &self.api_version,
            &self.kind,
            metadata.namespace.as_deref().unwrap_or_default(),
            metadata.name.as_deref().unwrap_or_default(),
            metadata.uid.as_deref().unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn secrets() -> WatchedKind {
        WatchedKind {
            api_version: "v1".to_owned(),
            kind: "Secret".to_owned(),
        }
    }

    fn raw(text: &str) -> RawObject {
        serde_json::from_str(text).expect("an object")
    }

    #[test]
    fn an_object_without_type_fields_gets_the_watched_ones_and_a_secret_loses_its_data() {
        let secret = raw(
            r#"{"metadata": {"name": "s", "namespace": "apps", "uid": "u1",
            "resourceVersion": "7", "labels": {"a": "b"}},
            "type": "Opaque", "data": {"pw": "eA=="}, "stringData": {"x": "y"}}"#,
        );
        assert_eq!(secret.meta().resource_version.as_deref(), Some("7"));
        let key = secrets().key_of_deleted(&secret);
        let json = secrets().json(&secret, &Keep::everything()).unwrap();
        assert_eq!(
            json,
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s", "namespace": "apps", "uid": "u1", "resourceVersion": "7", "labels": {"a": "b"}},
                "type": "Opaque",
            })
        );
        assert_eq!(ObjectKey::of(&json), key);
        // Pruned: what the keep names, and the type fields the watch knows.
        let mut keep = Keep::default();
        keep.add(&["metadata", "name"]);
        assert_eq!(
            secrets().json(&secret, &keep).unwrap(),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})
        );
    }

    #[test]
    fn an_object_that_is_not_a_json_object_is_an_error() {
        for text in ["[1]", "3", "null", "\"x\""] {
            assert!(serde_json::from_str::<RawObject>(text).is_err(), "{text}");
        }
        // Metadata that is not a map reads as none: the object has no key.
        let odd = raw(r#"{"metadata": 3, "kind": "Secret"}"#);
        assert_eq!(odd.meta().name, None);
        assert_eq!(secrets().key_of_deleted(&odd), None);
    }
}
