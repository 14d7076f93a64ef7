"""The values a model option may take, without torch: the CLI offers them, the networks check them."""

ACTIVATIONS = ("relu", "sigmoid", "gelu", "tanh")  # the article's relu and sigmoid, and two more
HEADS = ("flatten", "gap")  # flatten + dense (the article), or global average pooling
STEMS = ("pool", "stride", "dct")  # fastnet's first block: conv + max-pool, stride-2 conv, or a fixed DCT conv
