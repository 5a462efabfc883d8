//! The DQN agent: its gradient step against a hand-computed TD update, the target
//! sync, ε, the environment-step clock of sparse-training updates, evaluation and
//! bad input.

use std::sync::{Arc, Mutex};

use burn::tensor::{Device, Tensor};
use sparse_core::method::{InitContext, Method, MethodState, Needs, StepContext};
use sparse_core::{BackendKind, Mask, OptimizerConfig, Rng, Sparsifier, SparsityConfig, host};
use sparse_rl::qnet::{MinAtarQConfig, scale_for_density};
use sparse_rl::{Dqn, DqnConfig, EnvId, MlpQ, MlpQConfig, QNetwork, RlError, TdLoss, evaluate};

fn device() -> Device {
    BackendKind::from_env()
        .expect("SPARSEBURN_DEVICE")
        .device()
        .expect("backend compiled")
        .autodiff()
}

/// A dense method (all masks active) that never updates.
#[derive(Clone, Debug)]
struct Dense;

impl Method for Dense {
    fn name(&self) -> &'static str {
        "dense"
    }
    fn init(&mut self, _ctx: &mut InitContext<'_>, _masks: &mut [Mask]) -> sparse_core::Result<()> {
        Ok(())
    }
}

/// A random mask at the plan's per-layer counts; with `every > 0`, every `every`
/// steps it moves a quarter of each layer's active weights to random inactive
/// positions (a SET-like exchange without scores), and it counts its updates in
/// its saved state.
#[derive(Clone, Debug)]
struct RandomSwap {
    every: u64,
    updates: u64,
}

fn random_mask(len: usize, keep: usize, rng: &mut Rng) -> Mask {
    let mut idx: Vec<usize> = (0..len).collect();
    for i in 0..keep {
        let j = i + rng.below((len - i) as u64) as usize;
        idx.swap(i, j);
    }
    Mask::from_indices(len, idx[..keep].iter().copied())
}

impl Method for RandomSwap {
    fn name(&self) -> &'static str {
        "random-swap"
    }
    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> sparse_core::Result<()> {
        let counts = ctx.plan().counts(ctx.plan().sparsity())?;
        for (l, mask) in masks.iter_mut().enumerate() {
            *mask = random_mask(mask.len(), counts[l], &mut ctx.rng(l, "init"));
        }
        Ok(())
    }
    fn needs(&self, step: u64) -> Needs {
        Needs {
            update: self.every > 0 && step.is_multiple_of(self.every),
            ..Needs::NONE
        }
    }
    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> sparse_core::Result<()> {
        for l in 0..ctx.masks().len() {
            let mut rng = ctx.rng(l, "swap");
            let mask = &ctx.masks()[l];
            let active: Vec<usize> = mask.iter_ones().collect();
            let inactive: Vec<usize> = (0..mask.len()).filter(|&i| !mask.get(i)).collect();
            let k = (active.len() / 4).min(inactive.len());
            let mut next = mask.clone();
            for &grow in inactive.iter().take(k) {
                next.set(active[rng.below(active.len() as u64) as usize], false);
                next.set(grow, true);
            }
            let (ones, want) = (next.count_ones(), mask.count_ones());
            if ones == want {
                ctx.masks_mut()[l] = next;
            }
        }
        self.updates += 1;
        Ok(())
    }
    fn save_state(&self) -> MethodState {
        let mut state = MethodState::default();
        state.values.insert("updates".into(), self.updates.into());
        state
    }
    fn load_state(&mut self, state: MethodState) -> sparse_core::Result<()> {
        self.updates = state.values.get("updates").and_then(|v| v.as_u64()).unwrap_or(0);
        Ok(())
    }
}

/// A method that records the steps at which its topology update runs.
#[derive(Clone, Debug)]
struct Recorder {
    every: u64,
    seen: Arc<Mutex<Vec<u64>>>,
}

impl Method for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn init(&mut self, _ctx: &mut InitContext<'_>, _masks: &mut [Mask]) -> sparse_core::Result<()> {
        Ok(())
    }
    fn needs(&self, step: u64) -> Needs {
        Needs {
            update: step.is_multiple_of(self.every),
            ..Needs::NONE
        }
    }
    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> sparse_core::Result<()> {
        self.seen.lock().expect("lock").push(ctx.step());
        Ok(())
    }
}

fn weights(model: &MlpQ) -> (Vec<f32>, Vec<f32>) {
    let layer = &model.layers[0];
    let w = host::to_vec(layer.weight.val().inner()).expect("weights");
    let b = layer
        .bias
        .as_ref()
        .map(|b| host::to_vec(b.val().inner()).expect("bias"))
        .unwrap_or_default();
    (w, b)
}

