//! Turning the settings of a run into sparse-core and sparse-methods objects.

use anyhow::{Context, bail};
use burn::module::Module;
use sparse_core::{
    Distribution, DropFraction, LayerFilter, OptimizerConfig, Pattern, SparseLayer, SparsityConfig, SparsitySchedule,
    UpdateSchedule,
    optim::{AdamSettings, SgdSettings},
};
use sparse_methods::{
    AutoSparse, AutoSparseConfig, Gmp, GmpConfig, Grasp, GraspConfig, LthConfig, Mest, MestConfig, Penalty,
    RegularizationConfig, Regularized, Rewind, RigL, RigLConfig, SRigL, SRigLConfig, Set, SetConfig, Snip, SrSte,
    SrSteConfig, StaticRandom,
};

use super::config::{MethodSettings, RunConfig, SparsitySettings, TrainingSettings};

/// Every method name the CLI knows.
pub const METHODS: [&str; 13] = [
    "dense",
    "static",
    "snip",
    "grasp",
    "lth",
    "one-shot",
    "gmp",
    "set",
    "rigl",
    "srigl",
    "autosparse",
    "mest",
    "srste",
];

/// Checks the method name early, with the list of valid ones.
pub fn check_method(name: &str) -> anyhow::Result<()> {
    if METHODS.contains(&name) {
        Ok(())
    } else {
        bail!("unknown method `{name}`; expected one of {}", METHODS.join(", "))
    }
}

/// Whether the method is the lottery-ticket driver (several rounds of training).
pub fn is_lottery(name: &str) -> bool {
    matches!(name, "lth" | "one-shot")
}

/// The distribution named in the settings.
pub fn distribution(s: &SparsitySettings) -> anyhow::Result<Distribution> {
    Ok(match s.distribution.as_str() {
        "erk" => Distribution::Erk {
            power_scale: s.erk_power,
        },
        "er" => Distribution::Er,
        "uniform" => Distribution::Uniform {
            dense_first_layer: false,
        },
        "uniform-dense-first" => Distribution::Uniform {
            dense_first_layer: true,
        },
        "global" => Distribution::Global,
        other => bail!("unknown distribution `{other}`; use erk, er, uniform, uniform-dense-first or global"),
    })
}

/// The pattern named in the settings (`unstructured`, `2:4`, `constant-fan-in`, `block:4x4`, `channel`).
pub fn pattern(name: &str) -> anyhow::Result<Pattern> {
    let bad = || {
        anyhow::anyhow!(
            "unknown pattern `{name}`; use unstructured, N:M (e.g. 2:4), constant-fan-in, block:RxC (e.g. block:4x4) or channel"
        )
    };
    Ok(match name {
        "unstructured" => Pattern::Unstructured,
        "constant-fan-in" => Pattern::ConstantFanIn,
        "channel" => Pattern::Channel,
        _ if name.starts_with("block:") => {
            let (r, c) = name[6..].split_once('x').ok_or_else(bad)?;
            Pattern::Block {
                rows: r.parse().map_err(|_| bad())?,
                cols: c.parse().map_err(|_| bad())?,
            }
        }
        _ => {
            let (n, m) = name.split_once(':').ok_or_else(bad)?;
            Pattern::NM {
                n: n.parse().map_err(|_| bad())?,
                m: m.parse().map_err(|_| bad())?,
            }
        }
    })
}

/// The sparsity config of a run, starting from the model's default policy.
pub fn sparsity_config(cfg: &RunConfig, model_policy: LayerFilter) -> anyhow::Result<SparsityConfig> {
    let s = &cfg.sparsity;
    let mut filter = model_policy;
    filter.skip_first |= s.dense_first_layer;
    filter.skip_last |= s.dense_last_layer;
    filter.exclude.extend(s.exclude.iter().cloned());
    let pattern = pattern(&s.pattern)?;
    let sparsity = match cfg.method.name.as_str() {
        "dense" => 0.0,
        _ => s.sparsity,
    };
    let (pattern, sparsity) = match (cfg.method.name.as_str(), &pattern) {
        ("dense", _) => (Pattern::Unstructured, sparsity),
        _ => (pattern, sparsity),
    };
    Ok(SparsityConfig::new()
        .with_sparsity(sparsity)
        .with_distribution(distribution(s)?)
        .with_pattern(pattern)
        .with_filter(filter)
        .with_seed(cfg.training.seed))
}

