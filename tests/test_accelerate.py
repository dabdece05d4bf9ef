"""ganfast.accelerate: stock models keep their outputs and gradients (float64) once converted."""

import copy
import importlib.util
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import ganfast
from ganfast.bench import stock_gans
from ganfast.train.models import DCGANCritic

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _pair(model):
    """(original, converted copy), both float64."""
    model = model.double()
    return model, ganfast.accelerate(copy.deepcopy(model), verbose=False)


def _param_name(name: str) -> str:
    """A converted legacy layer's weight (weight_orig, weight_hh_orig...) lives under the
    parametrization's key (a legacy layer left alone keeps its own)."""
    return re.sub(r"(\w+)_orig$", r"parametrizations.\1.original", name)


def _assert_same_steps(original, converted, make_input, steps=3):
    """Outputs and every gradient agree over `steps` training-mode forward+backward passes
    (each pass also advances BN statistics and the spectral norms' u and v)."""
    grads_of = {}
    for step in range(steps):
        torch.manual_seed(step)
        x = make_input().requires_grad_(True)
        x_converted = x.detach().clone().requires_grad_(True)
        out, out_converted = original(x), converted(x_converted)
        torch.testing.assert_close(out_converted, out, rtol=1e-10, atol=1e-10)
        weights = torch.randn_like(out)
        (out * weights).sum().backward()
        (out_converted * weights).sum().backward()
        torch.testing.assert_close(x_converted.grad, x.grad, rtol=1e-10, atol=1e-10)
        grads_of = dict(converted.named_parameters())
        for name, p in original.named_parameters():
            converted_p = grads_of[name] if name in grads_of else grads_of[_param_name(name)]
            torch.testing.assert_close(converted_p.grad, p.grad,
                                       rtol=1e-10, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")
        original.zero_grad()
        converted.zero_grad()
    original.eval()
    converted.eval()
    x = make_input()
    torch.testing.assert_close(converted(x), original(x), rtol=1e-10, atol=1e-10)


def test_dcgan_generator_up_blocks_are_fused_and_unchanged():
    original, converted = _pair(stock_gans.DCGANGenerator(z_dim=8, width=4))
    assert len(converted.ganfast_changes) == 4
    assert all(isinstance(block[1], ganfast.nn.UpsampleConv2d) for block in converted.blocks)
    assert all(isinstance(block[0], nn.Identity) for block in converted.blocks)
    assert converted.state_dict().keys() == original.state_dict().keys()
    _assert_same_steps(original, converted, lambda: torch.randn(3, 8, dtype=torch.float64))


@pytest.mark.parametrize("api", ["parametrizations", "legacy"])
def test_sngan_models_are_converted_and_unchanged(api):
    torch.manual_seed(0)
    original, converted = _pair(stock_gans.SNGANDiscriminator(width=8, spectral_norm=api))
    # 4 residual blocks: 2 convs each, 1x1 shortcuts on the first two, plus the head.
    assert len(converted.ganfast_changes) == 11
    _assert_same_steps(original, converted, lambda: torch.randn(2, 3, 32, 32, dtype=torch.float64))

    original, converted = _pair(stock_gans.SNGANGenerator(z_dim=8, width=8))
    assert len(converted.ganfast_changes) == 3  # one Upsample + 3x3 conv per residual block
    _assert_same_steps(original, converted, lambda: torch.randn(2, 8, dtype=torch.float64))


@pytest.mark.parametrize("upsample,label", [
    (lambda: nn.Upsample(scale_factor=2, mode="nearest-exact"), "Upsample(2, nearest-exact)"),
    (lambda: nn.UpsamplingNearest2d(scale_factor=2), "UpsamplingNearest2d(2, nearest)"),
    (lambda: nn.Upsample(scale_factor=(2.0, 2.0)), "Upsample(2, nearest)"),
], ids=["nearest-exact", "UpsamplingNearest2d", "scale-pair"])
def test_every_spelling_of_nearest_2x_is_fused_and_unchanged(upsample, label):
    torch.manual_seed(0)
    original, converted = _pair(nn.Sequential(upsample(), nn.Conv2d(3, 4, 3, padding=1),
                                              nn.LeakyReLU(0.2)))
    assert isinstance(converted[1], ganfast.nn.UpsampleConv2d) and len(converted.ganfast_changes) == 1
    assert converted.ganfast_changes[0].before == f"{label} + Conv2d(3, 4, 3, padding=1)"
    _assert_same_steps(original, converted, lambda: torch.randn(2, 3, 5, 7, dtype=torch.float64))


def test_parametrized_state_dict_keys_and_optimizer_parameters_are_kept():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(2, 3, 3, padding=1),
                          nn.utils.parametrizations.spectral_norm(nn.Conv2d(3, 3, 3, padding=1)))
    params_before = {id(p) for p in model.parameters()}
    keys_before = model.state_dict().keys()
    ganfast.accelerate(model, verbose=False)
    assert {id(p) for p in model.parameters()} == params_before  # an optimizer keeps working
    assert model.state_dict().keys() == keys_before


