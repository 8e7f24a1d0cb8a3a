"""Policy files: errors name the line and the offending action or rule."""

import pytest

from segmenters.actions.policy import DEFAULT_POLICY_TEXT, PolicyError, load_policy
from segmenters.vocabulary import Vocabulary

ACTION = '[actions.email.hello]\ntemplate = "t"\n'
RULE = '[[rules]]\ndimension = "journey"\ncurrent = "lapsed"\nactions = ["email/hello"]\n'


def test_minimal_file():
    p = load_policy(ACTION + RULE)
    assert list(p.actions) == ["email/hello"] and p.rules[0].previous is None
    assert p.frequency_cap == {} and p.quiet_hours is None and p.experiment == "default"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[actions.email.hello\n", "not valid TOML"),
        (ACTION + RULE + "colour = 1\n", "line 7: rule 1 (journey -> lapsed): colour:"),
        (
            ACTION + RULE.replace("email/hello", "email/helo"),
            "line 6: rule 1 (journey -> lapsed): unknown action 'email/helo'",
        ),
        (
            ACTION + RULE + RULE.replace('"lapsed"', '"lapsd"'),
            "line 9: rule 2 (journey -> lapsd): unknown segment 'lapsd' for journey",
        ),
        (
            ACTION + RULE.replace('"journey"', '"rfm"').replace('"lapsed"', '"champion"'),
            "unknown segment 'champion' for rfm",
        ),
        (
            ACTION + RULE.replace('"journey"', '"custom:big"').replace('"lapsed"', '"in"'),
            "unknown segment 'in' for custom:big",
        ),
        (
            ACTION + RULE.replace('["email/hello"]', "[]"),
            "line 6: rule 1 (journey -> lapsed): actions:",
        ),
        (
            ACTION + '[[rules]]\ndimension = "journey"\nactions = ["email/hello"]\n',
            "current: Field required",
        ),
        (
            '[actions.email.hello]\ntemplate = "t"\nholdout = 1.5\n',
            "line 3: action email/hello: holdout:",
        ),
        (
            '[actions.email.hello]\ntemplate = "t"\ndelay_s = -1\n',
            "line 3: action email/hello: delay_s:",
        ),
        (
            '[actions.email.hello]\naudience = "a"\n',
            "line 1: action email/hello: a email action needs a `template`",
        ),
        ('[actions.ads.x]\ntemplate = "t"\n', "action ads/x: an ads action needs an `audience`"),
        ("[actions.webhook.x]\n", "needs one of `template` or `audience`"),
        ('[actions.sms.x]\ntemplate = "t"\n', "line 1: actions.sms:"),
        ('[actions.email.Hello]\ntemplate = "t"\n', "action email/Hello: name:"),
        ("[frequency_cap]\nemail = -1\n", "line 2: frequency_cap.email:"),
        ("[frequency_cap]\nsms = 1\n", "line 2: frequency_cap.sms:"),
        (
            '[quiet_hours]\nstart_hour = 24\nend_hour = 8\ntimezone = "UTC"\n',
            "line 2: quiet_hours.start_hour",
        ),
        (
            '[quiet_hours]\nstart_hour = 8\nend_hour = 8\ntimezone = "UTC"\n',
            "start_hour and end_hour must differ",
        ),
        (
            '[quiet_hours]\nstart_hour = 1\nend_hour = 8\ntimezone = "Mars/Base"\n',
            "unknown timezone 'Mars/Base'",
        ),
        ("version = 1\nconversion_window_s = 0\n", "line 1: version:"),
        ('version = "1"\nconversion_window_s = 0\n', "line 2: conversion_window_s:"),
        ('experiment = ""\n', "line 1: experiment:"),
        ("colour = 1\n", "line 1: colour:"),
    ],
)
def test_bad_files_are_refused_with_the_line_and_the_entry(text, message):
    with pytest.raises(PolicyError) as info:
        load_policy(text)
    assert message in str(info.value)


def test_previous_may_be_any_segment_of_the_dimension():
    p = load_policy(ACTION + RULE.replace("current", 'previous = "at_risk"\ncurrent'))
    assert [a.id for a in p.matching("journey", "at_risk", "lapsed")] == ["email/hello"]
    assert p.matching("journey", "loyal", "lapsed") == []
    assert p.matching("journey", None, "lapsed") == []


