"""The benchmark harness behind `ganfast bench`: cases, timing, rows."""