def test_nothing_to_convert_is_reported_and_left_alone(capsys):
    torch.manual_seed(0)
    model = nn.Sequential(
        DCGANCritic(channels=1, width=4),
        nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(1, 1, 3, padding=1),
    )
    class Blurred(nn.Upsample):  # a subclass may change forward: not ours to fuse
        def forward(self, x):
            return super().forward(x) * 0.5

    blurred = nn.Sequential(Blurred(scale_factor=2), nn.Conv2d(1, 1, 3, padding=1),
                            nn.Upsample(scale_factor=2, mode="nearest-exact", align_corners=None),
                            nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"))
    other = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(1, 1, 5, padding=2),
                          nn.Upsample(scale_factor=3), nn.Conv2d(1, 1, 3, padding=1),
                          nn.Upsample(scale_factor=2), nn.Conv2d(1, 1, 3, padding=1, stride=2))
    for m in (model, other, blurred):
        before = copy.deepcopy(m)
        assert ganfast.accelerate(m) is m
        assert m.ganfast_changes == []
        assert "nothing to convert" in capsys.readouterr().out
        assert [type(x) for x in m.modules()] == [type(x) for x in before.modules()]


def test_report_names_each_change(capsys):
    ganfast.accelerate(stock_gans.SNGANGenerator(z_dim=4, width=4))
    out = capsys.readouterr().out
    assert "3 change(s)" in out
    assert "blocks.0.residual.2+3" in out and "UpsampleConv2d(4, 4)" in out


def test_accelerate_rejects_a_non_module():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        ganfast.accelerate(lambda x: x)
    with pytest.raises(TypeError, match="got the class DCGANGenerator itself"):
        ganfast.accelerate(stock_gans.DCGANGenerator)


