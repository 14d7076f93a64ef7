"""The one definition of how pixel values become model inputs.

Every model in digits sees an image as float32 in [0, 1]: the uint8 MNIST byte divided by 255, light
ink on a dark background, shape (B, 1, 28, 28). This is the article's scaling; training, evaluation,
the Recognizer (torch or onnxruntime) and export all use these constants and nothing else.
"""

IMAGE_SIZE = 28
PIXEL_SCALE = 255.0
NUM_CLASSES = 10
