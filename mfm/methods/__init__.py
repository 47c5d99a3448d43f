"""Training methods for long-tailed recognition, one small module each, behind a registry."""

from .base import Method
from .registry import create_method, list_methods, register_method

__all__ = ["Method", "create_method", "list_methods", "register_method"]
