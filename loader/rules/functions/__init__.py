"""Built-in SQL functions, by family, in one registry: ``BUILTINS`` (lower-case name -> function).

Used when no loaded plugin provides a function of that name: a portable
function symbol takes precedence for every rule created after its plugin
is loaded.  Names, null handling and result types follow eKuiper's docs
(docs/rules.md lists what is supported).  A built-in is called with the
evaluated argument list; ``admission_error`` checks a call's argument count
and literal arguments when the rule is created; a ``RuleScoped`` one
(``rule_id``) is bound to the rule with ``for_rule``.
"""

from __future__ import annotations

from loader.rules.functions.conversion_functions import CONVERSION
from loader.rules.functions.hashing_functions import HASHING
from loader.rules.functions.json_functions import JSON
from loader.rules.functions.math_functions import MATH
from loader.rules.functions.other_functions import OTHER
from loader.rules.functions.registry import NOT_LITERAL, Builtin, RuleScoped
from loader.rules.functions.string_functions import STRING
from loader.rules.functions.time_functions import TIME
from loader.rules.functions.values import DateTime, FunctionError

BUILTINS: dict[str, Builtin | RuleScoped] = {**MATH, **STRING, **CONVERSION, **HASHING, **JSON, **TIME, **OTHER}

__all__ = ["BUILTINS", "Builtin", "DateTime", "FunctionError", "NOT_LITERAL", "RuleScoped"]
