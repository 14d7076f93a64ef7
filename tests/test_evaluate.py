import numpy as np
import pytest
import torch

from digits.models import create_model
from digits.models.layers import shift_images
from digits.train.evaluate import EvalResult, evaluate


def test_shift_moves_pixels_and_fills_with_background():
    img = torch.zeros(1, 1, 5, 5)
    img[0, 0, 2, 2] = 1.0
    assert shift_images(img, 1, 0)[0, 0, 3, 2] == 1.0
    assert shift_images(img, 0, -2)[0, 0, 2, 0] == 1.0
    edge = torch.zeros(1, 1, 5, 5)
    edge[0, 0, 0, 4] = 1.0
    assert shift_images(edge, 0, 1).sum() == 0  # pushed out, not wrapped around
    assert torch.equal(shift_images(img, 0, 0), img)


def test_per_class_metrics_and_confusion_from_a_known_result():
    labels = np.array([0, 0, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 0])
    probs = np.eye(10, dtype=np.float32)[preds]
    r = EvalResult(accuracy=0.6, loss=0.0, labels=labels, predictions=preds, probabilities=probs)
    assert r.confusion[0, 0] == 1 and r.confusion[0, 1] == 1 and r.confusion[2, 0] == 1
    pc = r.per_class()
    assert pc["precision"][1] == pytest.approx(2 / 3) and pc["recall"][1] == 1.0
    assert pc["recall"][2] == 0.0 and pc["f1"][2] == 0.0
    assert set(r.mistakes()) == {1, 4}


def test_ensemble_averages_probabilities(mnist):
    torch.manual_seed(0)
    a, b = create_model("lenet5"), create_model("mlp")
    images = torch.tensor(mnist.test_images[:200])
    labels = torch.tensor(mnist.test_labels[:200]).long()
    ra, rb = evaluate(a, images, labels), evaluate(b, images, labels)
    both = evaluate([a, b], images, labels)
    assert np.allclose(both.probabilities, (ra.probabilities + rb.probabilities) / 2, atol=1e-6)
    with_tta = evaluate(a, images, labels, tta=True)
    assert not np.allclose(with_tta.probabilities, ra.probabilities)
    with pytest.raises(ValueError, match="labels"):
        evaluate(a, images, labels[:10])


def test_validation_temperature_is_the_fit_on_the_models_logits(mnist):
    from digits.models.inference import predict_logits
    from digits.models.weights import load_weights
    from digits.reading.calibration import fit_temperature
    from digits.spec import SHIPPED_SAFETENSORS
    from digits.train.evaluate import validation_temperature

    # A trained model and digits it gets a few of wrong (with none wrong, the fit ends at its smallest temperature).
    model, _ = load_weights(SHIPPED_SAFETENSORS)
    images = torch.tensor(mnist.test_images[:3000])
    labels = torch.tensor(mnist.test_labels[:3000]).long()
    expected = fit_temperature(predict_logits(model, images).numpy(), labels.numpy())
    assert validation_temperature(model, images, labels, batch_size=64) == pytest.approx(expected, rel=1e-6)
    sharper = validation_temperature(torch.nn.Sequential(model, _Times(4.0)), images, labels)
    assert sharper == pytest.approx(4 * expected, rel=1e-3)  # logits four times larger: four times the temperature


class _Times(torch.nn.Module):
    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = k

    def forward(self, x):
        return x * self.k