/// The optimizer of a run.
pub fn optimizer(t: &TrainingSettings) -> anyhow::Result<OptimizerConfig> {
    Ok(match t.optimizer.as_str() {
        "sgd" => OptimizerConfig::Sgd(
            SgdSettings::new()
                .with_momentum(t.momentum)
                .with_nesterov(t.nesterov)
                .with_weight_decay(t.weight_decay),
        ),
        "adam" => OptimizerConfig::Adam(AdamSettings::new().with_weight_decay(t.weight_decay as f32)),
        "adamw" => OptimizerConfig::Adam(
            AdamSettings::new()
                .with_weight_decay(t.weight_decay as f32)
                .with_decoupled(true),
        ),
        other => bail!("unknown optimizer `{other}`; use sgd, adam or adamw"),
    })
}

fn drop_fraction(m: &MethodSettings) -> anyhow::Result<DropFraction> {
    let alpha = m.drop_fraction;
    Ok(match m.drop_schedule.as_str() {
        "cosine" => DropFraction::Cosine { alpha },
        "constant" => DropFraction::Constant { alpha },
        "exponential" => DropFraction::ExponentialK {
            alpha,
            k: m.drop_exponent,
        },
        other => bail!("unknown drop schedule `{other}`; use cosine, constant or exponential"),
    })
}

/// The step counts a method needs.
#[derive(Clone, Copy, Debug)]
pub struct Steps {
    /// Steps of the whole run (per round for lottery tickets).
    pub total: u64,
    /// Steps per epoch.
    pub per_epoch: u64,
}

fn updates(m: &MethodSettings, steps: Steps) -> UpdateSchedule {
    UpdateSchedule::new((m.end_fraction * steps.total as f64) as u64).with_interval(m.delta_t.max(1))
}

/// The lottery-ticket settings of a run.
pub fn lottery(m: &MethodSettings, target: f64) -> anyhow::Result<LthConfig> {
    Ok(match m.name.as_str() {
        "one-shot" => LthConfig::new()
            .with_rounds(1)
            .with_prune_fraction(target)
            .with_rewind(Rewind::FineTune)
            .with_global(m.global),
        _ => LthConfig::new()
            .with_rounds(m.rounds)
            .with_prune_fraction(m.prune_fraction)
            .with_global(m.global)
            .with_rewind(match m.rewind.as_str() {
                "step" => Rewind::Step { step: m.rewind_step },
                "finetune" => Rewind::FineTune,
                "reinit" => Rewind::Reinit,
                other => bail!("unknown rewind `{other}`; use step, finetune or reinit"),
            }),
    })
}

