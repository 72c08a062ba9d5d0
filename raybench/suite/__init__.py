"""Suites: the typed schema and the safe loader with located error messages.

>>> from raybench.suite import parse_suite
>>> suite = parse_suite('''
... name: demo
... datasets: [{name: synth, source: synthetic}]
... task: {type: classification, label: diagnosis}
... models: [{name: net, arch: resnet10}]
... ''')
>>> suite.models[0].arch
'resnet10'
"""

from raybench.suite.loader import (
    load_suite,
    parse_suite,
    resolve_path,
    suite_dir,
    suite_json_schema,
)
from raybench.suite.problems import Problem, SuiteValidationError
from raybench.suite.schema import SEARCHABLE_KEYS, Suite

__all__ = [
    "SEARCHABLE_KEYS",
    "Problem",
    "Suite",
    "SuiteValidationError",
    "load_suite",
    "parse_suite",
    "resolve_path",
    "suite_dir",
    "suite_json_schema",
]
