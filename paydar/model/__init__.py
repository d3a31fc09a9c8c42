"""The model: topology, routing tables, signing, identities, wire rules, errors, state files.

The ground floor: it imports nothing else of Paydar."""
