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
    pending: Sequence[int],
    newest: int,
    taken: Set[int],
) -> list[tuple[int, int]]:
    """The (hit id, step) alerts to create now for one rule on one story, once the story
    has at least ``policy.min_sources`` sources (below that, hits are held: the store
    keeps them pending and asks again when the story grows).

    ``pending``: the rule's hits on the story not decided yet (held back, or just
    stored), oldest first; ``newest``: its newest hit on the story (follow-ups go with
    it); ``sources``: distinct sources the story has now; ``taken``: the steps already
    taken for (story, rule). Every pending hit is decided by this call: alerted, or
    (once per story) stored without an alert. A threshold to record as taken without
    alerting comes back as (hit id, -threshold).
    """
    if sources < policy.min_sources:
        return []
    first_now = 0 not in taken
    out: list[tuple[int, int]] = []
    if not policy.once_per_story:
        out += [(hit, 0) for hit in pending]
    elif first_now and pending:
        out.append((pending[0], 0))
    alerted_now = {hit for hit, _ in out}
    reached = [t for t in policy.follow_up if t <= sources and t not in taken]
    for threshold in reached:
        # Recorded, not sent: a threshold the first alert already covers, one passed over
        # on the way to a higher one, or one whose hit is being alerted anyway.
        silent = first_now or threshold != reached[-1] or newest in alerted_now
        out.append((newest, -threshold if silent else threshold))
    return out
