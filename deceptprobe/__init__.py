"""deceptprobe: model organisms of misalignment and the tools to look inside them."""

__version__ = "0.1.0"
