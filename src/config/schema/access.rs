//! The serde access types behind [`NodeDe`](super::de::NodeDe): list items, dict entries and
//! unit enum variants, each read at its own dotted key.

use super::de::{NodeDe, TARGET_KEY};
use super::error::join_key;
use super::SchemaError;
use crate::config::node::{Map, Node};
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Visitor};

/// The items of a list, each read at `path[i]`.
pub(super) struct SeqDe<'a, 'p> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: &'p str,
}

impl<'a, 'p> SeqDe<'a, 'p> {
    /// The items of `items`, the list at `path`.
    pub(super) fn new(items: &'a [Node], path: &'p str) -> Self {
        SeqDe {
            items: items.iter(),
            index: 0,
            path,
        }
    }

    /// How many items were read, and how many are left.
    pub(super) fn counts(&self) -> (usize, usize) {
        (self.index, self.items.len())
    }
}

impl<'de> de::SeqAccess<'de> for SeqDe<'de, '_> {
    type Error = SchemaError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, SchemaError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        let item_de = NodeDe::at(item, path);
        let result = seed.deserialize(item_de.clone());
        item_de.place(result).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// The entries of a dict, each value read at `path.key`.
pub(super) struct MapDe<'a, 'p> {
    entries: indexmap::map::Iter<'a, String, Node>,
    value: Option<(&'a String, &'a Node)>,
    path: &'p str,
    skip_target: bool,
}

impl<'a, 'p> MapDe<'a, 'p> {
    /// The entries of `map`, the dict at `path`, without `_target_` when `skip_target`.
    pub(super) fn new(map: &'a Map, path: &'p str, skip_target: bool) -> Self {
        MapDe {
            entries: map.iter(),
            value: None,
            path,
            skip_target,
        }
    }
}

impl<'de> de::MapAccess<'de> for MapDe<'de, '_> {
    type Error = SchemaError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, SchemaError> {
        for (key, node) in self.entries.by_ref() {
            if self.skip_target && key == TARGET_KEY {
                continue;
            }
            self.value = Some((key, node));
            let key_de = BorrowedStrDeserializer::<SchemaError>::new(key);
            return seed
                .deserialize(key_de)
                .map(Some)
                .map_err(|e| e.place(&join_key(self.path, key), &node.origin));
        }
        Ok(None)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, SchemaError> {
        let Some((key, node)) = self.value.take() else {
            return Err(SchemaError::unplaced(
                "a dict value was read before its key",
            ));
        };
        let value_de = NodeDe::at(node, join_key(self.path, key));
        let result = seed.deserialize(value_de.clone());
        value_de.place(result)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// A unit enum variant named by a string.
pub(super) struct UnitVariant<'a> {
    name: &'a str,
}

impl<'de> de::EnumAccess<'de> for UnitVariant<'de> {
    type Error = SchemaError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self), SchemaError> {
        let name_de = BorrowedStrDeserializer::<SchemaError>::new(self.name);
        Ok((seed.deserialize(name_de)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for UnitVariant<'de> {
    type Error = SchemaError;

    fn unit_variant(self) -> Result<(), SchemaError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        _seed: T,
    ) -> Result<T::Value, SchemaError> {
        Err(self.needs_data())
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, SchemaError> {
        Err(self.needs_data())
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, SchemaError> {
        Err(self.needs_data())
    }
}

impl<'a> UnitVariant<'a> {
    /// The variant called `name`.
    pub(super) fn new(name: &'a str) -> Self {
        UnitVariant { name }
    }

    fn needs_data(&self) -> SchemaError {
        SchemaError::unplaced(format!(
            "'{}' needs settings of its own; a bare name cannot hold them",
            self.name
        ))
    }
}
