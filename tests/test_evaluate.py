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
