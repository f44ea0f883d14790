"""Safety rules: each category refused with the YAML reason, obfuscations caught, ordinary words left alone."""
from pathlib import Path

import pytest
import yaml

from customizer.errors import SafetyError
from customizer.safety import check_text, safety_negative

RULES = yaml.safe_load((Path(__file__).resolve().parent.parent / "customizer/data/safety.yaml").read_text())
CATEGORIES = [k for k, v in RULES.items() if isinstance(v, dict)]


def refused(text: str, **kw) -> SafetyError:
    with pytest.raises(SafetyError) as info:
        check_text(text, **kw)
    return info.value


@pytest.mark.parametrize("category,text,match", [
    ("minors", "a child in the park", "child"),
    ("minors", "schoolgirl outfit", "schoolgirl"),
    ("minors", "Teenager with braces", "teenager"),
    ("minors", "a little girl", "little girl"),
    ("minors", "pre-teen look", "pre teen"),
    ("explicit", "nude", "nude"),
    ("explicit", "topless on a beach", "topless"),
    ("explicit", "NSFW", "nsfw"),
    ("explicit", "posing without clothes", "without clothes"),
    ("real_people", "Taylor Swift on stage", "taylor swift"),
    ("real_people", "looks a bit like scarlett johansson", "scarlett johansson"),
    ("real_people", "Beyoncé", "beyonce"),
    ("real_people", "a famous celebrity", "celebrity"),
])
def test_each_category_refused_with_its_reason(category, text, match):
    err = refused(text, field="extra")
    assert err.category == category
    assert err.match == match
    assert RULES[category]["reason"] in str(err)
    assert str(err).startswith("extra: ")  # the user learns which box to fix


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_listed_term_refuses_itself(category):
    # A term the normaliser mangles (e.g. one with digits or odd punctuation) would silently never match.
    for term in RULES[category]["terms"]:
        assert refused(f"wearing {term} today").category == category, term


@pytest.mark.parametrize("category", CATEGORIES)
def test_term_lists_are_sorted_and_unique(category):
    terms = RULES[category]["terms"]
    assert terms == sorted(set(terms))


@pytest.mark.parametrize("text,match", [
    ("n_u_d_e", "nude"), ("N U D E", "nude"), ("n.u.d.e", "nude"), ("s-e-x", "sex"), ("NuDe", "nude"),
    ("t33n", "teen"), ("k1d", "kid"), ("s3xy", "sexy"), ("$exy", "sexy"), ("n00dz nude-beach", "nude"),
    ("ｎｕｄｅ", "nude"),            # fullwidth letters (NFKC)
    ("nu\u200bde", "nude"),          # zero-width space inside the word
    ("nud\u0435", "nude"),           # Cyrillic e
    ("#nsfwart", "nsfw"), ("p0rnstar", "porn"),  # substrings of unambiguous terms
    ("young_girl", "young girl"),
])
def test_obfuscations_caught(text, match):
    assert refused(text).match == match


@pytest.mark.parametrize("text", [
    "Sussex", "from Middlesex", "an Essex accent", "upper class", "skidding tyres", "kidney-shaped pool",
    "therapist", "grapes", "boyfriend-style jacket", "kid-leather jacket", "kid gloves", "baby blue eyes",
    "XXXL hoodie", "sextant tattoo", "top ornament", "wearing a t-shirt", "plan a b c", "tomboy haircut",
])
def test_ordinary_words_not_refused(text):
    check_text(text)


def test_allowed_phrase_does_not_excuse_the_term_elsewhere():
    assert refused("kid leather jacket on a kid").match == "kid"


@pytest.mark.parametrize("text", [
    "15 years old", "a 15-year-old", "15yo", "16 y/o", "aged 12", "age 16", "Age: 9", "age of 15",
    "seventeen year old", "17.5 years old", "14 years of age",
])
def test_numeric_minor_ages_refused(text):
    err = refused(text)
    assert err.category == "minors"
    assert RULES["minors"]["reason"] in str(err)


@pytest.mark.parametrize("text", [
    "32 years old", "18yo", "aged 45", "a scar from 15 years ago", "a 300 year old vampire", "25.5 years old",
    "size 12 boots", "page 12 of the book", "image 3",
])
def test_adult_ages_and_other_numbers_allowed(text):
    check_text(text)


@pytest.mark.parametrize("text", [
    "a photo of Taylor Smith", "portrait of John Paul Jones", "selfie of Maria Lopez at the beach",
    "looking like Mary Ann Smith", "dressed as the actor", "he is the president",
])
def test_name_patterns_refused(text):
    err = refused(text)
    assert err.category == "real_people"
    assert err.match in text


