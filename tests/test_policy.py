"""monitor.policy's pure deciders: what a story's hits call for (story_decisions) and how
a storm of alerts is folded into digests (storm). No database."""

from __future__ import annotations

from monitor.models import AlertPolicy
from monitor.policy import (
    DIGEST_ITEMS,
    RuleDecision,
    StormFold,
    StoryState,
    StoryStep,
    storm,
    story_decisions,
)

S = StoryStep  # (hit, step, send)
HELD = AlertPolicy(min_sources=2)


def state(
    sources: int,
    held: dict[str, list[int]] | None = None,
    taken: dict[str, set[int]] | None = None,
    newest: dict[str, int] | None = None,
) -> StoryState:
    return StoryState(sources, held or {}, taken or {}, newest or {})


# --- story_decisions --------------------------------------------------------------------


def test_held_hits_of_a_removed_rule_stay_held() -> None:
    story = state(3, held={"gone": [4, 7]})
    # The story grew past the rule's min_sources, but the rule is no longer loaded.
    assert story_decisions(story, {}, True, {"other": AlertPolicy()}, False) == []
    assert story_decisions(story, {}, True, {}, False) == []
    # Its new hits (a rule loaded again under the same name) follow the default policy.
    [decision] = story_decisions(story, {"gone": [9]}, True, {}, False)
    assert decision == RuleDecision("gone", AlertPolicy(), steps=(S(4, 0, True),), release=(4, 7))


def test_below_min_sources_new_hits_are_held() -> None:
    [decision] = story_decisions(state(1), {"sanctions": [5]}, False, {"sanctions": HELD}, False)
    assert decision == RuleDecision("sanctions", HELD, hold=(5,))
    # Enough sources: the oldest held hit is the alert, and every held hit is released.
    story = state(2, held={"sanctions": [5]})
    [decision] = story_decisions(story, {"sanctions": [8]}, True, {"sanctions": HELD}, False)
    assert decision == RuleDecision("sanctions", HELD, steps=(S(5, 0, True),), release=(5,))


def test_baseline_hits_are_not_the_alert_but_release_the_held_hits_of_others() -> None:
    policies = {"sanctions": HELD, "troops": AlertPolicy()}
    story = state(2, held={"sanctions": [3]})
    # A feed's first poll brings the story's second source, and hits of both rules.
    decisions = story_decisions(story, {"sanctions": [9], "troops": [10]}, True, policies, True)
    assert decisions == [
        RuleDecision("sanctions", HELD, steps=(S(3, 0, True),), release=(3,)),
    ]
    # With nothing held, a baseline decides nothing at all.
    assert story_decisions(state(1), {"troops": [10]}, False, policies, True) == []
    # Past the first poll, the same hit is the story's alert.
    [decision] = story_decisions(state(1), {"troops": [10]}, False, policies, False)
    assert decision.steps == (S(10, 0, True),)


def test_follow_ups_are_decided_only_when_the_story_grew() -> None:
    policy = AlertPolicy(follow_up=(3,))
    story = state(3, taken={"sanctions": {0}}, newest={"sanctions": 12})
    # Another article from a source the story had (it did not grow): nothing to decide.
    assert story_decisions(story, {}, False, {"sanctions": policy}, False) == []
    [decision] = story_decisions(story, {}, True, {"sanctions": policy}, False)
    assert decision == RuleDecision("sanctions", policy, steps=(S(12, 3, True),))
    # A rule that never alerted the story has no follow-ups to make.
    assert story_decisions(state(3), {}, True, {"sanctions": policy}, False) == []


def test_decisions_come_rule_by_rule_in_order() -> None:
    hits = {"troops": [2], "alpha": [1], "sanctions": [3]}
    decisions = story_decisions(state(1), hits, False, None, False)
    assert [d.rule for d in decisions] == ["alpha", "sanctions", "troops"]
    assert all(d.policy == AlertPolicy() for d in decisions)


# --- storm ------------------------------------------------------------------------------


def test_storm_folds_channels_over_the_cap_into_chunks_of_digest_items() -> None:
    chat = list(range(1, 2 * DIGEST_ITEMS + 11))
    kept, folds = storm({"chat": chat, "mail": [900, 901], "pager": [950, 951, 952]}, 3)
    assert kept == [900, 901, 950, 951, 952]  # at or under the cap: sent as they are
    assert folds == [
        StormFold(
            "chat",
            (
                tuple(chat[:DIGEST_ITEMS]),
                tuple(chat[DIGEST_ITEMS : 2 * DIGEST_ITEMS]),
                tuple(chat[2 * DIGEST_ITEMS :]),
            ),
        )
    ]


def test_storm_keeps_everything_under_the_cap() -> None:
    assert storm({"chat": [1, 2], "mail": [3]}, 2) == ([1, 2, 3], [])
    assert storm({}, 1) == ([], [])
    kept, [fold] = storm({"chat": [1, 2, 3]}, 2)
    assert kept == [] and fold.chunks == ((1, 2, 3),)
