"""The attacks against the libraries practitioners use: Foolbox 3 attacking a plain-jax twin of
the model (its gradients JAX's autodiff) and Captum attacking the PyTorch model the difprog one
was imported from give the same adversarial inputs, to float32 rounding. Each skips cleanly
where its library is not installed (both are test-only: `pip install foolbox==3.3.4`, which
runs on JAX 0.10; `pip install torch captum`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difprog import attacks, interop, layers

KEY = jax.random.key(0)
N, H, W, C, CLASSES = 6, 8, 8, 2, 3


def _model():
    return layers.serial(layers.Conv2D(4, 3, padding=1), layers.Relu(), layers.MaxPool2D(2),
                         layers.Flatten(), layers.Dense(CLASSES))


def _reference(p, x):
    """The model in plain jax, for Foolbox to differentiate with JAX's autodiff."""
    y = jax.lax.conv_general_dilated(x, p["conv2d_0"]["w"], (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = jnp.maximum(y + p["conv2d_0"]["b"], 0)
    y = jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return y.reshape(len(y), -1) @ p["dense_0"]["w"] + p["dense_0"]["b"]


def _inputs():
    x = jax.random.uniform(KEY, (N, H, W, C), jnp.float32, 0.05, 0.95)
    return x, np.array([0, 1, 2, 2, 1, 0])


@pytest.fixture(scope="module")
def foolbox_case():
    fb = pytest.importorskip("foolbox")
    model = _model()
    x, labels = _inputs()
    params = jax.tree.map(lambda a: 2 * a, model.init(KEY, x))
    np.testing.assert_allclose(model.apply(params, x), _reference(params, x), rtol=1e-5,
                               atol=1e-6)
    foolbox_model = fb.JAXModel(lambda z: _reference(params, z), bounds=(0, 1))
    return fb, foolbox_model, model, params, x, labels


def _foolbox(attack, foolbox_model, x, labels, eps):
    _, clipped, _ = attack(foolbox_model, x, jnp.asarray(labels), epsilons=eps)
    return np.asarray(clipped)


@pytest.mark.parametrize("eps", [0.03, 0.1])
def test_fgsm_equals_foolboxs(foolbox_case, eps):
    fb, foolbox_model, model, params, x, labels = foolbox_case
    expected = _foolbox(fb.attacks.FGSM(), foolbox_model, x, labels, eps)
    ours = attacks.fgsm(model, params, x, labels, eps)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)
    assert np.abs(np.asarray(ours - x)).max() == pytest.approx(eps, rel=1e-5)


@pytest.mark.parametrize("norm, eps, step", [("inf", 0.05, 0.01), ("l2", 0.4, 0.1)])
def test_pgd_without_random_start_equals_foolboxs(foolbox_case, norm, eps, step):
    fb, foolbox_model, model, params, x, labels = foolbox_case
    kind = fb.attacks.LinfPGD if norm == "inf" else fb.attacks.L2PGD
    expected = _foolbox(kind(abs_stepsize=step, steps=10, random_start=False), foolbox_model,
                        x, labels, eps)
    ours = attacks.pgd(model, params, x, labels, eps, steps=10, step_size=step, norm=norm)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-5)
    assert np.abs(np.asarray(ours - x)).max() > eps / 4


@pytest.fixture(scope="module")
def captum_case():
    torch = pytest.importorskip("torch")
    robust = pytest.importorskip("captum.robust")
    torch.manual_seed(0)
    torch_model = torch.nn.Sequential(
        torch.nn.Conv2d(C, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(4 * (H // 2) * (W // 2), CLASSES)).eval()
    model = _model()
    x, labels = _inputs()
    params = interop.from_torch(model, x, torch_model.state_dict())
    to_torch = lambda a: torch.tensor(np.asarray(a).transpose(0, 3, 1, 2))
    with torch.no_grad():
        np.testing.assert_allclose(model.apply(params, x), torch_model(to_torch(x)).numpy(),
                                   rtol=1e-5, atol=1e-6)
    loss = torch.nn.CrossEntropyLoss(reduction="none")
    return torch, robust, torch_model, loss, to_torch, model, params, x, labels


def _from_torch(tensor):
    return tensor.detach().numpy().transpose(0, 2, 3, 1)


captum_warning = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require")


@captum_warning
@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_equals_captums(captum_case, targeted):
    torch, robust, torch_model, loss, to_torch, model, params, x, labels = captum_case
    fgsm = robust.FGSM(torch_model, loss_func=loss, lower_bound=0.0, upper_bound=1.0)
    expected = fgsm.perturb(to_torch(x), 0.05, torch.tensor(labels), targeted=targeted)
    ours = attacks.fgsm(model, params, x, labels, 0.05, targeted=targeted)
    np.testing.assert_allclose(ours, _from_torch(expected), rtol=0, atol=1e-6)
    assert np.abs(np.asarray(ours - x)).max() == pytest.approx(0.05, rel=1e-5)


@captum_warning
@pytest.mark.parametrize("targeted", [False, True])
def test_linf_pgd_equals_captums(captum_case, targeted):
    torch, robust, torch_model, loss, to_torch, model, params, x, labels = captum_case
    pgd = robust.PGD(torch_model, loss_func=loss, lower_bound=0.0, upper_bound=1.0)
    # Captum leaves a value whose gradient is under 1e-6 in magnitude unchanged (its
    # zero_thresh); difprog, Foolbox and Madry et al. step by its sign. Here 2 values of 768 fall
    # under it on the way; with the threshold at 0 the rules agree everywhere.
    pgd.fgsm.zero_thresh = 0.0
    expected = pgd.perturb(to_torch(x), radius=0.05, step_size=0.01, step_num=10,
                           target=torch.tensor(labels), targeted=targeted)
    ours = attacks.pgd(model, params, x, labels, 0.05, steps=10, step_size=0.01,
                       targeted=targeted)
    np.testing.assert_allclose(ours, _from_torch(expected), rtol=0, atol=2e-5)
