"""The workload contract (:mod:`paydar.workload.contract`): what every service's per-region
instance exposes and obeys, whatever it stores. The reference registry (:mod:`paydar.node`)
is its first implementation."""
