//! The two update rules, operation for operation as Burn 0.22's optimizers.

use burn::tensor::Tensor;

use super::{AdamSettings, SgdSettings};

/// Burn 0.22 `Sgd::step` with momentum state in `slots[0]` (a zero dampening
/// skips its multiplication by 1, which changes no bit; operand order as Burn's,
/// so every value is bit-identical).
pub(super) fn sgd_update<const D: usize>(
    s: &SgdSettings,
    lr: f64,
    decay: Option<f64>,
    w: Tensor<D>,
    mut g: Tensor<D>,
    slots: &mut Vec<Tensor<D>>,
    time: u64,
) -> Tensor<D> {
    let weight_decay = decay.unwrap_or(s.weight_decay);
    if weight_decay != 0.0 {
        g = w.clone().mul_scalar(weight_decay as f32).add(g);
    }
    if s.momentum != 0.0 {
        let mu = s.momentum as f32;
        // moved out, not cloned, so the backend may update the buffers in place
        let previous = std::mem::take(slots).pop().expect("SGD keeps one momentum slot");
        let original = s.nesterov.then(|| g.clone());
        let velocity = if time == 0 {
            g
        } else if s.dampening == 0.0 {
            // g·1 is g bit for bit: skip Burn's pass
            g.add(previous.mul_scalar(mu))
        } else {
            g.mul_scalar(1.0 - s.dampening).add(previous.mul_scalar(mu))
        };
        g = match original {
            Some(original) => velocity.clone().mul_scalar(mu).add(original),
            None => velocity.clone(),
        };
        slots.push(velocity);
    }
    w - g.mul_scalar(lr)
}

/// Burn 0.22 `Adam::step` / `AdamW::step` with moments in `slots[0..2]`.
pub(super) fn adam_update<const D: usize>(
    s: &AdamSettings,
    lr: f64,
    decay: Option<f64>,
    w: Tensor<D>,
    mut g: Tensor<D>,
    slots: &mut [Tensor<D>],
    time: u64,
) -> Tensor<D> {
    let (beta_1, beta_2, epsilon) = (s.beta_1 as f32, s.beta_2 as f32, s.epsilon as f32);
    let weight_decay = decay.unwrap_or(s.weight_decay) as f32;
    if !s.decoupled && weight_decay != 0.0 {
        g = w.clone().mul_scalar(weight_decay).add(g);
    }
    let m = slots[0]
        .clone()
        .mul_scalar(beta_1)
        .add(g.clone().mul_scalar(1.0 - beta_1));
    let v = slots[1]
        .clone()
        .mul_scalar(beta_2)
        .add(g.square().mul_scalar(1.0 - beta_2));
    slots[0] = m.clone();
    slots[1] = v.clone();
    let t = (time + 1) as i32;
    if s.decoupled {
        let m_hat = m.div_scalar(1f32 - beta_1.powi(t));
        let v_hat = v.div_scalar(1f32 - beta_2.powi(t));
        let delta = m_hat.div(v_hat.sqrt().add_scalar(epsilon));
        let rate = lr * f64::from(weight_decay);
        let decayed = if rate == 0.0 { w } else { w.mul_scalar(1.0 - rate) };
        decayed - delta.mul_scalar(lr)
    } else {
        let bc2_sqrt = (1.0 - beta_2.powi(t)).sqrt();
        let factor = bc2_sqrt / (1.0 - beta_1.powi(t));
        let delta = m.mul_scalar(factor).div(v.sqrt().add_scalar(epsilon * bc2_sqrt));
        w - delta.mul_scalar(lr)
    }
}
