//! The run configuration, for every registered method (a new method is covered
//! without touching this file): what the command line resolves to is written to
//! `config.toml` with only what applies, reading that file back gives the same
//! config and the same text, and the library builds the same method from the
//! file's `[method]` table as the command line does.

use sparseburn::cli::{methods, train_config};
use sparseburn::run::RunConfig;
use sparseburn::sparse_methods::registry::{self, BuildContext, MethodConfig};

/// The arguments of a small synthetic run of `method`, with its own pattern.
fn args(method: &str) -> Vec<&str> {
    vec!["--method", method, "--dataset", "synthetic", "--epochs", "2"]
}

fn context(cfg: &RunConfig) -> BuildContext {
    let sparsity = cfg.sparsity_config(Default::default());
    BuildContext {
        total_steps: 2 * 93,
        steps_per_epoch: 93,
        classes: 10,
        sparsity: sparsity.sparsity,
        pattern: sparsity.pattern,
    }
}

#[test]
fn every_method_round_trips_and_builds_the_same_from_the_file() {
    for m in registry::methods() {
        let cli = train_config(&args(m.name)).unwrap_or_else(|e| panic!("{}: {e:#}", m.name));
        let text = cli.to_toml();
        // parse → resolve → write is a fixed point
        let table: toml::Table = toml::from_str(&text).unwrap();
        let again = RunConfig::from_table(table.clone()).unwrap_or_else(|e| panic!("{}: {e:#}\n{text}", m.name));
        assert_eq!(again, cli, "{}", m.name);
        assert_eq!(again.to_toml(), text, "{}", m.name);
        // the [method] table holds exactly the method's switches
        let method = table["method"].as_table().unwrap();
        let mut keys: Vec<&str> = method.keys().map(String::as_str).filter(|k| *k != "name").collect();
        let mut switches: Vec<&str> = m.switches.iter().map(|s| s.key).collect();
        keys.sort_unstable();
        switches.sort_unstable();
        assert_eq!(keys, switches, "{}", m.name);
        assert_eq!(method["name"].as_str(), Some(m.name));
        // the library builds the same method from the file's table as the command line
        let from_file = MethodConfig::from_toml(&toml::to_string(method).unwrap()).unwrap();
        assert_eq!(from_file, cli.method, "{}", m.name);
        let ctx = context(&cli);
        let built_cli = cli.method.build(&ctx).unwrap_or_else(|e| panic!("{}: {e:#}", m.name));
        let built_file = from_file.build(&ctx).unwrap();
        assert_eq!(format!("{built_cli:?}"), format!("{built_file:?}"), "{}", m.name);
        assert_eq!(built_cli.name(), m.name);
        assert_eq!(built_cli.is_dense(), cli.method.is_dense());
        // nothing that does not apply: no [sparsity] for the dense baseline,
        // no image-folder options for the synthetic set
        assert_eq!(table.contains_key("sparsity"), !cli.method.is_dense(), "{}", m.name);
        let data = table["data"].as_table().unwrap();
        for key in ["image_size", "channels", "strict_images", "download"] {
            assert!(!data.contains_key(key), "{}: [data] {key}\n{text}", m.name);
        }
    }
}

#[test]
fn switches_given_on_the_command_line_reach_the_method() {
    let cfg = train_config(&["--method", "rigl", "-m", "delta_t=50", "-m", "drop_schedule=constant"]).unwrap();
    let switches = cfg.method.switches();
    assert_eq!(switches["delta_t"], 50);
    assert_eq!(switches["drop_schedule"], "constant");
    // the file holds them and reads back the same
    let again = RunConfig::from_table(toml::from_str(&cfg.to_toml()).unwrap()).unwrap();
    assert_eq!(again.method, cfg.method);
}

