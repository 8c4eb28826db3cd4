"""Per-key pacing: one request budget per upstream key (`window`), who gets the next slot (`queue`), when each
task is polled (`plan`, from `latency` models the shared `learner` keeps), the `pacer` of one key, and the
`pacers` of one upstream."""
