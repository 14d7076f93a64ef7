"""The hand-written passes compute what autograd computes, and training uses them only where they apply."""

from __future__ import annotations

import copy
import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from digits.models import create_model
from digits.models.inference import as_model_input
from digits.train.config import get_preset, override
from digits.train.evaluate import to_tensors
from digits.train.fast import native
from digits.train.fast.fused import SeedGradients, StemForward, convblocks, seed_layers, stem_forward, stem_layers
from digits.train.loop import fit, gradient_function


def autograd_grads(model, x, y, label_smoothing):
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("training", [True, False])
def test_seed_gradients_equal_autograd_in_float64(label_smoothing, training):
    torch.manual_seed(0)
    model = create_model("seed", width=8, dropout=0.3).double().train(training)
    x = torch.rand(13, 1, 28, 28, dtype=torch.float64)  # an odd batch, like an epoch's last one
    y = torch.randint(0, 10, (13,))
    torch.manual_seed(7)  # the same dropout draw on both sides
    ref_loss, ref = autograd_grads(model, x, y, label_smoothing)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    loss, logits = SeedGradients(model, "fp32", label_smoothing)(x, y)  # float64: PyTorch operations
    assert torch.allclose(loss, ref_loss, rtol=0, atol=1e-12)
    assert logits.shape == (13, 10)
    for p, g in zip(model.parameters(), ref):
        assert p.grad.shape == p.shape
        assert torch.allclose(p.grad, g, rtol=1e-10, atol=1e-14)


def test_seed_gradients_in_bf16_are_close_to_float32():
    torch.manual_seed(0)
    model = create_model("seed").to(memory_format=torch.channels_last).eval()  # eval: no dropout draw
    x = torch.rand(32, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,))
    _, ref = autograd_grads(model, x, y, 0.0)
    model.zero_grad(set_to_none=True)
    SeedGradients(model, "bf16")(x, y)
    for p, g in zip(model.parameters(), ref):
        assert p.grad.dtype == torch.float32
        cos = F.cosine_similarity(p.grad.flatten(), g.flatten(), dim=0)
        assert cos > 0.99, cos


COMPILER = os.environ.get("CC") or "cc"
needs_compiler = pytest.mark.skipif(
    shutil.which(shlex.split(COMPILER)[0]) is None, reason="no C compiler to build digits/train/fast/convblocks.c"
)


def same_memory_order(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal strides on every dimension longer than 1 (a size-1 dimension's stride is never used)."""
    return a.shape == b.shape and all(x == y for x, y, n in zip(a.stride(), b.stride(), a.shape) if n > 1)


@needs_compiler
@pytest.mark.parametrize("training", [True, False])
def test_kernel_first_block_matches_pytorch_operations_on_mnist(mnist, training):
    # Real digits: blank backgrounds make ties in max-pooling, which must go where max_pool2d sends them.
    x, y = to_tensors(mnist.train_images[:50], mnist.train_labels[:50])
    x = as_model_input(x, channels_last=True)
    torch.manual_seed(0)
    model = create_model("seed").to(memory_format=torch.channels_last).train(training)
    results = []
    for use_kernel in (True, False):
        grads = SeedGradients(model, "fp32", 0.1, use_kernel=use_kernel)
        assert (grads.kernel is not None) == use_kernel
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)
        loss, logits = grads(x, y)
        results.append((loss, logits, [p.grad.clone() for p in model.parameters()]))
        # the optimizer's fused Adam reads gradients in the parameters' memory order
        assert all(same_memory_order(p.grad, p) for p in model.parameters())
    (loss_k, logits_k, grads_k), (loss_t, logits_t, grads_t) = results
    assert torch.allclose(loss_k, loss_t, atol=1e-6)
    assert torch.allclose(logits_k, logits_t, atol=1e-5)
    for a, b in zip(grads_k, grads_t):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7), (a - b).abs().max()


@needs_compiler
def test_kernel_refuses_images_that_are_not_28x28():
    grads = SeedGradients(create_model("seed"))
    with pytest.raises(ValueError, match=r"\(batch, 1, 28, 28\)"):
        grads(torch.rand(2, 1, 20, 20), torch.zeros(2, dtype=torch.long))


def test_kernel_serves_only_float32_and_channels_in_sixteens():
    assert SeedGradients(create_model("seed", width=24)).kernel is None
    assert SeedGradients(create_model("seed").double()).kernel is None
    if convblocks() is not None:
        assert SeedGradients(create_model("seed", width=16), "bf16").kernel is not None


@needs_compiler
def test_native_build_compiles_once_into_the_cache(tmp_path, monkeypatch):
    first = native.build("convblocks", tmp_path)
    assert first.is_file() and first.parent == tmp_path

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(native.subprocess, "run", no_compiling)
    assert native.build("convblocks", tmp_path) == first
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary files left


@needs_compiler
def test_the_compiler_may_come_with_words_of_its_own(tmp_path):  # CC="ccache gcc", CC="gcc -w"
    assert native.build("convblocks", tmp_path, compiler=COMPILER + " -w").is_file()


