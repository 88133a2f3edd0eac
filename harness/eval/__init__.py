"""One evaluation from configuration to score: the run's identity and on-disk log, the track's
set-up (command, environment, executor), reference times, confirmation runs, orchestration."""
