"""Reading digits in real pictures: load, segment, normalise, run a model, calibrate, say when unsure.

Needs numpy, Pillow and OpenCV, and onnxruntime or torch to run the model; never the training code or
MNIST. See :mod:`digits.reading.pipeline` for the one preprocessing path and
:mod:`digits.reading.recognizer` for the ``Recognizer``.
"""
