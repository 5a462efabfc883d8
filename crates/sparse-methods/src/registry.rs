//! The registry: every method by name, its config, its switches, and how it is built.
//!
//! A method's own `#[derive(Config)]` struct holds all its switches with their
//! defaults (written there once); [`MethodConfig`] is the enum of those structs,
//! tagged by the method's name (`name = "rigl"` in a config file). The CLI, the
//! config files, the docs table and library users all go through it:
//!
//! ```
//! use sparse_methods::registry::{BuildContext, MethodConfig};
//! let config = MethodConfig::from_toml("name = \"rigl\"\ndelta_t = 50").unwrap();
//! let rigl = config.build(&BuildContext::new(3000)).unwrap();
//! assert_eq!(rigl.name(), "rigl");
//! ```
//!
//! Adding a method is one file (the method, its config and its [`MethodSpec`])
//! and one line in the `registry!` list below.

use std::fmt;

use burn::config::Config;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};
use sparse_core::{Distribution, Method, Pattern, Result, SparseError, SparseInit};

use crate::autosparse::AutoSparseConfig;
use crate::dense::DenseConfig;
use crate::gmp::GmpConfig;
use crate::grasp::GraspConfig;
use crate::lth::{LthConfig, OneShotConfig};
use crate::mest::MestConfig;
use crate::rigl::RigLConfig;
use crate::set::SetConfig;
use crate::snip::SnipConfig;
use crate::srigl::SRigLConfig;
use crate::srste::SrSteConfig;
use crate::static_random::StaticConfig;

/// What a method's config needs from the run to become a method.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildContext {
    /// Optimizer steps of the whole run (of each round, for iterative pruning).
    pub total_steps: u64,
    /// Optimizer steps per epoch.
    pub steps_per_epoch: u64,
    /// Classes of the task (GraSP scores a few samples of each).
    pub classes: usize,
    /// Target sparsity of the run.
    pub sparsity: f64,
    /// The pattern of the run (SR-STE takes its N:M from it).
    pub pattern: Pattern,
}

impl BuildContext {
    /// A run of `total_steps` (one epoch), 10 classes, 90% unstructured sparsity.
    pub fn new(total_steps: u64) -> Self {
        Self {
            total_steps,
            steps_per_epoch: total_steps,
            classes: 10,
            sparsity: 0.9,
            pattern: Pattern::Unstructured,
        }
    }
}

/// One switch of a method: its key and what it does (its default and type come
/// from the method's default config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switch {
    /// The key (`delta_t`).
    pub key: &'static str,
    /// One line of documentation.
    pub doc: &'static str,
}

impl Switch {
    /// A switch.
    pub const fn new(key: &'static str, doc: &'static str) -> Self {
        Self { key, doc }
    }
}

/// What the registry needs of a method's config.
pub trait MethodSpec: Config + Clone + PartialEq {
    /// The method's name, as on the command line and in config files.
    const NAME: &'static str;
    /// One line: what the method does, and its paper.
    const SUMMARY: &'static str;
    /// How the mask changes during training (for the docs table).
    const CHANGES_MASK: &'static str;
    /// What the initial mask needs besides the weights (for the docs table).
    const NEEDS_DATA: &'static str = "no";
    /// Every switch, in the config's field order.
    const SWITCHES: &'static [Switch];

    /// The config with every default.
    fn default_config() -> Self;

    /// The method for a run.
    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Method>>;

    /// The pattern the method is made for (used when the run does not choose one).
    fn preferred_pattern() -> Option<Pattern> {
        None
    }

    /// The dense baseline: the run trains without masks.
    fn is_dense() -> bool {
        false
    }

    /// The sparse-aware initialisation of the method's reference, used when the
    /// run does not choose one (SRigL: grad-flow).
    fn default_sparse_init() -> SparseInit {
        SparseInit::None
    }

    /// The sparsity settings of the method's paper and reference implementation,
    /// used for whatever the run does not set (see [`SparsityDefaults`]).
    fn sparsity_defaults() -> SparsityDefaults {
        SparsityDefaults::default()
    }
}

/// The sparsity settings a method's paper and reference implementation use,
/// applied by a run for every setting it does not give (an explicit value wins).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparsityDefaults {
    /// The layer-wise distribution (`None`: the run's default, ERK).
    pub distribution: Option<Distribution>,
    /// Keep the first sparse layer dense.
    pub dense_first_layer: bool,
    /// Keep the last sparse layer (the classifier) dense.
    pub dense_last_layer: bool,
}