def _load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_scripts_agree_over_the_first_steps():
    pytest.importorskip("sklearn")
    plain = _load_example("wgan_gp_dcgan").train(steps=3, batch_size=8, n_critic=2, width=4,
                                                 log_every=0)
    fast = _load_example("wgan_gp_dcgan_ganfast").train(steps=3, batch_size=8, n_critic=2, width=4,
                                                        log_every=0)
    torch.testing.assert_close(torch.tensor(fast), torch.tensor(plain), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("api", ["parametrizations", "legacy"])
def test_spectral_normalized_up_convs_are_fused_with_their_spectral_norm(api):
    # A generator with spectral norm on its up-block convs (BigGAN's recipe): the
    # parametrization moves to the fused layer with its u and v, under the same keys.
    sn = nn.utils.parametrizations.spectral_norm if api == "parametrizations" \
        else nn.utils.spectral_norm
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1),
                          nn.Upsample(scale_factor=2), sn(nn.Conv2d(4, 5, 3, padding=1)), nn.ReLU(),
                          nn.Upsample(scale_factor=2), sn(nn.Conv2d(5, 2, 3, padding="same")))
    original, converted = _pair(model)
    assert [type(m).__name__ for m in converted] == [
        "Conv2d", "Identity", "ParametrizedUpsampleConv2d", "ReLU", "Identity",
        "ParametrizedUpsampleConv2d"]
    torch_api = "parametrizations.spectral_norm" if api == "parametrizations" \
        else "utils.spectral_norm (legacy)"
    assert [c.before for c in converted.ganfast_changes] == [f"Conv2d + torch {torch_api}"] * 2 + [
        "Upsample(2, nearest) + Conv2d(4, 5, 3, padding=1)",
        "Upsample(2, nearest) + Conv2d(5, 2, 3, padding='same')"]
    assert len(ganfast.nn.SpectralNormGroup(converted)) == 2
    if api == "parametrizations":
        assert converted.state_dict().keys() == original.state_dict().keys()
    legacy_or_parametrized_state = original.state_dict()
    _assert_same_steps(original, converted, lambda: torch.randn(2, 3, 5, 6, dtype=torch.float64))
    # The original's checkpoint (legacy keys for the legacy API) loads into the converted model.
    original.load_state_dict(legacy_or_parametrized_state)
    converted.load_state_dict(legacy_or_parametrized_state)
    original.eval()
    converted.eval()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(converted(x), original(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("api", ["parametrizations", "legacy"])
def test_spectral_norm_settings_either_api_accepts_are_converted(api):
    # eps=0 is accepted by both PyTorch APIs (ganfast.nn.spectral_norm refuses it when asked
    # directly); converting must neither refuse the layer nor leave it half-converted.
    sn = nn.utils.parametrizations.spectral_norm if api == "parametrizations" \
        else nn.utils.spectral_norm
    torch.manual_seed(0)
    model = nn.Sequential(sn(nn.Conv2d(3, 4, 3, padding=1), eps=0.0, n_power_iterations=2),
                          nn.ReLU(), sn(nn.ConvTranspose2d(4, 2, 4, 2, 1), eps=1e-3))
    original = model.double()
    converted = copy.deepcopy(original)
    parameters = [id(p) for p in converted.parameters()]
    ganfast.accelerate(converted, verbose=False)
    assert len(converted.ganfast_changes) == 2
    assert [id(p) for p in converted.parameters()] == parameters  # an optimizer's, in its order
    _assert_same_steps(original, converted, lambda: torch.randn(2, 3, 5, 6, dtype=torch.float64))


def _hooked(where):
    model = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(3, 4, 3, padding=1))
    module = model[0] if where == "upsample" else model[1]
    module.register_full_backward_hook(lambda *args: None)
    return model


class _ResidualUp(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Upsample(scale_factor=2), nn.Conv2d(4, 4, 3, padding=1))

    def forward(self, x):  # uses the upsampled tensor twice: fusing would break it
        h = self[0](x)
        return self[1](h) + h


def _with_extra(kind):
    model = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(3, 4, 3, padding=1))
    conv = model[1]
    if kind == "parameter":
        conv.scale = nn.Parameter(torch.ones(4))
    elif kind == "buffer":
        conv.register_buffer("running", torch.zeros(4))
    else:
        conv.register_state_dict_post_hook(lambda *args: None)
    return model


def _patched(kind):
    """A pair whose modules are not what their types say: a forward or a tensor replaced on the
    instance, or a parametrization that only shares spectral norm's name."""
    model = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(3, 4, 3, padding=1))
    upsample, conv = model
    if kind == "sequential-forward":  # uses the upsampled tensor twice, as _ResidualUp
        model.forward = lambda x: model[1](model[0](x)) + model[0](x).sum(1, keepdim=True)
    elif kind == "upsample-forward":  # a wrapper set on the instance, as profilers do
        upsample.forward = lambda x: nn.functional.interpolate(x, scale_factor=2, mode="bilinear")
    elif kind == "conv-forward":
        conv_forward = conv.forward
        conv.forward = lambda x: conv_forward(x) * 2
    elif kind == "plain-tensor-weight":
        weight = conv.weight.detach().clone()
        del conv.weight
        conv.weight = weight
    elif kind == "buffer-bias":
        bias = conv.bias.detach().clone()
        del conv.bias
        conv.register_buffer("bias", bias)
    elif kind == "spectral-norm-on-buffer-weight":
        weight = conv.weight.detach().clone()
        del conv.weight
        conv.register_buffer("weight", weight)
        ganfast.nn.spectral_norm(conv)
    elif kind == "spectral-norm-on-extra-parameter":
        conv.extra = nn.Parameter(torch.randn(4, 4))
        ganfast.nn.spectral_norm(conv, "extra")
    else:
        class SpectralNorm(nn.Module):  # a user's own, whose right_inverse is not the identity
            def forward(self, w):
                return w / torch.linalg.matrix_norm(w.flatten(1), 2) * 0.9

            def right_inverse(self, w):
                return w + 1.0

        nn.utils.parametrize.register_parametrization(conv, "weight", SpectralNorm())
    return model


