"""Edge labels and selectors, the pure rules (``edgefleet.selectors``): what is accepted, what
each term matches, and every malformed form refused with the bad term quoted and the
accepted syntax shown."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgefleet.errors import InvalidInput
from edgefleet.selectors import (
    MAX_LABELS,
    SELECTOR_SYNTAX,
    Op,
    Selector,
    Term,
    labels_text,
    matches,
    parse_keys,
    parse_labels,
    parse_selector,
    relabel,
)

PLANT_7 = {"site": "plant-7", "tier": "canary", "example.com/zone": "eu-1"}
PLANT_8 = {"site": "plant-8", "retired": ""}
BARE: dict[str, str] = {}


def test_a_selector_is_parsed_into_terms_and_written_back_the_same() -> None:
    selector = parse_selector(" site=plant-7, tier!=canary ,!retired,gpu,example.com/zone=")
    assert selector.terms == (
        Term(key="site", op=Op.EQUALS, value="plant-7"),
        Term(key="tier", op=Op.NOT_EQUALS, value="canary"),
        Term(key="retired", op=Op.LACKS),
        Term(key="gpu", op=Op.HAS),
        Term(key="example.com/zone", op=Op.EQUALS, value=""),
    )
    text = str(selector)
    assert text == "site=plant-7,tier!=canary,!retired,gpu,example.com/zone="
    assert parse_selector(text) == selector
    assert Selector.model_validate(selector.model_dump(mode="json")) == selector


@pytest.mark.parametrize(("text", "picked"), [
    ("site=plant-7", ["plant-7"]),
    ("site!=plant-7", ["plant-8", "bare"]),  # no such label counts as different
    ("site", ["plant-7", "plant-8"]),
    ("!site", ["bare"]),
    ("retired", ["plant-8"]),  # an empty value is a value
    ("retired=", ["plant-8"]),
    ("!retired", ["plant-7", "bare"]),
    ("site,!retired", ["plant-7"]),
    ("site=plant-7,tier!=canary", []),  # every term must hold
    ("tier!=stable,!retired", ["plant-7", "bare"]),
    ("example.com/zone=eu-1", ["plant-7"]),
    ("Site=plant-7", []),  # keys and values are case-sensitive
    ("site=Plant-7", []),
])
def test_each_term_matches_as_documented(text: str, picked: list[str]) -> None:
    fleet = {"plant-7": PLANT_7, "plant-8": PLANT_8, "bare": BARE}
    selector = parse_selector(text)
    assert [name for name, labels in fleet.items() if matches(selector, labels)] == picked


@pytest.mark.parametrize(("text", "quoted", "says"), [
    ("a,,b", "'a,,b'", "has an empty term"),
    ("a,", "'a,'", "has an empty term"),
    (",a", "',a'", "has an empty term"),
    ("a==b", "term 'a==b'", "'==' is not an operator: write key=value"),
    ("a!==b", "term 'a!==b'", "'!==' is not an operator: write key!=value"),
    ("=x", "term '=x'", "there is no key before '='"),
    ("!=x", "term '!=x'", "there is no key before '!='"),
    ("!a=b", "term '!a=b'", "a '!' term names a key only"),
    ("!a!=b", "term '!a!=b'", "a '!' term names a key only"),
    ("!", "term '!'", "there is no key after '!'"),
    ("!!a", "term '!!a'", "key '!a': its name holds '!'"),
    ("a=b=c", "term 'a=b=c'", "it has more than one '='"),
    ("a b=c", "term 'a b=c'", "it holds a space"),
    ("site=plant 7", "term 'site=plant 7'", "it holds a space"),
    ("a=$(reboot)", "term 'a=$(reboot)'", "value '$(reboot)': it holds '$'"),
    ("a;rm -rf", "term 'a;rm -rf'", "it holds a space"),
    ("a;b", "term 'a;b'", "key 'a;b': its name holds ';'"),
    ("a|b=c", "term 'a|b=c'", "its name holds '|'"),
    ("a=`id`", "term 'a=`id`'", "it holds '`'"),
    ("-a", "term '-a'", "its name starts with '-'"),
    ("a=b-", "term 'a=b-'", "value 'b-': it ends with '-'"),
    ("Example.com/a", "term 'Example.com/a'", "its prefix is not a DNS name"),
    ("a/b/c", "term 'a/b/c'", "it has more than one '/'"),
    ("a/", "term 'a/'", "its name after '/' is empty"),
    ("k" * 64, "term 'kkkk", "its name is 64 characters long, more than 63"),
    ("a=" + "v" * 64, "term 'a=vvvv", "it is 64 characters long, more than 63"),
    ("café=1", "term 'café=1'", "its name holds 'é'"),
])
def test_a_malformed_selector_is_refused_quoting_the_term(text: str, quoted: str,
                                                         says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_selector(text)
    message = str(caught.value)
    assert f"selector {quoted}" in message and says in message
    assert message.endswith(SELECTOR_SYNTAX)  # and how to write one


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_selector_is_refused_not_read_as_every_edge(text: str) -> None:
    with pytest.raises(InvalidInput, match="selector is empty.*leave the selector out"):
        parse_selector(text)


def test_a_huge_selector_is_refused_before_it_is_parsed() -> None:
    text = ",".join(["site=plant-7"] * 400)  # 5,199 characters
    with pytest.raises(InvalidInput, match="is 5199 characters long, more than 4096") as caught:
        parse_selector(text)
    assert len(str(caught.value)) < 500  # the input is not echoed whole
    assert len(parse_selector(",".join(["site=plant-7"] * 315)).terms) == 315  # 4,094: fine


def test_a_selector_must_be_text() -> None:
    with pytest.raises(InvalidInput, match="is not text"):
        parse_selector(["site=plant-7"])  # type: ignore[arg-type]


def test_a_term_built_by_hand_is_checked_too() -> None:
    with pytest.raises(ValidationError, match="label key 'a b' is not valid"):
        Term(key="a b", op=Op.HAS)
    with pytest.raises(ValidationError, match="'=' term needs a value"):
        Term(key="a", op=Op.EQUALS)
    with pytest.raises(ValidationError, match="'has' term takes no value"):
        Term(key="a", op=Op.HAS, value="")
    with pytest.raises(ValidationError, match="label value '\\$x' is not valid"):
        Term(key="a", op=Op.NOT_EQUALS, value="$x")
    with pytest.raises(ValidationError, match="at least 1 item"):
        Selector(terms=())  # every edge is `selector=None`, never an empty selector


def test_labels_are_checked_and_sorted() -> None:
    assert parse_labels(["tier=canary", "site=plant-7", "example.com/zone=", "a.b_c-d=X.y_z-1"]
                        ) == {"a.b_c-d": "X.y_z-1", "example.com/zone": "", "site": "plant-7",
                              "tier": "canary"}
    assert list(parse_labels({"b": "2", "a": "1"})) == ["a", "b"]
    assert parse_labels("site=plant-7") == {"site": "plant-7"}  # one entry
    assert parse_labels(None) == parse_labels([]) == {}


@pytest.mark.parametrize(("given", "says"), [
    (["site"], "label 'site' is not KEY=VALUE (e.g. site=plant-7; an empty value is written "
               "KEY=)"),
    (["=plant-7"], "label key '' is not valid: it is empty; a key is NAME or PREFIX/NAME"),
    (["site=plant 7"], "label 'site': the value 'plant 7' is not valid: it holds ' '; a value "
                       "is empty or up to 63"),
    (["url=a=b"], "the value 'a=b' is not valid: it holds '='"),
    (["x=$(id)"], "the value '$(id)' is not valid: it holds '$'"),
    (["-a=1"], "label key '-a' is not valid: its name starts with '-'"),
    (["Zone.Example/a=1"], "label key 'Zone.Example/a' is not valid: its prefix is not a DNS"),
    (["a=1", "a=2"], "label 'a' is given twice"),
    ({"floor": 3}, "label 'floor': the value 3 is not text (write it as a string"),
    ({1: "a"}, "label key 1 is not text"),
    ([f"k{i}=v" for i in range(MAX_LABELS + 1)], "65 labels given; an edge has at most 64"),
])
def test_bad_labels_are_refused_naming_the_input(given: object, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_labels(given)  # type: ignore[arg-type]
    assert says in str(caught.value)


def test_keys_to_remove_are_checked() -> None:
    assert parse_keys(["tier", "example.com/zone", "tier"]) == ["tier", "example.com/zone"]
    assert parse_keys("tier") == ["tier"]  # one key, not four letters
    with pytest.raises(InvalidInput, match="'tier=canary' is not a label key: name only the KEY"):
        parse_keys(["tier=canary"])
    with pytest.raises(InvalidInput, match="label key 'a b' is not valid"):
        parse_keys(["a b"])


def test_relabel_adds_replaces_and_removes() -> None:
    current = {"site": "plant-7", "tier": "canary", "retired": ""}
    assert relabel(current, add={"tier": "stable", "gpu": "a100"}, remove=["retired", "absent"]
                   ) == {"gpu": "a100", "site": "plant-7", "tier": "stable"}
    assert current == {"site": "plant-7", "tier": "canary", "retired": ""}  # not changed
    with pytest.raises(InvalidInput, match="label 'tier' is both set and removed; give one of "
                       "--label tier=VALUE and --unlabel tier"):
        relabel(current, add={"tier": "stable"}, remove=["tier"])
    full = {f"k{i}": "" for i in range(MAX_LABELS)}
    assert relabel(full, add={"k0": "x"}, remove=[]) == {**full, "k0": "x"}  # a replacement
    with pytest.raises(InvalidInput, match="edge 'e1' would have 65 labels, more than 64; "
                       "remove some with --unlabel KEY"):
        relabel(full, add={"one-more": ""}, remove=[], owner="edge 'e1'")
    assert len(relabel(full, add={"one-more": ""}, remove=["k1"])) == MAX_LABELS


def test_labels_as_text_read_as_a_selector_that_matches_them() -> None:
    assert labels_text(PLANT_8) == "retired=,site=plant-8"
    assert matches(parse_selector(labels_text(PLANT_7)), PLANT_7)
    assert labels_text({}) == ""
