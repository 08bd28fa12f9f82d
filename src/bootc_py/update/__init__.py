"""The updater on an installed host: status, upgrade, switch, rollback."""