@pytest.mark.parametrize("make,reason", [
    (lambda: _ResidualUp(), "_ResidualUp has its own forward"),
    (lambda: _hooked("upsample"), "the Upsample has hooks"),
    (lambda: _hooked("conv"), "the Conv2d has hooks"),
    (lambda: nn.Sequential(nn.Upsample(scale_factor=2), nn.utils.parametrizations.orthogonal(
        nn.Conv2d(4, 4, 3, padding=1))), "the Conv2d's weight has a parametrization other than"),
    # weight_norm also registers a state_dict hook: the parametrization is the reason named
    (lambda: nn.Sequential(nn.Upsample(scale_factor=2), nn.utils.parametrizations.weight_norm(
        nn.Conv2d(4, 4, 3, padding=1))), "the Conv2d's weight has a parametrization other than"),
    (lambda: _with_extra("parameter"), "the Conv2d holds scale beyond its weight and bias"),
    (lambda: _with_extra("buffer"), "the Conv2d holds running beyond its weight and bias"),
    (lambda: _with_extra("state-dict-hook"), "the Conv2d has state_dict hooks"),
    (lambda: _patched("sequential-forward"), "the Sequential's forward is replaced on the instance"),
    (lambda: _patched("upsample-forward"), "the Upsample's forward is replaced on the instance"),
    (lambda: _patched("conv-forward"), "the Conv2d's forward is replaced on the instance"),
    (lambda: _patched("plain-tensor-weight"), "the Conv2d's weight is not a Parameter of its own"),
    (lambda: _patched("buffer-bias"), "the Conv2d's bias is not a Parameter of its own"),
    (lambda: _patched("spectral-norm-on-buffer-weight"),
     "the Conv2d's weight is not a Parameter of its own"),
    (lambda: _patched("spectral-norm-on-extra-parameter"),
     "the Conv2d holds extra beyond its weight and bias"),
    (lambda: _patched("namesake-spectral-norm"),
     "the Conv2d's weight has a parametrization other than spectral norm"),
], ids=["own-forward", "upsample-hook", "conv-hook", "orthogonal", "weight-norm", "extra-parameter",
        "extra-buffer", "state-dict-hook", "sequential-instance-forward", "upsample-instance-forward",
        "conv-instance-forward", "plain-tensor-weight", "buffer-bias", "spectral-norm-on-buffer",
        "spectral-norm-on-extra-parameter", "namesake-spectral-norm"])
def test_pairs_that_must_keep_their_modules_are_left_alone_and_reported(make, reason, capsys):
    torch.manual_seed(0)
    model = make()
    types = [type(m) for m in model.modules()]
    x = torch.randn(2, model[1].in_channels, 4, 5)
    with torch.no_grad():
        expected = model.eval()(x)
    ganfast.accelerate(model)
    assert [type(m) for m in model.modules()] == types
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    assert model.ganfast_changes == [] and len(model.ganfast_left_alone) == 1
    assert reason in model.ganfast_left_alone[0].reason
    assert f"left alone: 0+1 ({reason}" in capsys.readouterr().out


def test_a_model_in_eval_mode_stays_in_eval_mode():
    model = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(2, 2, 3, padding=1)).eval()
    ganfast.accelerate(model, verbose=False)
    assert isinstance(model[1], ganfast.nn.UpsampleConv2d)
    assert not any(m.training for m in model.modules())  # the Identity too


def test_one_dimensional_spectral_norm_is_left_alone():
    layer = nn.utils.parametrizations.spectral_norm(nn.Linear(5, 4), name="bias")
    assert ganfast.accelerate(layer, verbose=False).ganfast_changes == []


def test_changes_of_every_call_stay_on_the_model():
    model = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(2, 2, 3, padding=1))
    ganfast.accelerate(model, verbose=False)
    ganfast.accelerate(model, verbose=False)
    assert len(model.ganfast_changes) == 1


