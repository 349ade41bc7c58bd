"""Flow matching (Wan convention): schedules, the training loss, and samplers (DESIGN.md §2)."""