@needs_compiler
def test_a_damaged_cached_library_is_built_again(tmp_path, monkeypatch):
    monkeypatch.setattr(native, "default_cache_dir", lambda: tmp_path)
    native.build("convblocks").write_bytes(b"not a shared library")
    lib = native.load.__wrapped__("convblocks")
    assert lib is not None and hasattr(lib, "conv_pool_forward")


def test_without_a_compiler_loading_warns_and_gives_none(tmp_path, monkeypatch):
    missing = str(tmp_path / "no-such-cc")
    with pytest.raises(OSError, match="no-such-cc"):
        native.build("convblocks", tmp_path, compiler=missing)
    assert not list(tmp_path.glob("*.so*"))  # nothing half-built left behind
    monkeypatch.setenv("CC", missing)
    monkeypatch.setattr(native, "default_cache_dir", lambda: tmp_path)
    with pytest.warns(RuntimeWarning, match="could not compile its convblocks.c kernel"):
        assert native.load.__wrapped__("convblocks") is None


@pytest.mark.parametrize(
    "name, options",
    [
        ("seed", {"batchnorm": True}),
        ("seed", {"activation": "sigmoid"}),
        ("seed", {"head": "gap"}),
        ("lenet5", {}),
        ("fastnet", {}),
        ("mlp", {}),
    ],
)
def test_other_networks_train_through_autograd(name, options):
    model = create_model(name, **options)
    assert seed_layers(model) is None
    with pytest.raises(ValueError, match="seed network"):
        SeedGradients(model)
    grads = gradient_function(model, get_preset("seed"), torch.device("cpu"))
    assert not isinstance(grads, SeedGradients)


@pytest.mark.slow
@pytest.mark.parametrize("preset, images", [("seed", 2000), ("fast", 8000)])
def test_fused_and_autograd_training_end_alike(mnist, tmp_path, preset, images, monkeypatch):
    stems = []  # what training got from stem_forward: a StemForward for `fast` where the kernel builds

    def spy(*args):
        stems.append(stem_forward(*args))
        return stems[-1]

    monkeypatch.setattr("digits.train.loop.stem_forward", spy)
    cfg = override(get_preset(preset), train_limit=images, epochs=1, precision="fp32", val_split=0.0)
    runs = [
        fit(override(cfg, fused=fused), tmp_path / str(fused), data=mnist, progress=False, log=lambda s: None)
        for fused in (True, False)
    ]
    grads = gradient_function(runs[0].model, cfg, torch.device("cpu"))
    if preset == "seed":
        assert isinstance(grads, SeedGradients)
        assert (grads.kernel is not None) == (convblocks() is not None)
        for a, b in zip(runs[0].model.parameters(), runs[1].model.parameters()):
            assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
    else:
        # Not the same weights: fastnet max-pools values that tie exactly on blank backgrounds, and which
        # of them gets the gradient turns on rounding (channels-last and channels-first PyTorch already
        # disagree by ~1% on some gradients); then Adam's first steps, about lr times the gradient's sign,
        # spread that. So the same accuracy, from enough steps for it to settle.
        assert len(stems) == 2 and (stems[0] is not None) == (convblocks() is not None)
    # Within a point: under half a point apart where this was written (AMD EPYC), 0.53 on an Intel Xeon (other
    # kernels, other rounding);
    # a broken fused pass is tens of points off.
    assert abs(runs[0].test.accuracy - runs[1].test.accuracy) < 0.01


def fastnet_with_stem(**options):
    torch.manual_seed(0)
    model = create_model("fastnet", stem="stride", **options).train()
    with torch.no_grad():  # the stem's batchnorm scale and shift away from 1 and 0, so both count
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.normal_()
    return model


@needs_compiler
@pytest.mark.parametrize("batch", [13, 256])
def test_stem_kernel_computes_what_autograd_computes_on_mnist(mnist, batch):
    # Real digits: blank backgrounds make many convolutions exactly 0 and many ReLU inputs negative.
    x, y = to_tensors(mnist.train_images[:batch], mnist.train_labels[:batch])
    x = as_model_input(x, channels_last=True)
    model = fastnet_with_stem(widths=[32, 24, 48])
    twin = copy.deepcopy(model)
    forward = stem_forward(twin, "fp32")
    assert isinstance(forward, StemForward)
    for step in range(2):  # the second step starts from the running averages the first one left
        torch.manual_seed(step)
        ref = model[:3](x)
        g = torch.randn_like(ref) * (ref > 0)  # a gradient from above, zero where the ReLU let nothing through
        h = forward.stem(x)
        assert h.shape == ref.shape and h.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(h, ref, atol=1e-5)
        model.zero_grad(set_to_none=True)
        twin.zero_grad(set_to_none=True)
        ref.backward(g)
        h.backward(g)
        for (name, p), q in zip(model[:3].named_parameters(), twin[:3].parameters()):
            assert torch.allclose(q.grad, p.grad, rtol=1e-5, atol=1e-6 * p.grad.abs().max()), name
            assert same_memory_order(q.grad, q), name  # fused Adam reads them in the parameters' order
    for (name, a), b in zip(model.named_buffers(), twin.buffers()):
        assert torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-7), name
    assert int(twin[1].num_batches_tracked) == 2


