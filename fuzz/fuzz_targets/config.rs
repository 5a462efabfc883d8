#![no_main]
//! Config files: any text is refused or accepted by `RunConfig::from_table`
//! without a panic, and an accepted config writes a TOML text that reads back to
//! the same config.
use libfuzzer_sys::fuzz_target;
use sparseburn::run::RunConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return;
    };
    if let Ok(cfg) = RunConfig::from_table(table) {
        let written: toml::Table = toml::from_str(&cfg.to_toml()).expect("a written config parses");
        let again = RunConfig::from_table(written).expect("a written config reads back");
        assert_eq!(again, cfg);
    }
});
