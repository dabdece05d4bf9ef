"""SpectralNormGroup (torch backend, CPU): every layer normalized once per block, which equals
PyTorch's spectral norm with the discriminator called once per step; nothing changes outside
a block; bad input is named."""

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrizations, parametrize

import ganfast
from ganfast.bench.spectral_norm import SNGANDiscriminator32

from .dispatch_count import RecordOps


def discriminators(dtype=torch.float64, channels=8):
    """The same SNGAN-32 D (same weights, same u, v) with PyTorch's and with ganfast's SN."""
    models = []
    for sn in (parametrizations.spectral_norm, ganfast.nn.spectral_norm):
        torch.manual_seed(0)
        models.append(SNGANDiscriminator32(sn, channels=channels).to(dtype))
    return models


def hinge(d_real, d_fake):
    return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()


def sn_buffers(model):
    return [b for name, b in model.named_buffers() if name.endswith(("_u", "_v"))]


def test_once_equals_pytorch_with_one_call_per_step():
    theirs, ours = discriminators()
    group = ganfast.nn.SpectralNormGroup(ours, backend="torch")
    assert len(group) == sum(1 for n, _ in ours.named_buffers() if n.endswith("_u"))
    g = torch.Generator().manual_seed(1)
    for _ in range(3):  # steps: D(real) and D(fake) share the normalization of the block
        real = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=g)
        fake = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=g)
        for model in (theirs, ours):
            model.zero_grad()
        out = theirs(torch.cat([real, fake]))  # PyTorch: one access per layer per step
        hinge(out[:2], out[2:]).backward()
        with group.once():
            loss = hinge(ours(real), ours(fake))
        loss.backward()
        for a, b in zip(theirs.parameters(), ours.parameters(), strict=True):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-12, atol=1e-12)
        for a, b in zip(sn_buffers(theirs), sn_buffers(ours), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
        with torch.no_grad():  # an optimizer step between blocks is seen by the next block
            for a, b in zip(theirs.parameters(), ours.parameters(), strict=True):
                a.sub_(0.1 * a.grad)
                b.sub_(0.1 * b.grad)


class MixedDiscriminator(nn.Module):
    """Spectral-normed layers of every weight kind a discriminator holds: Conv2d,
    ConvTranspose2d (normalized along dim 1), Conv1d, Linear and, with `classes`, a projection
    Embedding (a conditional D's)."""

    def __init__(self, sn, channels: int, n_power_iterations: int, classes: int = 0):
        super().__init__()
        def normed(layer):
            return sn(layer, n_power_iterations=n_power_iterations)
        self.conv = normed(nn.Conv2d(3, channels, 3, padding=1))
        self.up = normed(nn.ConvTranspose2d(channels, channels, 2, stride=2))
        self.mix = normed(nn.Conv1d(channels, channels, 1))
        self.score = normed(nn.Linear(channels, 1))
        self.embed = normed(nn.Embedding(classes, channels)) if classes else None

    def forward(self, x, labels=None):
        h = F.leaky_relu(self.up(F.leaky_relu(self.conv(x), 0.2)), 0.2)
        h = self.mix(h.flatten(2)).sum(2)
        out = self.score(h).squeeze(1)
        return out if self.embed is None else out + (self.embed(labels) * h).sum(1)


@settings(max_examples=25, deadline=None)
@given(channels=st.integers(2, 5), n_power_iterations=st.integers(1, 3),
       conditional=st.booleans(), batch=st.integers(1, 3),
       dtype_tol=st.sampled_from([(torch.float64, 1e-10), (torch.float32, 1e-4)]),
       backend=st.sampled_from(["auto", "torch"]), training=st.booleans(),
       seed=st.integers(0, 2**16))
def test_once_equals_pytorch_over_drawn_discriminators(channels, n_power_iterations, conditional,
                                                      batch, dtype_tol, backend, training, seed):
    # The block against PyTorch's D called once on torch.cat([real, fake]) (as the README
    # says), for layers of every weight kind, more power iterations and eval; float32 at the
    # first step only: later, u's rounding grows as 1 / (the gap between the two largest
    # singular values), which steps can close, in PyTorch's float32 as in ganfast's.
    dtype, tol = dtype_tol
    models = []
    for sn in (parametrizations.spectral_norm, ganfast.nn.spectral_norm):
        torch.manual_seed(seed)
        models.append(MixedDiscriminator(sn, channels, n_power_iterations,
                                         4 if conditional else 0).to(dtype).train(training))
    theirs, ours = models
    group = ganfast.nn.SpectralNormGroup(ours, backend=backend)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(3 if dtype == torch.float64 else 1):
        real, fake = (torch.randn(batch, 3, 3, 4, dtype=torch.float64, generator=gen).to(dtype)
                      for _ in range(2))
        labels = torch.randint(0, 4, (2 * batch,), generator=gen) if conditional else None
        for model in (theirs, ours):
            model.zero_grad()
        out = theirs(torch.cat([real, fake]), labels)
        hinge(out[:batch], out[batch:]).backward()
        with group.once():
            d_real = ours(real, None if labels is None else labels[:batch])
            d_fake = ours(fake, None if labels is None else labels[batch:])
            loss = hinge(d_real, d_fake)
        loss.backward()
        torch.testing.assert_close(torch.cat([d_real, d_fake]), out, rtol=tol, atol=tol)
        for a, b in zip(theirs.parameters(), ours.parameters(), strict=True):
            torch.testing.assert_close(b.grad, a.grad, rtol=tol, atol=tol)
        for a, b in zip(sn_buffers(theirs), sn_buffers(ours), strict=True):
            torch.testing.assert_close(b, a, rtol=tol, atol=tol)
        with torch.no_grad():
            for a, b in zip(theirs.parameters(), ours.parameters(), strict=True):
                a.sub_(0.1 * a.grad)
                b.sub_(0.1 * b.grad)


def test_outside_a_block_every_access_updates_as_pytorch():
    theirs, ours = discriminators()
    group = ganfast.nn.SpectralNormGroup(ours, backend="torch")
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with group.once():
        ours(x)
    theirs(x)
    for _ in range(2):
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-12, atol=1e-12)
    for a, b in zip(sn_buffers(theirs), sn_buffers(ours), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


def test_a_nested_block_is_part_of_the_outer_one():
    # A helper that opens its own block (an R1 step, say) inside the step's block: the outer
    # block's weights stay in use, inside the inner block and after it.
    _, ours = discriminators()
    group = ganfast.nn.SpectralNormGroup(ours, backend="torch")
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with group.once():
        outer = ours(x)
        buffers = [b.clone() for b in sn_buffers(ours)]
        with torch.no_grad():  # a block reads the weights on entry: this is not seen
            for module, name, _ in group.layers:
                original = module.parametrizations[name].original
                original.add_(0.1 * torch.randn_like(original))
        with group.once():
            torch.testing.assert_close(ours(x), outer, rtol=0, atol=0)
        torch.testing.assert_close(ours(x), outer, rtol=0, atol=0)
        assert all(torch.equal(a, b) for a, b in zip(buffers, sn_buffers(ours), strict=True))
    assert all(p._group_weight is None for _, _, p in group.layers)
    assert not torch.equal(ours(x), outer)  # outside: the changed weights, normalized


def test_an_overlapping_group_nested_inside_keeps_the_outer_blocks_layers():
    # Another group's block (G and D together, say) opened inside D's: D's layers keep D's
    # block's weights, during and after it; the layers only the inner group has (G's) are
    # normalized by the inner block and released by it.
    def linear():
        return ganfast.nn.spectral_norm(nn.Linear(4, 4).double())

    G, D = nn.Sequential(linear()), nn.Sequential(linear(), nn.ReLU(), linear())
    sn_d = ganfast.nn.SpectralNormGroup(D, backend="torch")
    sn_all = ganfast.nn.SpectralNormGroup(nn.ModuleDict({"G": G, "D": D}), backend="torch")
    assert len(sn_all) == 3
    with sn_d.once():
        held = [D[0].weight, D[2].weight]
        u = [p._u.clone() for _, _, p in sn_d.layers]
        with sn_all.once():
            assert D[0].weight is held[0] and D[2].weight is held[1]
            assert G[0].weight is G[0].weight  # normalized once by the inner block
        assert D[0].weight is held[0] and D[2].weight is held[1]
        assert all(torch.equal(a, p._u) for a, (_, _, p) in zip(u, sn_d.layers, strict=True))
        assert G[0].weight is not G[0].weight  # released: every access normalizes again
    assert all(p._group_weight is None for _, _, p in sn_all.layers)


def test_a_layer_at_two_places_is_normalized_once_per_block():
    # accelerate fuses an Upsample + a spectral-normalized conv used at two places into two
    # modules that share the conv's parametrization: one power-iteration step per block, as
    # before the conversion.
    conv = ganfast.nn.spectral_norm(nn.Conv2d(3, 3, 3, padding=1).double())
    stock = nn.Sequential(nn.Sequential(nn.Upsample(scale_factor=2), conv), nn.AvgPool2d(2),
                          nn.Sequential(nn.Upsample(scale_factor=2), conv))
    fused = ganfast.accelerate(stock, verbose=False)
    group = ganfast.nn.SpectralNormGroup(fused, backend="torch")
    assert len(group) == 1
    p = group.layers[0][2]
    weight = conv.parametrizations.weight.original.detach().flatten(1)
    u_one_step = F.normalize(weight @ p._v, dim=0)
    with group.once():
        # Both modules read the shared weight (each its own ParametrizationList, holding the
        # same original): the block's, no step of their own.
        fused(torch.randn(1, 3, 4, 4, dtype=torch.float64))
    torch.testing.assert_close(p._u, u_one_step, rtol=1e-12, atol=1e-12)


def test_a_copy_made_inside_a_block_is_not_part_of_it():
    # An EMA copy taken inside the step's block: deepcopy works, and the copy normalizes on
    # access as a copy taken after the block does.
    _, ours = discriminators()
    group = ganfast.nn.SpectralNormGroup(ours, backend="torch")
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with group.once():
        inside = copy.deepcopy(ours)
    after = copy.deepcopy(ours)
    assert all(p._group_weight is None for p in inside.modules()
               if isinstance(p, ganfast.nn.SpectralNorm))
    torch.testing.assert_close(inside(x), after(x), rtol=0, atol=0)


def test_eval_block_does_not_update():
    _, ours = discriminators()
    ours.eval()
    before = [b.clone() for b in sn_buffers(ours)]
    reference = ours(torch.ones(1, 3, 32, 32, dtype=torch.float64))
    with ganfast.nn.SpectralNormGroup(ours, backend="torch").once():
        got = ours(torch.ones(1, 3, 32, 32, dtype=torch.float64))
    torch.testing.assert_close(got, reference, rtol=1e-12, atol=1e-12)
    for a, b in zip(before, sn_buffers(ours), strict=True):
        assert torch.equal(a, b)


def test_forward_inside_a_block_runs_no_normalization_ops():
    # The host cost of a D forward inside a block does not grow with its number of SN layers:
    # the dispatcher sees exactly the ops of the same model without spectral norm.
    _, ours = discriminators(torch.float32)
    torch.manual_seed(0)
    plain = SNGANDiscriminator32(lambda module: module, channels=8)
    x = torch.randn(2, 3, 32, 32)
    with ganfast.nn.SpectralNormGroup(ours, backend="torch").once():
        with RecordOps() as grouped:
            ours(x)
    with RecordOps() as unnormalized:
        plain(x)
    assert grouped.names == unnormalized.names


def test_bad_models_and_backends_are_named():
    with pytest.raises(ValueError, match="no ganfast spectral-norm layer"):
        ganfast.nn.SpectralNormGroup(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="PyTorch's spectral norm.*ganfast.accelerate"):
        ganfast.nn.SpectralNormGroup(nn.Sequential(parametrizations.spectral_norm(nn.Linear(3, 4))))
    # A model that is itself the layer is named by its type, not by an empty path.
    with pytest.raises(ValueError, match=r"norm, not ganfast's: Linear\.weight;"):
        ganfast.nn.SpectralNormGroup(parametrizations.spectral_norm(nn.Linear(3, 4)))
    with pytest.raises(ValueError, match="SpectralNormGroup: backend must be one of"):
        ganfast.nn.SpectralNormGroup(ganfast.nn.spectral_norm(nn.Linear(3, 4)), backend="nope")
    group = ganfast.nn.SpectralNormGroup(ganfast.nn.spectral_norm(nn.Linear(3, 4)), backend="triton")
    with pytest.raises(ganfast.backends.BackendUnavailable, match="needs CUDA tensors"):
        group.normalize()


def test_a_namesake_of_pytorchs_spectral_norm_is_not_taken_for_it():
    # Recognised by type, as ganfast.nn.spectral_norm does: a user's own parametrization that
    # happens to share the class name is neither PyTorch's nor ganfast's.
    class _SpectralNorm(nn.Module):
        def forward(self, weight):
            return weight

    layer = nn.Linear(3, 4)
    parametrize.register_parametrization(layer, "weight", _SpectralNorm())
    with pytest.raises(ValueError, match="no ganfast spectral-norm layer"):
        ganfast.nn.SpectralNormGroup(layer)


def test_group_plan_refuses_mixed_dtypes():
    # The fused kernels read u and v with the weight's dtype: a mismatch must not reach them.
    from ganfast.ops import spectral_norm as ops

    weight = torch.randn(4, 3)
    plan = ops.GroupPlan([weight], [0], [1])
    with pytest.raises(ValueError, match="share one dtype"):
        plan.pointer_tables([weight], [torch.randn(4, dtype=torch.float64)], [torch.randn(3)])


def test_group_plan_refuses_complex_weights():
    # The kernels' arithmetic is real: a complex weight's numbers would be read as pairs of
    # reals. (Each layer's SpectralNorm takes complex weights on the torch route.)
    from ganfast.ops import spectral_norm as ops

    weight = torch.randn(4, 3, dtype=torch.complex64)
    plan = ops.GroupPlan([weight], [0], [1])
    with pytest.raises(ValueError, match="fused kernels take real weights.*backend='torch'"):
        plan.pointer_tables([weight], [torch.randn(4, dtype=torch.complex64)],
                            [torch.randn(3, dtype=torch.complex64)])


def test_group_plan_follows_its_weights_to_another_device():
    # A plan's meta table lives on one device; when the layers move (model.to("cuda:1")) the
    # next launch's tables, meta included, are made on the weights' new device.
    from ganfast.ops import spectral_norm as ops

    weight = torch.randn(4, 3)
    plan = ops.GroupPlan([weight], [0], [1])
    expected = plan.meta.clone()
    plan.meta = torch.empty_like(plan.meta, device="meta")  # as if made on another device
    tables, meta = plan.pointer_tables([weight], [torch.randn(4)], [torch.randn(3)])
    assert meta is plan.meta and meta.device == weight.device == tables.device
    assert torch.equal(meta, expected)


def test_functional_call_with_other_weights_inside_a_block_normalizes_those():
    # Inside a block each access returned the block's W / sigma whatever tensor the layer was
    # given: torch.func.functional_call with other parameters (an EMA's, a meta-learning
    # step's) got the model's own normalized weights, and torch.func.grad through them a zero
    # gradient. The oracle: PyTorch's spectral norm, same u and v (eval: no update).
    theirs, ours = discriminators()
    theirs.eval(), ours.eval()
    group = ganfast.nn.SpectralNormGroup(ours, backend="torch")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=g)
    others = {name: 1.5 * p.detach() + 0.1 * torch.randn(p.shape, dtype=p.dtype, generator=g)
              for name, p in ours.named_parameters()}

    def loss(model, params):
        return torch.func.functional_call(model, params, (x,)).square().sum()

    expected = loss(theirs, others)
    expected_grad = torch.func.grad(lambda p: loss(theirs, p))(others)
    with group.once():
        got = loss(ours, others)
        got_grad = torch.func.grad(lambda p: loss(ours, p))(others)
        own = ours(x)  # the model's own parameters still get the block's weights
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for name in others:
        torch.testing.assert_close(got_grad[name], expected_grad[name], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(own, theirs(x), rtol=1e-12, atol=1e-12)


def test_a_group_whose_layer_lost_its_spectral_norm_names_it():
    # remove_spectral_norm after the group was made: AttributeError "'Linear' object has no
    # attribute 'parametrizations'" at the next once(); removed and applied again: the group
    # iterated the old parametrization's u and v while the layer normalized itself on access.
    for reapply in (False, True):
        model = nn.Sequential(ganfast.nn.spectral_norm(nn.Linear(3, 4)),
                              ganfast.nn.spectral_norm(nn.Linear(4, 2)))
        group = ganfast.nn.SpectralNormGroup(model, backend="torch")
        ganfast.nn.remove_spectral_norm(model[1])
        if reapply:
            ganfast.nn.spectral_norm(model[1])
        with pytest.raises(ValueError, match=r"SpectralNormGroup: the spectral norm of 1\.weight "
                                             r"was removed .* make a new SpectralNormGroup"):
            with group.once():
                pass
        with pytest.raises(ValueError, match=r"spectral norm of 1\.weight was removed"):
            group.normalize()
        assert all(p._group_weight is None for _, _, p in group.layers)
        with ganfast.nn.SpectralNormGroup(model, backend="torch").once():  # a new group works
            model(torch.randn(2, 3))


def test_a_model_that_is_not_a_module_is_named_and_the_group_has_a_repr():
    with pytest.raises(TypeError, match="SpectralNormGroup: model must be a torch.nn.Module .* "
                                        "got Tensor"):
        ganfast.nn.SpectralNormGroup(torch.randn(3, 3))
    model = nn.Sequential(ganfast.nn.spectral_norm(nn.Linear(3, 4)), nn.ReLU(),
                          ganfast.nn.spectral_norm(nn.Linear(4, 2)))
    assert repr(ganfast.nn.SpectralNormGroup(model)) == \
        "SpectralNormGroup(2 layers: 0.weight, 2.weight; backend='auto')"
    assert repr(ganfast.nn.SpectralNormGroup(model[0])) == \
        "SpectralNormGroup(1 layer: Linear.weight; backend='auto')"
    many = nn.Sequential(*(ganfast.nn.spectral_norm(nn.Linear(2, 2)) for _ in range(10)))
    assert repr(ganfast.nn.SpectralNormGroup(many)).startswith(
        "SpectralNormGroup(10 layers: 0.weight, 1.weight, ") and ", 7.weight, ...;" in repr(
            ganfast.nn.SpectralNormGroup(many))
