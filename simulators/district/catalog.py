"""The district's course catalogs (one per school level) and how students choose courses.

A secondary student asks for a list of course codes: the core of their grade, a world language
perhaps, and electives until their day is full (a year-long elective fills a period; two
semester electives fill one). :mod:`simulators.district.generate` turns the requests into
sections and places students in them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from simulators.district.records import Weighted

__all__ = [
    "ELEMENTARY",
    "GRADES",
    "HIGH",
    "LEVELS",
    "LEVEL_GRADES",
    "MIDDLE",
    "PERIODS",
    "SPECIALS",
    "CourseDef",
    "Requests",
    "course",
    "grade_title",
    "requests_for",
]

GRADES = ("KG", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12")
LEVELS = ("elementary", "middle", "high")
LEVEL_GRADES = {"elementary": GRADES[0:6], "middle": GRADES[6:9], "high": GRADES[9:13]}
#: Periods in a secondary school day (a teacher teaches all but one).
PERIODS = {"middle": 7, "high": 7}


@dataclass(frozen=True)
class CourseDef:
    """One catalog entry.

    Attributes:
        code: the courseCode (unique in the district).
        title: the course title.
        dept: the department whose teachers teach it.
        subject: the subject name (OneRoster ``subjects``).
        subject_code: its SCED subject-area code (``subjectCodes``).
        grades: the CEDS grade levels it is for.
        semester: one term long (else the whole year).
        max_size: the most students a section holds before another section opens.
        weight: popularity as an elective; 0 for a course nobody picks as an elective.
    """

    code: str
    title: str
    dept: str
    subject: str
    subject_code: str
    grades: tuple[str, ...]
    semester: bool = False
    max_size: int = 28
    weight: float = 0.0


def grade_title(grade: str) -> str:
    """``"KG" -> "Kindergarten"``, ``"03" -> "Grade 3"``."""
    return "Kindergarten" if grade == "KG" else f"Grade {int(grade)}"


_ENG = ("English", "English Language and Literature", "01")
_MTH = ("Mathematics", "Mathematics", "02")
_SCI = ("Science", "Life and Physical Sciences", "03")
_SOC = ("Social Studies", "Social Sciences and History", "04")
_ART = ("Fine Arts", "Fine and Performing Arts", "05")
_WL = ("World Languages", "World Languages", "06")
# Subject names carry no comma: the OneRoster CSV binding separates list values with commas.
_PE = ("Physical Education", "Physical Health and Safety Education", "08")
_CS = ("Career and Technical", "Computer and Information Sciences", "10")
_ENGR = ("Career and Technical", "Engineering and Technology", "21")
_BUS = ("Career and Technical", "Business and Marketing", "12")
_HUM = ("Career and Technical", "Human Services", "19")
_CUL = ("Career and Technical", "Hospitality and Tourism", "16")
_MISC = ("Electives", "Miscellaneous", "22")

_HS = ("09", "10", "11", "12")
_UPPER = ("10", "11", "12")
_SENIOR = ("11", "12")
_MS = ("06", "07", "08")


def _c(
    code: str,
    title: str,
    area: tuple[str, str, str],
    grades: tuple[str, ...],
    *,
    semester: bool = False,
    max_size: int = 28,
    weight: float = 0.0,
) -> CourseDef:
    dept, subject, subject_code = area
    return CourseDef(code, title, dept, subject, subject_code, grades, semester, max_size, weight)


ELEMENTARY: tuple[CourseDef, ...] = (
    *(
        _c(f"HR-{g}", f"{grade_title(g)} Homeroom", ("Elementary", "Homeroom", "22"), (g,), max_size=26)
        for g in LEVEL_GRADES["elementary"]
    ),
    _c("ES-ART", "Elementary Art", ("Specials", "Art", "05"), LEVEL_GRADES["elementary"]),
    _c("ES-MUS", "Elementary Music", ("Specials", "Music", "05"), LEVEL_GRADES["elementary"]),
    _c(
        "ES-PE",
        "Elementary Physical Education",
        ("Specials", "Physical Education", "08"),
        LEVEL_GRADES["elementary"],
    ),
    _c("ES-LIB", "Library and Media", ("Specials", "Library Media", "22"), LEVEL_GRADES["elementary"]),
    _c(
        "ES-STEM",
        "Elementary STEM",
        ("Specials", "Science Technology Engineering and Mathematics", "21"),
        LEVEL_GRADES["elementary"],
    ),
)
#: The specials every elementary homeroom goes to: course code -> (short name, room).
SPECIALS = {
    "ES-ART": ("Art", "Art Room"),
    "ES-MUS": ("Music", "Music Room"),
    "ES-PE": ("PE", "Gym"),
    "ES-LIB": ("Library", "Library"),
    "ES-STEM": ("STEM", "STEM Lab"),
}

MIDDLE: tuple[CourseDef, ...] = (
    *(_c(f"ELA-{g}", f"English Language Arts {int(g)}", _ENG, (g,)) for g in _MS),
    *(_c(f"MTH-{g}", f"Mathematics {int(g)}", _MTH, (g,)) for g in _MS),
    _c("MTH-ALG1M", "Algebra I (Middle School)", _MTH, ("08",)),
    _c("SCI-06", "Earth Science 6", _SCI, ("06",)),
    _c("SCI-07", "Life Science 7", _SCI, ("07",)),
    _c("SCI-08", "Physical Science 8", _SCI, ("08",)),
    _c("SOC-06", "Ancient Civilizations", _SOC, ("06",)),
    _c("SOC-07", "World Geography and Cultures", _SOC, ("07",)),
    _c("SOC-08", "United States History to 1877", _SOC, ("08",)),
    *(_c(f"PE-{g}", f"Physical Education {int(g)}", _PE, (g,), max_size=32) for g in _MS),
    _c("MS-ART", "Art Exploration", _ART, _MS, semester=True, weight=3),
    _c("MS-GMUS", "General Music", _ART, _MS, semester=True, weight=2),
    _c("MS-BAND", "Band", _ART, _MS, max_size=45, weight=3),
    _c("MS-ORCH", "Orchestra", _ART, _MS, max_size=45, weight=1.5),
    _c("MS-CHOIR", "Choir", _ART, _MS, max_size=45, weight=2),
    _c("MS-DRAMA", "Drama", _ART, _MS, semester=True, weight=1.5),
    _c("MS-XSPA", "Exploratory Spanish", _WL, _MS, semester=True, weight=2),
    _c("MS-XFRE", "Exploratory French", _WL, _MS, semester=True, weight=1),
    _c("MS-SPA1", "Spanish IA", _WL, ("07", "08"), weight=2),
    _c("MS-TECH", "Computer Technology", _CS, _MS, semester=True, weight=2.5),
    _c("MS-CODE", "Introduction to Coding", _CS, _MS, semester=True, weight=2),
    _c("MS-STEM", "STEM Exploration", _ENGR, _MS, semester=True, weight=2),
    _c("MS-HLTH", "Health", _PE, _MS, semester=True, weight=2),
    _c("MS-STUDY", "Study Skills", _MISC, _MS, semester=True, weight=1),
    _c("MS-YRBK", "Yearbook", _MISC, ("08",), weight=0.5),
)

HIGH: tuple[CourseDef, ...] = (
    _c("ENG-09", "English 9", _ENG, ("09",)),
    _c("ENG-09H", "Honors English 9", _ENG, ("09",)),
    _c("ENG-10", "English 10", _ENG, ("10",)),
    _c("ENG-10H", "Honors English 10", _ENG, ("10",)),
    _c("ENG-11", "English 11: American Literature", _ENG, ("11",)),
    _c("ENG-APLANG", "AP English Language and Composition", _ENG, ("11",)),
    _c("ENG-12", "English 12: British and World Literature", _ENG, ("12",)),
    _c("ENG-APLIT", "AP English Literature and Composition", _ENG, ("12",)),
    _c("ENG-CW", "Creative Writing", _ENG, _UPPER, semester=True, weight=2),
    _c("ENG-JRN", "Journalism", _ENG, _UPPER, semester=True, weight=1),
    _c("ENG-DEB", "Speech and Debate", _ENG, _HS, semester=True, weight=1),
    _c("MTH-ALG1", "Algebra I", _MTH, ("09", "10")),
    _c("MTH-GEO", "Geometry", _MTH, ("09", "10", "11")),
    _c("MTH-ALG2", "Algebra II", _MTH, _UPPER),
    _c("MTH-PRE", "Precalculus", _MTH, _SENIOR),
    _c("MTH-CALAB", "AP Calculus AB", _MTH, _SENIOR),
    _c("MTH-CALBC", "AP Calculus BC", _MTH, ("12",)),
    _c("MTH-APSTAT", "AP Statistics", _MTH, _SENIOR),
    _c("MTH-QR", "Quantitative Reasoning", _MTH, ("12",)),
    _c("SCI-BIO", "Biology", _SCI, ("09", "10")),
    _c("SCI-EARTH", "Earth and Space Science", _SCI, ("09",)),
    _c("SCI-CHEM", "Chemistry", _SCI, ("10", "11")),
    _c("SCI-PHYS", "Physics", _SCI, _SENIOR),
    _c("SCI-ENV", "Environmental Science", _SCI, _SENIOR),
    _c("SCI-APBIO", "AP Biology", _SCI, _SENIOR),
    _c("SCI-APCHEM", "AP Chemistry", _SCI, ("12",)),
    _c("SCI-APPHYS", "AP Physics 1", _SCI, ("12",)),
    _c("SCI-ANAT", "Anatomy and Physiology", _SCI, _SENIOR),
    _c("SCI-FOR", "Forensic Science", _SCI, _SENIOR, semester=True, weight=2),
    _c("SOC-WH", "World History", _SOC, ("09",)),
    _c("SOC-USH", "United States History", _SOC, ("10",)),
    _c("SOC-APUSH", "AP United States History", _SOC, ("10",)),
    _c("SOC-PSY", "Psychology", _SOC, ("11",), semester=True),
    _c("SOC-SOC", "Sociology", _SOC, ("11",), semester=True),
    _c("SOC-APPSY", "AP Psychology", _SOC, ("11",)),
    _c("SOC-GOV", "United States Government", _SOC, ("12",), semester=True),
    _c("SOC-ECON", "Economics", _SOC, ("12",), semester=True),
    _c("SOC-GEOG", "Human Geography", _SOC, _HS, semester=True, weight=1),
    _c("SOC-ETH", "Ethnic Studies", _SOC, _HS, semester=True, weight=1.5),
    *(
        _c(f"WL-SPA{n}", f"Spanish {r}", _WL, (g,))
        for n, r, g in ((1, "I", "09"), (2, "II", "10"), (3, "III", "11"), (4, "IV", "12"))
    ),
    _c("WL-APSPA", "AP Spanish Language and Culture", _WL, ("12",)),
    *(
        _c(f"WL-FRE{n}", f"French {r}", _WL, (g,))
        for n, r, g in ((1, "I", "09"), (2, "II", "10"), (3, "III", "11"))
    ),
    _c("WL-MAN1", "Mandarin I", _WL, ("09",)),
    _c("WL-MAN2", "Mandarin II", _WL, ("10",)),
    _c("WL-ASL1", "American Sign Language I", _WL, ("09",)),
    _c("WL-ASL2", "American Sign Language II", _WL, ("10",)),
    _c("ART-1", "Art I", _ART, _HS, weight=3),
    _c("ART-2", "Art II", _ART, _UPPER, weight=1.5),
    _c("ART-CER", "Ceramics", _ART, _HS, semester=True, weight=2),
    _c("ART-PHO", "Photography", _ART, _HS, semester=True, weight=2),
    _c("ART-DIG", "Digital Art and Design", _ART, _HS, semester=True, weight=2),
    _c("ART-BAND", "Concert Band", _ART, _HS, max_size=50, weight=2.5),
    _c("ART-ORCH", "Orchestra", _ART, _HS, max_size=45, weight=1.2),
    _c("ART-CHOIR", "Concert Choir", _ART, _HS, max_size=45, weight=2),
    _c("ART-THTR", "Theatre Arts", _ART, _HS, semester=True, weight=1.5),
    _c("ART-MAPP", "Music Appreciation", _ART, _HS, semester=True, weight=1),
    _c("PE-9", "Physical Education 9", _PE, ("09",), semester=True, max_size=32),
    _c("PE-HLTH", "Health", _PE, ("09",), semester=True),
    _c("PE-WT", "Weight Training", _PE, _UPPER, semester=True, max_size=32, weight=3),
    _c("PE-TEAM", "Team Sports", _PE, _UPPER, semester=True, max_size=32, weight=2.5),
    _c("PE-YOGA", "Yoga and Fitness", _PE, _UPPER, semester=True, max_size=32, weight=1.5),
    _c("CTE-ICS", "Introduction to Computer Science", _CS, _HS, semester=True, weight=2.5),
    _c("CTE-APCSP", "AP Computer Science Principles", _CS, _UPPER, weight=1.5),
    _c("CTE-APCSA", "AP Computer Science A", _CS, _SENIOR, weight=1),
    _c("CTE-WEB", "Web Design", _CS, _HS, semester=True, weight=1.5),
    _c("CTE-ENGD", "Engineering Design", _ENGR, _HS, weight=1),
    _c("CTE-ROBO", "Robotics", _ENGR, _HS, semester=True, weight=1.5),
    _c("CTE-CUL", "Culinary Arts I", _CUL, _HS, semester=True, weight=2.5),
    _c("CTE-ACCT", "Accounting", _BUS, _UPPER, semester=True, weight=1),
    _c("CTE-MKT", "Marketing", _BUS, _UPPER, semester=True, weight=1),
    _c("CTE-PFIN", "Personal Finance", _BUS, _SENIOR, semester=True, weight=2.5),
    _c("CTE-CHILD", "Child Development", _HUM, _UPPER, semester=True, weight=1),
    _c("HS-AVID", "AVID", _MISC, _HS, weight=1),
    _c("HS-STUDY", "Study Skills", _MISC, _HS, semester=True, weight=1),
)

_BY_CODE = {c.code: c for c in (*ELEMENTARY, *MIDDLE, *HIGH)}

# Per-grade core choices: grade -> [(course code(s), weight)]; a tuple of codes is a semester pair.
_HIGH_CORE: dict[str, list[list[tuple[tuple[str, ...], float]]]] = {
    "09": [
        [(("ENG-09",), 75), (("ENG-09H",), 25)],
        [(("MTH-ALG1",), 65), (("MTH-GEO",), 35)],
        [(("SCI-BIO",), 65), (("SCI-EARTH",), 35)],
        [(("SOC-WH",), 1)],
        [(("PE-9", "PE-HLTH"), 1)],
    ],
    "10": [
        [(("ENG-10",), 75), (("ENG-10H",), 25)],
        [(("MTH-GEO",), 55), (("MTH-ALG2",), 45)],
        [(("SCI-CHEM",), 60), (("SCI-BIO",), 40)],
        [(("SOC-USH",), 75), (("SOC-APUSH",), 25)],
    ],
    "11": [
        [(("ENG-11",), 75), (("ENG-APLANG",), 25)],
        [(("MTH-ALG2",), 45), (("MTH-PRE",), 40), (("MTH-APSTAT",), 15)],
        [(("SCI-PHYS",), 40), (("SCI-ENV",), 25), (("SCI-APBIO",), 15), (("SCI-ANAT",), 20)],
        [(("SOC-APPSY",), 35), (("SOC-PSY", "SOC-SOC"), 65)],
    ],
    "12": [
        [(("ENG-12",), 75), (("ENG-APLIT",), 25)],
        [(("MTH-PRE",), 35), (("MTH-CALAB",), 20), (("MTH-CALBC",), 5), (("MTH-APSTAT",), 15),
         (("MTH-QR",), 25)],
        [(("SCI-ENV",), 18), (("SCI-APCHEM",), 10), (("SCI-APPHYS",), 10), (("SCI-ANAT",), 17),
         (("SCI-PHYS",), 15), ((), 30)],
        [(("SOC-GOV", "SOC-ECON"), 1)],
    ],
}  # fmt: skip
# language -> (weight, course codes by level)
_LANGUAGES = {
    "Spanish": (55, ("WL-SPA1", "WL-SPA2", "WL-SPA3", "WL-SPA4")),
    "French": (20, ("WL-FRE1", "WL-FRE2", "WL-FRE3")),
    "Mandarin": (10, ("WL-MAN1", "WL-MAN2")),
    "ASL": (15, ("WL-ASL1", "WL-ASL2")),
}
_LANGUAGE_TAKE = {"09": 0.85, "10": 0.75, "11": 0.55, "12": 0.3}
# Share of elective periods filled by a year-long elective (else two semester ones).
_YEAR_ELECTIVE_SHARE = {"middle": 0.25, "high": 0.15}


def _electives(level: str, grade: str, semester: bool) -> Weighted[str]:
    pool = MIDDLE if level == "middle" else HIGH
    eligible = [c for c in pool if c.weight > 0 and grade in c.grades and c.semester == semester]
    return Weighted([c.code for c in eligible], [c.weight for c in eligible])


_ELECTIVES = {
    (level, grade, semester): _electives(level, grade, semester)
    for level in ("middle", "high")
    for grade in LEVEL_GRADES[level]
    for semester in (False, True)
}


_HIGH_CORE_DRAWS = {
    grade: [Weighted([o for o, _ in options], [w for _, w in options]) for options in slots]
    for grade, slots in _HIGH_CORE.items()
}
_LANGUAGE_DRAW = Weighted(list(_LANGUAGES), [w for w, _ in _LANGUAGES.values()])


@dataclass(frozen=True)
class Requests:
    """What a secondary student asks for.

    Attributes:
        core: course codes they must take (a semester pair is two codes).
        electives: elective codes in order of preference; the scheduler places those that fit.
        periods: how many periods a day they attend (6 or 7), in each term.
    """

    core: list[str]
    electives: list[str]
    periods: int


def requests_for(rng: random.Random, level: str, grade: str) -> Requests:
    """The course requests of a secondary student in ``grade``."""
    core: list[str] = []
    periods = 0.0
    if level == "middle":
        core = [f"ELA-{grade}", f"MTH-{grade}", f"SCI-{grade}", f"SOC-{grade}", f"PE-{grade}"]
        if grade == "08" and rng.random() < 0.25:
            core[1] = "MTH-ALG1M"
        periods = 5.0
        target = 7 if rng.random() < 0.95 else 6
        year_share = _YEAR_ELECTIVE_SHARE["middle"]
    else:
        for slot in _HIGH_CORE_DRAWS[grade]:
            picked = slot.draw(rng)
            core.extend(picked)
            periods += 0.5 * len(picked) if len(picked) > 1 else len(picked)
        if rng.random() < _LANGUAGE_TAKE[grade]:
            language = _LANGUAGE_DRAW.draw(rng)
            levels = _LANGUAGES[language][1]
            level_no = int(grade) - 9
            if level_no < len(levels):
                code = levels[level_no]
                if code == "WL-SPA4" and rng.random() < 0.4:
                    code = "WL-APSPA"
                core.append(code)
                periods += 1
        target = 7 if rng.random() < 0.85 else 6
        year_share = _YEAR_ELECTIVE_SHARE["high"]
    electives: list[str] = []
    while periods < target:
        semester = rng.random() >= year_share or target - periods < 1
        pool = _ELECTIVES[(level, grade, semester)]
        wanted = 2 if semester and target - periods >= 1 else 1
        for _ in range(wanted):
            for _attempt in range(8):
                code = pool.draw(rng)
                if code not in core and code not in electives:
                    electives.append(code)
                    break
        periods += 0.5 * wanted if semester else 1
    return Requests(core, electives, target)


def course(code: str) -> CourseDef:
    """The catalog entry with ``code``."""
    return _BY_CODE[code]
