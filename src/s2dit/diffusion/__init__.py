"""Flow matching (Wan convention): schedules, the training loss, and samplers (docs/architecture.md §2)."""