/// A registered method: its name, documentation and switches.
#[derive(Clone, Copy)]
pub struct Registered {
    /// The name.
    pub name: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// How the mask changes during training.
    pub changes_mask: &'static str,
    /// What the initial mask needs besides the weights.
    pub needs_data: &'static str,
    /// The switches.
    pub switches: &'static [Switch],
    default: fn() -> MethodConfig,
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered").field("name", &self.name).finish()
    }
}

impl Registered {
    const fn of<C: MethodSpec + Into<MethodConfig>>() -> Self {
        Self {
            name: C::NAME,
            summary: C::SUMMARY,
            changes_mask: C::CHANGES_MASK,
            needs_data: C::NEEDS_DATA,
            switches: C::SWITCHES,
            default: default_of::<C>,
        }
    }

    /// The method's config with every default.
    pub fn default_config(&self) -> MethodConfig {
        (self.default)()
    }

    /// Whether the method has the switch `key`.
    pub fn has_switch(&self, key: &str) -> bool {
        self.switches.iter().any(|s| s.key == key)
    }

    /// `(switch, default value)` pairs, in order.
    pub fn defaults(&self) -> Vec<(Switch, Value)> {
        let table = self.default_config().switches();
        self.switches
            .iter()
            .map(|s| (*s, table.get(s.key).cloned().unwrap_or(Value::Null)))
            .collect()
    }
}

fn default_of<C: MethodSpec + Into<MethodConfig>>() -> MethodConfig {
    C::default_config().into()
}

macro_rules! registry {
    ($($name:literal => $variant:ident($config:ty)),* $(,)?) => {
        /// The method of a run: each registered method's own config, tagged by its
        /// name (`name = "rigl"` in a config file).
        #[derive(Clone, Debug, PartialEq)]
        pub enum MethodConfig {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant($config),
            )*
        }

        $(
            impl From<$config> for MethodConfig {
                fn from(config: $config) -> Self {
                    Self::$variant(config)
                }
            }
        )*

        #[derive(Serialize)]
        #[serde(tag = "name")]
        enum TaggedRef<'a> {
            $(
                #[serde(rename = $name)]
                $variant(&'a $config),
            )*
        }

        #[derive(Deserialize)]
        #[serde(tag = "name")]
        enum Tagged {
            $(
                #[serde(rename = $name)]
                $variant($config),
            )*
        }

        impl MethodConfig {
            fn tagged(&self) -> TaggedRef<'_> {
                match self {
                    $(Self::$variant(c) => TaggedRef::$variant(c),)*
                }
            }

            fn from_tagged(tagged: Tagged) -> Self {
                match tagged {
                    $(Tagged::$variant(c) => Self::$variant(c),)*
                }
            }

            /// The registered entry of this method.
            pub fn registered(&self) -> &'static Registered {
                let name = match self {
                    $(Self::$variant(_) => <$config as MethodSpec>::NAME,)*
                };
                find(name).expect("every variant is registered")
            }

            /// The method for a run.
            pub fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Method>> {
                match self {
                    $(Self::$variant(c) => c.build(ctx),)*
                }
            }

            /// The pattern the method is made for, if any.
            pub fn preferred_pattern(&self) -> Option<Pattern> {
                match self {
                    $(Self::$variant(_) => <$config as MethodSpec>::preferred_pattern(),)*
                }
            }

            /// The sparse-aware initialisation of the method's reference.
            pub fn default_sparse_init(&self) -> SparseInit {
                match self {
                    $(Self::$variant(_) => <$config as MethodSpec>::default_sparse_init(),)*
                }
            }

            /// The sparsity settings of the method's reference.
            pub fn sparsity_defaults(&self) -> SparsityDefaults {
                match self {
                    $(Self::$variant(_) => <$config as MethodSpec>::sparsity_defaults(),)*
                }
            }

            /// The dense baseline.
            pub fn is_dense(&self) -> bool {
                match self {
                    $(Self::$variant(_) => <$config as MethodSpec>::is_dense(),)*
                }
            }
        }

        static METHODS: &[Registered] = &[$(Registered::of::<$config>(),)*];
    };
}