/// A linear Q-network (no hidden layer): Q(s) = s·W + b, W `[2, 2]`.
fn linear_agent(loss: TdLoss, lr: f64, target_every: u64) -> Dqn<MlpQ> {
    let device = device();
    let model = MlpQConfig::new(2, 2)
        .with_hidden(vec![])
        .with_output_init(0.5)
        .init(&device, 3);
    let sparse = Sparsifier::new(
        &model,
        SparsityConfig::new().with_sparsity(0.0),
        Dense,
        &OptimizerConfig::sgd(0.0, 0.0),
    )
    .expect("sparsifier");
    let config = DqnConfig::new()
        .with_loss(loss)
        .with_learning_rate(lr)
        .with_warmup_steps(0)
        .with_batch_size(4)
        .with_gamma(0.9)
        .with_target_update_every(target_every);
    Dqn::new(model, sparse, config, 2, 2).expect("agent")
}

/// One transition in the buffer (every sample is that transition): the SGD step on
/// the TD loss, computed by hand from the initial weights.
#[test]
fn a_gradient_step_is_the_hand_computed_td_update() {
    for (loss, reward, terminal) in [
        (TdLoss::Squared, 0.3, false),
        (TdLoss::Squared, 0.3, true),
        (TdLoss::Huber { delta: 1.0 }, 0.3, false),
        (TdLoss::Huber { delta: 1.0 }, 5.0, false),
    ] {
        let lr = 0.1;
        let mut agent = linear_agent(loss.clone(), lr, 1_000);
        let (w, b) = weights(agent.model());
        let (s, a, s2) = ([0.5f32, -1.0], 1usize, [1.0f32, 2.0]);
        let q = |x: [f32; 2], k: usize| x[0] * w[k] + x[1] * w[2 + k] + b[k]; // W is [in, out]
        let y = reward as f32 + if terminal { 0.0 } else { 0.9 * q(s2, 0).max(q(s2, 1)) };
        let td = q(s, a) - y;
        let dl = match loss {
            TdLoss::Squared => 2.0 * td,
            TdLoss::Huber { delta } => td.clamp(-delta, delta),
        };
        let trained = agent.observe(&s, a, reward, &s2, terminal).expect("observe");
        let expected_loss = match loss {
            TdLoss::Squared => td * td,
            TdLoss::Huber { .. } if td.abs() <= 1.0 => 0.5 * td * td,
            TdLoss::Huber { .. } => td.abs() - 0.5,
        };
        let got_loss = trained.expect("a step was taken");
        assert!(
            (got_loss - expected_loss).abs() < 1e-5,
            "{loss:?}: loss {got_loss} vs {expected_loss}"
        );
        let (w2, b2) = weights(agent.model());
        let lr = lr as f32;
        for k in 0..2 {
            let g = if k == a { dl } else { 0.0 };
            assert!((w2[k] - (w[k] - lr * g * s[0])).abs() < 1e-5, "{loss:?} w[0,{k}]");
            assert!(
                (w2[2 + k] - (w[2 + k] - lr * g * s[1])).abs() < 1e-5,
                "{loss:?} w[1,{k}]"
            );
            assert!((b2[k] - (b[k] - lr * g)).abs() < 1e-5, "{loss:?} b[{k}]");
        }
    }
}

#[test]
fn the_target_network_is_copied_every_n_gradient_steps() {
    let mut agent = linear_agent(TdLoss::Squared, 0.1, 3);
    let target = |agent: &Dqn<MlpQ>| host::to_vec(agent.target().layers[0].weight.val()).expect("target");
    let initial = target(&agent);
    for t in 1..=6u64 {
        agent
            .observe(&[0.5, -1.0], 0, 1.0, &[0.2, 0.1], false)
            .expect("observe");
        let online = weights(agent.model()).0;
        let now = target(&agent);
        if t.is_multiple_of(3) {
            assert_eq!(now, online, "synced after gradient step {t}");
        } else {
            assert_ne!(now, online, "not synced after gradient step {t}");
            if t < 3 {
                assert_eq!(now, initial);
            }
        }
    }
}

#[test]
fn epsilon_is_one_during_warmup_then_decays_linearly() {
    let c = DqnConfig::new()
        .with_warmup_steps(100)
        .with_epsilon_start(1.0)
        .with_epsilon_end(0.1)
        .with_epsilon_decay_steps(1_000);
    assert_eq!(c.epsilon_at(0), 1.0);
    assert_eq!(c.epsilon_at(99), 1.0);
    assert!((c.epsilon_at(600) - 0.55).abs() < 1e-12);
    assert!((c.epsilon_at(1_100) - 0.1).abs() < 1e-12);
    assert!((c.epsilon_at(50_000) - 0.1).abs() < 1e-12);
}

