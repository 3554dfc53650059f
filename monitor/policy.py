"""Alert decisions. Pure: the store asks, with the state it has, and does what it is told.

Story alerts (a rule's hits on the articles of one story):

* ``once_per_story`` (the default): the rule's first hit on the story is alerted (step 0),
  later copies from other outlets are stored and not alerted;
* ``min_sources: N``: nothing is alerted until N distinct sources carry the story; then
  the rule's first hit on it goes out, saying how many sources carry it;
* ``follow_up: [3, 5]``: when the source count reaches 3, and again at 5, one follow-up
  (step 3, step 5) says "now 3 sources", on the rule's newest hit in the story. A
  threshold already reached when the first alert goes out is not followed up (that
  alert says the count).
"""

from __future__ import annotations

from collections.abc import Sequence, Set

from monitor.models import StoryPolicy


def story_steps(
    policy: StoryPolicy,
    sources: int,
    hits: Sequence[int],
    taken: Set[int],
    alerted: Set[int] = frozenset(),
) -> list[tuple[int, int]]:
    """The (hit id, step) alerts to create now for one rule on one story.

    ``hits``: the rule's hits on the story, oldest first; ``sources``: distinct sources
    the story has now; ``taken``: the steps already taken for (story, rule) (0 for the
    first alert, N for follow-ups, skipped thresholds included); ``alerted``: hits that
    already have their own alert (used when ``once_per_story`` is off). A threshold to
    record as taken without alerting comes back as (hit id, -threshold).
    """
    if not hits or sources < policy.min_sources:
        return []
    out: list[tuple[int, int]] = []
    first_now = 0 not in taken
    if first_now:
        out.append((hits[0], 0))
    if not policy.once_per_story:
        out += [(hit, 0) for hit in hits if hit not in alerted and (hit, 0) not in out]
    reached = [t for t in policy.follow_up if t <= sources and t not in taken]
    for threshold in reached:
        # Thresholds the first alert already covers, or passed over on the way to a
        # higher one, are recorded as taken but not alerted.
        if first_now or threshold != reached[-1]:
            out.append((hits[-1], -threshold))
        else:
            out.append((hits[-1], threshold))
    return out
