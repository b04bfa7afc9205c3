"""Design-space sweeps on Ray: scenes x hardware x seeds x search methods (docs/search.md#sweeps)."""
