//! Configs written as one line of text (a pattern `2:4`, a distribution
//! `erk`): serialised through `Display` and read back through `FromStr`, so a
//! config file holds the same words as the command line and a typo is an error
//! naming the accepted forms.

/// Implements `Serialize`, `Deserialize` and Burn's `Config` for a type with
/// `Display` and `FromStr`.
macro_rules! text_config {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl burn::config::Config for $t {}
    };
}

pub(crate) use text_config;