/// Builds the method of a run; AutoSparse and SR-STE also change the model
/// (they mask inside the forward pass), so the model goes through here.
pub fn method<M: Module>(
    cfg: &RunConfig,
    model: M,
    layers: &[SparseLayer],
    steps: Steps,
    classes: usize,
) -> anyhow::Result<(Box<dyn sparse_core::Method>, M)> {
    let m = &cfg.method;
    let mut model = model;
    let method: Box<dyn sparse_core::Method> = match m.name.as_str() {
        "dense" | "static" => Box::new(StaticRandom),
        "snip" => Box::new(Snip),
        "grasp" => Box::new(Grasp::new(
            GraspConfig::new(classes)
                .with_samples_per_class(m.samples_per_class)
                .with_temperature(m.temperature)
                .with_fd_epsilon(m.fd_epsilon),
        )),
        "gmp" => {
            let t0 = (m.prune_begin_fraction * steps.total as f64) as u64;
            let end = ((m.prune_end_fraction * steps.total as f64) as u64).min(steps.total.saturating_sub(1));
            if end <= t0 {
                bail!(
                    "GMP's pruning window is empty: prune_begin_fraction {} and prune_end_fraction {} leave no step of the {} (raise the fractions' gap or the epochs)",
                    m.prune_begin_fraction,
                    m.prune_end_fraction,
                    steps.total
                );
            }
            // ΔT no longer than the window, so the run reaches the final sparsity
            let dt = m.delta_t.clamp(1, end - t0);
            let schedule = SparsitySchedule::cubic(m.initial_sparsity, cfg.sparsity.sparsity, t0, (end - t0) / dt, dt);
            Box::new(Gmp::new(GmpConfig::new(schedule)))
        }
        "set" => Box::new(Set::new(
            SetConfig::new(updates(m, steps)).with_drop_fraction(DropFraction::Constant { alpha: m.drop_fraction }),
        )),
        "rigl" => {
            let mut c = RigLConfig::new(updates(m, steps))
                .with_drop_fraction(drop_fraction(m)?)
                .with_grad_window(m.grad_window)
                .with_tie_noise(m.tie_noise);
            c.skip_weight_update = m.skip_weight_update.unwrap_or(true);
            Box::new(RigL::new(c))
        }
        "srigl" => {
            let mut c = SRigLConfig::new(updates(m, steps))
                .with_drop_fraction(drop_fraction(m)?)
                .with_gamma_sal(m.gamma_sal)
                .with_ablation(m.ablation);
            c.skip_weight_update = m.skip_weight_update.unwrap_or(false);
            Box::new(SRigL::new(c))
        }
        "autosparse" => {
            let a = AutoSparse::new(
                AutoSparseConfig::new(steps.total)
                    .with_alpha0(m.alpha0)
                    .with_threshold_init(m.threshold_init)
                    .with_threshold_decay(m.threshold_decay)
                    .with_freeze_at_target(m.freeze_at_target),
            );
            model = a.attach(model, layers);
            Box::new(a)
        }
        "mest" if m.soft_bound && m.end_fraction >= 1.0 => {
            bail!(
                "mest with soft_bound prunes back to the budget at end_fraction: set end_fraction below 1 (e.g. 0.75)"
            )
        }
        "mest" => Box::new(Mest::new(
            MestConfig::new(updates(m, steps))
                .with_mutation(m.mutation)
                .with_decay_at(
                    m.mutation_decay
                        .iter()
                        .map(|f| (f * steps.total as f64) as u64)
                        .collect(),
                )
                .with_lambda(m.mest_lambda)
                .with_soft_bound(m.soft_bound),
        )),
        "srste" => {
            let Pattern::NM { n, m: group } = pattern(&cfg.sparsity.pattern)? else {
                bail!("srste trains N:M sparsity: set the pattern to e.g. 2:4 (and the sparsity to 1 - N/M)");
            };
            let s = SrSte::new(SrSteConfig::new().with_n(n).with_m(group).with_lambda(m.srste_lambda));
            model = s.attach(model, layers);
            Box::new(s)
        }
        "lth" | "one-shot" => Box::new(sparse_methods::FixedMask::default()),
        other => {
            check_method(other)?;
            unreachable!("every known method is handled")
        }
    };
    let method: Box<dyn sparse_core::Method> = match m.penalty.as_deref() {
        None => method,
        Some(p) => {
            let penalty = match p {
                "l1" => Penalty::L1,
                "group-lasso" => Penalty::GroupLasso,
                other => bail!("unknown penalty `{other}`; use l1 or group-lasso"),
            };
            Box::new(Regularized::new(
                method,
                RegularizationConfig::new(penalty, m.penalty_strength),
            ))
        }
    };
    Ok((method, model))
}

/// Parses `key=value` overrides of the `[method]` section (`-m delta_t=50`).
pub fn apply_method_args(m: &mut MethodSettings, args: &[String]) -> anyhow::Result<()> {
    if args.is_empty() {
        return Ok(());
    }
    let mut table = toml::Table::try_from(&*m).context("method settings")?;
    for arg in args {
        let (k, v) = arg
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("method argument `{arg}` must look like key=value"))?;
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {v}"))
            .map(|mut t| t.remove("v").unwrap_or(toml::Value::String(v.into())))
            .unwrap_or_else(|_| toml::Value::String(v.into()));
        table.insert(k.trim().to_string(), value);
    }
    *m = table
        .try_into()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("method arguments: {}", e.to_string().replace('\n', " ")))?;
    Ok(())
}