def test_a_distributed_wrapper_is_refused_naming_the_order(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        wrapped = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(2, 2)))
        with pytest.raises(ValueError, match="DistributedDataParallel .* before wrapping"):
            ganfast.accelerate(wrapped)
        with pytest.raises(ValueError, match="1 is a DistributedDataParallel"):
            ganfast.accelerate(nn.Sequential(nn.Linear(2, 2), wrapped))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("make,reason", [
    (lambda: nn.Upsample(scale_factor=2, mode="bilinear"),
     "the Upsample has mode='bilinear', the fused layer mode='nearest'"),
    (lambda: nn.UpsamplingBilinear2d(scale_factor=2),
     "the UpsamplingBilinear2d has mode='bilinear', the fused layer mode='nearest'"),
    (lambda: nn.Upsample(size=(8, 10)), "the Upsample has size=(8, 10), the fused layer scale_factor=2"),
    (lambda: nn.Upsample(scale_factor=(2, 1)),
     "the Upsample has scale_factor=(2.0, 1.0), the fused layer scale_factor=2"),
    (lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
     "the Conv2d has padding_mode='reflect', the fused layer padding_mode='zeros'"),
    (lambda: nn.Conv2d(4, 4, 3, padding=1, groups=2), "the Conv2d has groups=2, the fused layer groups=1"),
    (lambda: nn.Conv2d(3, 4, 3, padding="same", dilation=2),
     "the Conv2d has dilation=(2, 2), the fused layer dilation=(1, 1)"),
    (lambda: nn.Conv2d(3, 4, 3, padding=1, stride=2),
     "the Conv2d has stride=(2, 2), the fused layer stride=(1, 1)"),
    (lambda: nn.Conv2d(3, 4, 3, padding=(1, 0)), "the Conv2d has padding=(1, 0), the fused layer padding=1"),
], ids=["bilinear", "UpsamplingBilinear2d", "size", "scale-2x1", "reflect", "groups", "dilation",
        "stride-2", "padding-1x0"])
def test_an_upsample_and_3x3_conv_the_fused_layer_does_not_compute_are_reported(make, reason, capsys):
    # A resize-conv the user expected to be fused: the report names the setting that differs.
    torch.manual_seed(0)
    module = make()
    if isinstance(module, nn.Conv2d):
        model = nn.Sequential(nn.Upsample(scale_factor=2), module)
    else:
        model = nn.Sequential(module, nn.Conv2d(3, 4, 3, padding=1))
    x = torch.randn(2, model[1].in_channels, 4, 5)
    expected = model(x)
    ganfast.accelerate(model)
    out = capsys.readouterr().out
    assert f"nothing to convert in Sequential; it is unchanged.\n  left alone: 0+1 ({reason})" in out
    assert [m.reason for m in model.ganfast_left_alone] == [reason] and model.ganfast_changes == []
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_a_nearest_upsample_with_align_corners_keeps_raising():
    # F.interpolate refuses align_corners for nearest: the stock pair raises, and so must the model
    # after accelerate, rather than compute something the code never computed.
    model = nn.Sequential(nn.Upsample(scale_factor=2, align_corners=False), nn.Conv2d(3, 4, 3, padding=1))
    ganfast.accelerate(model, verbose=False)
    assert model.ganfast_changes == []
    assert model.ganfast_left_alone[0].reason == (
        "the Upsample sets align_corners=False, which nearest upsampling refuses")
    with pytest.raises(ValueError, match="align_corners"):
        model(torch.randn(1, 3, 4, 4))


def test_a_pair_kept_apart_by_a_legacy_norm_names_it():
    # spectral_norm=False keeps the legacy spectral norm, a hook the user applied, not registered:
    # "has hooks" alone would not say which.
    model = nn.Sequential(nn.Upsample(scale_factor=2),
                          nn.utils.spectral_norm(nn.Conv2d(3, 4, 3, padding=1)),
                          nn.Upsample(scale_factor=2))
    with pytest.warns(FutureWarning, match="weight_norm"):
        model.append(nn.utils.weight_norm(nn.Conv2d(4, 4, 3, padding=1)))
    ganfast.accelerate(model, spectral_norm=False, verbose=False)
    assert [m.reason for m in model.ganfast_left_alone] == [
        "the Conv2d has the legacy torch.nn.utils.spectral_norm, a hook, which would no longer run; "
        "accelerate converts it unless spectral_norm=False",
        "the Conv2d has the legacy torch.nn.utils.weight_norm, a hook, which would no longer run"]


