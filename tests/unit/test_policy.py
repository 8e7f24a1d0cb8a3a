"""Policy files: errors name the line and the offending action or rule."""

import pytest

from segmenters.policy import PolicyError, load_policy

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
            "line 3: rule 1 (journey -> lapsed): unknown action 'email/helo'",
        ),
        (
            ACTION + RULE + RULE.replace('"lapsed"', '"lapsd"'),
            "line 7: rule 2 (journey -> lapsd): unknown segment 'lapsd' for journey",
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
