"""Where tools may act: confinement, ignore rules, command policy, permission modes, isolation, undo."""
