"""The built-in SQL functions' registry, kept under its former name for the modules that import it.

The functions live in loader/rules/functions/, one module per family.
"""

from loader.rules.functions import BUILTINS

__all__ = ["BUILTINS"]
