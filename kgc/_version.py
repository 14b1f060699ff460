"""kgc's version, in a leaf module (run folders record it; ``kgc --version`` prints it)."""

__version__ = "0.1.0"
