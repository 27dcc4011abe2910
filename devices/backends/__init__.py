"""One small module per kind of place: cpu (numpy), gpu (cupy), ps (Ray)."""
