//! Walking a module's float parameters with their dotted paths.
//!
//! Burn's visitors and mappers are told `enter_module(name, container)` and
//! `exit_module` around every field; [`visit`] and [`map`] keep that stack, so a
//! [`PathVisitor`] or [`PathMapper`] is simply handed each float parameter with
//! its [`ParamPath`] (e.g. `layer1.0.conv1.weight` inside `Struct:Conv2d`).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Where a parameter sits: the field names from the root and the container of each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamPath {
    names: Vec<String>,
    containers: Vec<String>,
}

impl ParamPath {
    /// The dotted path, as Burn's records and optimizers spell it.
    pub fn dotted(&self) -> String {
        self.names.join(".")
    }

    /// The field names from the root.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The last field name (`weight`, `bias`, `gamma`, ...), empty at the root.
    pub fn leaf(&self) -> &str {
        self.names.last().map_or("", String::as_str)
    }

    /// The container of the last field (`Struct:Linear`, `Vec`, ...), empty at the root.
    pub fn container(&self) -> &str {
        self.containers.last().map_or("", String::as_str)
    }

    fn enter(&mut self, name: &str, container: &str) {
        self.names.push(name.to_string());
        self.containers.push(container.to_string());
    }

    fn exit(&mut self) {
        self.names.pop();
        self.containers.pop();
    }
}

/// Sees every float parameter with its path.
pub trait PathVisitor {
    /// Called for every float parameter, in the module's declaration order.
    fn visit<const D: usize>(&mut self, path: &ParamPath, param: &Param<Tensor<D>>);

    /// Called when the walk enters a field (a module, a parameter or a
    /// reparameterization), with the path ending at that field.
    fn enter(&mut self, path: &ParamPath) {
        let _ = path;
    }
}

/// Replaces every float parameter, knowing its path.
pub trait PathMapper {
    /// Called for every float parameter, in the module's declaration order.
    fn map<const D: usize>(&mut self, path: &ParamPath, param: Param<Tensor<D>>) -> Param<Tensor<D>>;
}

struct Visiting<'a, V> {
    path: ParamPath,
    inner: &'a mut V,
}

impl<V: PathVisitor> ModuleVisitor for Visiting<'_, V> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
        self.inner.enter(&self.path);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.inner.visit(&self.path, param);
    }
}

struct Mapping<'a, V> {
    path: ParamPath,
    inner: &'a mut V,
}

impl<V: PathMapper> ModuleMapper for Mapping<'_, V> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.inner.map(&self.path, param)
    }
}

/// Shows `visitor` every float parameter of `model` with its path.
pub fn visit<M: Module, V: PathVisitor>(model: &M, visitor: &mut V) {
    model.visit(&mut Visiting {
        path: ParamPath::default(),
        inner: visitor,
    });
}

/// Maps every float parameter of `model` through `mapper`, which knows each one's path.
pub fn map<M: Module, V: PathMapper>(model: M, mapper: &mut V) -> M {
    model.map(&mut Mapping {
        path: ParamPath::default(),
        inner: mapper,
    })
}
