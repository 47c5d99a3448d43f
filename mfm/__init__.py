"""mfm: long-tailed image recognition with the Meta Feature Modulator, as a library."""

__version__ = "0.1.0"
