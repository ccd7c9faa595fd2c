"""A deterministic, invented K-12 district as OneRoster 1.2 REST JSON.

``generate(DistrictSpec())`` builds about 40 schools, 19,000 students, 1,500 staff, 9,500
guardians, 6,000 classes and 150,000 enrollments, plus demographics and a gradebook, from one
seed. The simulated SIS serves the collections; tests and benchmarks read them directly.
``District.factory(seed)`` builds further records that fit the district, for a change generator.
"""

from simulators.district.district import MESS_KINDS, District
from simulators.district.factory import DistrictFactory
from simulators.district.generate import generate
from simulators.district.spec import DistrictSpec, InvalidSpec

__all__ = ["MESS_KINDS", "District", "DistrictFactory", "DistrictSpec", "InvalidSpec", "generate"]
