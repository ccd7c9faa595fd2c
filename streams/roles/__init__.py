"""Role mapping: declarative rules that turn OneRoster roles into LMS and LTI 1.3 roles.

:mod:`~streams.roles.rules` is the rule file's shape, :mod:`~streams.roles.facts` the OneRoster
facts rules see, :mod:`~streams.roles.engine` the evaluation. ``DEFAULT_RULES`` is the rule set
shipped for the reference district.
"""

from pathlib import Path

from streams.roles.engine import LTI, Check, Decision, Grant, RuleSet, lti_roles_for
from streams.roles.facts import ClassFacts, CourseFacts, EnrollmentFacts, OrgFacts, RoleFacts, UserFacts
from streams.roles.rules import RuleFile, load_rule_file

#: The rule set shipped for the reference district.
DEFAULT_RULES = Path(__file__).with_name("reference-district.yaml")

__all__ = [
    "DEFAULT_RULES",
    "LTI",
    "Check",
    "ClassFacts",
    "CourseFacts",
    "Decision",
    "EnrollmentFacts",
    "Grant",
    "OrgFacts",
    "RoleFacts",
    "RuleFile",
    "RuleSet",
    "UserFacts",
    "load_rule_file",
    "lti_roles_for",
]
