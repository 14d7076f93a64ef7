import pytest
import torch

from digits.models import count_parameters, create_model, list_models, model_options, summary
from digits.models.layers import TTA_SHIFTS, Levels, ShiftAverage, dct_filters, shift_images


@pytest.mark.parametrize("name", list_models())
def test_every_model_forward_backward_without_nan(name):
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.rand(4, 1, 28, 28)
    out = model(x)
    assert out.shape == (4, 10)
    loss = torch.nn.functional.cross_entropy(out, torch.arange(4))
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"


def test_seed_model_is_the_articles_network():
    model = create_model("seed")
    assert count_parameters(model) == 693_962
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(32, 1, 3, 3), (32,), (128, 5408), (128,), (10, 128), (10,)]
    table = summary(model)
    for line in [
        "(None, 32, 26, 26)",
        "(None, 32, 13, 13)",
        "(None, 5408)",
        "(None, 128)",
        "(None, 10)",
        "Total params: 693,962",
    ]:
        assert line in table


def test_seed_model_uses_keras_initialisation():
    torch.manual_seed(0)
    dense = create_model("seed")[4]
    limit = (6 / (5408 + 128)) ** 0.5  # glorot-uniform bound
    assert dense.weight.abs().max() <= limit
    assert dense.weight.abs().max() > 0.9 * limit
    assert torch.count_nonzero(dense.bias) == 0


@pytest.mark.parametrize(
    "options",
    [
        {"activation": "sigmoid"},
        {"activation": "gelu"},
        {"batchnorm": True},
        {"dropout": 0.5},
        {"head": "gap"},
    ],
)
def test_seed_switches_change_the_network(options):
    base = create_model("seed")
    changed = create_model("seed", **options)
    assert [type(m) for m in base.modules()] != [type(m) for m in changed.modules()] or options == {"dropout": 0.5}
    if "dropout" in options:
        assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in changed.modules())
    assert changed(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_gap_head_is_much_smaller():
    assert count_parameters(create_model("seed", head="gap")) < 10_000


def test_unknown_model_and_option_are_clear_errors():
    with pytest.raises(ValueError, match="choose one of"):
        create_model("resnet9000")
    with pytest.raises(ValueError, match="its options are"):
        create_model("seed", kernel=5)
    with pytest.raises(ValueError, match="activation"):
        create_model("seed", activation="swish")
    with pytest.raises(ValueError, match="dropout"):
        create_model("seed", dropout=1.5)


def test_registry_lists_reference_models():
    names = list_models()
    assert {"seed", "lenet5", "mlp"} <= set(names)
    assert count_parameters(create_model("lenet5")) == 61_706
    assert "activation" in model_options("seed")


def test_fastnet_stride_stem_replaces_the_full_resolution_pool():
    pooled, strided = create_model("fastnet"), create_model("fastnet", stem="stride", widths=[16, 24, 48])
    assert isinstance(pooled[1], torch.nn.MaxPool2d) and pooled[0].stride == (1, 1)
    assert strided[0].stride == (2, 2) and not isinstance(strided[1], torch.nn.MaxPool2d)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in strided) == 2
    assert strided(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="stem"):
        create_model("fastnet", stem="patchify")
    with pytest.raises(ValueError, match="three positive channel counts"):
        create_model("fastnet", widths=[16, 32])


def test_dct_filters_are_an_orthonormal_basis_and_its_negatives():
    filters = dct_filters(18).flatten(1)  # (18, 9)
    basis = filters[0::2]
    assert torch.equal(filters[1::2], -basis)
    assert torch.allclose(basis @ basis.T, torch.eye(9), atol=1e-6)
    assert torch.allclose(basis[0], torch.full((9,), 1 / 3))  # lowest frequency first: local brightness
    assert torch.equal(dct_filters(16), dct_filters(18)[:16])
    with pytest.raises(ValueError, match="1 to 18 filters"):
        dct_filters(19)


def test_fastnet_dct_stem_is_fixed():
    model = create_model("fastnet", stem="dct", widths=[16, 24, 48])
    conv, bn = model[0], model[1]
    assert conv.stride == (2, 2) and torch.equal(conv.weight, dct_filters(16))
    assert not conv.weight.requires_grad and not bn.affine
    torch.nn.functional.cross_entropy(model(torch.rand(4, 1, 28, 28)), torch.arange(4)).backward()
    assert conv.weight.grad is None and model[3].weight.grad is not None
    with pytest.raises(ValueError, match="1 to 18 filters"):
        create_model("fastnet", stem="dct", widths=[24, 24, 48])


def test_tta_averages_the_probabilities_of_the_image_and_its_shifts_in_eval_mode_only():
    torch.manual_seed(0)
    model = create_model("fastnet", stem="dct", tta=True)
    assert isinstance(model, ShiftAverage) and model.training
    x = torch.rand(6, 1, 28, 28)
    net = model.net
    torch.manual_seed(1)
    trained = model(x)  # training mode: the network itself, batch statistics and all
    torch.manual_seed(1)
    assert torch.equal(trained, net(x))
    model.eval()
    assert not net.training  # the wrapper's mode is the network's
    with torch.no_grad():
        expected = torch.stack([net(shift_images(x, dy, dx)).softmax(1) for dy, dx in TTA_SHIFTS]).mean(0)
        got = model(x)
    assert got.shape == (6, 10)
    torch.testing.assert_close(got.softmax(1), expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got.exp().sum(1), torch.ones(6))  # log-probabilities: a softmax leaves them as they are
    assert len({(dy, dx) for dy, dx in TTA_SHIFTS}) == 5 and (0, 0) in TTA_SHIFTS  # no flips, no repeats
    assert ShiftAverage(create_model("fastnet").eval()).training is False  # starts in the network's mode


def test_tta_is_an_option_of_every_model():
    for name in list_models():
        assert model_options(name)["tta"] is False
    assert count_parameters(create_model("seed", tta=True)) == count_parameters(create_model("seed"))
    with pytest.raises(ValueError, match="tta must be true or false"):
        create_model("fastnet", tta="yes")


def test_levels_sets_any_lighting_and_polarity_as_mnists(mnist):
    digits = torch.from_numpy(mnist.test_images[:200].copy()).float().div(255).unsqueeze(1)
    levels = Levels()
    as_given = levels(digits)
    assert as_given.shape == digits.shape and as_given.dtype == digits.dtype
    assert (as_given - digits).abs().mean() < 0.002  # an MNIST digit passes (nearly) unchanged
    for name, seen in {
        "negative": 1.0 - digits,
        "on grey paper": 0.5 + 0.4 * digits,
        "low contrast": 0.3 + 0.15 * digits,
        "dark ink on light grey": 0.85 - 0.5 * digits,
    }.items():
        torch.testing.assert_close(levels(seen), as_given, atol=2e-3, rtol=0, msg=name)
    blank = torch.full((2, 1, 28, 28), 0.7)
    assert torch.equal(levels(blank), torch.zeros_like(blank))  # no ink: all background, no division by zero


def test_fastnet_levels_option_puts_levels_first_and_trains_nothing_in_it():
    plain, leveled = create_model("fastnet"), create_model("fastnet", levels=True)
    assert isinstance(leveled[0], Levels) and not isinstance(plain[0], Levels)
    assert count_parameters(leveled) == count_parameters(plain)
    x = torch.rand(4, 1, 28, 28)
    torch.nn.functional.cross_entropy(leveled(x), torch.arange(4)).backward()  # the sort passes gradients on
    with pytest.raises(ValueError, match="levels must be true or false"):
        create_model("fastnet", levels="maybe")