def test_legacy_spectral_norm_on_a_layer_that_reads_its_weight_twice_is_left_alone(capsys):
    # An LSTM reads each weight twice per call: the legacy hook advances u and v once per call,
    # a parametrization would advance them twice, and the outputs drifted from the first call.
    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.utils.spectral_norm(nn.LSTM(3, 4, batch_first=True), name="weight_hh_l0")
            self.head = nn.utils.spectral_norm(nn.Linear(4, 2))

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    torch.manual_seed(0)
    original = Recurrent().double()
    converted = Recurrent().double()
    converted.load_state_dict(original.state_dict())
    ganfast.accelerate(converted)
    _assert_same_steps(original, converted, lambda: torch.randn(2, 5, 3, dtype=torch.float64))
    assert "left alone: rnn.weight_hh_l0 (LSTM is not known to read weight_hh_l0 once per call" \
        in capsys.readouterr().out
    assert [c.path for c in converted.ganfast_changes] == ["head.weight"]  # a Linear reads it once


def test_legacy_spectral_norm_on_a_layer_that_pytorch_reads_without_calling_it_stays(capsys):
    # MultiheadAttention reads out_proj.weight itself: the legacy hook, run on out_proj's call,
    # never normalized it, and a conversion (a Linear subclass) normalized it: other outputs.
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            # float64 from the start: the weight the legacy hook set at its creation is never
            # set again (.double() would leave it float32)
            self.attention = nn.MultiheadAttention(4, 2, batch_first=True, dtype=torch.float64)
            self.attention.out_proj = nn.utils.spectral_norm(self.attention.out_proj)
            self.head = nn.utils.spectral_norm(nn.Linear(4, 2, dtype=torch.float64))

        def forward(self, x):
            return self.head(self.attention(x, x, x, need_weights=False)[0])

    torch.manual_seed(0)
    original, converted = Attention(), Attention()
    converted.load_state_dict(original.state_dict())
    ganfast.accelerate(converted)
    _assert_same_steps(original, converted, lambda: torch.randn(2, 5, 4, dtype=torch.float64))
    assert ("left alone: attention.out_proj.weight (inside MultiheadAttention, which may read the "
            "NonDynamicallyQuantizableLinear's weight without calling it") in capsys.readouterr().out
    assert [c.path for c in converted.ganfast_changes] == ["head.weight"]  # the model calls it


@pytest.mark.parametrize("cell", [nn.RNNCell, nn.LSTMCell, nn.GRUCell])
def test_legacy_spectral_norm_on_an_rnn_cell_is_converted_with_the_same_results(cell):
    # A cell reads weight_ih and weight_hh once per call, as a Linear reads its weight.
    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.utils.spectral_norm(cell(3, 4), name="weight_hh")

        def forward(self, x):
            out = self.cell(x)
            return out[0] if isinstance(out, tuple) else out

    torch.manual_seed(0)
    original = Recurrent().double()
    converted = Recurrent().double()
    converted.load_state_dict(original.state_dict())
    ganfast.accelerate(converted, verbose=False)
    assert [c.path for c in converted.ganfast_changes] == ["cell.weight_hh"]
    _assert_same_steps(original, converted, lambda: torch.randn(2, 3, dtype=torch.float64))


def test_the_report_names_the_model_class_not_its_parametrized_subclass(capsys):
    ganfast.accelerate(nn.utils.spectral_norm(nn.Linear(3, 2)))
    ganfast.accelerate(nn.utils.parametrizations.spectral_norm(nn.Conv2d(3, 2, 3)), upsample_conv=False,
                       spectral_norm=False)
    out = capsys.readouterr().out
    assert "1 change(s) in Linear\n" in out
    assert "nothing to convert in Conv2d;" in out


class _SharedModules(nn.Module):
    """One spectral-normalized conv after an Upsample in two Sequentials and plain in a third,
    one Upsample in all of them and called on its own."""

    def __init__(self):
        super().__init__()
        up, conv = nn.Upsample(scale_factor=2), nn.utils.parametrizations.spectral_norm(
            nn.Conv2d(3, 3, 3, padding=1))
        self.a = nn.Sequential(up, conv, nn.ReLU())
        self.b = nn.Sequential(up, conv)
        self.c = nn.Sequential(nn.ReLU(), conv, up)
        self.up = up

    def forward(self, x):
        return self.a(x) + self.b(x) + self.c(x) + self.up(x).mean()


