//! A watched object as the watch loops read it: its JSON, and its key.

use ::kube::api::DynamicObject;
use serde_json::Value;

use crate::objects::ObjectKey;

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
    /// Its fields are not a JSON object.
    #[error("an object that is not a JSON object: {0}")]
    NotAnObject(Value),
    /// Its metadata does not serialize.
    #[error("cannot read an object's metadata as JSON: {0}")]
    Metadata(serde_json::Error),
}

impl WatchedKind {
    /// The object as JSON, with `apiVersion` and `kind` filled in (list items may lack them), and
    /// without the `data` and `stringData` of a Secret, whatever the config says.
    ///
    /// The object is taken apart rather than serialized whole: everything but its metadata is
    /// JSON already, and copying it once more was a sixth of Periscope's CPU time under a stream
    /// of updates (`bench/`). The result is the same as `serde_json::to_value(object)`.
    pub(crate) fn json(&self, object: DynamicObject) -> Result<Value, ObjectJsonError> {
        let DynamicObject {
            types,
            metadata,
            data,
        } = object;
        let mut fields = match data {
            Value::Object(fields) => fields,
            Value::Null => serde_json::Map::new(),
            other => return Err(ObjectJsonError::NotAnObject(other)),
        };
        let metadata = serde_json::to_value(metadata).map_err(ObjectJsonError::Metadata)?;
        // Serializing the object writes the type fields, then the metadata, then the other
        // fields, a later key replacing an earlier one: so the other fields win here too.
        fields.entry("metadata").or_insert(metadata);
        if let Some(types) = types {
            fields
                .entry("apiVersion")
                .or_insert(types.api_version.into());
            fields.entry("kind").or_insert(types.kind.into());
        }
        if self.kind == "Secret" && self.api_version == "v1" {
            fields.remove("data");
            fields.remove("stringData");
        }
        let mut value = Value::Object(fields);
        if value["apiVersion"].is_null() {
            value["apiVersion"] = self.api_version.clone().into();
        }
        if value["kind"].is_null() {
            value["kind"] = self.kind.clone().into();
        }
        Ok(value)
    }

    /// The key of a deleted object, from its metadata and the watch's apiVersion and kind; `None`
    /// if it has no name.
    pub(crate) fn key_of_deleted(&self, object: &DynamicObject) -> Option<ObjectKey> {
        let metadata = &object.metadata;
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
    use ::kube::api::{ApiResource, GroupVersionKind};
    use serde_json::json;

    use super::*;

    fn secrets() -> WatchedKind {
        WatchedKind {
            api_version: "v1".to_owned(),
            kind: "Secret".to_owned(),
        }
    }

    #[test]
    fn an_object_without_type_fields_gets_the_watched_ones_and_a_secret_loses_its_data() {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Secret"));
        let mut secret = DynamicObject::new("s", &resource).within("apps");
        secret.types = None;
        secret.metadata.uid = Some("u1".to_owned());
        secret.data = json!({"type": "Opaque", "data": {"pw": "eA=="}, "stringData": {"x": "y"}});
        let key = secrets().key_of_deleted(&secret);
        let json = secrets().json(secret).unwrap();
        assert_eq!(
            json,
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s", "namespace": "apps", "uid": "u1"},
                "type": "Opaque",
            })
        );
        assert_eq!(ObjectKey::of(&json), key);
    }

    #[test]
    fn an_object_that_is_not_a_json_object_is_an_error() {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Secret"));
        let mut secret = DynamicObject::new("s", &resource);
        secret.data = json!([1]);
        assert!(matches!(
            secrets().json(secret),
            Err(ObjectJsonError::NotAnObject(_))
        ));
    }
}
