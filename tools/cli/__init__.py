"""The ``midstream`` command line: flags and settings, the interactive prompt, the demo, the log file."""