registry! {
    "dense" => Dense(DenseConfig),
    "static" => Static(StaticConfig),
    "snip" => Snip(SnipConfig),
    "grasp" => Grasp(GraspConfig),
    "lth" => Lth(LthConfig),
    "one-shot" => OneShot(OneShotConfig),
    "gmp" => Gmp(GmpConfig),
    "set" => Set(SetConfig),
    "rigl" => Rigl(RigLConfig),
    "srigl" => Srigl(SRigLConfig),
    "autosparse" => AutoSparse(AutoSparseConfig),
    "mest" => Mest(MestConfig),
    "srste" => SrSte(SrSteConfig),
}

/// Every registered method, in the order of the registry.
pub fn methods() -> &'static [Registered] {
    METHODS
}

/// The registered method called `name`.
pub fn find(name: &str) -> Result<&'static Registered> {
    METHODS.iter().find(|m| m.name == name).ok_or_else(|| {
        SparseError::InvalidConfig(format!(
            "unknown method `{name}`; expected one of {}",
            METHODS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
        ))
    })
}

impl MethodConfig {
    /// The method's name.
    pub fn name(&self) -> &'static str {
        self.registered().name
    }

    /// The default config of the method called `name`.
    pub fn named(name: &str) -> Result<Self> {
        Ok(find(name)?.default_config())
    }

    /// The switches and their values (without the name).
    pub fn switches(&self) -> Map<String, Value> {
        match serde_json::to_value(self.tagged()) {
            Ok(Value::Object(mut map)) => {
                map.remove("name");
                map
            }
            _ => Map::new(),
        }
    }

    /// From a table with `name` and any of that method's switches (missing
    /// switches take their defaults); an unknown switch is an error listing the
    /// method's switches.
    pub fn from_value(value: Value) -> Result<Self> {
        let Value::Object(mut table) = value else {
            return Err(SparseError::InvalidConfig(
                "a method config is a table with `name` and the method's switches".into(),
            ));
        };
        let name = match table.remove("name") {
            Some(Value::String(name)) => name,
            Some(other) => {
                return Err(SparseError::InvalidConfig(format!(
                    "method name must be text, not {other}"
                )));
            }
            None => {
                return Err(SparseError::InvalidConfig(format!(
                    "the method config needs a `name`: one of {}",
                    METHODS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
                )));
            }
        };
        let mut config = Self::named(&name)?;
        for (key, value) in table {
            config.set(&key, value)?;
        }
        Ok(config)
    }

    /// From TOML text (`name = "rigl"` and switches).
    pub fn from_toml(text: &str) -> Result<Self> {
        let value: Value = toml::from_str(text).map_err(|e| SparseError::InvalidConfig(one_line(&e.to_string())))?;
        Self::from_value(value)
    }

    /// From JSON text (`{"name": "rigl", ...}`).
    pub fn from_json(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| SparseError::InvalidConfig(e.to_string()))?;
        Self::from_value(value)
    }

    /// Sets one switch; the error names the switch and, for an unknown one,
    /// lists the switches the method has.
    pub fn set(&mut self, key: &str, value: Value) -> Result<()> {
        let registered = self.registered();
        if !registered.has_switch(key) {
            let known: Vec<&str> = registered.switches.iter().map(|s| s.key).collect();
            return Err(SparseError::InvalidConfig(if known.is_empty() {
                format!(
                    "method `{}` has no switch `{key}` (it has no switches)",
                    registered.name
                )
            } else {
                format!(
                    "method `{}` has no switch `{key}`; its switches: {}",
                    registered.name,
                    known.join(", ")
                )
            }));
        }
        let mut table = self.switches();
        table.insert(key.to_string(), value.clone());
        table.insert("name".into(), Value::String(registered.name.into()));
        let tagged: Tagged = serde_json::from_value(Value::Object(table)).map_err(|e| {
            SparseError::InvalidConfig(format!("method `{}`: switch `{key}` = {value}: {e}", registered.name))
        })?;
        *self = Self::from_tagged(tagged);
        Ok(())
    }
}

impl Serialize for MethodConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.tagged().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MethodConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl Config for MethodConfig {}

