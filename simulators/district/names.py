"""Name pools for the invented district: people, schools, towns.

Every person the generator makes is fictional: a given name and a family name drawn
independently from common-name pools, so no record describes a real person. The plain pools
are ASCII letters only; the "messy" pools (apostrophes, hyphens, accents) are drawn only for
the share of records the spec's ``mess`` asks for, so ``mess=0`` gives none of them.
"""

from __future__ import annotations

import random
import unicodedata

__all__ = [
    "ACCENTED_FAMILY",
    "ACCENTED_GIVEN",
    "APOSTROPHE_FAMILY",
    "APOSTROPHE_GIVEN",
    "CITIES",
    "DISTRICT_DOMAIN",
    "DISTRICT_NAME",
    "FAMILY",
    "GIVEN_FEMALE",
    "GIVEN_MALE",
    "GUARDIAN_DOMAINS",
    "HYPHEN_GIVEN",
    "NICKNAMES",
    "handle",
    "school_names",
]

DISTRICT_NAME = "Riverbend Unified School District"
#: ``.example`` is reserved (RFC 2606): no mail ever leaves for a real domain.
DISTRICT_DOMAIN = "riverbend.k12.example"
GUARDIAN_DOMAINS = ("mail.example", "inbox.example", "post.example", "home.example")

GIVEN_FEMALE = (
    "Abigail", "Ada", "Addison", "Alice", "Allison", "Amelia", "Amy", "Anna", "Aria", "Aubrey",
    "Audrey", "Ava", "Bella", "Brooklyn", "Camila", "Caroline", "Charlotte", "Chloe", "Claire", "Clara",
    "Cora", "Daisy", "Delilah", "Eleanor", "Elena", "Eliana", "Elizabeth", "Ella", "Ellie", "Emilia",
    "Emily", "Emma", "Eva", "Evelyn", "Faith", "Fiona", "Gabriella", "Genesis", "Grace", "Hailey",
    "Hannah", "Harper", "Hazel", "Isabella", "Ivy", "Jasmine", "Jennifer", "Jessica", "Josephine",
    "Julia", "Kaylee", "Katherine", "Kinsley", "Layla", "Leah", "Lillian", "Lily", "Lucy", "Luna",
    "Madeline", "Madison", "Maya", "Mia", "Mila", "Naomi", "Natalie", "Nora", "Olivia", "Paisley",
    "Penelope", "Piper", "Quinn", "Rebecca", "Riley", "Rose", "Ruby", "Samantha", "Sarah", "Savannah",
    "Scarlett", "Sofia", "Sophia", "Stella", "Sydney", "Taylor", "Valentina", "Victoria", "Violet",
    "Willow", "Zoe",
)  # fmt: skip
GIVEN_MALE = (
    "Aaron", "Adam", "Adrian", "Aiden", "Alexander", "Andrew", "Anthony", "Asher", "Austin", "Benjamin",
    "Brandon", "Caleb", "Cameron", "Carlos", "Carter", "Charles", "Christian", "Christopher", "Colton",
    "Connor", "Daniel", "David", "Dominic", "Dylan", "Easton", "Eli", "Elias", "Elijah", "Ethan", "Ezra",
    "Gabriel", "Gavin", "Grayson", "Henry", "Hudson", "Hunter", "Ian", "Isaac", "Isaiah", "Jack",
    "Jackson", "Jacob", "James", "Jason", "Jaxon", "Jayden", "John", "Jonathan", "Jordan", "Joseph",
    "Joshua", "Josiah", "Julian", "Kevin", "Landon", "Leo", "Levi", "Liam", "Lincoln", "Logan", "Lucas",
    "Luke", "Marcus", "Mason", "Matthew", "Michael", "Miles", "Nathan", "Nicholas", "Noah", "Nolan",
    "Oliver", "Owen", "Parker", "Robert", "Ryan", "Samuel", "Sebastian", "Theodore", "Thomas", "Tyler",
    "Wesley", "William", "Wyatt", "Xavier",
)  # fmt: skip
FAMILY = (
    "Adams", "Alexander", "Allen", "Anderson", "Bailey", "Baker", "Barnes", "Bell", "Bennett", "Brooks",
    "Brown", "Bryant", "Butler", "Campbell", "Carter", "Castillo", "Chen", "Clark", "Coleman", "Collins",
    "Cook", "Cooper", "Cox", "Cruz", "Davis", "Diaz", "Edwards", "Ellis", "Evans", "Fisher", "Flores",
    "Ford", "Foster", "Garcia", "Gibson", "Gonzales", "Graham", "Gray", "Green", "Griffin", "Hall",
    "Hamilton", "Harris", "Hayes", "Henderson", "Hill", "Holmes", "Howard", "Hughes", "Hunt", "Jackson",
    "James", "Jenkins", "Johnson", "Jones", "Jordan", "Kelly", "Kennedy", "Kim", "King", "Lee", "Lewis",
    "Long", "Lopez", "Marshall", "Martin", "Martinez", "Mason", "Mendoza", "Miller", "Mitchell", "Moore",
    "Morales", "Morgan", "Morris", "Murphy", "Murray", "Myers", "Nguyen", "Nelson", "Ortiz", "Owens",
    "Parker", "Patel", "Patterson", "Perry", "Peterson", "Phillips", "Powell", "Price", "Ramos", "Reed",
    "Reyes", "Reynolds", "Richardson", "Rivera", "Roberts", "Robinson", "Rodriguez", "Rogers", "Ross",
    "Russell", "Sanders", "Scott", "Shah", "Simmons", "Smith", "Stewart", "Sullivan", "Taylor", "Thomas",
    "Thompson", "Torres", "Tran", "Turner", "Walker", "Wallace", "Ward", "Washington", "Watson", "West",
    "White", "Williams", "Wilson", "Wood", "Wright", "Young",
)  # fmt: skip

