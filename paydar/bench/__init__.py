"""The benchmarks behind `paydar bench`: figures printed, never asserted."""
