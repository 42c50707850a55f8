"""The version of hdlmm."""

__version__ = "0.1.0"
