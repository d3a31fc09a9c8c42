"""The drill: the attack catalog and the N-1 matrix run against one national system, and its report."""
