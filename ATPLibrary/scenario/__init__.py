"""The original system's YAML/JSON scenarios: load them and convert them into Robot Framework suites.

``atp scenario convert | run | list`` (``ATPLibrary/cli/scenario.py``) is the command line; docs/scenarios.md
has the mapping of the 19 action types to keywords, targets, failure semantics and the lab adaptations.
"""

from ATPLibrary.scenario.convert import Conversion, ConvertOptions, Placeholder, convert_scenario
from ATPLibrary.scenario.loader import ScenarioError, load_scenario, parse_scenario, scenario_files
from ATPLibrary.scenario.model import ActionType, Scenario, Step

__all__ = [
    "ActionType",
    "Conversion",
    "ConvertOptions",
    "Placeholder",
    "Scenario",
    "ScenarioError",
    "Step",
    "convert_scenario",
    "load_scenario",
    "parse_scenario",
    "scenario_files",
]
