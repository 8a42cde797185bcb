"""The `pose6d` command and what only it uses: demo, benchmarks, reports, self-check."""
