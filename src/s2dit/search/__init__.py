"""Budget-aware layout search (DESIGN.md §6): latency tables, a quality proxy, the dynamic program."""
