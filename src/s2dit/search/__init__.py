"""Budget-aware layout search (docs/architecture.md §6): latency tables, a quality proxy, the dynamic
program."""