/// Sparse-training updates run on the environment-step clock (Graesser et al.),
/// not on the gradient-step count: with a warm-up of 5 steps and one gradient
/// step every 2 environment steps, an update every 10 steps runs at environment
/// steps 10, 20, 30, 40.
#[test]
fn topology_updates_count_environment_steps() {
    let device = device();
    let model = MlpQConfig::new(4, 2).with_hidden(vec![8]).init(&device, 0);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let method = Recorder {
        every: 10,
        seen: seen.clone(),
    };
    let sparse = Sparsifier::new(
        &model,
        SparsityConfig::new().with_sparsity(0.5),
        method,
        &OptimizerConfig::adam(),
    )
    .expect("sparsifier");
    let config = DqnConfig::new()
        .with_warmup_steps(5)
        .with_train_every(2)
        .with_batch_size(8);
    let mut agent = Dqn::new(model, sparse, config, 4, 2).expect("agent");
    let mut env = EnvId::CartPoleV1.make(1);
    agent.run(env.as_mut(), 40, |_| {}).expect("run");
    assert_eq!(agent.env_steps(), 40);
    assert_eq!(agent.train_steps(), 18, "even steps 6..=40");
    assert_eq!(*seen.lock().expect("lock"), vec![10, 20, 30, 40]);
    assert_eq!(agent.replay().len(), 40);
}

#[test]
fn sparsity_aware_init_rescales_sparse_hidden_layers_by_inverse_sqrt_density() {
    let device = device();
    let model = MlpQConfig::new(4, 2).with_hidden(vec![64, 64]).init(&device, 5);
    let config = SparsityConfig::new().with_sparsity(0.75);
    let method = RandomSwap { every: 0, updates: 0 };
    let mut sparse = Sparsifier::new(&model, config, method, &OptimizerConfig::adam()).expect("sparsifier");
    let model = sparse.init(model).expect("init");
    let before: Vec<Vec<f32>> = sparse.read_weights(&model).expect("weights");
    let scaled = scale_for_density(model, &sparse);
    let after: Vec<Vec<f32>> = sparse.read_weights(&scaled).expect("weights");
    let variance_scaled = scaled.variance_scaled();
    let densities: Vec<f64> = sparse.masks().iter().map(Mask::density).collect();
    assert!(densities[1] < 0.5, "the 64×64 layer is sparse under ERK: {densities:?}");
    for (l, layer) in sparse.layers().iter().enumerate() {
        let d = densities[l];
        let f = if variance_scaled.contains(&layer.path) {
            1.0 / d.sqrt()
        } else {
            1.0
        };
        for (a, b) in before[l].iter().zip(&after[l]) {
            assert!((f64::from(*b) - f * f64::from(*a)).abs() < 1e-5, "{}", layer.path);
        }
    }
    assert_eq!(variance_scaled, vec!["layers.0.weight", "layers.1.weight"]);
}

#[test]
fn evaluation_replays_a_fixed_policy_exactly_and_batches_like_single_episodes() {
    let device = device().inner();
    // zero output weights and equal biases: ties go to action 0, always
    let model = MlpQConfig::new(4, 2)
        .with_hidden(vec![])
        .with_output_init(0.0)
        .init(&device, 0);
    let seeds = [7, 8, 9];
    let eval = evaluate(&model, EnvId::CartPoleV1, &seeds, 0.0, None).expect("evaluate");
    for (i, &seed) in seeds.iter().enumerate() {
        let mut env = EnvId::CartPoleV1.make(seed);
        env.reset();
        let mut ret = 0.0;
        loop {
            let step = env.step(0).expect("step");
            ret += step.reward;
            if step.done() {
                break;
            }
        }
        assert_eq!(eval.returns[i], ret, "seed {seed}");
        assert_eq!(eval.lengths[i] as f64, ret);
    }
    let single = evaluate(&model, EnvId::CartPoleV1, &seeds[1..2], 0.3, None).expect("evaluate");
    let batched = evaluate(&model, EnvId::CartPoleV1, &seeds, 0.3, None).expect("evaluate");
    assert_eq!(
        single.returns[0], batched.returns[1],
        "exploration is drawn per episode seed"
    );
    let capped = evaluate(&model, EnvId::CartPoleV1, &seeds, 0.0, Some(3)).expect("evaluate");
    assert!(capped.lengths.iter().all(|l| *l <= 3));
}