@needs_compiler
def test_stem_forward_is_the_whole_network(mnist):
    x, y = to_tensors(mnist.train_images[:64], mnist.train_labels[:64])
    x = as_model_input(x, channels_last=True)
    model = fastnet_with_stem()
    logits = stem_forward(copy.deepcopy(model))(x)
    assert torch.allclose(logits, model(x), atol=1e-4)


@needs_compiler
def test_stem_kernel_in_bf16_is_close_to_float32(mnist):
    x, y = to_tensors(mnist.train_images[:256], mnist.train_labels[:256])
    x = as_model_input(x, channels_last=True)
    model = fastnet_with_stem().to(memory_format=torch.channels_last)
    F.cross_entropy(model(x), y).backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    forward = stem_forward(model, "bf16")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert forward.stem(x).dtype == torch.bfloat16
        logits = forward(x)
    F.cross_entropy(logits.float(), y).backward()
    # The rest of the network runs in bfloat16 either way: autocast alone scored 0.992-1.0 here.
    for p, g in zip(model.parameters(), ref):
        assert p.grad.dtype == torch.float32
        assert F.cosine_similarity(p.grad.flatten(), g.flatten(), dim=0) > 0.98


@needs_compiler
def test_stem_forward_in_eval_mode_is_the_models_own():
    model = fastnet_with_stem().eval()
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(stem_forward(model)(x), model(x))
    assert int(model[1].num_batches_tracked) == 0


@needs_compiler
def test_stem_kernel_refuses_images_that_are_not_28x28():
    with pytest.raises(ValueError, match=r"\(batch, 1, 28, 28\)"):
        stem_forward(fastnet_with_stem())(torch.rand(2, 1, 32, 32))


@needs_compiler
def test_a_fixed_stem_gets_no_gradients_and_stops_the_backward_pass(mnist):
    x, y = to_tensors(mnist.train_images[:64], mnist.train_labels[:64])
    x = as_model_input(x, channels_last=True)
    model = create_model("fastnet", stem="dct").train()
    forward = stem_forward(copy.deepcopy(model))
    assert isinstance(forward, StemForward)
    h = forward.stem(x)
    assert not h.requires_grad  # nothing to train in it: autograd records nothing
    assert torch.allclose(h, model[:3](x), atol=1e-5)
    F.cross_entropy(forward(x), y).backward()
    assert forward.conv.weight.grad is None and forward.rest[0].weight.grad is not None


def test_only_a_stride_2_stem_the_kernel_serves_gets_one():
    assert stem_layers(create_model("fastnet", stem="stride")) is not None
    assert stem_layers(create_model("fastnet", stem="dct")) is not None
    assert stem_layers(create_model("fastnet")) is None  # convolution then max-pool: no stride-2 stem
    assert stem_layers(create_model("seed")) is None
    assert stem_forward(create_model("fastnet", stem="stride", widths=[24, 32, 64])) is None
    assert stem_forward(create_model("fastnet", stem="stride").double()) is None
    if convblocks() is not None:
        assert stem_forward(create_model("fastnet", stem="stride"), "bf16") is not None
    with pytest.raises(ValueError, match="stride-2 stem"):
        StemForward(create_model("fastnet"), convblocks())


FAULTS = """
import ctypes, json, resource, sys, torch
import digits.train.loop  # as in `digits train`: the training code is loaded when the setting is made
from digits.train.fast.memory import keep_freed_memory
if sys.argv[1] == "keep" and not keep_freed_memory():
    print("unsupported"); sys.exit()
class MallInfo2(ctypes.Structure):
    names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(n, ctypes.c_size_t) for n in names.split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
def step():  # three 4 MiB buffers made and dropped, as one training step's activations and gradients are
    buffers = [torch.empty(1 << 20).fill_(1.0) for _ in range(3)]
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
print(json.dumps({"faults": faults, "held_mib": libc.mallinfo2().fordblks / 2**20}))
"""


def test_keeping_freed_memory_stops_the_page_faults_of_every_step():
    def measure(mode):
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
        return out.stdout.strip()

    kept = measure("keep")
    if kept == "unsupported":
        pytest.skip("the C library is not glibc")
    kept_stats, default_stats = json.loads(kept), json.loads(measure("default"))
    # Kept: the 12 MiB a step frees stays in the heap for the next step, which faults in (almost) nothing;
    # giving it back would mean ~3,000 page faults a step (measured here: ~50 kept, ~2,000 by default).
    # How few depends on the heap's layout when the setting is made: ~50 with the training code loaded first,
    # as `digits train` has it, 150-360 with torch alone (measured here), so the script loads it first.
    assert kept_stats["held_mib"] >= 12, kept_stats
    assert kept_stats["faults"] < 300, kept_stats
    # glibc's default trims the heap only when nothing else sits above the freed blocks, which varies from
    # run to run, so the default side is compared, not required to fault.
    assert kept_stats["faults"] <= default_stats["faults"], (kept_stats, default_stats)
