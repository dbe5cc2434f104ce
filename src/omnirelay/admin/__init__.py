"""The operator API under `/admin` (master key)."""