def test_two_rules_with_the_same_action_trigger_it_once():
    p = load_policy(ACTION + RULE + RULE)
    assert [a.id for a in p.matching("journey", None, "lapsed")] == ["email/hello"]


# --- rules are checked against the segments that exist -----------------------------------


KNOWN = Vocabulary(clusters=6, custom=frozenset({"big_spenders"}))


def _rule(dimension: str, current: str, previous: str | None = None) -> str:
    prev = f'previous = "{previous}"\n' if previous is not None else ""
    return (
        f'[[rules]]\ndimension = "{dimension}"\n{prev}current = "{current}"\n'
        'actions = ["email/hello"]\n'
    )


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            _rule("behavior", "cluster_1"),
            "line 4: rule 1 (behavior -> cluster_1): unknown dimension 'behavior' "
            "(did you mean 'behaviour'?)",
        ),
        (
            _rule("behaviour", "cluster_9"),
            "line 5: rule 1 (behaviour -> cluster_9): unknown segment 'cluster_9' for "
            "behaviour: the model has 6 clusters, cluster_0 .. cluster_5",
        ),
        (_rule("behaviour", "cluster_x"), "line 5: rule 1 (behaviour -> cluster_x): unknown"),
        (
            _rule("custom:big_spender", "member"),
            "line 4: rule 1 (custom:big_spender -> member): unknown custom segment "
            "'big_spender' (did you mean 'big_spenders'?)",
        ),
        (_rule("big_spenders", "member"), "(did you mean 'custom:big_spenders'?)"),
        (
            _rule("journey", "lapsed", previous="lapsed"),
            "line 5: rule 1 (journey -> lapsed): previous and current are both 'lapsed'",
        ),
        (_rule("journey", "lapsed", previous="at_rsk"), "line 5: rule 1 (journey -> lapsed): "),
        (_rule("demographic", "25-35/female/high"), "unknown age band '25-35'"),
        (_rule("demographic", "25-34/Female/high"), "'Female' never matches"),
        (_rule("demographic", "female"), "segments read <age band>/<gender>/<income band>"),
        (_rule("geographic", "de/Bavaria"), "upper case (did you mean 'DE'?)"),
        (_rule("geographic", "DE"), "segments read <country>/<region>"),
    ],
)
def test_rules_that_can_never_fire_are_refused_with_their_line(rule, message):
    with pytest.raises(PolicyError) as info:
        load_policy(ACTION + rule, KNOWN)
    assert message in str(info.value)


def test_known_segments_of_every_dimension_load():
    rules = [
        _rule("behaviour", "cluster_5", previous="cluster_0"),
        _rule("custom:big_spenders", "member"),
        _rule("demographic", "under_18/unknown/unknown"),
        _rule("demographic", "65+/female/high"),
        _rule("geographic", "DE/unknown"),
        _rule("rfm", "champions", previous="loyal"),
    ]
    p = load_policy(ACTION + "".join(rules), KNOWN)
    assert len(p.rules) == 6
    assert load_policy(DEFAULT_POLICY_TEXT, Vocabulary(clusters=2, custom=frozenset()))


def test_custom_dimensions_need_a_custom_segment_when_names_are_known():
    with pytest.raises(PolicyError, match="no custom segments are configured"):
        load_policy(ACTION + _rule("custom:big_spenders", "member"), Vocabulary(custom=frozenset()))
    # without a vocabulary (the library default), custom names and cluster ids are not known
    assert load_policy(
        ACTION + _rule("custom:anything", "member") + _rule("behaviour", "cluster_40")
    )


def test_matching_is_remembered_per_policy_and_a_copy_answers_for_its_own_rules():
    p = load_policy(ACTION + RULE)
    first = p.matching("journey", "browser", "lapsed")
    assert [a.id for a in first] == ["email/hello"]
    first.clear()  # the caller's list: what is remembered stays
    assert [a.id for a in p.matching("journey", "browser", "lapsed")] == ["email/hello"]
    other = p.model_copy(update={"rules": ()})
    assert other.matching("journey", "browser", "lapsed") == []
    assert other.dimensions == frozenset() and p.dimensions == {"journey"}
    assert [a.id for a in p.matching("journey", None, "lapsed")] == ["email/hello"]