#[test]
fn the_minatar_network_maps_a_breakout_frame_to_one_value_per_action() {
    let device = device();
    let net = MinAtarQConfig::new(3).init(&device);
    let env = EnvId::BreakoutV1.make(0);
    let q = net.q_values(Tensor::zeros([5, env.observation_len()], &device));
    assert_eq!(q.dims(), [5, 3]);
    let sparse = Sparsifier::new(
        &net,
        SparsityConfig::new().with_sparsity(0.9),
        Dense,
        &OptimizerConfig::adam(),
    )
    .expect("sparsifier");
    let paths: Vec<&str> = sparse.layers().iter().map(|l| l.path.as_str()).collect();
    assert_eq!(paths, vec!["conv.weight", "fc.weight", "out.weight"]);
    assert_eq!(sparse.layers()[1].shape, vec![16 * 8 * 8, 128]);
}

#[test]
fn bad_settings_and_mismatched_environments_get_clear_errors() {
    let msg = DqnConfig::new().with_gamma(1.5).validate().err().map(|e| e.to_string());
    assert!(msg.unwrap_or_default().contains("γ = 1.5"));
    let mut agent = linear_agent(TdLoss::Squared, 0.1, 10);
    let mut acrobot = EnvId::AcrobotV1.make(0);
    let msg = agent
        .run(acrobot.as_mut(), 1, |_| {})
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("Acrobot-v1 has observations of 6 floats and 3 actions"),
        "{msg}"
    );

    let plain = device().inner();
    let model = MlpQConfig::new(2, 2).init(&plain, 0);
    let sparse = Sparsifier::new(&model, SparsityConfig::new(), Dense, &OptimizerConfig::adam()).expect("sparsifier");
    let err = Dqn::new(model, sparse, DqnConfig::new(), 2, 2).err();
    assert!(
        matches!(err, Some(RlError::InvalidConfig(ref m)) if m.contains("autodiff")),
        "{err:?}"
    );
}

/// A run saved mid-way and resumed in a fresh agent (new model, new sparsifier,
/// new environment) continues exactly: same weights, masks, replay, environment.
#[test]
fn a_saved_agent_resumes_exactly() {
    let device = device();
    let build = || {
        let model = MlpQConfig::new(4, 2).with_hidden(vec![32, 32]).init(&device, 1);
        let swap = RandomSwap { every: 10, updates: 0 };
        let config = SparsityConfig::new().with_sparsity(0.8).with_seed(4);
        let sparse =
            Sparsifier::new(&model, config, swap, &DqnConfig::classic_control_optimizer()).expect("sparsifier");
        let config = DqnConfig::classic_control()
            .with_warmup_steps(20)
            .with_batch_size(16)
            .with_target_update_every(7)
            .with_epsilon_decay_steps(100)
            .with_seed(2);
        (model, sparse, config)
    };
    let (model, sparse, config) = build();
    let mut agent = Dqn::new(model, sparse, config, 4, 2).expect("agent");
    let mut env = EnvId::CartPoleV1.make(3);
    agent.run(env.as_mut(), 75, |_| {}).expect("run");
    let dir = tempfile::tempdir().expect("tempdir");
    agent.save(dir.path(), env.as_ref()).expect("save");
    let masks_at_save = agent.sparsifier().masks().to_vec();
    let mut returns = Vec::new();
    agent.run(env.as_mut(), 60, |e| returns.push(e.ret)).expect("run");
    assert_ne!(
        agent.sparsifier().masks(),
        &masks_at_save[..],
        "the topology moved after the save"
    );

    let (model, sparse, config) = build();
    let mut env2 = EnvId::CartPoleV1.make(99);
    let mut resumed = Dqn::resume(model, sparse, config, dir.path(), env2.as_mut()).expect("resume");
    assert_eq!(resumed.env_steps(), 75);
    let mut returns2 = Vec::new();
    resumed.run(env2.as_mut(), 60, |e| returns2.push(e.ret)).expect("run");

    assert_eq!(returns, returns2);
    assert_eq!(agent.counters(), resumed.counters());
    assert_eq!(agent.sparsifier().masks(), resumed.sparsifier().masks());
    assert_eq!(
        agent.sparsifier().method().save_state(),
        resumed.sparsifier().method().save_state(),
        "method state restored"
    );
    assert_eq!(weights(agent.model()), weights(resumed.model()));
    let target = |a: &Dqn<MlpQ>| host::to_vec(a.target().layers[2].weight.val()).expect("target");
    assert_eq!(target(&agent), target(&resumed));
    assert_eq!(env.observation(), env2.observation());
    assert_eq!(agent.replay().len(), resumed.replay().len());

    let (model, sparse, config) = build();
    let mut acrobot = EnvId::AcrobotV1.make(0);
    let err = Dqn::resume(model, sparse, config, dir.path(), acrobot.as_mut()).err();
    assert!(matches!(err, Some(RlError::SnapshotMismatch { .. })), "{err:?}");
}