@pytest.mark.parametrize("kind,make,fused", [
    ("shared", _SharedModules, 2),
    ("data-parallel", lambda: nn.DataParallel(stock_gans.DCGANGenerator(z_dim=8, width=2)), 4),
    ("module-dict", lambda: nn.ModuleDict({"g": stock_gans.SNGANGenerator(z_dim=8, width=4)}), 3),
], ids=["shared", "data-parallel", "module-dict"])
def test_shared_and_wrapped_modules_keep_their_results(kind, make, fused):
    torch.manual_seed(0)
    original, converted = _pair(make())
    assert sum(isinstance(m, ganfast.nn.UpsampleConv2d) for m in converted.modules()) == fused
    assert converted.state_dict().keys() == original.state_dict().keys()
    shape = {"shared": (2, 3, 4, 5), "data-parallel": (2, 8), "module-dict": (2, 8)}[kind]
    run = (lambda m: m["g"]) if kind == "module-dict" else (lambda m: m)
    _assert_same_steps(run(original), run(converted), lambda: torch.randn(*shape, dtype=torch.float64))
    fresh = make().double()  # the converted model's checkpoint loads into the stock model
    fresh.load_state_dict(converted.state_dict())
    torch.testing.assert_close(fresh.state_dict(), original.state_dict(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("api", ["parametrizations", "legacy"])
def test_a_model_made_on_the_meta_device_converts_and_loads_a_checkpoint(api):
    def make():
        return stock_gans.SNGANDiscriminator(width=4, spectral_norm=api).double()

    torch.manual_seed(0)
    original = make()
    with torch.device("meta"):
        converted = make()
    ganfast.accelerate(converted, verbose=False)
    assert len(converted.ganfast_changes) == 11
    converted.to_empty(device="cpu")
    converted.load_state_dict(original.state_dict())
    _assert_same_steps(original, converted, lambda: torch.randn(2, 3, 32, 32, dtype=torch.float64))


def test_an_ema_copy_of_the_converted_model_tracks_the_stock_models_copy():
    torch.manual_seed(0)
    stock = stock_gans.SNGANGenerator(z_dim=4, width=4).double()
    for module in list(stock.modules()):
        if isinstance(module, nn.Conv2d):
            nn.utils.parametrizations.spectral_norm(module)
    fast = ganfast.accelerate(copy.deepcopy(stock), verbose=False)
    stock_ema, fast_ema = copy.deepcopy(stock), copy.deepcopy(fast)  # EMA copies, made after
    for model, ema in ((stock, stock_ema), (fast, fast_ema)):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        torch.manual_seed(1)
        for _ in range(3):
            model(torch.randn(3, 4, dtype=torch.float64)).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()
            with torch.no_grad():  # parameters and buffers in order, as EMA code zips them
                for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
                    p_ema.lerp_(p, 0.1)
                for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
                    b_ema.copy_(b)
    z = torch.randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(fast_ema.eval()(z), stock_ema.eval()(z), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("api", ["parametrizations", "legacy"])
def test_a_gradient_penalty_through_a_converted_discriminator_is_unchanged(api):
    # WGAN-GP's double backward through the spectral norms, D called twice per step (real, fake).
    torch.manual_seed(0)
    original, converted = _pair(stock_gans.SNGANDiscriminator(width=4, spectral_norm=api))
    for _ in range(2):
        real, fake = torch.randn(2, 2, 3, 32, 32, dtype=torch.float64)
        grads = []
        for d in (original, converted):
            x = fake.clone().requires_grad_(True)
            loss = d(x).mean() - d(real).mean()
            (g,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
            (loss + ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()).backward()
            grads.append([p.grad for p in d.parameters()])
            d.zero_grad(set_to_none=True)
        for g_converted, g_original in zip(grads[1], grads[0], strict=True):
            torch.testing.assert_close(g_converted, g_original, rtol=1e-10, atol=1e-10)