@pytest.mark.parametrize("text", [
    "freckles and a scar over the left eyebrow",
    "silver earrings",
    "a small dragon tattoo on the forearm",
    "round glasses and a warm smile",
    "laugh lines and a neatly trimmed beard",
    "wearing a red scarf and leather gloves",
    "a photo of a knight in shining armour",   # lowercase: not a person's name
    "portrait in the style of an oil painting",
    "heterochromia, one eye slightly lighter",
    "a 45 year old sailor with weathered skin",
    "pierced ears, septum ring, undercut",
    "",
])
def test_ordinary_character_descriptions_allowed(text):
    check_text(text)


def test_non_text_is_a_type_error():
    with pytest.raises(TypeError):
        check_text(None)  # type: ignore[arg-type]


def test_safety_negative_comes_from_yaml():
    assert safety_negative() == RULES["negative_terms"]
    assert "child" in safety_negative()


# ---------------------------------------------------------------- second round: categories, names, obfuscation

@pytest.mark.parametrize("category,text", [
    ("violence", "a severed head on a plate"), ("violence", "cutting off his hand"), ("violence", "gore"),
    ("abuse", "bound and gagged"), ("abuse", "being choked by her boyfriend"), ("abuse", "forced to strip"),
    ("hate", "swastika armband"), ("hate", "KKK hood"), ("hate", "a 14/88 tattoo"),
    ("explicit", "wearing nothing but a smile"), ("explicit", "not wearing any clothes"),
    ("explicit", "her dress slipping off"), ("explicit", "covered only by her hands"), ("explicit", "in the buff"),
    ("minors", "a 7th grader"), ("minors", "she's 15"), ("minors", "looks about 14"), ("minors", "under 18"),
])
def test_new_categories_and_implicit_phrasings(category, text):
    err = refused(text, field="scene_text")
    assert err.category == category
    assert str(err).startswith(f"scene_text: {RULES[category]['reason']}")


@pytest.mark.parametrize("text", [
    "looks like Ryan Gosling", "a Keanu Reeves lookalike", "lookalike of Tom Hanks", "face of Cillian Murphy",
    "photo of Margot Robbie", "selfie with Pedro Pascal", "as Harry Styles", "resembling Natalie Portman",
    "Zendaya's twin", "Henry Cavill's face", "looks like Jude Law", "looks like keanu reeves",
    "looks like the actor Tom Hardy", "a young Leonardo DiCaprio lookalike", "sieht aus wie Til Schweiger",
    "looks like my ex girlfriend", "same face as my best friend", "President Lincoln at his desk",
    "Тоm Наnks lookalike",  # Cyrillic capitals
])
def test_likeness_of_real_people_refused(text):
    assert refused(text).category == "real_people"


@pytest.mark.parametrize("text", [
    "a market on Victor Hugo street", "a museum in Washington", "walking across the George Washington Bridge",
    "a flat near Victoria Station", "Trump Tower lobby", "the Queen Elizabeth Hospital entrance",
    "picture of the Eiffel Tower", "a street that looks like Hong Kong", "looks like Central Park in autumn",
    "with Jack Russell terrier", "dressed as Robin Hood", "a photo of Emma at the beach",
    "With Rose Gold Jewelry And Pearls",  # Title Case: capitals say nothing about names
    "looks like rose petals", "in the style of Van Gogh", "Nina", "Victor Hugo Lima", "Mia Rossi",
])
def test_places_things_and_fictional_names_allowed(text):
    check_text(text)


@pytest.mark.parametrize("text,match", [
    ("nuuude", "nude"), ("nu de", "nude"), ("n*ked", "naked"), ("ɴᴜᴅᴇ", "nude"), ("🇳🇺🇩🇪", "nude"),
    ("nippIes showing", "nipples"), ("teenaged", "teenage"), ("toddlers", "toddler"), ("r4pe", "rape"),
    ("sw@stika", "swastika"), ("NUDE!!!", "nude"), ("t a y l o r s w i f t", "taylorswift"),
])
def test_more_obfuscations_caught(text, match):
    assert refused(text).match == match


@pytest.mark.parametrize("text,category", [
    ("niña", "minors"), ("nackt am Strand", "explicit"), ("голая", "explicit"), ("ヌード写真", "explicit"),
    ("une adolescente de 15 ans", "minors"), ("свастика", "hate"), ("Leiche im Wald", "violence"),
])
def test_other_languages(text, category):
    assert refused(text).category == category


@pytest.mark.parametrize("text", [
    "a 5 year old dog", "a 12-year-old whisky", "he's 6'2\" with broad shoulders", "she is 5 feet tall",
    "she minored in art history", "naked eye astronomy", "a kindergarten teacher, 45", "Gore-Tex jacket",
    "kinky coily hair", "nude lipstick", "a pin-up girl look", "minor scars", "the year 1488", "a 1O year old car",
])
def test_ordinary_phrases_near_the_rules_allowed(text):
    check_text(text)


def test_categories_are_checked_in_file_order():
    from customizer.safety import categories

    assert categories() == [k for k, v in RULES.items() if isinstance(v, dict)]
