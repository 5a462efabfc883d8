//! The samples a data-driven initialisation scores on.

use std::collections::BTreeMap;

use crate::data::ImageSet;

/// `k` training images of every class (the first ones in index order); an error
/// naming the first class with fewer.
pub fn class_balanced(set: &ImageSet, k: usize) -> sparse_core::Result<Vec<usize>> {
    let mut by_class: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (i, l) in set.labels.iter().enumerate() {
        let v = by_class.entry(*l).or_default();
        if v.len() < k {
            v.push(i);
        }
    }
    for (c, name) in set.classes.iter().enumerate() {
        let have = by_class.get(&(c as u16)).map_or(0, Vec::len);
        if have < k {
            return Err(sparse_core::SparseError::InvalidConfig(format!(
                "scoring needs {k} samples of class `{name}`, the training set has {have}; lower samples_per_class"
            )));
        }
    }
    Ok(by_class.into_values().flatten().collect())
}
