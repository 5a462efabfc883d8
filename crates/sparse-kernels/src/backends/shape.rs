//! Shapes of a sparse convolution call, shared by the backends.

use burn::tensor::ops::ConvOptions;

use crate::cpu::conv::ConvShape;
use crate::plan::SparsePlan;

/// The call's shapes; panics with a clear message on a channel mismatch.
pub fn conv_shape(x: &[usize], plan: &SparsePlan, options: &ConvOptions<2>) -> ConvShape {
    let crate::plan::OpKind::Conv { cin_g, kernel, groups } = plan.op else {
        panic!("sparse_conv2d needs a conv plan, got {plan:?}");
    };
    assert!(
        x.len() == 4 && x[1] == cin_g * groups && options.groups == groups,
        "sparse_conv2d: input {x:?} with {} groups does not fit the weight ({cin_g} channels x {groups} groups)",
        options.groups
    );
    // an input smaller than the dilated kernel has no output position
    let out = |i: usize| {
        let span = options.dilation[i] * (kernel[i] - 1) + 1;
        let padded = x[2 + i] + options.padding[i].0 + options.padding[i].1;
        padded.checked_sub(span).map_or(0, |rest| rest / options.stride[i] + 1)
    };
    ConvShape {
        n: x[0],
        c: x[1],
        hw: [x[2], x[3]],
        o: plan.rows,
        out_hw: [out(0), out(1)],
        stride: options.stride,
        padding: options.padding,
        dilation: options.dilation,
        kernel,
    }
}
