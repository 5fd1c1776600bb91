//! The identity of an object: the one type every input, the pipeline and the targets discovered
//! from objects use to name it.

use std::fmt;

use periscope_plugin_api::batch::{Source, SourceKind};
use serde_json::Value;

/// Who an object is: its apiVersion, kind, namespace, name and uid.
///
/// Read once from the object's JSON ([`ObjectKey::of`]) as it comes in, then passed along: to the
/// pipeline ([`ObjectPipeline::apply`](super::ObjectPipeline::apply)), into the batch as its
/// [`Source`] (`Source::from(&key)`), and into what a watch remembers to remove the object later.
///
/// A watch keeps one key per object for as long as the object lives, so a key is one allocation:
/// the object's source id `<apiVersion>/<kind>/<namespace>/<name>` followed by its uid, with where
/// each part ends.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    /// `<apiVersion>/<kind>/<namespace>/<name><uid>`.
    text: Box<str>,
    /// Where the apiVersion, the kind, the namespace and the name end in `text`.
    ends: [u32; 4],
}

impl ObjectKey {
    /// The key of an object as JSON, or `None` if it has no apiVersion, kind or name.
    pub fn of(object: &Value) -> Option<ObjectKey> {
        let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
        ObjectKey::new(
            text("/apiVersion")?,
            text("/kind")?,
            text("/metadata/namespace").unwrap_or_default(),
            text("/metadata/name")?,
            text("/metadata/uid").unwrap_or_default(),
        )
    }

    /// The key of the object named by these parts, or `None` if the apiVersion, the kind or the
    /// name is empty. `namespace` is empty for cluster-scoped objects, `uid` when the object has
    /// none (objects read from files).
    pub fn new(
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> Option<ObjectKey> {
        if api_version.is_empty() || kind.is_empty() || name.is_empty() {
            return None;
        }
        let mut text = String::with_capacity(
            api_version.len() + kind.len() + namespace.len() + name.len() + uid.len() + 3,
        );
        let mut ends = [0; 4];
        for (i, part) in [api_version, kind, namespace, name].into_iter().enumerate() {
            if i > 0 {
                text.push('/');
            }
            text.push_str(part);
            ends[i] = u32::try_from(text.len()).ok()?;
        }
        text.push_str(uid);
        Some(ObjectKey {
            text: text.into_boxed_str(),
            ends,
        })
    }

    /// `apiVersion`, such as `kubevirt.io/v1`.
    pub fn api_version(&self) -> &str {
        self.part(0)
    }

    /// `kind`, such as `VirtualMachineInstance`.
    pub fn kind(&self) -> &str {
        self.part(1)
    }

    /// `metadata.namespace`, empty for cluster-scoped objects.
    pub fn namespace(&self) -> &str {
        self.part(2)
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.part(3)
    }

    /// `metadata.uid`, empty when the object has none (objects read from files).
    pub fn uid(&self) -> &str {
        &self.text[self.end(3)..]
    }

    /// The object's source id, `<apiVersion>/<kind>/<namespace>/<name>` (namespace empty for
    /// cluster-scoped objects).
    pub fn source_id(&self) -> &str {
        &self.text[..self.end(3)]
    }

    /// The `i`th part of the source id, without its separator.
    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.end(i - 1) + 1 };
        &self.text[start..self.end(i)]
    }

    fn end(&self, i: usize) -> usize {
        // A u32 always fits a usize on the platforms Periscope builds for.
        self.ends[i] as usize
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectKey")
            .field("api_version", &self.api_version())
            .field("kind", &self.kind())
            .field("namespace", &self.namespace())
            .field("name", &self.name())
            .field("uid", &self.uid())
            .finish()
    }
}

/// The object as the source of its samples in a batch: kind `Object`, its source id as the id.
impl<'a> From<&'a ObjectKey> for Source<'a> {
    fn from(key: &'a ObjectKey) -> Source<'a> {
        Source {
            kind: SourceKind::Object,
            id: key.source_id(),
            api_version: key.api_version(),
            object_kind: key.kind(),
            namespace: key.namespace(),
            name: key.name(),
            uid: key.uid(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_key_reads_every_part_of_an_object() {
        let object = json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"namespace": "prod", "name": "vm1", "uid": "u-1"},
        });
        let key = ObjectKey::of(&object).unwrap();
        assert_eq!(key.api_version(), "kubevirt.io/v1");
        assert_eq!(key.kind(), "VirtualMachineInstance");
        assert_eq!(key.namespace(), "prod");
        assert_eq!(key.name(), "vm1");
        assert_eq!(key.uid(), "u-1");
        assert_eq!(
            key.source_id(),
            "kubevirt.io/v1/VirtualMachineInstance/prod/vm1"
        );
        assert_eq!(
            ObjectKey::new(
                "kubevirt.io/v1",
                "VirtualMachineInstance",
                "prod",
                "vm1",
                "u-1"
            ),
            Some(key)
        );
    }

    #[test]
    fn an_object_without_api_version_kind_or_name_has_no_key() {
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}});
        for missing in ["/apiVersion", "/kind", "/metadata/name"] {
            let mut object = node.clone();
            *object.pointer_mut(missing).unwrap() = json!("");
            assert_eq!(ObjectKey::of(&object), None, "{missing} empty");
            *object.pointer_mut(missing).unwrap() = Value::Null;
            assert_eq!(ObjectKey::of(&object), None, "{missing} absent");
        }
        let key = ObjectKey::of(&node).unwrap();
        assert_eq!((key.namespace(), key.uid()), ("", ""));
        assert_eq!(key.source_id(), "v1/Node//n");
    }

    #[test]
    fn the_source_of_a_key_is_an_object_named_by_its_source_id() {
        let key = ObjectKey::new("v1", "Pod", "apps", "web-0", "u1").unwrap();
        assert_eq!(
            Source::from(&key),
            Source {
                kind: SourceKind::Object,
                id: "v1/Pod/apps/web-0",
                api_version: "v1",
                object_kind: "Pod",
                namespace: "apps",
                name: "web-0",
                uid: "u1",
            }
        );
    }
}