#[test]
fn a_switch_the_method_does_not_have_is_refused_with_the_ones_it_has() {
    let err = train_config(&["--method", "rigl", "-m", "gamma_sal=0.5"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gamma_sal") && err.contains("delta_t") && err.contains("drop_noise"),
        "{err}"
    );
    let err = train_config(&["--method", "rigl", "-m", "delta_t=fast"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("delta_t"), "{err}");
}

#[test]
fn what_applies_depends_on_the_model_the_data_and_the_method() {
    let folder = train_config(&["--dataset", "folder", "--image-size", "64"]).unwrap();
    let text = folder.to_toml();
    assert!(
        text.contains("image_size = 64") && text.contains("channels = 3"),
        "{text}"
    );
    let err = train_config(&["--dataset", "synthetic", "--image-size", "64"]).unwrap_err();
    assert!(err.to_string().contains("image folders"), "{err}");
    let mobilenet = train_config(&["--model", "mobilenet_v1"]).unwrap().to_toml();
    assert!(
        mobilenet.contains("name = \"mobilenet-v1\"") && mobilenet.contains("width = 1.0"),
        "{mobilenet}"
    );
    assert!(!train_config(&["--model", "mlp"]).unwrap().to_toml().contains("width"));
    // SRigL takes its constant fan-in, SR-STE its 2:4 at 50%, unless told otherwise
    let srigl = train_config(&["--method", "srigl"]).unwrap();
    assert_eq!(srigl.sparsity.unwrap().pattern.to_string(), "constant-fan-in");
    let srste = train_config(&["--method", "srste"]).unwrap().sparsity.unwrap();
    assert_eq!((srste.pattern.to_string(), srste.sparsity), ("2:4".into(), 0.5));
    // the dense baseline has no sparsity to set
    let err = train_config(&["--method", "dense", "--sparsity", "0.5"]).unwrap_err();
    assert!(err.to_string().contains("dense baseline"), "{err}");
    // the step schedule's options only with the step schedule
    let err = train_config(&["--milestones", "10,20"]).unwrap_err();
    assert!(err.to_string().contains("step schedule"), "{err}");
}

#[test]
fn a_typo_in_a_section_names_the_key_and_the_known_ones() {
    let table: toml::Table = toml::from_str("[training]\nlearning_rate = 0.1\n").unwrap();
    let err = RunConfig::from_table(table).unwrap_err().to_string();
    assert!(err.contains("learning_rate") && err.contains("lr"), "{err}");
    let table: toml::Table = toml::from_str("[method]\nname = \"rigl\"\ndleta_t = 5\n").unwrap();
    let err = RunConfig::from_table(table).unwrap_err().to_string();
    assert!(err.contains("dleta_t") && err.contains("delta_t"), "{err}");
}

#[test]
fn the_docs_table_is_the_registry_s() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/methods.md")).unwrap();
    let table = methods::markdown();
    assert!(
        docs.contains(&table),
        "docs/methods.md is out of date: paste the output of `sparseburn methods --markdown`"
    );
}

/// Every `.rs` file under `dir`.
fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Each crate's integration tests are one binary, `tests/main.rs` with a module
/// per file (one link instead of one per file), but for a file that needs a
/// process of its own (a `[[test]]` of its own in `Cargo.toml`): any other file
/// that `tests/main.rs` does not list would silently never compile nor run.
#[test]
fn every_integration_test_file_is_a_module_of_its_crate_s_test_binary() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut crates = vec![root.to_path_buf()];
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        crates.push(entry.unwrap().path());
    }
    let mut checked = 0;
    for krate in crates.iter().filter(|c| c.join("tests").is_dir()) {
        let dir = krate.join("tests");
        let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
        let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if path.extension().is_some_and(|e| e == "rs") && stem != "main" {
                let declared = main.lines().any(|l| l.trim() == format!("mod {stem};"))
                    || manifest.contains(&format!("path = \"tests/{stem}.rs\""));
                assert!(
                    declared,
                    "{} is not in {}: add `mod {stem};`",
                    path.display(),
                    dir.join("main.rs").display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "only {checked} test files found");
}

#[test]
fn the_trainer_never_checks_a_method_by_name() {
    let mut files = Vec::new();
    sources(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/run"),
        &mut files,
    );
    assert!(files.len() > 10);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for m in registry::methods() {
            let quoted = format!("\"{}\"", m.name);
            assert!(
                !text.contains(&quoted),
                "{} names the method {quoted}: ask the method's properties instead",
                file.display()
            );
        }
    }
}