APOSTROPHE_FAMILY = (
    "O'Brien", "O'Connor", "O'Neill", "O'Malley", "O'Hara", "O'Donnell", "D'Angelo", "D'Souza",
    "O'Reilly", "D'Amico",
)  # fmt: skip
APOSTROPHE_GIVEN = ("D'Andre", "Ja'Mari", "De'Ja", "La'Nya")
HYPHEN_GIVEN = ("Mary-Kate", "Jean-Luc", "Anne-Marie", "Jo-Ann", "Jean-Paul", "Mary-Beth")
ACCENTED_GIVEN = (
    "José", "Zoë", "Renée", "Inés", "Ramón", "Joaquín", "Chloé", "André", "Begoña", "Iñaki", "Noé",
    "Sofía", "Lucía", "Jürgen",
)  # fmt: skip
ACCENTED_FAMILY = (
    "Núñez", "Muñoz", "Peña", "Ibáñez", "Müller", "Gómez", "Pérez", "Hernández", "Argüello", "Krüger",
    "Ordóñez", "Lefèvre", "Agüero", "Méndez",
)  # fmt: skip

#: given name -> a preferred given name people actually use.
NICKNAMES = {
    "Abigail": "Abby", "Alexander": "Alex", "Andrew": "Drew", "Benjamin": "Ben", "Christopher": "Chris",
    "Daniel": "Dan", "Elizabeth": "Liz", "Isabella": "Bella", "Jacob": "Jake", "James": "Jamie",
    "Jennifer": "Jen", "Jonathan": "Jon", "Joseph": "Joe", "Joshua": "Josh", "Katherine": "Kate",
    "Madeline": "Maddie", "Matthew": "Matt", "Michael": "Mike", "Nicholas": "Nick", "Rebecca": "Becky",
    "Robert": "Bobby", "Samantha": "Sam", "Samuel": "Sam", "Theodore": "Teddy", "Thomas": "Tom",
    "Victoria": "Tori", "William": "Will",
}  # fmt: skip

CITIES = (
    "Riverbend", "Millbrook", "Oak Hollow", "Stonebridge", "Fairhaven", "Cedar Bluff", "Lakemont",
    "Westfield Crossing", "Pine Harbor", "Silverton Falls",
)  # fmt: skip

_TREES = (
    "Alder", "Aspen", "Birch", "Cedar", "Chestnut", "Cypress", "Elm", "Hawthorn", "Hickory", "Juniper",
    "Laurel", "Linden", "Magnolia", "Maple", "Oak", "Pine", "Poplar", "Redwood", "Sequoia", "Spruce",
    "Sycamore", "Walnut", "Willow", "Yew",
)  # fmt: skip
_PLACES = (
    "Bend", "Bluff", "Brook", "Creek", "Crossing", "Field", "Glen", "Grove", "Heights", "Hill", "Hollow",
    "Lake", "Meadow", "Park", "Point", "Ridge", "Run", "Springs", "Trail", "Vale", "Valley", "View",
    "Woods", "Landing",
)  # fmt: skip


def school_names(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct invented place names for schools ("Cedar Ridge", ...), in random order."""
    stems = [f"{tree} {place}" for tree in _TREES for place in _PLACES]
    rng.shuffle(stems)
    names = stems[:count]
    # Past 576 schools, repeat the stems with a direction: a district that large has a "North" one.
    for i in range(len(names), count):
        direction = ("North", "South", "East", "West")[(i // len(stems)) % 4]
        names.append(f"{direction} {stems[i % len(stems)]}")
    return names


def handle(*parts: str) -> str:
    """Lower-case ASCII letters of the parts, joined by dots: ``("Zoë", "O'Brien") -> "zoe.obrien"``.

    Accents are folded (é -> e); apostrophes, hyphens and spaces are dropped.
    """
    out = []
    for part in parts:
        folded = unicodedata.normalize("NFKD", part).encode("ascii", "ignore").decode("ascii")
        letters = "".join(c for c in folded.lower() if c.isalnum())
        if letters:
            out.append(letters)
    return ".".join(out) or "user"
