"""Ray's part of a sweep, by hand, for tests of the searcher without Ray: two trial slots, the
oldest running trial finishes first, its result made by `row(trial_id, config)`."""

from __future__ import annotations

from collections.abc import Callable

from sweep.search import PhasedSearcher, Searcher


class Driver:
    def __init__(self, searcher: PhasedSearcher, row: Callable[[str, dict], dict]) -> None:
        self.searcher, self.row, self.n = searcher, row, 0
        self.configs: dict[str, dict] = {}  # every trial id handed out, with its config
        self.finished: list[str] = []
        self.answers: list[str] = []  # the design loop's answer lines, as progress prints them

    def step(self) -> bool:
        """Fill the slots, finish the oldest running trial; False when the sweep is over."""
        s = self.searcher
        while len(s.state.live) < 2:
            trial_id = f"t{self.n}"
            config = s.suggest(trial_id)
            if config in (None, Searcher.FINISHED):
                break
            self.n += 1
            self.configs[trial_id] = config
        if not s.state.live:
            return False
        trial_id = next(iter(s.state.live))
        s.on_trial_complete(trial_id, self.row(trial_id, self.configs[trial_id]))
        self.finished.append(trial_id)
        answer = s.answer()
        if answer:
            self.answers.append(answer)
        return True