/// `T` from `user`'s keys over `default`'s values (nested tables merged key by
/// key): a key `default` does not have is an error naming it and listing the
/// known ones; a value of the wrong type is an error naming its key. For config
/// sections whose structs require every field.
pub fn fill_defaults<T: Serialize + DeserializeOwned>(
    default: &T,
    user: Map<String, Value>,
    section: &str,
) -> Result<T> {
    let invalid = |m: String| SparseError::InvalidConfig(m);
    let Value::Object(defaults) = serde_json::to_value(default).map_err(|e| invalid(e.to_string()))? else {
        return Err(invalid(format!("[{section}] is not a table")));
    };
    let merged = merge(defaults.clone(), user.clone(), section)?;
    serde_json::from_value(Value::Object(merged)).map_err(|e| {
        // name the key whose value does not fit
        let culprit = user.iter().find_map(|(key, value)| {
            let one = Map::from_iter([(key.clone(), value.clone())]);
            let trial = merge(defaults.clone(), one, section).ok()?;
            serde_json::from_value::<T>(Value::Object(trial))
                .err()
                .map(|e| format!("[{section}] `{key}` = {value}: {e}"))
        });
        invalid(culprit.unwrap_or_else(|| format!("[{section}]: {e}")))
    })
}

fn merge(mut base: Map<String, Value>, user: Map<String, Value>, section: &str) -> Result<Map<String, Value>> {
    for (key, value) in user {
        let merged = match (base.get(&key), value) {
            (None, _) => {
                let known: Vec<&str> = base.keys().map(String::as_str).collect();
                return Err(SparseError::InvalidConfig(format!(
                    "[{section}] has no key `{key}`; its keys: {}",
                    known.join(", ")
                )));
            }
            (Some(Value::Object(inner)), Value::Object(given)) => {
                Value::Object(merge(inner.clone(), given, &format!("{section}.{key}"))?)
            }
            (Some(_), value) => value,
        };
        base.insert(key, merged);
    }
    Ok(base)
}

/// A TOML error message on one line.
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|'))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_switch_is_a_field_of_its_config_and_every_field_a_switch() {
        for m in methods() {
            let mut fields: Vec<String> = m.default_config().switches().keys().cloned().collect();
            let mut keys: Vec<String> = m.switches.iter().map(|s| s.key.to_string()).collect();
            fields.sort();
            keys.sort();
            assert_eq!(fields, keys, "{}", m.name);
            assert!(m.switches.iter().all(|s| !s.doc.is_empty()), "{}", m.name);
            assert_eq!(m.default_config().name(), m.name);
        }
    }

    #[test]
    fn missing_switches_take_their_defaults_and_toml_equals_json() {
        let toml = MethodConfig::from_toml("name = \"set\"\ndrop_fraction = 0.5").unwrap();
        let json = MethodConfig::from_json(r#"{"name": "set", "drop_fraction": 0.5}"#).unwrap();
        assert_eq!(toml, json);
        let MethodConfig::Set(set) = toml else {
            panic!("not SET: {toml:?}")
        };
        assert_eq!(set, crate::SetConfig::new().with_drop_fraction(0.5));
    }

    #[test]
    fn unknown_names_and_switches_list_the_known_ones() {
        let err = MethodConfig::from_toml("name = \"rigel\"").unwrap_err().to_string();
        assert!(
            err.contains("rigel") && err.contains("rigl") && err.contains("srste"),
            "{err}"
        );
        let err = MethodConfig::from_toml("name = \"static\"\ndelta_t = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("delta_t") && err.contains("no switches"), "{err}");
        let err = MethodConfig::from_toml("delta_t = 3").unwrap_err().to_string();
        assert!(err.contains("name"), "{err}");
    }

    #[test]
    fn fill_defaults_names_unknown_and_ill_typed_keys() {
        let default = crate::RigLConfig::new();
        let user = |text: &str| match serde_json::from_str::<Value>(text).unwrap() {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let ok: crate::RigLConfig = fill_defaults(&default, user(r#"{"delta_t": 7}"#), "method").unwrap();
        assert_eq!(ok, crate::RigLConfig::new().with_delta_t(7));
        let err = fill_defaults(&default, user(r#"{"delta": 7}"#), "method")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`delta`") && err.contains("delta_t"), "{err}");
        let err = fill_defaults(&default, user(r#"{"grad_window": "two"}"#), "method")
            .unwrap_err()
            .to_string();
        assert!(err.contains("grad_window"), "{err}");
    }
}
